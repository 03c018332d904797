package fositetest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// codeFlowToken posts form to the token endpoint as the secret client and returns the
// status and the decoded answer.
func codeFlowToken(t *testing.T, p *Provider, c SecretClient, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := p.HTTPClient().Do(req)
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

// The code flow works end to end with PKCE, each refresh rotates the refresh token,
// and a retired refresh token presented again is refused and revokes the grant: the
// newest refresh token stops working too. This is what the engine's e2e tests rely on.
func TestCodeFlowRotationAndReuseDetection(t *testing.T) {
	t.Parallel()
	p := New(t, Options{})
	c := SecretClient{ID: "code-client", Secret: "code-secret", RedirectURI: "http://127.0.0.1:1/callback"}
	p.RegisterSecretClient(t, c)
	verifier := strings.Repeat("v", 64)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {c.RedirectURI},
		"scope": {"offline_access read"}, "state": {"state-0123456789"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	hc := p.HTTPClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(p.AuthURL() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "state-0123456789" {
		t.Fatalf("authorize answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	status, body := codeFlowToken(t, p, c, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {c.RedirectURI}, "code_verifier": {verifier}})
	first, _ := body["refresh_token"].(string)
	if status != http.StatusOK || first == "" {
		t.Fatalf("code exchange: %d %v", status, body)
	}
	status, body = codeFlowToken(t, p, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}})
	second, _ := body["refresh_token"].(string)
	if status != http.StatusOK || second == "" || second == first {
		t.Fatalf("refresh: %d, rotated %v", status, second != first)
	}
	if got := p.RefreshTokens(); len(got) != 2 || got[0] != first || got[1] != second {
		t.Fatalf("recorded %d refresh tokens issued, want the two in order", len(got))
	}
	if status, body = codeFlowToken(t, p, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}}); status != http.StatusBadRequest && status != http.StatusUnauthorized {
		t.Fatalf("the retired refresh token answered %d %v", status, body)
	}
	if status, body = codeFlowToken(t, p, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second}}); status == http.StatusOK {
		t.Fatalf("after reuse of a retired refresh token the newest one still works: %v", body)
	}
}
