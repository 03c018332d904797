// The authorization request of the authorization-code types: authorization_params
// (provider parameters the engine adds to it) and response_mode (how the provider
// returns the code), and the parameters the engine owns, which no field may set.

package credtype

import (
	"slices"
	"strings"
)

// Field names of the authorization request.
const (
	FieldAuthorizationParams = "authorization_params"
	FieldResponseMode        = "response_mode"
)

// The response_mode values (OAuth 2.0 Multiple Response Type Encoding Practices, and
// Form Post Response Mode).
const (
	// ResponseModeQuery returns the code in the redirect's query: the default.
	ResponseModeQuery = "query"
	// ResponseModeFormPost has the browser POST the code to the callback as a form,
	// so it never stands in a URL (which Vault's audit log writes unhashed).
	ResponseModeFormPost = "form_post"
)

var responseModes = []string{ResponseModeQuery, ResponseModeFormPost}

// OfflineAccessScope is the OpenID Connect scope that asks for a refresh token. OpenID
// Connect Core section 11: the request must then carry prompt=consent, or a certified
// server drops the scope and issues no refresh token.
const OfflineAccessScope = "offline_access"

// ownedAuthorizationParams are the authorization-request parameters the engine sets
// itself (or that would hand a secret, or the whole request, to the browser): an
// authorization_params key naming one is refused at write. Compared case-insensitively.
var ownedAuthorizationParams = []string{
	// The request the engine builds: PKCE, state, where and how the code returns.
	"client_id", "code_challenge", "code_challenge_method", "redirect_uri", "response_mode",
	"response_type", "scope", "state",
	// Set from the credential's own fields.
	"audience",
	// A request object would override every parameter above (RFC 9101).
	"request", "request_uri",
	// Token-request parameters: in a URL a browser carries they would leak a secret.
	"client_secret", "code", "code_verifier", "grant_type", "password", "refresh_token", "username",
	"client_assertion", "client_assertion_type",
}

// OwnedAuthorizationParam reports whether key is a parameter the engine owns in an
// authorization request, so authorization_params may not set it.
func OwnedAuthorizationParam(key string) bool {
	return slices.Contains(ownedAuthorizationParams, strings.ToLower(key))
}

// ruleAuthorizationParams is the rule of authorization_params as types/ shows it;
// stateLimits appends the key rule and the bounds.
var ruleAuthorizationParams = "object of provider parameters added to the authorization request, such as access_type=offline (Google), login_hint or resource; " +
	"none of the parameters the engine owns: " + strings.Join(ownedAuthorizationParams, ", ") +
	"; prompt may not be \"none\" when scopes include offline_access (the engine adds prompt=consent then)"

var authorizationNames = defineAuthorization()

func defineAuthorization() []string {
	define(Field{Name: FieldAuthorizationParams, Type: FieldStringMap, mapKey: checkAuthorizationParamKey,
		Rule: ruleAuthorizationParams,
		Description: "Extra parameters of the authorization request (credentials/<name>/authorize), for providers that need them: " +
			"Google's access_type=offline (without it Google issues no refresh token), login_hint, resource. They are not sent to the token endpoint."})
	define(Field{Name: FieldResponseMode, Type: FieldString, check: checkResponseMode, maxLen: 16,
		Rule: `"query" (the provider redirects with the code in the URL) or "form_post" (the provider's page POSTs the code to oauth/callback as a form, ` +
			`so it never stands in a URL that Vault's audit log writes in clear); at most 16 bytes`,
		Description: "How the provider returns the authorization code to oauth/callback. form_post keeps the code out of URLs (audit logs, proxies, browser history); Microsoft Entra, Okta and oidc-provider support it."})
	return []string{FieldAuthorizationParams, FieldResponseMode}
}

// addAuthorizationFields gives every authorization-code type (a preset whose grant is
// authorization_code) authorization_params and response_mode, before its common
// fields, and the check that spans them and scopes.
func addAuthorizationFields(t *Type) {
	if !t.codeFlow() {
		return
	}
	var add []Field
	for _, n := range authorizationNames {
		if _, ok := t.Field(n); ok {
			continue
		}
		var opts []fieldOption
		if n == FieldResponseMode {
			opts = append(opts, defaultValue(ResponseModeQuery))
		}
		add = append(add, use(n, opts...))
	}
	t.insertBeforeCommon(add...)
	t.finish = chainFinish(t.finish, finishAuthorization)
}

func checkAuthorizationParamKey(k string) (string, error) {
	if OwnedAuthorizationParam(k) {
		return "", ruleError("must not set a parameter the engine owns (" + strings.Join(ownedAuthorizationParams, ", ") + ")")
	}
	return k, nil
}

func checkResponseMode(s string) (string, error) {
	if s = strings.ToLower(s); slices.Contains(responseModes, s) {
		return s, nil
	}
	return "", ruleError("must be " + quoteOr(responseModes))
}

// finishAuthorization refuses prompt=none beside offline_access: the engine adds
// consent to the prompt then, and "none" may not be combined with anything.
func finishAuthorization(v *Validated) FieldErrors {
	params := StringMap(v.Values[FieldAuthorizationParams])
	scopes, _ := v.Values["scopes"].([]string)
	if slices.Contains(scopes, OfflineAccessScope) && slices.Contains(strings.Fields(params["prompt"]), "none") {
		return FieldErrors{{Field: FieldAuthorizationParams, Rule: `must not set prompt "none" when scopes include offline_access: offline access needs prompt=consent (OpenID Connect Core section 11)`}}
	}
	return nil
}

// AuthorizationPrompt is the prompt parameter of an authorization request with the
// given scopes and authorization_params' prompt (asked, space-separated values): with
// offline_access among the scopes, asked with "consent" added (OpenID Connect Core
// section 11); otherwise asked as it is.
func AuthorizationPrompt(scopes []string, asked string) string {
	if !slices.Contains(scopes, OfflineAccessScope) {
		return asked
	}
	values := strings.Fields(asked)
	if !slices.Contains(values, "consent") {
		values = append(values, "consent")
	}
	return strings.Join(values, " ")
}
