package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const callback = "http://127.0.0.1:8200/v1/integrations/oauth/callback"

func start(t *testing.T) string {
	t.Helper()
	p, err := newProvider(time.Hour, redirectURIs())
	if err != nil {
		t.Fatal(err)
	}
	var base string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.routes(base).ServeHTTP(w, r) }))
	t.Cleanup(s.Close)
	base = s.URL
	return base
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// token posts form to the token endpoint as dev-client with secret and decodes the answer.
func token(t *testing.T, base, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// authorize asks for a code as the engine does (PKCE S256) and returns the redirect.
func authorize(t *testing.T, base, redirect string) (*http.Response, string) {
	t.Helper()
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"state": {rand.Text()}, "scope": {"offline_access read"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	resp, err := noRedirect.Get(base + "/oauth2/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, verifier
}

func TestClientCredentials(t *testing.T) {
	base := start(t)
	code, body := token(t, base, clientSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	if code != 200 || body["access_token"] == "" || body["token_type"] != "bearer" || body["refresh_token"] != nil {
		t.Fatalf("client_credentials: %d %v", code, body)
	}
	if code, body := token(t, base, "wrong", url.Values{"grant_type": {"client_credentials"}}); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("a wrong secret: %d %v", code, body)
	}
}

// TestAuthorizationCodeAndRotatingRefresh: consent at once, a code for the engine's
// callback on any loopback port, a refresh token, and on refresh a new one with the old
// one refused.
func TestAuthorizationCodeAndRotatingRefresh(t *testing.T) {
	base := start(t)
	resp, verifier := authorize(t, base, callback)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" ||
		!strings.HasPrefix(loc.String(), callback+"?") {
		t.Fatalf("authorize: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	code, body := token(t, base, clientSecret, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"code_verifier": {verifier}, "redirect_uri": {callback}})
	first, _ := body["refresh_token"].(string)
	if code != 200 || first == "" {
		t.Fatalf("code exchange: %d %v", code, body)
	}
	code, body = token(t, base, clientSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}})
	second, _ := body["refresh_token"].(string)
	if code != 200 || second == "" || second == first {
		t.Fatalf("refresh: %d %v", code, body)
	}
	if code, body := token(t, base, clientSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}}); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("a retired refresh token: %d %v", code, body)
	}
}

func TestAuthorizeRefusesForeignRedirect(t *testing.T) {
	base := start(t)
	resp, _ := authorize(t, base, "https://elsewhere.example/v1/integrations/oauth/callback")
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "https://elsewhere.example") {
		t.Fatalf("redirected to an unregistered URI: %d %q", resp.StatusCode, loc)
	}
}
