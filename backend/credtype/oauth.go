package credtype

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// OAuthPreset is how an OAuth 2.0 type's fields become a token request. The oauth
// package builds its Config from it (oauth.FromFields) and knows no type names, so an
// OAuth type is one catalog entry. The catalog depends on nothing of oauth's: a preset
// is data, in the protocol's own words (grant_type values, "header"/"body").
//
// Endpoint templates hold "{field}" placeholders, each filled with that field's value
// normalized by the field's own rule (FillEndpoint), so a tenant or an instance cannot
// move an endpoint off the provider's host. The token_url and auth_url fields, when set,
// override the templates.
type OAuthPreset struct {
	// Grant is the grant_type the credential uses: "client_credentials", "password",
	// "authorization_code", or Zoom's "account_credentials".
	Grant string
	// PasswordGrantWithUser switches to the password grant when username and password
	// are both set (ServiceNow); one without the other is refused.
	PasswordGrantWithUser bool
	// TokenURL is the token endpoint template; empty means the token_url field, which
	// is then required.
	TokenURL string
	// AuthURL is the authorization endpoint template; empty means the type has none
	// (and an auth_url field, as cisco_client_credentials has, is not one).
	AuthURL string
	// AuthStyle is the client authentication used when auth_style is unset: "header"
	// or "body". Empty leaves it to oauth (HTTP Basic, or the body for a public client).
	AuthStyle string
	// Params are fields sent as extra token-request parameters, such as Zoom's
	// account_id; each is required.
	Params []string
	// TokenURLFromKey: the token endpoint is the one the key file names (Google's
	// token_uri, Assertion.TokenURL), and the type has no token_url field.
	TokenURLFromKey bool
	// NoClientAuth: the provider knows the client by the assertion alone (Google,
	// Salesforce); the type takes no client-authentication fields.
	NoClientAuth bool
	// ResponseFields are members of the token answer, besides the token, that access/
	// hands out with it (Salesforce's instance_url). Each must be an https URL: the
	// only kind a preset names.
	ResponseFields []string

	// assertion builds the JWT-bearer grant's assertion (GrantJWTBearer) from a
	// credential's values (jwtbearer.go); nil for the other grants.
	assertion func(values map[string]any) (*Assertion, error)
	// OwnAuth marks a grant that is not OAuth's (a GitHub App's JWT, with
	// NoClientAuth): the type takes no client_secret_expires_at and no
	// client_secret_overlap, having no client secret.
	OwnAuth bool
}

// DefaultScopes returns a copy of the scopes t requests when its credential sets none:
// the Default of its scopes field, which types/ shows and Validate applies. The oauth
// package reads it for values given to it without scopes.
func (t *Type) DefaultScopes() []string {
	f, _ := t.Field("scopes")
	d, _ := f.Default.([]string)
	return slices.Clone(d)
}

var placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)

// FillEndpoint fills an endpoint template of t's preset from values: each {field} is
// replaced by the field's value normalized by its rule. An unset field is reported as
// required. The error is a *FieldError naming the field and its rule, never the value.
func (t *Type) FillEndpoint(tmpl string, values map[string]any) (string, error) {
	var ferr *FieldError
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[1 : len(m)-1]
		f, _ := t.Field(name) // buildCatalog checked it is one of t's fields
		v, set, err := f.normalize(values[name])
		if !set && err == nil && f.Default != nil {
			v, set = f.Default, true // such as salesforce_jwt's login_url
		}
		switch {
		case ferr != nil:
		case err != nil:
			ferr = fieldError(name, err)
		case !set:
			ferr = &FieldError{Field: name, Rule: "is required"}
		default:
			return v.(string)
		}
		return ""
	})
	if ferr != nil {
		return "", ferr
	}
	return out, nil
}

// endpointDefault describes an overridable endpoint field from its template, with
// <field> where the template fills one in.
func endpointDefault(what, tmpl string) string {
	return what + "; default " + placeholder.ReplaceAllString(tmpl, "<$1>") + "."
}

// endpointOverrides are the token_url and auth_url fields of a preset whose endpoints
// are templates, described from those templates.
func endpointOverrides(p *OAuthPreset) []Field {
	return []Field{
		use("token_url", describe(endpointDefault("Token endpoint", p.TokenURL))),
		use("auth_url", describe(endpointDefault("Authorization endpoint", p.AuthURL))),
	}
}

// checkPreset refuses a preset that names a field its type lacks, so every field the
// oauth package reads from a preset is one types/ shows and Validate checks.
func checkPreset(t *Type) {
	p := t.OAuth
	need := slices.Clone(p.Params)
	for _, tmpl := range []string{p.TokenURL, p.AuthURL} {
		for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
			need = append(need, m[1])
		}
		if strings.ContainsAny(placeholder.ReplaceAllString(tmpl, ""), "{}") {
			panic(fmt.Sprintf("credtype: type %s: malformed endpoint template %q", t.Name, tmpl))
		}
	}
	if p.TokenURL == "" && !p.TokenURLFromKey {
		need = append(need, "token_url")
	}
	if (p.Grant == GrantJWTBearer) != (p.assertion != nil) {
		panic(fmt.Sprintf("credtype: type %s: the JWT-bearer grant and an assertion go together", t.Name))
	}
	if p.PasswordGrantWithUser || p.Grant == "password" {
		need = append(need, "username", "password")
	}
	for _, n := range need {
		if f, ok := t.Field(n); !ok || f.Type != FieldString {
			panic(fmt.Sprintf("credtype: type %s: OAuth preset uses %s, which is not one of its string fields", t.Name, n))
		}
	}
}
