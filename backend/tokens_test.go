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
		clock.Advance(2 * time.Second)
		accessOK(t, b, s, "cc", nil)
		if p.requests.Load() != 2 {
			t.Fatalf("%d requests after Retry-After, want 2", p.requests.Load())
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
