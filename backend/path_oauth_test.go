package backend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

const callbackURL = tpCallbackBase + "/v1/integrations/" + callbackPath

func authCodeFields(p *testProvider) map[string]any {
	return map[string]any{
		"type": "oauth2_authorization_code", "auth_url": p.authURL(), "token_url": p.tokenURL(),
		"client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret, "scopes": "offline_access,read",
	}
}

// startAuthorization calls authorize and returns its response data.
func startAuthorization(t *testing.T, b *integrationsBackend, s logical.Storage, name string) map[string]any {
	t.Helper()
	return mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name+"/authorize", nil).Data
}

// callback sends the provider's redirect to oauth/callback, as the browser would (no
// Vault token), and returns the page's status and body.
func callback(t *testing.T, b *integrationsBackend, s logical.Storage, query url.Values) (int, string) {
	t.Helper()
	data := map[string]any{}
	for k := range query {
		data[k] = query.Get(k)
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: callbackPath, Data: data, Storage: s, MountPoint: "integrations/",
	})
	if err != nil || resp == nil {
		t.Fatalf("callback: %v %v", resp, err)
	}
	if ct := resp.Data[logical.HTTPContentType]; ct != "text/html; charset=utf-8" {
		t.Fatalf("callback content type %v", ct)
	}
	return resp.Data[logical.HTTPStatusCode].(int), string(resp.Data[logical.HTTPRawBody].([]byte))
}

// authorizeCode creates an authorization-code credential and runs the whole consent
// flow through oauth/callback.
func authorizeCode(t *testing.T, b *integrationsBackend, s logical.Storage, p *testProvider, name string) {
	t.Helper()
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, authCodeFields(p))
	start := startAuthorization(t, b, s, name)
	loc := p.consent(t, start["auth_url"].(string))
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK || !strings.Contains(page, "Authorization complete") {
		t.Fatalf("callback: %d %s", status, page)
	}
}

func TestAuthorizeReturnsConsentURLWithStateAndPKCE(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	got := startAuthorization(t, b, s, "ac")
	u, err := url.Parse(got["auth_url"].(string))
	if err != nil || u.Scheme+"://"+u.Host+u.Path != p.authURL() {
		t.Fatalf("auth_url %v does not point at the provider (%v)", got["auth_url"], err)
	}
	q := u.Query()
	state := got["state"].(string)
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil || len(raw) != 32 || q.Get("state") != state {
		t.Fatalf("state %q (in URL %q): want 32 random bytes, base64url", state, q.Get("state"))
	}
	if q.Get("response_type") != "code" || q.Get("client_id") != oauthtest.ClientID || q.Get("scope") != "offline_access read" {
		t.Fatalf("consent URL query %v", q)
	}
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Fatalf("PKCE: method %q challenge %q, want S256", q.Get("code_challenge_method"), q.Get("code_challenge"))
	}
	if q.Get("redirect_uri") != callbackURL || got["redirect_url"] != callbackURL {
		t.Fatalf("redirect_uri %q / %v, want Vault's own callback %q", q.Get("redirect_uri"), got["redirect_url"], callbackURL)
	}
	if want := clock.Now().Add(10 * time.Minute).Format(time.RFC3339); got["expires_at"] != want {
		t.Fatalf("expires_at %v, want %s", got["expires_at"], want)
	}
	// The verifier stays in Vault; the challenge is its S256 hash.
	p2, err := b.authorizations.load(context.Background(), s, "ac")
	if err != nil || p2 == nil {
		t.Fatalf("pending authorization not stored: %v", err)
	}
	sum := sha256.Sum256([]byte(p2.Verifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != q.Get("code_challenge") {
		t.Fatal("code_challenge is not the S256 hash of the stored verifier")
	}
	if strings.Contains(u.String(), p2.Verifier) || strings.Contains(u.String(), oauthtest.ClientSecret) {
		t.Fatal("the consent URL carries the verifier or the client secret")
	}
	// Each authorize draws a new state, and the older one stops working.
	again := startAuthorization(t, b, s, "ac")
	if again["state"] == state {
		t.Fatal("two authorizations share a state")
	}
	loc := p.consent(t, got["auth_url"].(string))
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusBadRequest || !strings.Contains(page, "not recognised") {
		t.Fatalf("superseded state: %d %s", status, page)
	}
}

func TestCallbackCompletesOnceAndNeedsNoToken(t *testing.T) {
	t.Parallel()
	if !slices.Contains(newBackend(time.Now).PathsSpecial.Unauthenticated, callbackPath) {
		t.Fatal("oauth/callback is not an unauthenticated path")
	}
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	// Parameters some providers add (RFC 9207's iss, Entra ID's session_state) do not matter.
	withExtras := loc.Query()
	withExtras.Set("iss", p.URL)
	withExtras.Set("session_state", "ss-1")
	status, page := callback(t, b, s, withExtras)
	if status != http.StatusOK || !strings.Contains(page, "Authorization complete") || !strings.Contains(page, "&#34;ac&#34;") {
		t.Fatalf("callback: %d %s", status, page)
	}
	issued := p.lastIssued(t)
	for _, secret := range []string{issued.access, issued.refresh, loc.Query().Get("code")} {
		if strings.Contains(page, secret) {
			t.Fatal("the callback page shows a token or the code")
		}
	}
	if got := accessOK(t, b, s, "ac", nil).Data["access_token"]; got != issued.access || p.requests.Load() != 1 {
		t.Fatalf("access after the callback: %v after %d requests, want the exchanged token after 1", got, p.requests.Load())
	}
	// Single use: the same redirect again is refused without reaching the provider.
	status, page = callback(t, b, s, loc.Query())
	if status != http.StatusBadRequest || !strings.Contains(page, "already used") || p.requests.Load() != 1 {
		t.Fatalf("replayed callback: %d %s (%d requests)", status, page, p.requests.Load())
	}
	for _, key := range []string{authorizationPrefix + "ac", oauthStatePrefix + loc.Query().Get("state")} {
		if e, _ := s.Get(context.Background(), key); e != nil {
			t.Fatalf("%s still stored after completion", key)
		}
	}
	if st, _ := credStatus(t, b, s, "ac"); st != "active" {
		t.Fatalf("status %s after authorization", st)
	}
}

func TestCallbackStateExpiresAfterTenMinutes(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))

	// One second before the ten minutes are up, it still works.
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	clock.Advance(10*time.Minute - time.Second)
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK {
		t.Fatalf("callback at 9m59s: %d %s", status, page)
	}

	// At ten minutes it is refused, and spent.
	loc = p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	clock.Advance(10 * time.Minute)
	before := p.requests.Load()
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusBadRequest || !strings.Contains(page, "expired") {
		t.Fatalf("callback at 10m: %d %s", status, page)
	}
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusBadRequest || !strings.Contains(page, "not recognised") {
		t.Fatalf("expired state used twice: %d %s", status, page)
	}
	if p.requests.Load() != before {
		t.Fatal("an expired authorization reached the token endpoint")
	}

	// The periodic clean-up removes authorizations nobody completed.
	state := startAuthorization(t, b, s, "ac")["state"].(string)
	if err := b.cleanAuthorizations(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(context.Background(), oauthStatePrefix+state); e == nil {
		t.Fatal("clean-up removed an authorization that had not expired")
	}
	clock.Advance(10 * time.Minute)
	if err := b.cleanAuthorizations(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{authorizationPrefix + "ac", oauthStatePrefix + state} {
		if e, _ := s.Get(context.Background(), key); e != nil {
			t.Fatalf("%s survived the clean-up after expiry", key)
		}
	}
}

func TestCallbackWrongState(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	forged := loc.Query()
	forged.Set("state", "forged-"+forged.Get("state")[7:])
	if status, page := callback(t, b, s, forged); status != http.StatusBadRequest || !strings.Contains(page, "not recognised") {
		t.Fatalf("forged state: %d %s", status, page)
	}
	// By hand, a state that does not match is refused too.
	resp, err := request(b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{"code": forged.Get("code"), "state": forged.Get("state")})
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "state does not match") {
		t.Fatalf("manual completion with a wrong state: %v %v", resp, err)
	}
	if p.requests.Load() != 0 {
		t.Fatal("a wrong state reached the token endpoint")
	}
	// Neither spent the real one.
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK {
		t.Fatalf("the genuine redirect after forged ones: %d %s", status, page)
	}
}

func TestCallbackWithoutStateOrCode(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	for name, q := range map[string]url.Values{
		"nothing":  {},
		"no state": {"code": {loc.Query().Get("code")}},
		"no code":  {"state": {loc.Query().Get("state")}},
	} {
		if status, page := callback(t, b, s, q); status != http.StatusBadRequest || !strings.Contains(page, "no state or no code") {
			t.Fatalf("%s: %d %s", name, status, page)
		}
	}
	// A refusal by the provider shows its error code when it is a valid one, never
	// its description nor anything else a stranger put in the query.
	status, page := callback(t, b, s, url.Values{
		"state": {loc.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"<script>" + oauthtest.Marker},
	})
	if status != http.StatusBadRequest || !strings.Contains(page, "The provider answered: access_denied.") || strings.Contains(page, oauthtest.Marker) || strings.Contains(page, "script") {
		t.Fatalf("provider error: %d %s", status, page)
	}
	if p.requests.Load() != 0 {
		t.Fatal("an incomplete callback reached the token endpoint")
	}
	// The pending authorization is still usable.
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK {
		t.Fatalf("complete redirect afterwards: %d %s", status, page)
	}
}

// TestCallbackReflectsOnlyAValidErrorCode: the callback is unauthenticated, so
// anyone can send a browser to it with any query. The page shows nothing of it but an
// error code that is valid (oauth.SafeCode): no markup, no line breaks, no Slack
// mentions, no 10 KB codes, never the description, not even escaped.
func TestCallbackReflectsOnlyAValidErrorCode(t *testing.T) {
	t.Parallel()
	b, s, _ := oauthBackend(t)
	const desc = "DESCRIPTION-FROM-A-STRANGER"
	for _, hostile := range []string{
		"access_denied<b>", "<script>alert(1)</script>", "invalid_grant\nINJECTED: line", "<!channel>",
		"a&b", "quote\"d", strings.Repeat("x", 10<<10),
	} {
		status, page := callback(t, b, s, url.Values{"error": {hostile}, "error_description": {desc}})
		if status != http.StatusBadRequest || !strings.Contains(page, "did not grant the authorization") {
			t.Fatalf("error %.40q: %d %s", hostile, status, page)
		}
		for _, leak := range []string{"script", "INJECTED", "channel", "&lt;", "&amp;", "&#34;", "xxxxxxxx", desc} {
			if strings.Contains(page, leak) {
				t.Fatalf("error %.40q: the page reflects %q: %s", hostile, leak, page)
			}
		}
		if len(page) > 1024 {
			t.Fatalf("error %.40q: a %d-byte page", hostile, len(page))
		}
	}
	_, page := callback(t, b, s, url.Values{"error": {"consent_required"}, "error_description": {desc}})
	if !strings.Contains(page, "The provider answered: consent_required.") || strings.Contains(page, desc) {
		t.Fatalf("a valid code: %s", page)
	}
}

func TestAuthorizeWithCodeCompletesByHand(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	resp := mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{
		"code": loc.Query().Get("code"), "state": loc.Query().Get("state"),
	})
	if resp.Data["status"] != "active" || resp.Data["name"] != "ac" {
		t.Fatalf("manual completion answered %v", resp.Data)
	}
	if got := accessOK(t, b, s, "ac", nil).Data["access_token"]; got != p.lastIssued(t).access {
		t.Fatalf("access after manual completion: %v", got)
	}
	// The code was spent with the state: a second use is refused by Vault.
	resp, err := request(b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{"code": loc.Query().Get("code")})
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "no authorization is pending") {
		t.Fatalf("second manual completion: %v %v", resp, err)
	}
	// A code the provider does not know: refused, naming its error code, and spent.
	startAuthorization(t, b, s, "ac")
	resp, err = request(b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{"code": "not-a-code"})
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "invalid_grant") || strings.Contains(resp.Error().Error(), oauthtest.ClientSecret) {
		t.Fatalf("unknown code: %v %v", resp, err)
	}
	if pending, _ := b.authorizations.load(context.Background(), s, "ac"); pending != nil {
		t.Fatal("a refused code left the authorization pending")
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	resp, _ := request(b, s, logical.UpdateOperation, "credentials/cc/authorize", nil)
	if resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "authorization-code") {
		t.Fatalf("authorize on client credentials: %v", resp)
	}
	_, err := request(b, s, logical.UpdateOperation, "credentials/missing/authorize", nil)
	var ce logical.HTTPCodedError
	if err == nil || !asCoded(err, &ce) || ce.Code() != http.StatusNotFound {
		t.Fatalf("authorize on a missing credential: %v", err)
	}
	// Without callback_base_url, a redirect_url or a Host header there is nowhere to return to.
	b2, s2, _ := newTestBackend(t)
	mustOK(t, b2, s2, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	resp, _ = request(b2, s2, logical.UpdateOperation, "credentials/ac/authorize", nil)
	wantFieldError(t, resp, "redirect_url")
	// A credential's own redirect_url wins.
	f := authCodeFields(p)
	f["redirect_url"] = "https://app.example.test/cb"
	mustOK(t, b2, s2, logical.CreateOperation, "credentials/own", f)
	if got := startAuthorization(t, b2, s2, "own")["redirect_url"]; got != "https://app.example.test/cb" {
		t.Fatalf("redirect_url %v, want the credential's own", got)
	}
}

// Access before any consent, a revoked grant, and re-authorization.
func TestAuthorizeClearsNeedsReauth(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	code, msg := accessErr(t, b, s, "ac")
	if code != http.StatusForbidden || !strings.Contains(msg, "vault write -f integrations/credentials/ac/authorize") || p.requests.Load() != 0 {
		t.Fatalf("access before consent: %d %q (%d requests)", code, msg, p.requests.Load())
	}
	if st, _ := credStatus(t, b, s, "ac"); st != "awaiting_consent" {
		t.Fatalf("status before consent %s, want awaiting_consent", st)
	}
	start := startAuthorization(t, b, s, "ac")
	if status, page := callback(t, b, s, p.consent(t, start["auth_url"].(string)).Query()); status != http.StatusOK {
		t.Fatalf("callback: %d %s", status, page)
	}
	if st, _ := credStatus(t, b, s, "ac"); st != "active" {
		t.Fatalf("status after consent %s, want active", st)
	}
	accessOK(t, b, s, "ac", nil)

	// The user revokes the grant at the provider; the next refresh is refused for good.
	if err := p.tokens.RemoveByRefresh(context.Background(), p.lastIssued(t).refresh); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	code, msg = accessErr(t, b, s, "ac")
	if code != http.StatusForbidden || !strings.Contains(msg, "invalid_grant") || !strings.Contains(msg, "re-authoriz") {
		t.Fatalf("access with a revoked grant: %d %q", code, msg)
	}
	if st, reason := credStatus(t, b, s, "ac"); st != "needs_reauth" || reason != "invalid_grant" {
		t.Fatalf("status %s (%s), want needs_reauth (invalid_grant)", st, reason)
	}
	start = startAuthorization(t, b, s, "ac")
	if status, page := callback(t, b, s, p.consent(t, start["auth_url"].(string)).Query()); status != http.StatusOK {
		t.Fatalf("callback: %d %s", status, page)
	}
	if st, reason := credStatus(t, b, s, "ac"); st != "active" || reason != "" {
		t.Fatalf("status after re-authorization %s (%s), want active", st, reason)
	}
	if got := accessOK(t, b, s, "ac", nil).Data["access_token"]; got != p.lastIssued(t).access {
		t.Fatalf("access after re-authorization: %v", got)
	}
}

func asCoded(err error, target *logical.HTTPCodedError) bool {
	ce, ok := err.(logical.HTTPCodedError)
	if ok {
		*target = ce
	}
	return ok
}

// TestDeleteSpendsPendingAuthorization: deleting a credential removes its pending
// consent, so one re-created under the same name cannot be completed with the old state.
func TestDeleteSpendsPendingAuthorization(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ctx := context.Background()
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": "https://vault.example.com"})
	create := map[string]any{
		"type": "oauth2_authorization_code", "auth_url": "https://idp.example.com/authorize",
		"token_url": "https://idp.example.com/token", "client_id": "c", "client_secret": "s",
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/crm", create)
	state := mustOK(t, b, s, logical.UpdateOperation, "credentials/crm/authorize", nil).Data["state"].(string)
	if e, _ := s.Get(ctx, oauthStatePrefix+state); e == nil {
		t.Fatal("no pending state stored; the test proves nothing")
	}
	mustOK(t, b, s, logical.DeleteOperation, "credentials/crm", nil)
	for _, prefix := range []string{authorizationPrefix, oauthStatePrefix} {
		if keys, err := s.List(ctx, prefix); err != nil || len(keys) != 0 {
			t.Fatalf("%s left behind: %v %v", prefix, keys, err)
		}
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/crm", create)
	resp := call(t, b, s, logical.ReadOperation, callbackPath, map[string]any{"state": state, "code": "old-code"})
	if resp.Data[logical.HTTPStatusCode] != http.StatusBadRequest {
		t.Fatalf("old state after re-create: status %v", resp.Data[logical.HTTPStatusCode])
	}
}
