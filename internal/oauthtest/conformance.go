package oauthtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// RunServerTests runs the package's tests against the Servers server builds: the
// standard-library one here (oauthtest_test.go), go-oauth2's in the end-to-end module.
// Both passing is what lets the plugin's unit tests use the one and the end-to-end
// tests the other.
func RunServerTests(t *testing.T, server func(ServerConfig) (Server, error)) {
	for name, test := range map[string]func(*testing.T, func(ServerConfig) (Server, error)){
		"RecordsAndAccountCredentials": testRecordsAndAccountCredentials,
		"Fault":                        testFault,
		"SettingsChangeUnderLoad":      testSettingsChangeUnderLoad,
		"Rotation":                     testRotation,
		"CodeFlowAndRevocation":        testCodeFlowAndRevocation,
		"FormPost":                     testFormPost,
		"Refusals":                     testRefusals,
		"OwnSecretsAndRecords":         testOwnSecretsAndRecords,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, server)
		})
	}
}

// token posts form to p's token endpoint with HTTP Basic client authentication and
// returns the status and the decoded answer.
func token(t *testing.T, p *Provider, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(ClientID, ClientSecret)
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// The wrapper's bookkeeping matches what the server did, and Zoom's grant is
// translated only for the registered account.
func testRecordsAndAccountCredentials(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{ClientAuth: ClientAuthHeader, Server: server})
	status, body := token(t, p, url.Values{"grant_type": {"account_credentials"}, "account_id": {AccountID}})
	if status != http.StatusOK || body["access_token"] != p.LastIssued(t).Access {
		t.Fatalf("account_credentials: %d %v, issued %+v", status, body, p.LastIssued(t))
	}
	if r := p.LastRequest(t); !r.Basic || r.BasicUser != ClientID || r.Form.Get("grant_type") != "account_credentials" {
		t.Fatalf("recorded %+v, want the request as sent", r)
	}
	status, body = token(t, p, url.Values{"grant_type": {"account_credentials"}, "account_id": {"other"}})
	if status != http.StatusBadRequest || body["error"] != "invalid_request" {
		t.Fatalf("unknown account: %d %v", status, body)
	}
	if n := p.Requests(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// A fault answers in the server's place; removing it lets requests through again.
func testFault(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{Server: server})
	p.SetFault(Fail(http.StatusServiceUnavailable, "Retry-After", "7"))
	if status, body := token(t, p, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusServiceUnavailable ||
		!strings.Contains(body["error_description"].(string), Marker) {
		t.Fatalf("faulted: %d %v", status, body)
	}
	p.SetFault(nil)
	if status, _ := token(t, p, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusOK {
		t.Fatalf("after the fault: %d", status)
	}
}

// Settings change safely while requests are in flight (run with -race), and take
// effect for the tokens issued afterwards.
func testSettingsChangeUnderLoad(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{AccessTTL: time.Minute, Server: server})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if status, _ := token(t, p, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusOK {
					t.Errorf("status %d", status)
				}
			}
		})
	}
	for i := range 10 {
		p.SetAccessTTL(time.Duration(i+1) * time.Minute)
		p.SetRotate(i%2 == 0)
	}
	wg.Wait()
	p.SetAccessTTL(3 * time.Hour)
	if _, body := token(t, p, url.Values{"grant_type": {"client_credentials"}}); body["expires_in"] != float64(3*time.Hour/time.Second) {
		t.Fatalf("expires_in %v after SetAccessTTL(3h)", body["expires_in"])
	}
}

// A refresh with rotation retires the refresh token sent, which is recorded.
func testRotation(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{Rotate: true, Server: server})
	_, first := token(t, p, url.Values{"grant_type": {"password"}, "username": {Username}, "password": {Password}})
	refresh, _ := first["refresh_token"].(string)
	if refresh == "" || p.LastRefreshToken() != "" {
		t.Fatalf("password grant: %v, last refresh token %q", first, p.LastRefreshToken())
	}
	_, second := token(t, p, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if second["refresh_token"] == nil || second["refresh_token"] == refresh || p.LastRefreshToken() != refresh {
		t.Fatalf("refresh: %v, last refresh token %q", second, p.LastRefreshToken())
	}
	if status, _ := token(t, p, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); status != http.StatusBadRequest &&
		status != http.StatusUnauthorized {
		t.Fatalf("the retired refresh token answered %d", status)
	}
}

// A provider with secrets of its own accepts those and refuses the package defaults,
// and Received and Issued list every request and token.
func testOwnSecretsAndRecords(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{ClientSecret: "own-secret", Password: "own-password", Server: server})
	post := func(secret string, form url.Values) int {
		req, _ := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(ClientID, secret)
		resp, err := p.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cc := url.Values{"grant_type": {"client_credentials"}}
	if s := post(ClientSecret, cc); s != http.StatusUnauthorized && s != http.StatusBadRequest {
		t.Fatalf("the default secret: %d, want a refusal", s)
	}
	if s := post("own-secret", cc); s != http.StatusOK {
		t.Fatalf("the provider's own secret: %d", s)
	}
	pw := url.Values{"grant_type": {"password"}, "username": {Username}}
	pw.Set("password", Password)
	if s := post("own-secret", pw); s == http.StatusOK {
		t.Fatal("the default password was accepted")
	}
	pw.Set("password", "own-password")
	if s := post("own-secret", pw); s != http.StatusOK {
		t.Fatalf("the provider's own password: %d", s)
	}
	if n := len(p.Received()); n != 4 {
		t.Fatalf("Received lists %d requests, want 4", n)
	}
	if issued := p.Issued(); len(issued) != 2 || issued[1] != p.LastIssued(t) || issued[0].Access == issued[1].Access {
		t.Fatalf("Issued lists %+v", issued)
	}
}

// The code flow with PKCE gives a refresh token; without rotation a refresh answers
// no refresh token, keeps the old one good and retires the access token it replaces;
// revoking the grant makes the refresh token invalid_grant.
func testCodeFlowAndRevocation(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{ForcePKCE: true, AccessTTL: time.Hour, Server: server})
	rt := p.IssueRefreshToken(t, "http://127.0.0.1/callback", "read")
	first := p.LastIssued(t)
	ctx := context.Background()
	if len(first.Access) != 48 || len(rt) != 48 {
		t.Errorf("tokens of %d and %d characters, want go-oauth2's 48", len(first.Access), len(rt))
	}
	if info, err := p.TokenStore().GetByAccess(ctx, first.Access); err != nil || info == nil || info.GetAccessExpiresIn() != time.Hour {
		t.Fatalf("GetByAccess(issued): %v, %v", info, err)
	}
	if info, err := p.TokenStore().GetByAccess(ctx, "not-issued"); err != nil || info != nil {
		t.Fatalf("GetByAccess(unknown): %v, %v", info, err)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	status, body := token(t, p, refresh)
	if status != http.StatusOK || body["refresh_token"] != nil || body["scope"] != "read" || body["token_type"] != "Bearer" ||
		body["access_token"] != p.LastIssued(t).Access || p.LastIssued(t).Refresh != "" {
		t.Fatalf("refresh: %d %v, issued %+v", status, body, p.LastIssued(t))
	}
	if info, _ := p.TokenStore().GetByAccess(ctx, first.Access); info != nil {
		t.Fatal("the access token a refresh replaced is still known")
	}
	if status, _ := token(t, p, refresh); status != http.StatusOK {
		t.Fatalf("the kept refresh token: %d", status)
	}
	if err := p.TokenStore().RemoveByRefresh(ctx, rt); err != nil {
		t.Fatal(err)
	}
	if status, body := token(t, p, refresh); status != http.StatusUnauthorized || body["error"] != "invalid_grant" ||
		!strings.Contains(body["error_description"].(string), Marker) {
		t.Fatalf("the revoked refresh token: %d %v", status, body)
	}
}

// An authorization request with response_mode=form_post is answered with a page that
// posts the code to the redirect URI, state included.
func testFormPost(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{Server: server})
	q := url.Values{"response_type": {"code"}, "client_id": {ClientID}, "redirect_uri": {"http://127.0.0.1/cb"},
		"state": {"st-1"}, "response_mode": {"form_post"}, "code_challenge_method": {"S256"},
		"code_challenge": {strings.Repeat("a", 43)}}
	action, form := p.AuthorizeFormPost(t, p.AuthURL()+"?"+q.Encode())
	if action.String() != "http://127.0.0.1/cb" || form.Get("state") != "st-1" {
		t.Fatalf("form_post to %s with %v", action, form)
	}
}

// What a client gets wrong is refused as before: the status and error a test sees.
func testRefusals(t *testing.T, server func(ServerConfig) (Server, error)) {
	p := New(t, Options{ClientAuth: ClientAuthBody, Server: server})
	post := func(basic bool, form url.Values) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth(ClientID, ClientSecret)
		}
		resp, err := p.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		e, _ := body["error"].(string)
		return resp.StatusCode, e
	}
	cc := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, c := range []struct {
		name   string
		basic  bool
		form   url.Values
		status int
		err    string
	}{
		{"body auth", false, cc("client_id", ClientID, "client_secret", ClientSecret), 200, ""},
		{"basic where only the body is allowed", true, cc(), 401, "invalid_client"},
		{"wrong secret", false, cc("client_id", ClientID, "client_secret", "wrong"), 401, "invalid_client"},
		{"no grant type", false, url.Values{"client_id": {ClientID}, "client_secret": {ClientSecret}}, 401, "unsupported_grant_type"},
		{"unknown grant", false, cc("grant_type", "urn:example:other", "client_id", ClientID, "client_secret", ClientSecret), 401, "unsupported_grant_type"},
		{"wrong password", false, url.Values{"grant_type": {"password"}, "username": {Username}, "password": {"no"},
			"client_id": {ClientID}, "client_secret": {ClientSecret}}, 401, "invalid_grant"},
		{"no refresh token", false, url.Values{"grant_type": {"refresh_token"}, "client_id": {ClientID}}, 400, "invalid_request"},
		{"unknown code", false, url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "redirect_uri": {"http://127.0.0.1/cb"},
			"client_id": {ClientID}, "client_secret": {ClientSecret}}, 401, "invalid_grant"},
	} {
		if status, e := post(c.basic, c.form); status != c.status || e != c.err {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, e, c.status, c.err)
		}
	}
}
