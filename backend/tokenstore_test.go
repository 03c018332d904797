package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// tpCallbackBase is the Vault address the test backends build redirect URLs from.
const tpCallbackBase = "https://vault.example.test:8200"

// testProvider is the shared OAuth 2.0 test server (internal/oauthtest) under the
// names this package's tests (path_oauth_test.go too) were written against.
type testProvider struct {
	*oauthtest.Provider
	requests requestCount         // token endpoint requests
	tokens   oauthtest.TokenStore // the server's, to revoke a grant as the user would
}

// requestCount lets tests read the count as p.requests.Load().
type requestCount struct{ p *oauthtest.Provider }

func (c requestCount) Load() int64 { return c.p.Requests() }

type issuedToken struct{ access, refresh string }

type providerConfig struct {
	accessTTL time.Duration // lifetime of every access token issued (default an hour)
	rotate    bool          // refresh_token grants issue a new refresh token and retire the old one
}

func newTestProvider(t testing.TB, pc providerConfig) *testProvider {
	t.Helper()
	if pc.accessTTL == 0 {
		pc.accessTTL = time.Hour
	}
	p := oauthtest.New(t, oauthtest.Options{Domain: tpCallbackBase, AccessTTL: pc.accessTTL, Rotate: pc.rotate, ForcePKCE: true})
	return &testProvider{Provider: p, requests: requestCount{p}, tokens: p.TokenStore()}
}

func (p *testProvider) tokenURL() string { return p.TokenURL() }
func (p *testProvider) authURL() string  { return p.AuthURL() }

func (p *testProvider) lastIssued(t testing.TB) issuedToken {
	t.Helper()
	tok := p.LastIssued(t)
	return issuedToken{tok.Access, tok.Refresh}
}

// consent drives the provider's authorization endpoint like a browser whose user
// approves, and returns the redirect back to Vault (not followed).
func (p *testProvider) consent(t testing.TB, authURL string) *url.URL {
	t.Helper()
	return p.Authorize(t, authURL)
}

// oauthBackend is a test backend with its callback base URL set.
func oauthBackend(t *testing.T) (*integrationsBackend, *countingStorage, *testClock) {
	t.Helper()
	b, inner, clock := newTestBackend(t)
	s := &countingStorage{Storage: inner}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
	return b, s, clock
}

// request sends one request and returns the response and the error as they are.
func request(b *integrationsBackend, s logical.Storage, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data, Storage: s, MountPoint: "integrations/",
	})
}

// accessOK reads access/<name> and fails the test unless it succeeds.
func accessOK(t *testing.T, b *integrationsBackend, s logical.Storage, name string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := request(b, s, logical.ReadOperation, "access/"+name, data)
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("access %s: %v %v", name, resp, err)
	}
	if resp.Data["access_token"] == "" || resp.Data["access_token"] == nil {
		t.Fatalf("access %s returned no access token: %s", name, outcome(resp, nil))
	}
	return resp
}

// accessErr reads access/<name>, expects a coded error and returns its status and message.
func accessErr(t *testing.T, b *integrationsBackend, s logical.Storage, name string) (int, string) {
	t.Helper()
	resp, err := request(b, s, logical.ReadOperation, "access/"+name, nil)
	if err == nil {
		t.Fatalf("access %s succeeded: %s", name, outcome(resp, nil))
	}
	var ce logical.HTTPCodedError
	if !errors.As(err, &ce) {
		t.Fatalf("access %s: error %v is not coded", name, err)
	}
	for _, secret := range []string{oauthtest.ClientSecret, oauthtest.Password, oauthtest.Marker} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("access error leaks %q: %v", secret, err)
		}
	}
	return ce.Code(), err.Error()
}

func credStatus(t *testing.T, b *integrationsBackend, s logical.Storage, name string) (status, reason string) {
	t.Helper()
	r := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil)
	return fmt.Sprint(r.Data["status"]), fmt.Sprint(r.Data["status_reason"])
}

func clientCredentials(p *testProvider, style string) map[string]any {
	return map[string]any{
		"type": "oauth2_client_credentials", "token_url": p.tokenURL(), "client_id": oauthtest.ClientID,
		"client_secret": oauthtest.ClientSecret, "scopes": "read,write", "auth_style": style,
	}
}

func TestTokenGrantsAgainstRealServer(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	cases := map[string]map[string]any{
		"cc-header": clientCredentials(p, "header"),
		"cc-body":   clientCredentials(p, "body"),
		"password": {"type": "oauth2_password", "token_url": p.tokenURL(), "client_id": oauthtest.ClientID,
			"client_secret": oauthtest.ClientSecret, "username": oauthtest.Username, "password": oauthtest.Password},
	}
	for name, data := range cases {
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, data)
		before := p.requests.Load()
		got := accessOK(t, b, s, name, nil).Data
		if p.requests.Load() != before+1 {
			t.Fatalf("%s: %d token requests, want 1", name, p.requests.Load()-before)
		}
		issued := p.lastIssued(t)
		if got["access_token"] != issued.access || got["token_type"] != "Bearer" || got["authorization"] != "Bearer "+issued.access {
			t.Fatalf("%s: access returned %v, provider issued %q", name, got, issued.access)
		}
		// Management reads never show the token, nor the refresh token of the password grant.
		read := fmt.Sprint(mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data)
		for _, secret := range []string{issued.access, issued.refresh, oauthtest.ClientSecret, oauthtest.Password} {
			if secret != "" && strings.Contains(read, secret) {
				t.Fatalf("%s: management read shows a secret: %s", name, read)
			}
		}
	}
}

// The access path of a cached token touches no storage at all.
func TestCachedTokenAccessDoesNoStorageIO(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	first := accessOK(t, b, s, "cc", nil).Data["access_token"]
	s.reset()
	for range 100 {
		clock.Advance(10 * time.Second) // well inside the hour the token lasts
		if got := accessOK(t, b, s, "cc", map[string]any{"integration": "svc"}).Data["access_token"]; got != first {
			t.Fatalf("cached access returned %v, want %v", got, first)
		}
	}
	if n := s.total(); n != 0 {
		t.Fatalf("100 cached accesses made %d storage operations (get %d put %d list %d delete %d), want 0",
			n, s.gets.Load(), s.puts.Load(), s.lists.Load(), s.deletes.Load())
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

func TestMinimumSeconds(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	for _, bad := range []any{-1, maxMinimumSeconds + 1} {
		resp, err := request(b, s, logical.ReadOperation, "access/cc", map[string]any{"minimum_seconds": bad})
		var ce logical.HTTPCodedError
		if err == nil || !errors.As(err, &ce) || ce.Code() != http.StatusBadRequest || !strings.Contains(err.Error(), "minimum_seconds") {
			t.Fatalf("minimum_seconds=%v: want a 400 naming the field, got %v %v", bad, resp, err)
		}
	}
	if n := p.requests.Load(); n != 0 {
		t.Fatalf("refused requests reached the provider %d times", n)
	}
	first := accessOK(t, b, s, "cc", map[string]any{"minimum_seconds": 0}).Data["access_token"]
	clock.Advance(30 * time.Minute) // 30 minutes of the hour left
	if got := accessOK(t, b, s, "cc", map[string]any{"minimum_seconds": 1200}).Data["access_token"]; got != first || p.requests.Load() != 1 {
		t.Fatalf("minimum_seconds=1200 with 30 minutes left: token %v after %d requests, want the cached one after 1", got, p.requests.Load())
	}
	second := accessOK(t, b, s, "cc", map[string]any{"minimum_seconds": 2400}).Data
	if second["access_token"] == first || p.requests.Load() != 2 {
		t.Fatalf("minimum_seconds=2400 with 30 minutes left: token %v after %d requests, want a new one", second["access_token"], p.requests.Load())
	}
	if in := second["expires_in"].(int64); in < 2400 {
		t.Fatalf("new token expires in %ds, want at least 2400", in)
	}
	// The default (expiry_buffer, 60 s) applies when minimum_seconds is not given.
	clock.Advance(time.Hour - 59*time.Second)
	if accessOK(t, b, s, "cc", nil).Data["access_token"] == second["access_token"] || p.requests.Load() != 3 {
		t.Fatalf("a token with 59 s left was served from the cache (requests %d)", p.requests.Load())
	}
}

// 50 concurrent readers of a stale token cause one provider request and all get its token.
func TestStaleTokenSingleFlight(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "body"))
	stale := accessOK(t, b, s, "cc", nil).Data["access_token"]
	clock.Advance(time.Hour - 30*time.Second)

	release := make(chan struct{})
	p.SetFault(func(http.ResponseWriter, *http.Request) bool {
		<-release // hold the one request until every reader has asked
		return false
	})
	const readers = 50
	var wg sync.WaitGroup
	got := make([]any, readers)
	errs := make([]error, readers)
	var started sync.WaitGroup
	started.Add(readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			resp, err := request(b, s, logical.ReadOperation, "access/cc", nil)
			if err == nil && resp != nil {
				got[i] = resp.Data["access_token"]
			}
			errs[i] = err
		}()
	}
	started.Wait()
	close(release)
	wg.Wait()
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d token requests for %d readers of a stale token, want 1 (+1 initial)", n-1, readers)
	}
	fresh := p.lastIssued(t).access
	for i := range readers {
		if errs[i] != nil || got[i] != fresh || got[i] == stale {
			t.Fatalf("reader %d got %v (err %v), want the fresh token", i, got[i], errs[i])
		}
	}
	// One mint is one event in the credential's log, however many readers shared it.
	logs := mustOK(t, b, s, logical.ReadOperation, "credentials/cc/logs", map[string]any{"event": "token_minted"})
	if events := logs.Data["events"].([]map[string]any); len(events) != 2 {
		t.Fatalf("%d token_minted events for 2 mints", len(events))
	}
}

// A rotated refresh token reaches storage before the access token is handed out, and
// one the provider does not rotate is kept.
func TestRefreshTokenRotationPersisted(t *testing.T) {
	t.Parallel()
	for _, rotate := range []bool{true, false} {
		t.Run(fmt.Sprintf("rotate=%v", rotate), func(t *testing.T) {
			t.Parallel()
			p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: rotate})
			b, s, clock := oauthBackend(t)
			authorizeCode(t, b, s, p, "ac")
			first := p.lastIssued(t)
			if first.refresh == "" {
				t.Fatal("the code exchange issued no refresh token")
			}
			clock.Advance(time.Hour) // the access token is now stale
			s.reset()
			got := accessOK(t, b, s, "ac", nil).Data["access_token"]
			if sent := p.LastRefreshToken(); sent != first.refresh {
				t.Fatalf("refreshed with %q, want the issued refresh token", sent)
			}
			second := p.lastIssued(t)
			if got != second.access {
				t.Fatalf("access returned %v, provider issued %q", got, second.access)
			}
			stored := storedTokenOf(t, s, "ac")
			wantRefresh := first.refresh
			if rotate {
				wantRefresh = second.refresh
				if second.refresh == "" || second.refresh == first.refresh {
					t.Fatalf("the provider did not rotate: %q -> %q", first.refresh, second.refresh)
				}
			} else if second.refresh != "" {
				t.Fatalf("the provider rotated although told not to")
			}
			if stored.RefreshToken != wantRefresh || stored.AccessToken != got {
				t.Fatalf("stored refresh token %q (access %q), want %q (access %v)", stored.RefreshToken, stored.AccessToken, wantRefresh, got)
			}
			// The write happened within the request that handed out the token.
			if !putKey(s, tokenPrefix+"ac") {
				t.Fatal("the refreshed token was not written during the access request")
			}
			// Refreshing again uses the refresh token that was stored.
			clock.Advance(time.Hour)
			accessOK(t, b, s, "ac", nil)
			if sent := p.LastRefreshToken(); sent != wantRefresh {
				t.Fatalf("second refresh sent %q, want %q", sent, wantRefresh)
			}
		})
	}
}

// A rotated refresh token that cannot be stored is never acted on: the new access
// token is withheld, and the next read stores it without asking the provider again.
func TestRotatedTokenWithheldUntilStored(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	clock.Advance(time.Hour)
	s.mu.Lock()
	s.failPut = tokenPrefix + "ac"
	s.mu.Unlock()
	resp, err := request(b, s, logical.ReadOperation, "access/ac", nil)
	if err == nil || (resp != nil && resp.Data["access_token"] != nil) {
		t.Fatalf("access handed out a token that could not be stored: %s", outcome(resp, err))
	}
	rotated := p.lastIssued(t)
	if p.requests.Load() != 2 {
		t.Fatalf("%d token requests, want 2 (exchange + refresh)", p.requests.Load())
	}
	s.mu.Lock()
	s.failPut = ""
	s.mu.Unlock()
	if got := accessOK(t, b, s, "ac", nil).Data["access_token"]; got != rotated.access || p.requests.Load() != 2 {
		t.Fatalf("after storage recovered: %v after %d requests, want the rotated token without a new request", got, p.requests.Load())
	}
	if stored := storedTokenOf(t, s, "ac"); stored.RefreshToken != rotated.refresh {
		t.Fatal("the rotated refresh token is not the stored one")
	}
}

func putKey(s *countingStorage, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.written {
		if e.Key == key {
			return true
		}
	}
	return false
}

func storedTokenOf(t *testing.T, s logical.Storage, name string) *oauth.Token {
	t.Helper()
	e, err := s.Get(context.Background(), tokenPrefix+name)
	if err != nil || e == nil {
		t.Fatalf("no stored token for %s: %v", name, err)
	}
	tok := new(oauth.Token)
	if err := e.DecodeJSON(tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// Transient failures: 502 naming the status, never the body; backoff (Retry-After
// honoured); a still-valid cached token is served with a warning.
func TestTransientFailures(t *testing.T) {
	t.Parallel()
	t.Run("500 without a cached token", func(t *testing.T) {
		t.Parallel()
		p := newTestProvider(t, providerConfig{})
		b, s, clock := oauthBackend(t)
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
		p.SetFault(oauthtest.Fail(http.StatusInternalServerError))
		code, msg := accessErr(t, b, s, "cc")
		if code != http.StatusBadGateway || !strings.Contains(msg, "500") {
			t.Fatalf("got %d %q, want 502 naming HTTP 500", code, msg)
		}
		if st, _ := credStatus(t, b, s, "cc"); st != "active" {
			t.Fatalf("a transient failure changed the status to %s", st)
		}
		// Backing off: no request until the window (at most a second) has passed.
		if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway || p.requests.Load() != 1 {
			t.Fatalf("during backoff: %d, %d requests, want 502 after 1", code, p.requests.Load())
		}
		clock.Advance(2 * time.Second)
		p.SetFault(nil)
		accessOK(t, b, s, "cc", nil)
		if p.requests.Load() != 2 {
			t.Fatalf("%d requests after the backoff, want 2", p.requests.Load())
		}
	})
	t.Run("429 Retry-After", func(t *testing.T) {
		t.Parallel()
		p := newTestProvider(t, providerConfig{})
		b, s, clock := oauthBackend(t)
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
		p.SetFault(oauthtest.Fail(http.StatusTooManyRequests, "Retry-After", "30"))
		code, msg := accessErr(t, b, s, "cc")
		if code != http.StatusBadGateway || !strings.Contains(msg, "429") {
			t.Fatalf("got %d %q, want 502 naming HTTP 429", code, msg)
		}
		p.SetFault(nil)
		clock.Advance(29 * time.Second)
		if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway || p.requests.Load() != 1 {
			t.Fatalf("29 s into a 30 s Retry-After: %d after %d requests, want 502 after 1", code, p.requests.Load())
		}
		// Retry-After and the spread the backoff adds to it (oauth.RetryAfterSpread).
		clock.Advance(2*time.Second + oauth.RetryAfterSpread(30*time.Second))
		accessOK(t, b, s, "cc", nil)
		if p.requests.Load() != 2 {
			t.Fatalf("%d requests after Retry-After and its spread, want 2", p.requests.Load())
		}
	})
	t.Run("cached token served with a warning", func(t *testing.T) {
		t.Parallel()
		p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
		b, s, clock := oauthBackend(t)
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
		cached := accessOK(t, b, s, "cc", nil).Data["access_token"]
		clock.Advance(time.Hour - 30*time.Second) // 30 s left: stale, not expired
		p.SetFault(oauthtest.Fail(http.StatusServiceUnavailable))
		resp := accessOK(t, b, s, "cc", nil)
		if resp.Data["access_token"] != cached || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "503") {
			t.Fatalf("during an outage: token %v warnings %q, want the cached token and a warning naming 503", resp.Data["access_token"], resp.Warnings)
		}
		if strings.Contains(resp.Warnings[0], oauthtest.Marker) {
			t.Fatalf("warning echoes the provider's body: %s", resp.Warnings[0])
		}
		if h := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data["health"]; h != "yellow" {
			t.Fatalf("health %v while serving a cached token through an outage, want yellow", h)
		}
		clock.Advance(31 * time.Second) // now expired: nothing left to serve
		if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
			t.Fatalf("expired token during an outage: %d, want 502", code)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		p := newTestProvider(t, providerConfig{})
		dead := p.tokenURL()
		p.Close()
		b, s, _ := oauthBackend(t)
		data := clientCredentials(p, "header")
		data["token_url"] = dead
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", data)
		code, msg := accessErr(t, b, s, "cc")
		if code != http.StatusBadGateway || !strings.Contains(msg, "connection_refused") {
			t.Fatalf("got %d %q, want 502 naming the failure's kind", code, msg)
		}
	})
}

// Permanent refusals mark the credential needs_reauth; access is then refused without
// asking the provider; an update of its settings clears the state.
func TestNeedsReauthTransitions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code  string
		fault func(http.ResponseWriter, *http.Request) bool
		data  func(*testProvider) map[string]any
	}{
		{"invalid_client", nil, func(p *testProvider) map[string]any {
			d := clientCredentials(p, "header")
			d["client_secret"] = "wrong"
			return d
		}},
		{"invalid_grant", nil, func(p *testProvider) map[string]any {
			return map[string]any{"type": "oauth2_password", "token_url": p.tokenURL(), "client_id": oauthtest.ClientID,
				"client_secret": oauthtest.ClientSecret, "username": oauthtest.Username, "password": "wrong"}
		}},
		{"unauthorized_client", oauthError(http.StatusBadRequest, "unauthorized_client"), nil},
		{"unsupported_grant_type", oauthError(http.StatusBadRequest, "unsupported_grant_type"), nil},
		{"invalid_scope", oauthError(http.StatusBadRequest, "invalid_scope"), nil},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			p := newTestProvider(t, providerConfig{})
			b, s, clock := oauthBackend(t)
			data := clientCredentials(p, "header")
			if tc.data != nil {
				data = tc.data(p)
			}
			p.SetFault(tc.fault)
			mustOK(t, b, s, logical.CreateOperation, "credentials/c", data)
			code, msg := accessErr(t, b, s, "c")
			if code != http.StatusForbidden || !strings.Contains(msg, "re-authoriz") || !strings.Contains(msg, tc.code) {
				t.Fatalf("got %d %q, want 403 naming %s and re-authorization", code, msg, tc.code)
			}
			if st, reason := credStatus(t, b, s, "c"); st != "needs_reauth" || reason != tc.code {
				t.Fatalf("status %s (%s), want needs_reauth (%s)", st, reason, tc.code)
			}
			list := mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"status": "needs_reauth"})
			if keys, _ := list.Data["keys"].([]string); len(keys) != 1 {
				t.Fatalf("list status=needs_reauth: %v", list.Data)
			}
			// Refused without asking the provider again, told to patch its settings: none
			// of these types has authorize.
			code, msg = accessErr(t, b, s, "c")
			if code != http.StatusForbidden || !strings.Contains(msg, "vault patch integrations/credentials/c ") || strings.Contains(msg, "/authorize") || p.requests.Load() != 1 {
				t.Fatalf("second access: %d %q after %d requests, want 403 after 1 saying to patch it", code, msg, p.requests.Load())
			}
			// Fixing the settings (an update with every field) clears the state at once,
			// even though the Broker is still backing off from the refusal.
			p.SetFault(nil)
			clock.Advance(time.Millisecond)
			fixed := clientCredentials(p, "header")
			if tc.data != nil {
				fixed = tc.data(p)
				fixed["client_secret"], fixed["password"] = oauthtest.ClientSecret, oauthtest.Password
				if fixed["type"] == "oauth2_client_credentials" {
					delete(fixed, "password")
				}
			}
			delete(fixed, "type")
			mustOK(t, b, s, logical.UpdateOperation, "credentials/c", fixed)
			if st, _ := credStatus(t, b, s, "c"); st != "active" {
				t.Fatalf("status after the update %s, want active", st)
			}
			accessOK(t, b, s, "c", nil)
			if p.requests.Load() != 2 {
				t.Fatalf("%d requests, want 2", p.requests.Load())
			}
		})
	}
}

func oauthError(status int, code string) oauthtest.Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, status, fmt.Sprintf(`{"error":%q,"error_description":"no %s"}`, code, oauthtest.Marker))
		return true
	}
}

// New settings make a cached token stale: it was minted for the old ones.
func TestUpdateDropsTokenOfOldSettings(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	old := accessOK(t, b, s, "cc", nil).Data["access_token"]
	clock.Advance(time.Second)
	data := clientCredentials(p, "body")
	delete(data, "type")
	data["scopes"] = "read"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", data)
	got := accessOK(t, b, s, "cc", nil).Data
	if got["access_token"] == old || got["scope"] != "read" || p.requests.Load() != 2 {
		t.Fatalf("after changing the scopes: token %v scope %v after %d requests, want a new token for scope read",
			got["access_token"], got["scope"], p.requests.Load())
	}
	// And the new one is cached again.
	if accessOK(t, b, s, "cc", nil).Data["access_token"] != got["access_token"] || p.requests.Load() != 2 {
		t.Fatal("the token minted after the update is not cached")
	}
}

// TestInvalidatedCredentialRereadsItsToken: when another node changes a credential,
// Invalidate drops what this node learnt under the old settings, so the next access
// reads the stored token again instead of serving the remembered one.
func TestInvalidatedCredentialRereadsItsToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	first := accessOK(t, b, s, "cc", nil).Data["access_token"]
	s.reset()
	accessOK(t, b, s, "cc", nil)
	if n := s.total(); n != 0 {
		t.Fatalf("cached access made %d storage operations, want 0", n)
	}
	b.InvalidateKey(context.Background(), "credentials/cc")
	if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != first {
		t.Fatalf("after invalidation: token %v, want the stored %v", got, first)
	}
	if n := s.gets.Load(); n < 2 {
		t.Fatalf("after invalidation the access read storage %d times, want the credential and its token reread", n)
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d token requests, want 1: the stored token is still good", n)
	}
}

// blockTokens makes every token request to p wait until the returned release is
// called (at the latest when the test ends); arrived receives one value per request
// that reached the provider.
func blockTokens(t *testing.T, p *testProvider) (arrived <-chan struct{}, release func()) {
	t.Helper()
	in := make(chan struct{}, 16)
	gate := make(chan struct{})
	var released bool
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	p.SetFault(func(http.ResponseWriter, *http.Request) bool {
		in <- struct{}{}
		<-gate
		return false
	})
	t.Cleanup(release) // runs before the provider closes: it was registered later
	return in, release
}

// accessAsync reads access/<name> in the background.
func accessAsync(b *integrationsBackend, s logical.Storage, name string) <-chan accessResult {
	done := make(chan accessResult, 1)
	go func() {
		resp, err := request(b, s, logical.ReadOperation, "access/"+name, nil)
		done <- accessResult{resp, err}
	}()
	return done
}

type accessResult struct {
	resp *logical.Response
	err  error
}

func (r accessResult) token() any {
	if r.resp == nil {
		return nil
	}
	return r.resp.Data["access_token"]
}

func storageHas(t *testing.T, s logical.Storage, key string) bool {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return e != nil
}

// TestRepointNeverCarriesTheRefreshToken is the attack of issue 9: someone allowed to
// update an authorization-code credential, but not to read it, resends the client
// secret with a new token_url (a JSON merge patch) and waits for the next read to
// deliver the consented refresh token to their server. The repoint must forget the
// token, the refresh token and the pending authorization, in storage and memory.
func TestRepointNeverCarriesTheRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	attacker := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	refresh := p.lastIssued(t).refresh
	accessOK(t, b, s, "ac", nil) // cached in memory, in the Broker and in storage
	pending := startAuthorization(t, b, s, "ac")["state"].(string)
	clock.Advance(time.Second)

	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{
		"token_url": attacker.tokenURL(), "client_secret": oauthtest.ClientSecret,
	})
	for _, key := range []string{tokenPrefix + "ac", authorizationPrefix + "ac", oauthStatePrefix + pending} {
		if storageHas(t, s, key) {
			t.Fatalf("%s survived the repoint", key)
		}
	}
	code, msg := accessErr(t, b, s, "ac")
	if code != http.StatusForbidden || !strings.Contains(msg, "awaiting consent") || !strings.Contains(msg, "/authorize") {
		t.Fatalf("access after the repoint: %d %q, want 403 asking for a consent", code, msg)
	}
	if got := attacker.LastRefreshToken(); got != "" {
		t.Fatalf("the new token_url received a refresh token (the old one: %v)", got == refresh)
	}
	if n := attacker.requests.Load(); n != 0 {
		t.Fatalf("the new token_url received %d token requests before any authorization", n)
	}
	if st, _ := credStatus(t, b, s, "ac"); st != "awaiting_consent" {
		t.Fatalf("status %s after the repoint, want awaiting_consent", st)
	}
}

// TestRepointForgetsPublicClientsRefreshToken: a public client (no client_secret)
// has no secret to resend, but its refresh token is lost all the same.
func TestRepointForgetsPublicClientsRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	attacker := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	fields := authCodeFields(p)
	delete(fields, "client_secret")
	mustOK(t, b, s, logical.CreateOperation, "credentials/pub", fields)
	// The state a consent would have left: a stored token with its refresh token.
	const refresh = "RT-PUBLIC-CLIENT-must-not-travel"
	entry, err := logical.StorageEntryJSON(tokenPrefix+"pub", oauth.Token{
		AccessToken: "AT-old", RefreshToken: refresh, Expiry: clock.Now().Add(time.Hour), IssuedAt: clock.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/pub", map[string]any{"token_url": attacker.tokenURL()})
	if code, _ := accessErr(t, b, s, "pub"); code != http.StatusForbidden {
		t.Fatalf("access after the repoint: %d, want 403", code)
	}
	if got := attacker.LastRefreshToken(); got != "" || attacker.requests.Load() != 0 {
		t.Fatalf("the new token_url received %d requests, refresh token %q", attacker.requests.Load(), got)
	}
}

// TestUpdateKeepingTheDestinationKeepsTheRefreshToken: only a repoint forgets; new
// scopes get a new access token refreshed from the refresh token already held.
func TestUpdateKeepingTheDestinationKeepsTheRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	refresh := p.lastIssued(t).refresh
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"scopes": "offline_access"})
	accessOK(t, b, s, "ac", nil)
	if got := p.LastRefreshToken(); got != refresh || p.requests.Load() != 2 {
		t.Fatalf("after a scopes update: %d requests, refreshed with the held token: %v", p.requests.Load(), got == refresh)
	}
}

// TestRepointOnAnotherNode: the node that did not take the write learns of it through
// Invalidate (the credential key changed, the token key was deleted) and forgets what
// it held in memory: its cached token and its Broker's last token.
func TestRepointOnAnotherNode(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	attacker := newTestProvider(t, providerConfig{})
	clock := newTestClock()
	storage := &logical.InmemStorage{}
	b1, s, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	mustOK(t, b1, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
	authorizeCode(t, b1, s, p, "ac")
	clock.Advance(time.Hour) // stale: the next read refreshes
	accessOK(t, b2, s, "ac", nil)
	if p.requests.Load() != 2 {
		t.Fatalf("%d requests, want the exchange and one refresh by the other node", p.requests.Load())
	}
	clock.Advance(time.Hour)
	mustOK(t, b1, s, logical.PatchOperation, "credentials/ac", map[string]any{
		"token_url": attacker.tokenURL(), "client_secret": oauthtest.ClientSecret,
	})
	for _, key := range []string{credentialPrefix + "ac", tokenPrefix + "ac"} {
		b2.InvalidateKey(context.Background(), key)
	}
	if code, _ := accessErr(t, b2, s, "ac"); code != http.StatusForbidden {
		t.Fatalf("the other node's access after the repoint: %d, want 403", code)
	}
	if got := attacker.LastRefreshToken(); got != "" || attacker.requests.Load() != 0 {
		t.Fatalf("the new token_url received %d requests from the other node", attacker.requests.Load())
	}
}

// TestInFlightMintDiscardedOnDelete: nothing outlives a delete, not even the answer
// to a token request that was in flight when the credential went.
func TestInFlightMintDiscardedOnDelete(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	arrived, release := blockTokens(t, p)
	done := accessAsync(b, s, "cc")
	<-arrived
	mustOK(t, b, s, logical.DeleteOperation, "credentials/cc", nil)
	release()
	if r := <-done; r.err == nil {
		t.Fatalf("the in-flight access succeeded after the delete: %v", r.token())
	}
	if storageHas(t, s, tokenPrefix+"cc") {
		t.Fatal("the token minted for a deleted credential was stored")
	}
	// A new credential under the name starts afresh.
	p.SetFault(nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	accessOK(t, b, s, "cc", nil)
	if p.requests.Load() != 2 {
		t.Fatalf("%d requests, want a new mint for the new credential", p.requests.Load())
	}
}

// TestInFlightMintDiscardedOnUpdate: a token requested under the old settings is not
// served as current, nor stored, after an update lands during the request.
func TestInFlightMintDiscardedOnUpdate(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	arrived, release := blockTokens(t, p)
	done := accessAsync(b, s, "cc")
	<-arrived
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"scopes": "read"})
	release()
	r := <-done
	if r.err == nil {
		t.Fatalf("the in-flight access was served a token of the old settings: %s", outcome(r.resp, nil))
	}
	if !strings.Contains(r.err.Error(), "changed while") {
		t.Fatalf("in-flight access error %q, want one saying the credential changed", r.err)
	}
	if storageHas(t, s, tokenPrefix+"cc") {
		t.Fatal("the token of the old settings was stored")
	}
	got := accessOK(t, b, s, "cc", nil).Data
	if got["scope"] != "read" || p.requests.Load() != 2 {
		t.Fatalf("after the update: scope %v after %d requests, want a new token for scope read", got["scope"], p.requests.Load())
	}
}

// TestConfigChangeKeepsBackoff: request_timeout changes nothing already learnt; in
// particular the Broker (its backoff, its requests in flight) is not rebuilt.
func TestConfigChangeKeepsBackoff(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(oauthtest.Fail(http.StatusServiceUnavailable, "Retry-After", "60"))
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
		t.Fatalf("got %d, want 502", code)
	}
	broker := b.tokens.brokerOf()
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"request_timeout": 10, "default_token_lifetime": 7200, "log_size": 100})
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway || p.requests.Load() != 1 {
		t.Fatalf("after a config change, during Retry-After: %d after %d requests, want 502 after 1", code, p.requests.Load())
	}
	if b.tokens.brokerOf() != broker {
		t.Fatal("the Broker was rebuilt by a config change")
	}
}

// noExpiresIn answers every token request with a token and no expires_in, so its
// lifetime is the engine's default_token_lifetime.
func noExpiresIn(n *int) oauthtest.Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		*n++
		oauthtest.WriteJSON(w, http.StatusOK, fmt.Sprintf(`{"access_token":"AT-assumed-%d","token_type":"Bearer"}`, *n))
		return true
	}
}

// TestAssumedLifetimeFollowsDefaultTokenLifetime: a token whose expiry was assumed
// from default_token_lifetime is not served as current after that setting changes;
// one whose lifetime the provider stated is.
func TestAssumedLifetimeFollowsDefaultTokenLifetime(t *testing.T) {
	t.Parallel()
	assumed := newTestProvider(t, providerConfig{})
	stated := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	var minted int
	assumed.SetFault(noExpiresIn(&minted))
	mustOK(t, b, s, logical.CreateOperation, "credentials/assumed", clientCredentials(assumed, "header"))
	mustOK(t, b, s, logical.CreateOperation, "credentials/stated", clientCredentials(stated, "header"))
	first := accessOK(t, b, s, "assumed", nil).Data
	if first["access_token"] != "AT-assumed-1" || first["expires_in"] != int64(3600) {
		t.Fatalf("first token %v, want AT-assumed-1 for the default hour", first)
	}
	statedToken := accessOK(t, b, s, "stated", nil).Data["access_token"]
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"default_token_lifetime": 600})
	got := accessOK(t, b, s, "assumed", nil).Data
	if got["access_token"] != "AT-assumed-2" || got["expires_in"] != int64(600) {
		t.Fatalf("after default_token_lifetime changed: %v, want a new token for 10 minutes", got)
	}
	if accessOK(t, b, s, "stated", nil).Data["access_token"] != statedToken || stated.requests.Load() != 1 {
		t.Fatal("a token whose lifetime the provider stated was minted again")
	}
}

// TestAssumedLifetimeInFlightDiscarded: a token minted under the old
// default_token_lifetime while the setting changes is not stored.
func TestAssumedLifetimeInFlightDiscarded(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	gate, arrived := make(chan struct{}), make(chan struct{}, 4)
	var minted int
	answer := noExpiresIn(&minted)
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		arrived <- struct{}{}
		<-gate
		return answer(w, r)
	})
	done := accessAsync(b, s, "cc")
	<-arrived
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"default_token_lifetime": 600})
	close(gate)
	if r := <-done; r.err == nil {
		t.Fatalf("served a token whose lifetime rests on a replaced default: %s", outcome(r.resp, nil))
	}
	if storageHas(t, s, tokenPrefix+"cc") {
		t.Fatal("stored a token whose lifetime rests on a replaced default")
	}
	if got := accessOK(t, b, s, "cc", nil).Data; got["expires_in"] != int64(600) {
		t.Fatalf("next token %v, want the new default lifetime", got)
	}
}

// TestCallbackBaseChangeDropsPendingAuthorizations: a consent whose redirect_url came
// from callback_base_url cannot complete after that setting changes.
func TestCallbackBaseChangeDropsPendingAuthorizations(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	start := startAuthorization(t, b, s, "ac")
	loc := p.consent(t, start["auth_url"].(string))
	// request_timeout changes nothing already learnt.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"request_timeout": 20})
	if !storageHas(t, s, authorizationPrefix+"ac") {
		t.Fatal("a request_timeout change dropped a pending authorization")
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": "https://vault2.example.test"})
	if storageHas(t, s, authorizationPrefix+"ac") || storageHas(t, s, oauthStatePrefix+start["state"].(string)) {
		t.Fatal("the pending authorization survived a callback_base_url change")
	}
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusBadRequest {
		t.Fatalf("callback after callback_base_url changed: %d %s", status, page)
	}
	if p.requests.Load() != 0 {
		t.Fatal("the dropped authorization's code was exchanged")
	}
}

// TestHostileProviderErrorText: a provider's error response is data from a stranger.
// Only an error code that passes oauth.SafeCode is kept (else http_<status>); the
// description and body are never repeated: not in the caller's error, the stored
// status_reason, the credential's events, the server log, nor Vault events.
func TestHostileProviderErrorText(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	logs := &lcLogBuffer{}
	events := logical.NewMockEventSender()
	b, s, _ := newBackendWith(t, backendOptions{logs: logs, events: events, initialize: true})
	const desc = "HOSTILE-DESCRIPTION"
	hostile := []string{
		"invalid_grant\nINJECTED log line",
		"<script>alert(1)</script>",
		"<!channel> wake up",
		"<!here>",
		"invalid_grant\r\nX: y",
		strings.Repeat("A", 10<<10),
	}
	leaks := []string{"INJECTED", "<script", "alert(", "<!channel", "wake up", "<!here", "X: y", "AAAAAAAA", desc, oauthtest.Marker}
	for i, code := range hostile {
		name := fmt.Sprintf("c%d", i)
		body := fmt.Sprintf(`{"error":%q,"error_description":%q}`, code, desc+" "+oauthtest.Marker)
		p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
			oauthtest.WriteJSON(w, http.StatusBadRequest, body)
			return true
		})
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, clientCredentials(p, "header"))
		code, msg := accessErr(t, b, s, name)
		if code != http.StatusForbidden || !strings.Contains(msg, "http_400") {
			t.Fatalf("%s: %d %q, want 403 naming http_400", name, code, msg)
		}
		if st, reason := credStatus(t, b, s, name); st != "needs_reauth" || reason != "http_400" {
			t.Fatalf("%s: status %s reason %q, want needs_reauth http_400", name, st, reason)
		}
		for _, leak := range leaks {
			if strings.Contains(msg, leak) {
				t.Fatalf("%s: the caller's error repeats %q: %s", name, leak, msg)
			}
		}
	}
	// A multi-megabyte description: refused as too large, never read into anything.
	huge := `{"error":"invalid_grant","error_description":"` + desc + strings.Repeat("D", 3<<20) + `"}`
	p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, http.StatusBadRequest, huge)
		return true
	})
	mustOK(t, b, s, logical.CreateOperation, "credentials/huge", clientCredentials(p, "header"))
	if _, msg := accessErr(t, b, s, "huge"); strings.Contains(msg, desc) || len(msg) > 512 {
		t.Fatalf("huge description: error %.200q (%d bytes)", msg, len(msg))
	}
	leaks = append(leaks, "DDDDDDDD")

	var stored []string
	for i := range hostile {
		name := fmt.Sprintf("c%d", i)
		r := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil)
		ev := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name+"/logs", nil)
		stored = append(stored, fmt.Sprint(r.Data), fmt.Sprint(ev.Data))
		e, err := s.Get(context.Background(), credentialPrefix+name)
		if err != nil || e == nil {
			t.Fatalf("%s not stored: %v", name, err)
		}
		stored = append(stored, string(e.Value))
	}
	events.Lock()
	stored = append(stored, fmt.Sprint(events.Events))
	events.Unlock()
	stored = append(stored, logs.String())
	for _, text := range stored {
		for _, leak := range leaks {
			if strings.Contains(text, leak) {
				i := strings.Index(text, leak)
				t.Fatalf("provider text %q reached stored state, events or logs: …%s…", leak, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	// No line of the log starts with anything but hclog's timestamp: no newline of
	// the provider's made it into a message.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "20") {
			t.Fatalf("a log line not written by hclog: %q", line)
		}
	}
	if !strings.Contains(logs.String(), "http_400") {
		t.Fatal("the needs_reauth notifications were not logged at all: the log check proves nothing")
	}
}

// TestShortLivedTokensAreNotMintedOnEveryRead: a demand (minimum_seconds, or
// expiry_buffer) longer than the provider's tokens live cannot be met by minting, so
// the token minted is served with a warning, and served again until it has less than
// expiry_buffer left (or, when expiry_buffer is itself too long, half its lifetime).
//
// Both cases below lower the demand on 2-minute tokens to 60 s, so a token falls due
// 60 s after its issue. With refresh_ahead off it is served until then and the read
// after mints the next one. With refresh_ahead on (the default) the token's refresh
// window opens in the second half of those 60 s (refreshAt: 24 s lead plus its spread,
// never earlier than 30 s after issue): the first read in it starts one background
// refresh, and the token that refresh mints is served from then on, past the old one's
// due point, without another request. Either way: two requests in 61 s, never one a
// read. The test waited for no background refresh before: it passed only while the
// refresh the read at 40 s started had not reached the provider by the reads that
// counted requests, and failed about once in a hundred runs when it had.
func TestShortLivedTokensAreNotMintedOnEveryRead(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		config map[string]any // besides refresh_ahead
		demand map[string]any // the read's
	}{
		// minimum_seconds=600 on 2-minute tokens: lowered to expiry_buffer (60 s).
		{"minimum_seconds", map[string]any{}, map[string]any{"minimum_seconds": 600}},
		// expiry_buffer=300 on 2-minute tokens: lowered to half the lifetime (60 s).
		{"expiry_buffer", map[string]any{"expiry_buffer": 300}, nil},
	}
	for _, tc := range cases {
		for _, ahead := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/refresh_ahead=%v", tc.name, ahead), func(t *testing.T) {
				t.Parallel()
				shortLivedReads(t, tc.config, tc.demand, ahead)
			})
		}
	}
}

// shortLivedReads reads a credential of a provider of 2-minute tokens every 10 s
// with demand, waiting for any background refresh after each read, and checks each
// answer against the rules TestShortLivedTokensAreNotMintedOnEveryRead states.
func shortLivedReads(t *testing.T, config, demand map[string]any, ahead bool) {
	t.Helper()
	const due = 60 * time.Second // the lowered demand, and so the due point after issue
	p := newTestProvider(t, providerConfig{accessTTL: 2 * time.Minute})
	b, s, clock := oauthBackend(t)
	cfg := map[string]any{"refresh_ahead": ahead}
	for k, v := range config {
		cfg[k] = v
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", cfg)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	first := accessOK(t, b, s, "cc", demand)
	settle(b)
	if len(first.Warnings) != 1 || !strings.Contains(first.Warnings[0], "2m0s") || p.requests.Load() != 1 {
		t.Fatalf("first read: warnings %q, %d requests, want one warning naming the 2m lifetime after 1", first.Warnings, p.requests.Load())
	}
	st, err := b.tokens.cached(context.Background(), s, "cc")
	if err != nil || st == nil {
		t.Fatalf("no cached token after the first read: %v", err)
	}
	issued := st.IssuedAt
	opens := refreshAt(&st.Token, due)
	if o := opens.Sub(issued); o <= due/2 || o > due-24*time.Second {
		t.Fatalf("the refresh window opens %s after issue, want in (%s, %s]", o, due/2, due-24*time.Second)
	}
	refreshed := false // a read in the window started a refresh (refresh_ahead on)
	for range 6 {      // up to 60 s: the first token keeps at least the lowered demand
		clock.Advance(10 * time.Second)
		r := accessOK(t, b, s, "cc", demand)
		settle(b)
		elapsed := clock.Now().Sub(issued)
		wantFirst := !refreshed // this read was served the first token
		refreshed = refreshed || ahead && !clock.Now().Before(opens)
		wantRequests := int64(1)
		if refreshed {
			wantRequests = 2
		}
		if got := r.Data["access_token"] == first.Data["access_token"]; got != wantFirst || len(r.Warnings) != 1 || p.requests.Load() != wantRequests {
			t.Fatalf("at %s (window opens at %s): first token %v, warnings %q, %d requests; want first token %v with a warning after %d",
				elapsed, opens.Sub(issued), got, r.Warnings, p.requests.Load(), wantFirst, wantRequests)
		}
	}
	if ahead && !refreshed {
		t.Fatal("no read fell in the refresh window: the test proves nothing about refresh ahead")
	}
	clock.Advance(time.Second) // the first token has less than the lowered demand left
	r := accessOK(t, b, s, "cc", demand)
	settle(b)
	if r.Data["access_token"] == first.Data["access_token"] || p.requests.Load() != 2 {
		t.Fatalf("past the first token's due point: %d requests, want a new token after 2 (minted now, or ahead)", p.requests.Load())
	}
	// A demand the tokens can meet gets no warning (under the default expiry_buffer:
	// 300 s makes every demand at least that).
	if _, set := config["expiry_buffer"]; set {
		return
	}
	if r := accessOK(t, b, s, "cc", map[string]any{"minimum_seconds": 90}); len(r.Warnings) != 0 {
		t.Fatalf("minimum_seconds=90 for 2-minute tokens: warnings %q", r.Warnings)
	}
}

// TestExchangeHoldsNoLock: while a code exchange waits for the provider, other work
// on the credential (a suspend, an update) does not wait for it. The edits keep the
// destination and client, so the consent stands: its refresh token is stored, its
// access token (minted for the old scopes) is not, and the next read refreshes under
// the new scopes without another consent.
func TestExchangeHoldsNoLock(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	arrived, release := blockTokens(t, p)
	exchanged := make(chan *logical.Response, 1)
	go func() {
		data := map[string]any{}
		for k := range loc.Query() {
			data[k] = loc.Query().Get(k)
		}
		resp, _ := request(b, s, logical.ReadOperation, callbackPath, data)
		exchanged <- resp
	}()
	<-arrived // the exchange is at the provider

	for _, op := range []struct {
		name string
		run  func() *logical.Response
	}{
		{"suspend", func() *logical.Response {
			return call(t, b, s, logical.UpdateOperation, "credentials/ac/suspend", nil)
		}},
		{"update", func() *logical.Response {
			clock.Advance(time.Second)
			return call(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"scopes": "read"})
		}},
	} {
		done := make(chan *logical.Response, 1)
		go func() { done <- op.run() }()
		select {
		case resp := <-done:
			if resp != nil && resp.IsError() {
				t.Fatalf("%s during the exchange: %v", op.name, resp.Error())
			}
		case <-exchanged:
			t.Fatalf("the exchange ended before it was released")
		case <-time.After(30 * time.Second): // detects a hang; the pass needs no waiting
			release()
			t.Fatalf("%s waited for the code exchange: a lock is held across the provider call", op.name)
		}
	}
	release()
	resp := <-exchanged
	page := string(resp.Data[logical.HTTPRawBody].([]byte))
	if resp.Data[logical.HTTPStatusCode] != http.StatusOK {
		t.Fatalf("the exchange did not complete across a suspend and a scopes update: %s", page)
	}
	consented := p.lastIssued(t)
	stored := storedTokenOf(t, s, "ac")
	if stored.RefreshToken != consented.refresh || stored.AccessToken != "" {
		t.Fatalf("stored refresh token is the consented one: %v; access token kept: %v (want only the refresh token)",
			stored.RefreshToken == consented.refresh, stored.AccessToken != "")
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/unsuspend", nil)
	got := accessOK(t, b, s, "ac", nil).Data
	if !strings.Contains(got["scope"].(string), "read") || p.LastRefreshToken() != consented.refresh || p.requests.Load() != 2 {
		t.Fatalf("after the edits: scope %v, refreshed with the consented token %v, %d requests; want scope read from one refresh",
			got["scope"], p.LastRefreshToken() == consented.refresh, p.requests.Load())
	}
}
