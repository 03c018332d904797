package backend

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// callbackPath is where the provider sends the browser after consent.
const callbackPath = "oauth/callback"

func pathOAuth(b *integrationsBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "credentials/" + framework.GenericNameRegex("name") + "/authorize$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "credential",
			},
			Fields: map[string]*framework.FieldSchema{
				"name":  {Type: framework.TypeString, Description: "Name of an authorization-code or device-code credential.", Required: true},
				"code":  {Type: framework.TypeString, Description: "Completes the flow by hand: the code the provider returned to the redirect URL (at most 4096 printable ASCII characters)."},
				"state": {Type: framework.TypeString, Description: "With code: the state returned beside it (checked when given; 43 base64url characters)."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: writeOperation(b.pathAuthorize, "authorize", ""),
			},
			HelpSynopsis: "Start (or complete by hand) the consent flow of an authorization-code credential, or start a device authorization.",
			HelpDescription: `Without code: returns the provider's consent URL, with a single-use state (valid 10 minutes)
and a PKCE (S256) challenge. After consent the provider redirects to the engine's
oauth/callback, which completes the exchange. With code: completes the exchange here,
for providers that cannot reach Vault. Instead of consenting here, a refresh token
obtained elsewhere can be imported: write it as refresh_token to credentials/<name>.

On an oauth2_device_code credential (RFC 8628): starts a device authorization and
answers user_code, verification_uri, verification_uri_complete, expires_at and
interval. A person opens verification_uri on any device and enters user_code; the
engine polls the token endpoint in the background and stores the tokens once they
consent. A new authorize replaces (cancels) a pending one.` + examples(
				"vault write -f -field=auth_url integrations/credentials/crm-api/authorize",
				"vault write -f integrations/credentials/graph-device/authorize",
				"vault write integrations/credentials/crm-api/authorize 'code=<code>' 'state=<state>'"),
		},
		{
			Pattern: callbackPath + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "oauth-callback",
			},
			// In the query of a GET (response_mode query), or in the form body of a POST
			// (response_mode form_post), which the audit log HMACs like every request
			// field while it writes a URL's query in clear. Query: true documents them
			// as query parameters of the GET and body fields of the POST.
			Fields: map[string]*framework.FieldSchema{
				"state":             {Type: framework.TypeString, Description: "State issued by authorize.", Query: true},
				"code":              {Type: framework.TypeString, Description: "Authorization code from the provider.", Query: true},
				"error":             {Type: framework.TypeString, Description: "Error code from the provider, when consent failed.", Query: true},
				"error_description": {Type: framework.TypeString, Description: "Provider's description of the error (never shown).", Query: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   writeOperation(b.pathCallback, "complete", ""),
				logical.UpdateOperation: writeOperation(b.pathCallback, "complete", "oauth-callback-form-post"),
			},
			HelpSynopsis: "The OAuth redirect target (unauthenticated): completes a pending authorization.",
			HelpDescription: "The provider sends the user's browser here after consent: a GET with state and code in the query (response_mode query), " +
				"or a POST of a form carrying them (response_mode form_post), which keeps the code out of every URL and so out of the audit log in clear. " +
				"The exchange happens only when state matches a pending, unexpired authorization; the state is then spent. " +
				"A consent that brings no refresh token says so on the page (no_refresh_token_issued) and in alerts." +
				examples("curl \"$VAULT_ADDR/v1/integrations/oauth/callback?state=<state>&code=<code>\"  # the browser does this",
					"curl -d 'state=<state>' -d 'code=<code>' \"$VAULT_ADDR/v1/integrations/oauth/callback\"  # the provider's form_post page does this"),
		},
	}
}

// redirectURL is where the provider sends the browser after consent: the credential's
// redirect_url, else this mount's callback under callback_base_url.
func (b *integrationsBackend) redirectURL(cfg *engineConfig, c *credential) string {
	if u := c.Values.Str("redirect_url"); u != "" {
		return u
	}
	if cfg.CallbackBaseURL == "" {
		return ""
	}
	return strings.TrimRight(cfg.CallbackBaseURL, "/") + "/v1/" + b.mountPath() + callbackPath
}

func (b *integrationsBackend) pathAuthorize(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(d); resp != nil {
		return resp, nil
	}
	name := d.Get("name").(string)
	c, err := b.credentialOr404(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if c.typeDef().DeviceFlow() {
		return b.startDeviceAuthorization(ctx, req, d, c)
	}
	fields, err := signingFields(c, b.now())
	if err != nil {
		return nil, err
	}
	oc, err := oauth.FromFields(c.Type, fields)
	if err != nil || oc.Grant != oauth.GrantAuthorizationCode {
		return logical.ErrorResponse("credential %q is of type %s, which does not use the authorization-code flow", name, c.Type), nil
	}
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if code := d.Get("code").(string); code != "" {
		if !oauth.ValidCode(code) {
			return logical.ErrorResponse(fieldErr("code", fmt.Sprintf("must be 1-%d printable ASCII characters, as the provider returned it", oauth.MaxAuthCodeLen)).Error()), nil
		}
		state := d.Get("state").(string)
		if state != "" && !oauth.ValidState(state) {
			return logical.ErrorResponse(fieldErr("state", "must be the state authorize returned (43 base64url characters)").Error()), nil
		}
		if err := b.completeAuthorization(ctx, req.Storage, cfg, name, state, code); err != nil {
			return authorizationResponse(err)
		}
		if c, err = b.credentials.get(ctx, req.Storage, name); err != nil || c == nil {
			return nil, err
		}
		resp, err := b.credentialResponse(ctx, req.Storage, c)
		if err == nil && c.State.AuthorizationIssue() == lifecycle.IssueNoRefreshToken {
			resp.AddWarning(noRefreshTokenMessage(name))
		}
		return resp, err
	}
	oc.RedirectURL = b.redirectURL(cfg, c)
	fromBase := oc.RedirectURL != "" && c.Values.Str("redirect_url") == ""
	if oc.RedirectURL == "" {
		oc.RedirectURL = requestCallbackURL(req)
	}
	if oc.RedirectURL == "" {
		return logical.ErrorResponse(fieldErr("redirect_url", "is unknown: set the credential's redirect_url, or config callback_base_url to Vault's external address").Error()), nil
	}
	state, err := oauth.NewState()
	if err != nil {
		return nil, err
	}
	p := pendingAuthorization{
		State: state, Verifier: oauth.NewVerifier(), RedirectURL: oc.RedirectURL,
		ExpiresAt: b.now().UTC().Add(authorizationTTL), FromCallbackBase: fromBase,
	}
	held, unlock := b.credentials.lock(name)
	defer unlock()
	if err := b.authorizations.put(ctx, req.Storage, held, p); err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"auth_url":     oauth.AuthCodeURL(oc, p.State, p.Verifier),
		"state":        p.State,
		"redirect_url": p.RedirectURL,
		"expires_at":   rfc3339(p.ExpiresAt),
	}}, nil
}

// configChanged tells what was learnt under the old engine settings that they
// changed. Of those settings only two bear on it: callback_base_url on pending
// authorizations (one whose redirect_url was built from it is dropped; the exchange
// checks again, for other nodes and races) and default_token_lifetime on stored
// tokens (a token whose expiry was assumed from it is no longer fresh: Token.Fresh
// and tokenStore.put check, so nothing needs doing here). request_timeout bounds
// each request as it starts and changes nothing already learnt; the Broker, its
// requests in flight and its backoff survive every change.
func (b *integrationsBackend) configChanged(ctx context.Context, s logical.Storage, old, next *engineConfig) error {
	if old.CallbackBaseURL == next.CallbackBaseURL {
		return nil
	}
	return b.authorizations.dropWhere(ctx, s, func(p *pendingAuthorization) bool { return p.FromCallbackBase })
}

// requestCallbackURL builds the callback URL from the request's Host header, which
// Vault passes only when the mount allows it (passthrough_request_headers).
func requestCallbackURL(req *logical.Request) string {
	host := firstHeader(req, "X-Forwarded-Host")
	if host == "" {
		host = firstHeader(req, "Host")
	}
	if host == "" {
		return ""
	}
	scheme := firstHeader(req, "X-Forwarded-Proto")
	if scheme == "" {
		scheme = "https"
	}
	return scheme + "://" + host + "/v1/" + req.MountPoint + callbackPath
}

func firstHeader(req *logical.Request, name string) string {
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// errAuthorization is a failure a person can act on (bad or spent state, refused code).
type errAuthorization struct{ msg string }

func (e *errAuthorization) Error() string { return e.msg }

func authorizationResponse(err error) (*logical.Response, error) {
	var ae *errAuthorization
	if errors.As(err, &ae) {
		return logical.ErrorResponse(ae.msg), nil
	}
	return nil, err
}

// completeAuthorization exchanges a code for tokens, spending the pending state. No
// lock is held during the exchange: the state is spent under the credential's lock,
// the provider is asked without it, and the tokens are stored under the lock again
// only if the credential is still there with the settings (the token generation) the
// exchange started from.
func (b *integrationsBackend) completeAuthorization(ctx context.Context, s logical.Storage, cfg *engineConfig, name, state, code string) error {
	t, oc, verifier, err := b.spendAuthorization(ctx, s, cfg, name, state)
	if err != nil {
		return err
	}
	tok, err := b.tokens.brokerOf().Exchange(ctx, name, oc, code, verifier)
	if err != nil {
		detail := "the token exchange failed"
		var oe *oauth.Error
		if errors.As(err, &oe) {
			detail = oe.Error()
		}
		b.recordEvent(name, usage.EventAuthorized, false, "", detail)
		if oe != nil && oe.Code == oauth.CodeThrottled {
			return &errAuthorization{"too many token requests for this credential; the code was not sent: authorize again later: " + detail}
		}
		return &errAuthorization{fmt.Sprintf("the provider refused the authorization code: %s", detail)}
	}
	held, unlock := b.credentials.lock(name)
	defer unlock()
	// putConsent checks the generation, the credential and its destination; on success the
	// generation moves on, so refreshes in flight from an older grant cannot
	// overwrite the new tokens.
	if err := b.tokens.putConsent(ctx, s, t, tok); err != nil && !errors.Is(err, errRefreshKept) && !errors.Is(err, errUnsaved) {
		// errRefreshKept: the credential was edited during the exchange (a description,
		// a suspend), but it still points where it did for the same client: the
		// consented refresh token is stored, and the consent stands. errUnsaved: storage
		// refused it, but it is held in memory and stored before any token request, so
		// the consent stands too and the state below says so.
		if isDiscarded(err) {
			b.recordEvent(name, usage.EventAuthorized, false, "", "the credential changed during the exchange")
			return &errAuthorization{"the credential was changed or deleted while the authorization completed: start a new one with authorize"}
		}
		return err
	}
	c, err := b.credentials.get(ctx, s, name)
	if err != nil || c == nil {
		return err
	}
	n := c.clone()
	n.State = lifecycle.Reauthorized(n.State, b.now().UTC())
	if tok.RefreshToken == "" && c.typeDef().RefreshTokens() {
		// Every authorization-code credential refreshes through its refresh token
		// (offline_access asked or not): without one, access ends when this token
		// falls due. Said now, on the callback page, in the state and in alerts.
		n.State = lifecycle.AuthorizedWithoutRefreshToken(n.State, b.now().UTC())
	}
	overlapChanged, refused := settleOverlap(n, tok.ByPrevious, b.now().UTC())
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		return err
	}
	if overlapChanged {
		b.announceOverlap(ctx, n, refused)
	}
	detail := "authorization code exchanged"
	if issue := n.State.AuthorizationIssue(); issue != "" {
		detail += "; " + issue
	}
	b.recordEvent(name, usage.EventAuthorized, true, "", detail)
	return b.afterCredentialChange(ctx, s, name)
}

// spendAuthorization checks and spends the pending authorization of name under its
// lock, and returns what the exchange needs: the ticket its result is stored under,
// the provider configuration and the PKCE verifier.
func (b *integrationsBackend) spendAuthorization(ctx context.Context, s logical.Storage, cfg *engineConfig, name, state string) (tokenTicket, oauth.Config, string, error) {
	var none oauth.Config
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, name)
	if err != nil {
		return tokenTicket{}, none, "", err
	}
	p, err := b.authorizations.load(ctx, s, name)
	if err != nil {
		return tokenTicket{}, none, "", err
	}
	if c == nil || p == nil {
		return tokenTicket{}, none, "", &errAuthorization{"no authorization is pending for this credential: start one with authorize"}
	}
	if state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(p.State)) != 1 {
		return tokenTicket{}, none, "", &errAuthorization{"state does not match the pending authorization"}
	}
	// The state is single-use whatever the outcome.
	if err := b.authorizations.drop(ctx, s, held); err != nil {
		return tokenTicket{}, none, "", err
	}
	if !b.now().Before(p.ExpiresAt) {
		return tokenTicket{}, none, "", &errAuthorization{"the authorization expired (they last 10 minutes): start a new one with authorize"}
	}
	if p.FromCallbackBase && p.RedirectURL != b.redirectURL(cfg, c) {
		// callback_base_url changed since: the consent was sent elsewhere.
		return tokenTicket{}, none, "", &errAuthorization{"the engine's callback_base_url changed since this authorization started: start a new one with authorize"}
	}
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return tokenTicket{}, none, "", err
	}
	oc.RedirectURL = p.RedirectURL
	// Under the lock, so the generation and the credential belong together.
	return b.tokens.consentTicket(held, c), oc, p.Verifier, nil
}

func (b *integrationsBackend) pathCallback(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	state, code := d.Get("state").(string), d.Get("code").(string)
	if e := d.Get("error").(string); e != "" {
		// Anyone can send a browser here with any query: nothing of it is shown but
		// an error code that passes oauth.SafeCode (never error_description).
		msg := "The provider did not grant the authorization. Start again from Vault."
		if code, ok := oauth.SafeCode(e); ok {
			msg = "The provider answered: " + code + ". Start again from Vault."
		}
		return callbackPage(http.StatusBadRequest, "Authorization was not granted", msg), nil
	}
	if state == "" || code == "" {
		return callbackPage(http.StatusBadRequest, "Authorization incomplete", "The request carries no state or no code."), nil
	}
	if !oauth.ValidState(state) || !oauth.ValidCode(code) {
		// Not something authorize issued or a provider sends: nothing to look up.
		return callbackPage(http.StatusBadRequest, "Authorization not recognised", "This link is not one Vault issued. Start again from Vault."), nil
	}
	name, err := b.authorizations.credentialOf(ctx, req.Storage, state)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return callbackPage(http.StatusBadRequest, "Authorization not recognised", "This link was already used, has expired, or was replaced by a newer one. Start again from Vault."), nil
	}
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if err := b.completeAuthorization(ctx, req.Storage, cfg, name, state, code); err != nil {
		var ae *errAuthorization
		if errors.As(err, &ae) {
			return callbackPage(http.StatusBadRequest, "Authorization failed", ae.msg), nil
		}
		// A storage error's text can name the storage backend's addresses: the
		// unauthenticated page says only what happened.
		b.Logger().Error("completing an authorization failed", "credential", name, "error", err)
		return callbackPage(http.StatusInternalServerError, "Authorization not stored",
			"Vault could not store the result of this authorization. Retry shortly, or start again from Vault."), nil
	}
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if c != nil && c.State.AuthorizationIssue() == lifecycle.IssueNoRefreshToken {
		return callbackPage(http.StatusOK, "Authorization complete, but no refresh token was issued", noRefreshTokenMessage(name)), nil
	}
	return callbackPage(http.StatusOK, "Authorization complete", fmt.Sprintf("Vault now holds tokens for credential %q. You can close this window.", name)), nil
}

// noRefreshTokenMessage says that a consent brought no refresh token, on the callback
// page and as the warning of a completion by hand.
func noRefreshTokenMessage(name string) string {
	return fmt.Sprintf("The provider issued no refresh token for credential %q (%s): Vault can use the access token only until it expires, then someone must consent again. "+
		"Ask for offline access (scopes offline_access, or authorization_params such as access_type=offline for Google) and authorize again.",
		name, lifecycle.IssueNoRefreshToken)
}

// callbackPage is the short page the user's browser shows after the redirect.
func callbackPage(status int, title, message string) *logical.Response {
	body := fmt.Sprintf("<!doctype html><html><head><meta charset=\"utf-8\"><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>\n",
		html.EscapeString(title), html.EscapeString(title), html.EscapeString(message))
	return &logical.Response{Data: map[string]any{
		logical.HTTPContentType: "text/html; charset=utf-8",
		logical.HTTPRawBody:     []byte(body),
		logical.HTTPStatusCode:  status,
	}}
}
