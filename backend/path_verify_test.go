package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// verifyResult runs credentials/<name>/verify and returns its answer.
func verifyResult(t *testing.T, b *integrationsBackend, s logical.Storage, name string) map[string]any {
	t.Helper()
	resp := mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name+"/verify", nil)
	for _, k := range []string{"result", "detail", "checked_at", "latency_ms"} {
		if _, ok := resp.Data[k]; !ok {
			t.Fatalf("verify %s: no %s in %v", name, k, resp.Data)
		}
	}
	return resp.Data
}

func wantVerify(t *testing.T, got map[string]any, result string, detail ...string) {
	t.Helper()
	if got["result"] != result {
		t.Fatalf("result = %v (%v), want %s", got["result"], got["detail"], result)
	}
	for _, d := range detail {
		if !strings.Contains(fmt.Sprint(got["detail"]), d) {
			t.Errorf("detail %q lacks %q", got["detail"], d)
		}
	}
}

func alertReasons(t *testing.T, b *integrationsBackend, s logical.Storage, name string) []string {
	t.Helper()
	resp := mustOK(t, b, s, logical.ReadOperation, "alerts", nil)
	var out []string
	for _, a := range resp.Data["alerts"].([]map[string]any) {
		if a["name"] == name {
			out = append(out, fmt.Sprint(a["reason"]))
		}
	}
	return out
}

func TestVerifyOAuthMintsCachesAndIsNoAccess(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", clientCredentials(p, "header"))
	before := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data

	clock.Advance(48 * time.Hour)
	wantVerify(t, verifyResult(t, b, s, "cc"), lifecycle.VerifyOK, "token minted")
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("verify made %d token requests, want 1", n)
	}
	minted := p.lastIssued(t).access
	// The minted token is the cached one: access serves it without a provider call.
	if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != minted || p.requests.Load() != 1 {
		t.Fatalf("access after verify: token %v, %d requests; want the verified token and no request", got, p.requests.Load())
	}
	// A second verification mints again, although the cached token is fresh.
	wantVerify(t, verifyResult(t, b, s, "cc"), lifecycle.VerifyOK)
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("second verify: %d token requests, want 2", n)
	}

	view := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data
	if view["verify_result"] != lifecycle.VerifyOK || view["verified_at"] != rfc3339(clock.Now()) {
		t.Errorf("view: verify_result %v verified_at %v", view["verify_result"], view["verified_at"])
	}
	// Not an access: the window is where the create put it (the one access above
	// renews it only once flushed; verify alone never does).
	b2, s2, clock2 := oauthBackend(t)
	mustOK(t, b2, s2, logical.UpdateOperation, "credentials/cc", clientCredentials(p, "header"))
	want := mustOK(t, b2, s2, logical.ReadOperation, "credentials/cc", nil).Data["suspend_at"]
	clock2.Advance(72 * time.Hour)
	verifyResult(t, b2, s2, "cc")
	if err := b2.flushUsage(context.Background(), s2); err != nil {
		t.Fatal(err)
	}
	after := mustOK(t, b2, s2, logical.ReadOperation, "credentials/cc", nil).Data
	if after["suspend_at"] != want || after["access_count"] != int64(0) || after["last_accessed"] != "" {
		t.Errorf("after verify: suspend_at %v (want %v), access_count %v, last_accessed %v", after["suspend_at"], want, after["access_count"], after["last_accessed"])
	}
	if before["verify_result"] != "" {
		t.Errorf("never verified: verify_result %v", before["verify_result"])
	}
	logs := mustOK(t, b2, s2, logical.ReadOperation, "credentials/cc/logs", map[string]any{"event": "verify"}).Data["events"]
	if n := fmt.Sprint(logs); !strings.Contains(n, "ok: token minted") {
		t.Errorf("logs lack the verify event: %v", logs)
	}
}

func TestVerifyOAuthPermanentRefusalNeedsReauth(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	data := clientCredentials(p, "header")
	data["client_secret"] = "not-the-secret"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/bad", data)
	got := verifyResult(t, b, s, "bad")
	wantVerify(t, got, lifecycle.VerifyFailed, "invalid_client")
	if status, reason := credStatus(t, b, s, "bad"); status != "needs_reauth" || reason != "invalid_client" {
		t.Errorf("status %s (%s), want needs_reauth (invalid_client), as a failed access mint sets", status, reason)
	}
	reasons := alertReasons(t, b, s, "bad")
	if !slices.Contains(reasons, lifecycle.AlertVerifyFailed) || !slices.Contains(reasons, lifecycle.AlertNeedsReauth) {
		t.Errorf("alerts %v, want verify_failed and needs_reauth", reasons)
	}
	if strings.Contains(fmt.Sprint(got), "not-the-secret") {
		t.Errorf("verify answer leaks the secret: %v", got)
	}
}

func TestVerifyFailureIsRedUntilAMintSucceeds(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "down "+oauthtest.Marker, http.StatusServiceUnavailable)
		return true
	})
	got := verifyResult(t, b, s, "cc")
	wantVerify(t, got, lifecycle.VerifyFailed, "503")
	if strings.Contains(fmt.Sprint(got), oauthtest.Marker) {
		t.Fatalf("detail echoes the provider's body: %v", got)
	}
	view := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data
	if view["health"] != lifecycle.HealthRed || view["verify_result"] != lifecycle.VerifyFailed {
		t.Fatalf("after a failed verification: health %v verify_result %v, want red/failed", view["health"], view["verify_result"])
	}
	if reasons := alertReasons(t, b, s, "cc"); !slices.Equal(reasons, []string{lifecycle.AlertVerifyFailed}) {
		t.Fatalf("alerts %v, want [verify_failed]", reasons)
	}
	// The provider recovers; once the Broker's backoff has passed, an access mints,
	// and that supersedes the failed verification.
	p.SetFault(nil)
	clock.Advance(time.Hour)
	accessOK(t, b, s, "cc", nil)
	view = mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data
	if view["health"] == lifecycle.HealthRed || view["verify_result"] != lifecycle.VerifyOK {
		t.Errorf("after a successful mint: health %v verify_result %v, want not red / ok", view["health"], view["verify_result"])
	}
	if reasons := alertReasons(t, b, s, "cc"); len(reasons) != 0 {
		t.Errorf("alerts after the mint: %v", reasons)
	}
}

// authServer answers 200 to the right header, 401 to a wrong one, and 500 at /broken.
// Every answer carries marker text, which must never reach a detail.
func authServer(t *testing.T, header, want string) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch {
		case r.Method != http.MethodGet:
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
		case r.URL.Path == "/broken":
			http.Error(w, "broken "+oauthtest.Marker, http.StatusInternalServerError)
		case r.Header.Get(header) != want:
			http.Error(w, "who are you "+oauthtest.Marker, http.StatusUnauthorized)
		default:
			fmt.Fprint(w, `{"id":"`+oauthtest.Marker+`"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestVerifyHTTPTypes(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	basic, _ := authServer(t, "Authorization", "Basic dXNlcjpwYXNz") // user:pass
	apiKey, _ := authServer(t, "X-Key", "k-123")
	bearer, _ := authServer(t, "Authorization", "Token t-1")
	okta, _ := authServer(t, "Authorization", "SSWS okta-token")
	cases := []struct {
		name   string
		data   map[string]any
		result string
		detail string
	}{
		{"basic-ok", map[string]any{"type": "basic", "username": "user", "password": "pass", "verify_url": basic.URL + "/me"}, lifecycle.VerifyOK, "HTTP 200"},
		{"basic-wrong", map[string]any{"type": "basic", "username": "user", "password": "nope", "verify_url": basic.URL}, lifecycle.VerifyFailed, "HTTP 401"},
		{"basic-broken", map[string]any{"type": "basic", "username": "user", "password": "pass", "verify_url": basic.URL + "/broken"}, lifecycle.VerifyFailed, "HTTP 500"},
		{"basic-no-url", map[string]any{"type": "basic", "username": "user", "password": "pass"}, lifecycle.VerifyUnsupported, "verify_url"},
		{"apikey-url", map[string]any{"type": "api_key", "key": "k-123", "header_name": "X-Key", "url": apiKey.URL}, lifecycle.VerifyOK, ""},
		{"apikey-wrong", map[string]any{"type": "api_key", "key": "k-999", "header_name": "X-Key", "url": apiKey.URL}, lifecycle.VerifyFailed, "401"},
		{"bearer", map[string]any{"type": "bearer", "token": "t-1", "header_prefix": "Token", "verify_url": bearer.URL, "url": "https://api.example.com"}, lifecycle.VerifyOK, ""},
		{"bearer-none", map[string]any{"type": "bearer", "token": "t-1"}, lifecycle.VerifyUnsupported, "verify_url or url"},
		{"okta", map[string]any{"type": "okta", "url": okta.URL, "token": "okta-token"}, lifecycle.VerifyOK, ""},
		{"webhook", map[string]any{"type": "webhook", "url": basic.URL}, lifecycle.VerifyUnsupported, "would post"},
		{"device", map[string]any{"type": "device_account", "hostname": "sw1.example.com", "ip": "192.0.2.10", "username": "admin", "password": "pw"}, lifecycle.VerifyUnsupported, "by hand"},
		{"pagerduty", map[string]any{"type": "pagerduty", "routing_key": "R0123456789abcdef0123456789abcde"}, lifecycle.VerifyUnsupported, "page"},
	}
	for _, tc := range cases {
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+tc.name, tc.data)
		got := verifyResult(t, b, s, tc.name)
		wantVerify(t, got, tc.result, tc.detail)
		for _, leak := range []string{oauthtest.Marker, "pass", "k-123", "k-999", "okta-token"} {
			if strings.Contains(fmt.Sprint(got["detail"]), leak) && !strings.Contains(tc.detail, leak) {
				t.Errorf("%s: detail %q carries %q", tc.name, got["detail"], leak)
			}
		}
	}
	info := mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data["key_info"].(map[string]any)
	if ki := info["basic-wrong"].(map[string]any); ki["verify_result"] != lifecycle.VerifyFailed || ki["health"] != lifecycle.HealthRed || ki["verified_at"] == "" {
		t.Errorf("key_info of a failed verification: %v", ki)
	}
	if ki := info["webhook"].(map[string]any); ki["verify_result"] != lifecycle.VerifyUnsupported || ki["health"] == lifecycle.HealthRed {
		t.Errorf("key_info of an unsupported verification: %v", ki)
	}
}

func TestVerifyRedirectToAnotherHostNotFollowed(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	var leaked atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { leaked.Add(1) }))
	t.Cleanup(other.Close)
	// The same loopback address under another name is another host.
	elsewhere := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere+"/steal", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/r", map[string]any{"type": "bearer", "token": "t", "verify_url": redirector.URL})
	wantVerify(t, verifyResult(t, b, s, "r"), lifecycle.VerifyFailed, "redirect")
	if leaked.Load() != 0 {
		t.Fatal("the redirect to another host was followed, with the token")
	}
}

func TestVerifySlackAuthTest(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer xoxb-good" {
			fmt.Fprint(w, `{"ok":true}`)
			return
		}
		fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
	}))
	t.Cleanup(srv.Close)
	b.slackVerifyURL = srv.URL + "/api/auth.test"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/good", map[string]any{"type": "slack", "token": "xoxb-good"})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/bad", map[string]any{"type": "slack", "token": "xoxb-bad"})
	wantVerify(t, verifyResult(t, b, s, "good"), lifecycle.VerifyOK)
	wantVerify(t, verifyResult(t, b, s, "bad"), lifecycle.VerifyFailed, "invalid_auth")
}

func TestVerifyCertificateDates(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	certPEM, keyPEM := fixtures.Certificate(clock.Now().Add(10 * 24 * time.Hour))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cert", map[string]any{"type": "certificate", "certificate": certPEM, "private_key": keyPEM})
	wantVerify(t, verifyResult(t, b, s, "cert"), lifecycle.VerifyOK, "valid until")
	clock.Advance(11 * 24 * time.Hour)
	wantVerify(t, verifyResult(t, b, s, "cert"), lifecycle.VerifyFailed, "expired at")
}

func TestVerifyURLIsADestination(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/k", map[string]any{"type": "basic", "username": "u", "password": "p", "verify_url": "https://a.example.com/"})
	resp, err := request(b, s, logical.PatchOperation, "credentials/k", map[string]any{"verify_url": "https://evil.example.com/"})
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("changing verify_url without the password was accepted: %v", resp)
	}
	if v := mustOK(t, b, s, logical.ReadOperation, "credentials/k", nil).Data["verify_url"]; v != "https://a.example.com/" {
		t.Errorf("verify_url = %v after a refused repoint", v)
	}
}

func TestVerifyMissingIs404(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	// An update that answers nothing is a 204 to the caller: a missing credential must
	// be a 404 it can tell apart from success.
	_, err := request(b, s, logical.UpdateOperation, "credentials/nope/verify", nil)
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != http.StatusNotFound {
		t.Fatalf("verify of a missing credential: %v, want a 404", err)
	}
	resp, err := request(b, s, logical.UpdateOperation, "credentials/a..b/verify", nil)
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "without '..'") {
		t.Fatalf("verify of a name the rule refuses: %v %v, want a 400 naming the rule", resp, err)
	}
}

// Every grant mints through verify: client credentials (both auth styles), password,
// and authorization code, which refreshes with the refresh token it holds. One never
// authorized has nothing to mint with: needs_reauth, as on access/.
func TestVerifyMintsThroughEveryGrant(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc-body", clientCredentials(p, "body"))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/password", map[string]any{"type": "oauth2_password", "token_url": p.tokenURL(),
		"client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret, "username": oauthtest.Username, "password": oauthtest.Password})
	authorizeCode(t, b, s, p, "code")
	for _, name := range []string{"cc-body", "password", "code"} {
		before := p.requests.Load()
		wantVerify(t, verifyResult(t, b, s, name), lifecycle.VerifyOK, "token minted")
		if p.requests.Load() != before+1 {
			t.Errorf("%s: %d token requests, want 1", name, p.requests.Load()-before)
		}
		if name == "code" && p.LastRequest(t).Form.Get("grant_type") != "refresh_token" {
			t.Errorf("code: grant %q, want refresh_token", p.LastRequest(t).Form.Get("grant_type"))
		}
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/never", authCodeFields(p))
	wantVerify(t, verifyResult(t, b, s, "never"), lifecycle.VerifyFailed, "no_refresh_token")
	if status, _ := credStatus(t, b, s, "never"); status != "awaiting_consent" {
		t.Errorf("never authorized: status %s, want awaiting_consent", status)
	}
}
