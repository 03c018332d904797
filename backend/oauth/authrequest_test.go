package oauth

import (
	"context"
	"testing"
)

// TestAuthCodeURLAsksForOfflineAccessProperly: with offline_access among the scopes
// the authorization request carries prompt=consent (added to a prompt the credential
// asks); authorization_params reach the authorization request and never the token
// request, and never override a parameter the engine owns; form_post is asked only
// when the credential says so.
func TestAuthCodeURLAsksForOfflineAccessProperly(t *testing.T) {
	t.Parallel()
	base := Config{Grant: GrantAuthorizationCode, ClientID: "cid", AuthURL: "https://idp.example/authorize",
		TokenURL: "https://idp.example/token", RedirectURL: testRedirectURL}
	cases := []struct {
		name         string
		scopes       []string
		params       map[string]string
		responseMode string
		want         map[string]string // "" means absent
	}{
		{"offline_access asks consent", []string{"openid", "offline_access"}, nil, "",
			map[string]string{"prompt": "consent", "scope": "openid offline_access", "response_mode": ""}},
		{"no offline_access, no prompt", []string{"openid"}, nil, "", map[string]string{"prompt": ""}},
		{"a prompt of its own keeps it and adds consent", []string{"offline_access"}, map[string]string{"prompt": "login"}, "",
			map[string]string{"prompt": "login consent"}},
		{"consent asked already is not doubled", []string{"offline_access"}, map[string]string{"prompt": "consent select_account"}, "",
			map[string]string{"prompt": "consent select_account"}},
		{"a prompt without offline_access is sent as asked", []string{"read"}, map[string]string{"prompt": "select_account"}, "",
			map[string]string{"prompt": "select_account"}},
		{"google's access_type and a login hint", []string{"https://www.googleapis.com/auth/drive"},
			map[string]string{"access_type": "offline", "login_hint": "ops@example.com", "resource": "https://api.example/"}, "",
			map[string]string{"access_type": "offline", "login_hint": "ops@example.com", "resource": "https://api.example/"}},
		{"owned parameters never override", []string{"read"},
			map[string]string{"state": "evil", "redirect_uri": "https://evil.example/", "code_challenge": "x", "client_id": "other",
				"response_type": "token", "Response_Mode": "fragment", "scope": "admin", "request_uri": "urn:x", "client_secret": "leak"}, "",
			map[string]string{"state": "the-state", "redirect_uri": testRedirectURL, "client_id": "cid", "response_type": "code",
				"scope": "read", "request_uri": "", "client_secret": "", "Response_Mode": "", "response_mode": ""}},
		{"form_post", []string{"read"}, nil, "form_post", map[string]string{"response_mode": "form_post"}},
		{"query is the default and not sent", []string{"read"}, nil, "query", map[string]string{"response_mode": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.Scopes, cfg.AuthorizationParams, cfg.ResponseMode = tc.scopes, tc.params, tc.responseMode
			q := mustQuery(t, AuthCodeURL(cfg, "the-state", NewVerifier()))
			for k, want := range tc.want {
				if got := q.Get(k); got != want || want == "" && q.Has(k) {
					t.Errorf("%s = %q (present %v), want %q", k, got, q.Has(k), want)
				}
			}
			if len(q["state"]) != 1 || len(q["prompt"]) > 1 || q.Get("code_challenge") == "x" || q.Get("code_challenge_method") != "S256" {
				t.Errorf("owned parameters disturbed: %v", q)
			}
		})
	}
	bad := base
	bad.AuthorizationParams = map[string]string{"state": "x"}
	if err := bad.Validate(); err == nil {
		t.Error("Validate accepts authorization_params setting state")
	}
	bad = base
	bad.ResponseMode = "fragment"
	if err := bad.Validate(); err == nil {
		t.Error("Validate accepts response_mode fragment")
	}
}

// TestAuthorizationParamsStayOutOfTokenRequests: the code exchange and the refresh
// send none of the authorization_params.
func TestAuthorizationParamsStayOutOfTokenRequests(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{forcePKCE: true})
	c := newTestClient(newFakeClock())
	cfg := p.config(AuthStyleBody)
	cfg.Grant = GrantAuthorizationCode
	cfg.AuthorizationParams = map[string]string{"access_type": "offline", "login_hint": "ops@example.com"}
	verifier := NewVerifier()
	consent := AuthCodeURL(cfg, "s", verifier)
	if q := mustQuery(t, consent); q.Get("access_type") != "offline" {
		t.Fatalf("consent URL lacks access_type: %s", consent)
	}
	code, _ := p.authorize(t, consent)
	tok, err := c.Exchange(context.Background(), cfg, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if f := p.last(t).Form; f.Has("access_type") || f.Has("login_hint") {
		t.Errorf("code exchange sent authorization_params: %v", f)
	}
	if _, err := c.Mint(context.Background(), cfg, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if f := p.last(t).Form; f.Get("grant_type") != "refresh_token" || f.Has("access_type") || f.Has("login_hint") {
		t.Errorf("refresh sent authorization_params: %v", f)
	}
}
