package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// exchangeProvider is a token endpoint for the exchange tests: client_credentials
// issues subject tokens, token-exchange checks the subject token is one it issued and
// the audiences are among its own, then issues an exchanged token. gate, while set,
// holds every exchange until it is closed.
type exchangeProvider struct {
	srv       *httptest.Server
	mints     atomic.Int64
	exchanges atomic.Int64
	ttl       time.Duration // of exchanged tokens
	refuse    atomic.Value  // string: an error code every exchange is refused with
	audiences []string      // the provider's known audiences

	mu      sync.Mutex
	issued  map[string]bool
	gate    chan struct{}
	arrived chan struct{}
	last    url.Values // the last exchange's form
}

func newExchangeProvider(t *testing.T, ttl time.Duration, audiences ...string) *exchangeProvider {
	p := &exchangeProvider{ttl: ttl, audiences: audiences, issued: map[string]bool{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *exchangeProvider) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	answer := func(status int, v map[string]any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		tok := fmt.Sprintf("subject-%d", p.mints.Add(1))
		p.mu.Lock()
		p.issued[tok] = true
		p.mu.Unlock()
		answer(http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	case oauth.GrantTokenExchange:
		n := p.exchanges.Add(1)
		p.mu.Lock()
		gate, arrived := p.gate, p.arrived
		known := p.issued[r.PostForm.Get("subject_token")]
		p.last = r.PostForm
		p.mu.Unlock()
		if arrived != nil {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		if gate != nil {
			<-gate
		}
		if code, _ := p.refuse.Load().(string); code != "" {
			answer(http.StatusBadRequest, map[string]any{"error": code})
			return
		}
		if !known || r.PostForm.Get("subject_token_type") != oauth.TokenTypeAccessToken {
			answer(http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "bad subject"})
			return
		}
		for _, a := range r.PostForm["audience"] {
			if !slices.Contains(p.audiences, a) {
				answer(http.StatusBadRequest, map[string]any{"error": "invalid_target", "error_description": "unknown " + a})
				return
			}
		}
		answer(http.StatusOK, map[string]any{"access_token": fmt.Sprintf("exchanged-%d", n), "token_type": "Bearer",
			"issued_token_type": oauth.TokenTypeAccessToken, "expires_in": int(p.ttl / time.Second), "scope": r.PostForm.Get("scope")})
	default:
		answer(http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"})
	}
}

// exchangeBackend is a backend with an OAuth client-credentials credential "cc"
// pointed at p, allowed to exchange for allowed.
func exchangeBackend(t *testing.T, p *exchangeProvider, allowed string) (*integrationsBackend, logical.Storage, *testClock) {
	t.Helper()
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", map[string]any{
		"type": "oauth2_client_credentials", "token_url": p.srv.URL, "client_id": "cid", "client_secret": "csecret",
		"exchange_audiences": allowed,
	})
	return b, s, clock
}

func exchangeRead(b *integrationsBackend, s logical.Storage, data map[string]any) (*logical.Response, error) {
	return request(b, s, logical.ReadOperation, "exchange/cc", data)
}

// wantStatus asserts a coded error of status whose message holds each of want.
func wantExchangeStatus(t *testing.T, resp *logical.Response, err error, status int, want ...string) {
	t.Helper()
	code, msg := codeOf(resp, err)
	if code != status {
		t.Fatalf("status %d (%s), want %d", code, msg, status)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("error %q does not say %q", msg, w)
		}
	}
}

// codeOf is the HTTP status and message of an answer (200 and "" for a success).
func codeOf(resp *logical.Response, err error) (int, string) {
	if err != nil {
		if ce, ok := err.(logical.HTTPCodedError); ok {
			return ce.Code(), ce.Error()
		}
		return 500, err.Error()
	}
	if resp != nil && resp.IsError() {
		return http.StatusBadRequest, resp.Error().Error()
	}
	return http.StatusOK, ""
}

// TestExchangeRefusals: exchange off, values outside the allow-list, parameters that
// break their rules, a static credential, and the provider's refusal of the target
// (a 400 naming the parameter; the credential stays active and access/ still works).
func TestExchangeRefusals(t *testing.T) {
	p := newExchangeProvider(t, time.Hour, "api-a", "https://api.example/")
	b, s, _ := exchangeBackend(t, p, "api-a,api-z,https://api.example/")

	cases := []struct {
		data   map[string]any
		status int
		want   []string
	}{
		{map[string]any{"audience": "api-b"}, 400, []string{"audience", "not in the exchange_audiences"}},
		{map[string]any{"resource": "https://other.example/"}, 400, []string{"resource", "not in the exchange_audiences"}},
		{map[string]any{"resource": "api-a"}, 400, []string{"resource", "absolute URI"}},
		{map[string]any{"audience": "a b"}, 400, []string{"audience", "printable"}},
		{map[string]any{"audience": strings.Repeat("a,", 17) + "a"}, 400, []string{"audience", "at most 16"}},
		{map[string]any{"audience": "api-a", "scope": "a\"b"}, 400, []string{"scope"}},
		{map[string]any{"audience": "api-a", "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, 400, []string{"requested_token_type"}},
		{map[string]any{"audience": "api-a", "minimum_seconds": -1}, 400, []string{"minimum_seconds"}},
		// Allowed by the credential, unknown to the provider: its invalid_target.
		{map[string]any{"audience": "api-z"}, 400, []string{"audience", "invalid_target"}},
	}
	for _, tc := range cases {
		resp, err := exchangeRead(b, s, tc.data)
		wantExchangeStatus(t, resp, err, tc.status, tc.want...)
	}
	if n := p.exchanges.Load(); n != 1 {
		t.Fatalf("%d exchange requests, want 1 (only the allowed, well-formed one reaches the provider)", n)
	}
	// The same refused request again is backed off: not asked again at once.
	resp, err := exchangeRead(b, s, map[string]any{"audience": "api-z"})
	wantExchangeStatus(t, resp, err, 400, "invalid_target")
	if n := p.exchanges.Load(); n != 1 {
		t.Fatalf("%d exchange requests after a repeated refused one, want 1", n)
	}
	view := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil)
	if view.Data["status"] != "active" {
		t.Fatalf("a refused exchange changed the credential: status %v", view.Data["status"])
	}
	accessOK(t, b, s, "cc", nil)

	// Another refusal of the exchange (the client may not exchange): 403, and still not
	// the credential's fault.
	p.refuse.Store("unauthorized_client")
	resp, err = exchangeRead(b, s, map[string]any{"audience": "api-a"})
	wantExchangeStatus(t, resp, err, 403, "refused to exchange", "unauthorized_client")
	if view := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil); view.Data["status"] != "active" {
		t.Fatalf("a refused exchange changed the credential: status %v", view.Data["status"])
	}
	p.refuse.Store("")

	// Exchange off: an empty allow-list.
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"exchange_audiences": []string{}})
	resp, err = exchangeRead(b, s, map[string]any{"audience": "api-a"})
	wantExchangeStatus(t, resp, err, 403, "exchange is off", "exchange_audiences")

	// A static credential has no token to exchange.
	mustOK(t, b, s, logical.CreateOperation, "credentials/static", map[string]any{"type": "bearer", "token": "t0k3n"})
	resp, err = request(b, s, logical.ReadOperation, "exchange/static", nil)
	wantExchangeStatus(t, resp, err, 400, "OAuth")
	resp, err = request(b, s, logical.ReadOperation, "exchange/missing", nil)
	wantExchangeStatus(t, resp, err, 404)
}

// TestExchangeCacheAndSingleFlight: 100 concurrent readers of one exchange make one
// provider request; the answer is cached per request (as access/ answers are), a
// credential keeps at most 64 requests, an update drops them, and every read counts
// as usage.
func TestExchangeCacheAndSingleFlight(t *testing.T) {
	p := newExchangeProvider(t, time.Hour, "api-a", "api-b")
	var scopes []string
	for i := range 70 {
		scopes = append(scopes, fmt.Sprintf("s%02d", i))
	}
	b, s, clock := exchangeBackend(t, p, "api-a,api-b")

	gate, arrived := make(chan struct{}), make(chan struct{}, 1)
	p.mu.Lock()
	p.gate, p.arrived = gate, arrived
	p.mu.Unlock()
	const readers = 100
	var wg sync.WaitGroup
	tokens := make([]string, readers)
	errs := make([]error, readers)
	var started sync.WaitGroup
	started.Add(readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			resp, err := exchangeRead(b, s, map[string]any{"audience": "api-a", "scope": "read write"})
			if err == nil && resp.IsError() {
				err = resp.Error()
			}
			if err == nil {
				tokens[i] = resp.Data["access_token"].(string)
			}
			errs[i] = err
		}()
	}
	started.Wait()
	<-arrived // the one exchange is at the provider, every reader started
	close(gate)
	wg.Wait()
	for i := range readers {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("reader %d: %v %q (first %q)", i, errs[i], tokens[i], tokens[0])
		}
	}
	if n := p.exchanges.Load(); n != 1 {
		t.Fatalf("%d exchange requests for %d concurrent readers, want 1", n, readers)
	}
	if n := p.mints.Load(); n != 1 {
		t.Fatalf("%d subject token requests, want 1", n)
	}
	p.mu.Lock()
	p.gate = nil
	last := p.last
	p.mu.Unlock()
	if last.Get("scope") != "read write" || last.Get("subject_token") != "subject-1" || !slices.Equal(last["audience"], []string{"api-a"}) {
		t.Fatalf("the exchange sent %v", last)
	}

	// Cached per request: the same request in another order or form is the same entry.
	resp := mustOK(t, b, s, logical.UpdateOperation, "exchange/cc", map[string]any{"audience": []string{"api-a", "api-a"}, "scope": "write read"})
	if resp.Data["access_token"] != tokens[0] || p.exchanges.Load() != 1 {
		t.Fatalf("a cached exchange was asked again (%d requests)", p.exchanges.Load())
	}
	for _, k := range []string{"issued_token_type", "token_type", "expires_at", "scope", "ttl", "rotation_period", "last_vault_rotation"} {
		if _, ok := resp.Data[k]; !ok {
			t.Errorf("the answer has no %s: %v", k, resp.Data)
		}
	}
	if resp.Data["issued_token_type"] != oauth.TokenTypeAccessToken || resp.Data["rotation_period"] != int64(3600) {
		t.Fatalf("answer %v", resp.Data)
	}
	// Another request is another exchange.
	other := mustOK(t, b, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-b"})
	if other.Data["access_token"] == tokens[0] || p.exchanges.Load() != 2 {
		t.Fatalf("another audience was served the cached token (%d requests)", p.exchanges.Load())
	}

	// At most 64 requests per credential: the least recently used goes. (The clock
	// moves 3 s per exchange: the credential's exchange bucket allows 20 a minute.)
	for _, sc := range scopes {
		clock.Advance(3 * time.Second)
		mustOK(t, b, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-b", "scope": sc})
	}
	if n := b.exchanges.size("cc"); n != exchangesPerCredential {
		t.Fatalf("%d requests cached, want %d", n, exchangesPerCredential)
	}
	before := p.exchanges.Load()
	clock.Advance(3 * time.Second)
	mustOK(t, b, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-b", "scope": scopes[69]})
	if p.exchanges.Load() != before {
		t.Fatal("a recent request was dropped")
	}
	mustOK(t, b, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-a", "scope": "read write"})
	if p.exchanges.Load() != before+1 {
		t.Fatal("the least recently used request was kept beyond the bound")
	}

	// An update drops every exchange.
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"description": "changed"})
	if n := b.exchanges.size("cc"); n != 0 {
		t.Fatalf("%d exchanges kept after an update", n)
	}
	before = p.exchanges.Load()
	mustOK(t, b, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-b"})
	if p.exchanges.Load() != before+1 {
		t.Fatal("an exchange from before the update was served")
	}
	// Memory only: a restart (a new backend over the same storage) exchanges again, from
	// the stored subject token (no mint).
	mints, before := p.mints.Load(), p.exchanges.Load()
	b2, _ := newBackendOver(t, s, nil)
	if r2 := mustOK(t, b2, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-b"}); r2.Data["access_token"] == "" ||
		p.exchanges.Load() != before+1 || p.mints.Load() != mints {
		t.Fatalf("after a restart: %d exchanges, %d mints (want 1 and 0)", p.exchanges.Load()-before, p.mints.Load()-mints)
	}
	// A delete drops them too.
	mustOK(t, b, s, logical.DeleteOperation, "credentials/cc", nil)
	if n := b.exchanges.size("cc"); n != 0 {
		t.Fatalf("%d exchanges kept after a delete", n)
	}
}

// TestExchangeTimingAsAccess: ttl and rotation_period as access/ gives them, refresh
// ahead in the window (the reader is served the current token without waiting), and a
// token past its due point exchanged again. Every read counts as usage.
func TestExchangeTimingAsAccess(t *testing.T) {
	p := newExchangeProvider(t, time.Hour, "api-a")
	b, s, clock := exchangeBackend(t, p, "api-a")
	read := func() *logical.Response {
		return mustOK(t, b, s, logical.ReadOperation, "exchange/cc", map[string]any{"audience": "api-a"})
	}
	first := read()
	// An hour-long token, the default 60 s buffer: the window opens 13 minutes before
	// expiry (token_timing.go), 47 minutes after issue, earlier by the token's own
	// spread (less than 3 minutes).
	if ttl := first.Data["ttl"].(int64); ttl > 47*60 || ttl <= 44*60 {
		t.Fatalf("ttl %d, want (%d, %d]", ttl, 44*60, 47*60)
	}
	clock.Advance(50 * time.Minute) // inside the refresh window
	inWindow := read()
	if inWindow.Data["access_token"] != first.Data["access_token"] {
		t.Fatal("a read in the refresh window waited for a new token")
	}
	b.ahead.Wait()
	if n := p.exchanges.Load(); n != 2 {
		t.Fatalf("%d exchanges, want 2 (refresh ahead made one)", n)
	}
	next := read()
	if next.Data["access_token"] == first.Data["access_token"] || p.exchanges.Load() != 2 {
		t.Fatalf("after refresh ahead: token %v, %d exchanges", next.Data["access_token"], p.exchanges.Load())
	}
	// Past the due point with refresh ahead off: the reader waits for a new one.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"refresh_ahead": false})
	clock.Advance(time.Hour)
	last := read()
	if last.Data["access_token"] == next.Data["access_token"] || p.exchanges.Load() != 3 {
		t.Fatalf("an expired exchanged token was served (%d exchanges)", p.exchanges.Load())
	}
	view := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil)
	if n, _ := view.Data["access_count"].(int64); n < 4 {
		t.Fatalf("access_count %v after 4 exchange reads", view.Data["access_count"])
	}
	_ = context.Background
}
