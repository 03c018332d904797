package oauthtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

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
func TestRecordsAndAccountCredentials(t *testing.T) {
	t.Parallel()
	p := New(t, Options{ClientAuth: ClientAuthHeader})
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
func TestFault(t *testing.T) {
	t.Parallel()
	p := New(t, Options{})
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
func TestSettingsChangeUnderLoad(t *testing.T) {
	t.Parallel()
	p := New(t, Options{AccessTTL: time.Minute})
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
func TestRotation(t *testing.T) {
	t.Parallel()
	p := New(t, Options{Rotate: true})
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
func TestOwnSecretsAndRecords(t *testing.T) {
	t.Parallel()
	p := New(t, Options{ClientSecret: "own-secret", Password: "own-password"})
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
