package backend

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// consentQuery starts an authorization of name and returns its consent URL's query.
func consentQuery(t *testing.T, b *integrationsBackend, s logical.Storage, name string) url.Values {
	t.Helper()
	u, err := url.Parse(startAuthorization(t, b, s, name)["auth_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// postCallback sends what a provider's form_post page makes the browser send: a POST
// (an update, to Vault) of the form to oauth/callback, without a Vault token.
func postCallback(t *testing.T, b *integrationsBackend, s logical.Storage, form url.Values) (int, string) {
	t.Helper()
	data := map[string]any{}
	for k := range form {
		data[k] = form.Get(k)
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.UpdateOperation, Path: callbackPath, Data: data, Storage: s, MountPoint: "integrations/",
	})
	if err != nil || resp == nil {
		t.Fatalf("callback: %v %v", resp, err)
	}
	return resp.Data[logical.HTTPStatusCode].(int), string(resp.Data[logical.HTTPRawBody].([]byte))
}

// TestAuthorizationRequestAsksForOfflineAccess: with offline_access among the scopes
// the consent URL carries prompt=consent; authorization_params, written as the CLI
// sends them (key=value strings) or as a JSON object, reach it and are shown on read;
// without offline_access there is no prompt.
func TestAuthorizationRequestAsksForOfflineAccess(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)

	fields := authCodeFields(p) // scopes offline_access,read
	fields["authorization_params"] = []any{"access_type=offline", "login_hint=ops@example.com", "resource=https://api.example/a=b,c"}
	mustOK(t, b, s, logical.CreateOperation, "credentials/google", fields)
	q := consentQuery(t, b, s, "google")
	want := map[string]string{"prompt": "consent", "access_type": "offline", "login_hint": "ops@example.com",
		"resource": "https://api.example/a=b,c", "scope": "offline_access read", "response_type": "code"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("consent URL %s = %q, want %q", k, q.Get(k), v)
		}
	}
	if q.Has("response_mode") {
		t.Errorf("response_mode sent for the default query mode: %q", q.Get("response_mode"))
	}
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/google", nil).Data
	wantParams := map[string]string{"access_type": "offline", "login_hint": "ops@example.com", "resource": "https://api.example/a=b,c"}
	if !reflect.DeepEqual(read["authorization_params"], wantParams) || read["response_mode"] != "query" {
		t.Errorf("read authorization_params %#v response_mode %v", read["authorization_params"], read["response_mode"])
	}

	// A JSON object, on a patch (which replaces the whole map), and one CLI pair.
	mustOK(t, b, s, logical.PatchOperation, "credentials/google", map[string]any{"authorization_params": map[string]any{"prompt": "select_account"}})
	if q := consentQuery(t, b, s, "google"); q.Get("prompt") != "select_account consent" || q.Has("access_type") {
		t.Errorf("after patch: prompt %q access_type %q", q.Get("prompt"), q.Get("access_type"))
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/google", map[string]any{"authorization_params": "access_type=offline", "scopes": "read"})
	if q := consentQuery(t, b, s, "google"); q.Has("prompt") || q.Get("access_type") != "offline" {
		t.Errorf("without offline_access: prompt %q (want none), access_type %q", q.Get("prompt"), q.Get("access_type"))
	}
	// The exchange still works, and the token request carries none of them.
	loc := p.consent(t, startAuthorization(t, b, s, "google")["auth_url"].(string))
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK {
		t.Fatalf("callback: %d %s", status, page)
	}
	if f := p.LastRequest(t).Form; f.Has("access_type") || f.Has("prompt") {
		t.Errorf("token request carries authorization parameters: %v", f)
	}
}

// TestAuthorizationParamsRefused: a key the engine owns (in any case), prompt=none with
// offline_access, a malformed pair and a field of the wrong shape are each a 400
// naming authorization_params and the rule, and store nothing; a type without the
// authorization-code grant has no such field.
func TestAuthorizationParamsRefused(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := newTestBackend(t)
	for _, key := range []string{"state", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "client_id",
		"scope", "response_mode", "STATE", "Redirect_URI", "request_uri", "client_secret", "audience"} {
		fields := authCodeFields(p)
		fields["authorization_params"] = map[string]any{key: "x"}
		credWant400(t, b, s, logical.CreateOperation, "credentials/owned", fields, "authorization_params", "engine owns")
	}
	for name, tc := range map[string]struct {
		params any
		rule   string
	}{
		"prompt none":   {map[string]any{"prompt": "none"}, `prompt "none"`},
		"no equals":     {"access_type", "wrong type or form"},
		"empty key":     {"=offline", "wrong type or form"},
		"number value":  {map[string]any{"max_age": 5}, "object of strings"},
		"space in key":  {map[string]any{"access type": "offline"}, "keys of letters"},
		"line in value": {map[string]any{"login_hint": "a\nb"}, "single line"},
	} {
		fields := authCodeFields(p)
		fields["authorization_params"] = tc.params
		resp := call(t, b, s, logical.CreateOperation, "credentials/bad", fields)
		if resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), `"authorization_params"`) || !strings.Contains(resp.Error().Error(), tc.rule) {
			t.Errorf("%s: %v, want a 400 naming authorization_params and %q", name, resp, tc.rule)
		}
	}
	credWant400(t, b, s, logical.CreateOperation, "credentials/mode", func() map[string]any {
		f := authCodeFields(p)
		f["response_mode"] = "fragment"
		return f
	}(), "response_mode", `"query" or "form_post"`)
	m365 := credWithType("m365", exampleValues(t, "m365", "NOPARAMS"))
	m365["authorization_params"] = map[string]any{"access_type": "offline"}
	credWant400(t, b, s, logical.CreateOperation, "credentials/m365", m365, "authorization_params", "not a field of type")
	if names := storedCredentialNames(t, s); len(names) != 0 {
		t.Fatalf("refused writes stored %v", names)
	}
}

// TestResponseModeFormPost: with response_mode form_post the consent URL asks for it,
// the provider answers with a page whose form the browser POSTs to oauth/callback,
// and that POST completes the authorization; the GET of a query-mode credential
// still does.
func TestResponseModeFormPost(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	fields := authCodeFields(p)
	fields["response_mode"] = "FORM_POST"
	mustOK(t, b, s, logical.CreateOperation, "credentials/fp", fields)
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/fp", nil).Data["response_mode"]; got != "form_post" {
		t.Fatalf("response_mode read %v, want form_post", got)
	}
	authURL := startAuthorization(t, b, s, "fp")["auth_url"].(string)
	if q := mustQuery(t, authURL); q.Get("response_mode") != "form_post" {
		t.Fatalf("consent URL lacks response_mode=form_post: %s", authURL)
	}
	action, form := p.AuthorizeFormPost(t, authURL)
	if action.String() != callbackURL || action.RawQuery != "" {
		t.Fatalf("form posts to %s, want %s", action, callbackURL)
	}
	if status, page := postCallback(t, b, s, form); status != http.StatusOK || !strings.Contains(page, "Authorization complete") {
		t.Fatalf("POST callback: %d %s", status, page)
	}
	mustOK(t, b, s, logical.ReadOperation, "access/fp", nil)
	if status, _ := postCallback(t, b, s, form); status != http.StatusBadRequest {
		t.Errorf("the posted state was accepted twice: %d", status)
	}
	// Refusals are the same as the GET's, and never echo what was posted.
	status, page := postCallback(t, b, s, url.Values{"state": {form.Get("state")}, "error": {"access_denied"}, "error_description": {"<script>PROVIDERTEXT"}})
	if status != http.StatusBadRequest || strings.Contains(page, "PROVIDERTEXT") || !strings.Contains(page, "access_denied") {
		t.Errorf("posted error: %d %s", status, page)
	}
	// A query-mode credential still completes by GET.
	authorizeCode(t, b, s, p, "q")
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// TestConsentWithoutRefreshTokenSaidAtOnce: a consent whose answer holds no refresh
// token is said at once: the callback page and the credential's state name
// no_refresh_token_issued, and alerts show it (red), while the access token it
// brought still serves; a later consent that brings one clears it.
func TestConsentWithoutRefreshTokenSaidAtOnce(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/nort", authCodeFields(p))
	// A provider that drops offline_access: its code exchange answers an access token only.
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.FormValue("grant_type") != "authorization_code" {
			return false
		}
		oauthtest.WriteJSON(w, http.StatusOK, `{"access_token":"at-without-refresh","token_type":"Bearer","expires_in":3600}`)
		return true
	})
	loc := p.consent(t, startAuthorization(t, b, s, "nort")["auth_url"].(string))
	status, page := callback(t, b, s, loc.Query())
	if status != http.StatusOK || !strings.Contains(page, "no_refresh_token_issued") || !strings.Contains(page, "no refresh token") {
		t.Fatalf("callback page %d does not say it: %s", status, page)
	}
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/nort", nil).Data
	if read["authorization_issue"] != "no_refresh_token_issued" || read["health"] != "red" {
		t.Errorf("credential authorization_issue %v health %v, want no_refresh_token_issued and red", read["authorization_issue"], read["health"])
	}
	if got := alertsOf(lcAlerts(t, b, s), "no_refresh_token_issued"); len(got) != 1 || got[0]["name"] != "nort" || got[0]["severity"] != "red" {
		t.Errorf("alerts = %v, want one red no_refresh_token_issued for nort", got)
	}
	if tok := mustOK(t, b, s, logical.ReadOperation, "access/nort", nil).Data["access_token"]; tok != "at-without-refresh" {
		t.Errorf("access token %v: the one the consent brought should still serve", tok)
	}

	// Completed by hand, the answer warns.
	loc = p.consent(t, startAuthorization(t, b, s, "nort")["auth_url"].(string))
	byHand := mustOK(t, b, s, logical.UpdateOperation, "credentials/nort/authorize", map[string]any{"code": loc.Query().Get("code"), "state": loc.Query().Get("state")})
	if byHand.Data["authorization_issue"] != "no_refresh_token_issued" || len(byHand.Warnings) != 1 || !strings.Contains(byHand.Warnings[0], "no_refresh_token_issued") {
		t.Errorf("completion by hand: authorization_issue %v, warnings %q", byHand.Data["authorization_issue"], byHand.Warnings)
	}

	p.SetFault(nil)
	loc = p.consent(t, startAuthorization(t, b, s, "nort")["auth_url"].(string))
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK || strings.Contains(page, "no_refresh_token_issued") {
		t.Fatalf("second consent: %d %s", status, page)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/nort", nil).Data["authorization_issue"]; got != "" {
		t.Errorf("authorization_issue %v after a consent that brought a refresh token", got)
	}
	if got := alertsOf(lcAlerts(t, b, s), "no_refresh_token_issued"); len(got) != 0 {
		t.Errorf("alert kept after a consent that brought a refresh token: %v", got)
	}
}
