package oauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// newTestBroker returns a broker on clock whose jitter always draws the top
// of the window, so backoff windows are exact.
func newTestBroker(clock *fakeClock) *Broker {
	b := NewBroker(newTestClient(clock), clock.Now)
	b.jitter = func(n int64) int64 { return n - 1 }
	return b
}

// savedTokens is a persist callback recording what reached "storage".
type savedTokens struct {
	mu    sync.Mutex
	saved []*Token
	err   error
}

func (s *savedTokens) persist(_ context.Context, t *Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.saved = append(s.saved, t)
	return nil
}

func (s *savedTokens) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.saved)
}

func (s *savedTokens) lastSaved() *Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.saved) == 0 {
		return nil
	}
	return s.saved[len(s.saved)-1]
}

// expiredToken is a cached token that expired a minute ago.
func expiredToken(clock *fakeClock) *Token {
	return &Token{AccessToken: "old", TokenType: "Bearer", RefreshToken: "", Expiry: clock.Now().Add(-time.Minute)}
}

func TestBrokerSingleFlight(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	release := make(chan struct{})
	// Hold the one request until every reader has started, so they pile up
	// behind it.
	p.setBefore(func(http.ResponseWriter, *http.Request) bool { <-release; return false })
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	cached := expiredToken(clock)
	var st savedTokens

	const readers = 1000
	var started, done sync.WaitGroup
	started.Add(readers)
	done.Add(readers)
	tokens := make([]string, readers)
	errs := make([]error, readers)
	for i := range readers {
		go func() {
			defer done.Done()
			started.Done()
			res, err := b.Token(context.Background(), "cred", cfg, cached, time.Minute, st.persist)
			errs[i] = err
			if err == nil {
				tokens[i] = res.Token.AccessToken
			}
		}()
	}
	started.Wait()
	close(release)
	done.Wait()

	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests for %d readers, want 1", n, readers)
	}
	if n := st.count(); n != 1 {
		t.Errorf("persist called %d times, want 1", n)
	}
	for i := range readers {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		if tokens[i] == "" || tokens[i] != tokens[0] {
			t.Fatalf("reader %d got %q, reader 0 got %q", i, tokens[i], tokens[0])
		}
	}
	if tokens[0] != st.lastSaved().AccessToken {
		t.Error("readers got a token other than the persisted one")
	}
}

func TestBrokerServesValidCachedWithoutRequest(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := newTestBroker(clock)
	cached := &Token{AccessToken: "cached", Expiry: clock.Now().Add(time.Hour)}
	cfg := Config{Grant: GrantClientCredentials, TokenURL: "http://127.0.0.1:1/unused", ClientID: "x"}
	res, err := b.Token(context.Background(), "cred", cfg, cached, time.Minute, (&savedTokens{}).persist)
	if err != nil || res.Token != cached || res.Minted || res.Warning != "" {
		t.Fatalf("got %+v, %v; want the cached token untouched", res, err)
	}
}

// rotatingGrant is an authorization-code grant at a provider that rotates refresh
// tokens: the Broker, its clock, the grant's Config and the token of the consent,
// expired (the clock is past its 2h lifetime).
func rotatingGrant(t *testing.T) (*provider, *fakeClock, *Broker, Config, *Token) {
	t.Helper()
	p := newProvider(t, providerOptions{rotateRefresh: true})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	cfg.Grant = GrantAuthorizationCode
	verifier := NewVerifier()
	code, _ := p.authorize(t, AuthCodeURL(cfg, "s", verifier))
	first, err := b.client.Exchange(context.Background(), cfg, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Hour) // past the 2h lifetime
	return p, clock, b, cfg, first
}

func TestBrokerPersistsRotatedRefreshTokenBeforeReturning(t *testing.T) {
	t.Parallel()
	p, clock, b, cfg, first := rotatingGrant(t)

	var events []string
	var saved *Token
	persist := func(_ context.Context, tok *Token) error {
		events = append(events, "persist")
		saved = tok
		return nil
	}
	res, err := b.Token(context.Background(), "cred", cfg, first, time.Minute, persist)
	events = append(events, "return")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, ",") != "persist,return" {
		t.Fatalf("events = %v, want persist before return", events)
	}
	if !res.Minted || res.Token.AccessToken != saved.AccessToken {
		t.Fatalf("result %+v, saved %+v", res, saved)
	}
	if saved.RefreshToken == first.RefreshToken || saved.RefreshToken == "" {
		t.Fatalf("persisted refresh token %q, want the rotated one", saved.RefreshToken)
	}

	// A reader still holding the pre-rotation copy is not sent back to the
	// provider with the retired refresh token: the broker knows the newest.
	res, err = b.Token(context.Background(), "cred", cfg, first, time.Minute, persist)
	if err != nil || res.Token.AccessToken != saved.AccessToken || res.Minted {
		t.Fatalf("stale reader got %+v, %v", res, err)
	}
	// Once that token expires too, the refresh uses the rotated refresh token.
	clock.Advance(3 * time.Hour)
	rotated := saved.RefreshToken
	res, err = b.Token(context.Background(), "cred", cfg, first, time.Minute, persist)
	if err != nil {
		t.Fatalf("refresh after rotation: %v", err)
	}
	if got := p.last(t).Form.Get("refresh_token"); got != rotated {
		t.Errorf("refreshed with %q, want the rotated %q", got, rotated)
	}
	if !res.Minted {
		t.Error("want a newly minted token")
	}
}

func TestBrokerPersistError(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	errStorage := errors.New("storage unavailable")
	st := &savedTokens{err: errStorage}

	_, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist)
	if !errors.Is(err, errStorage) {
		t.Fatalf("err = %v, want the persist error", err)
	}

	// The next call retries persisting the same token without a new request.
	st.err = nil
	res, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.requests.Load(); n != 1 {
		t.Errorf("%d provider requests, want 1", n)
	}
	if st.count() != 1 || !res.Minted || res.Token.AccessToken != st.lastSaved().AccessToken {
		t.Errorf("result %+v; saved %d tokens", res, st.count())
	}
}

func TestBrokerTransientBackoffServesCachedWithWarning(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	var failing atomic.Bool
	failing.Store(true)
	p.setBefore(func(w http.ResponseWriter, _ *http.Request) bool {
		if failing.Load() {
			http.Error(w, oauthtest.Marker, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	// Not valid for the minute asked for, but not yet expired either.
	cached := &Token{AccessToken: "cached", TokenType: "Bearer", Expiry: clock.Now().Add(30 * time.Second)}
	var st savedTokens
	call := func() Result {
		t.Helper()
		res, err := b.Token(context.Background(), "cred", cfg, cached, time.Minute, st.persist)
		if err != nil {
			t.Fatalf("err = %v, want the cached token with a warning", err)
		}
		return res
	}

	res := call()
	if res.Token.AccessToken != "cached" || res.Minted || !strings.Contains(res.Warning, "http_503") {
		t.Fatalf("first call: %+v", res)
	}
	assertNoLeak(t, res.Warning)
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d requests after the first call", n)
	}

	// Within the backoff window (1s after the first failure): no request.
	clock.Advance(500 * time.Millisecond)
	res = call()
	if res.Token.AccessToken != "cached" || res.Warning == "" {
		t.Fatalf("second call: %+v", res)
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("a request was made during backoff (%d)", n)
	}

	// After the window the provider is asked again; it has recovered.
	failing.Store(false)
	clock.Advance(time.Second)
	res = call()
	if res.Token.AccessToken == "cached" || !res.Minted || res.Warning != "" {
		t.Fatalf("third call: %+v", res)
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestBrokerTransientWithoutUsableCache(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	p.setBefore(func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Retry-After", "30")
		http.Error(w, oauthtest.Marker, http.StatusTooManyRequests)
		return true
	})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	var st savedTokens

	_, err := b.Token(context.Background(), "cred", cfg, expiredToken(clock), time.Minute, st.persist)
	e := wantError(t, err, Transient, CodeRateLimited)
	if e.RetryAfter != 30*time.Second {
		t.Errorf("retry after = %v", e.RetryAfter)
	}

	// Retry-After (30s) outlasts the first backoff step (1s).
	clock.Advance(10 * time.Second)
	_, err = b.Token(context.Background(), "cred", cfg, expiredToken(clock), time.Minute, st.persist)
	wantError(t, err, Transient, CodeRateLimited)
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d requests inside Retry-After, want 1", n)
	}
	// Retry-After and its spread (half of it, at most 30 s; the test's jitter draws the
	// top of the range) still hold at 44 s.
	clock.Advance(34 * time.Second)
	_, err = b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist)
	wantError(t, err, Transient, CodeRateLimited)
	clock.Advance(time.Second)
	_, _ = b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist)
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d requests after Retry-After, want 2", n)
	}
}

func TestBrokerPermanentErrorAndForget(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	cfg.ClientSecret = "SECRET-client-wrong"
	cached := &Token{AccessToken: "cached", Expiry: clock.Now().Add(30 * time.Second)}
	var st savedTokens

	_, err := b.Token(context.Background(), "cred", cfg, cached, time.Minute, st.persist)
	wantError(t, err, Permanent, "invalid_client")
	// Refusals are not repeated at once: some providers lock clients out.
	_, err = b.Token(context.Background(), "cred", cfg, cached, time.Minute, st.persist)
	wantError(t, err, Permanent, "invalid_client")
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}

	// The operator fixes the secret; the backend calls Forget.
	b.Forget("cred")
	cfg.ClientSecret = oauthtest.ClientSecret
	res, err := b.Token(context.Background(), "cred", cfg, cached, time.Minute, st.persist)
	if err != nil || !res.Minted {
		t.Fatalf("after Forget: %+v, %v", res, err)
	}
}

func TestBrokerWaiterLeavingDoesNotCancelRequest(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	entered, release := make(chan struct{}), make(chan struct{})
	p.setBefore(func(http.ResponseWriter, *http.Request) bool {
		close(entered)
		<-release
		return false
	})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	saved := make(chan *Token, 1)
	persist := func(_ context.Context, tok *Token) error { saved <- tok; return nil }

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.Token(ctx, "cred", cfg, nil, time.Minute, persist)
		errc <- err
	}()
	<-entered
	cancel() // the Vault request that started the mint ends
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("leaving waiter got %v, want context.Canceled", err)
	}
	close(release)
	tok := <-saved // the request finished and was persisted regardless

	res, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, persist)
	if err != nil || res.Token.AccessToken != tok.AccessToken {
		t.Fatalf("next reader got %+v, %v; want the token minted for the one who left", res, err)
	}
	if n := p.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestBrokerBackoffSchedule(t *testing.T) {
	t.Parallel()
	b := newTestBroker(newFakeClock())
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := b.backoff(i+1, 0); got != w {
			t.Errorf("failure %d: %v, want %v", i+1, got, w)
		}
	}
	for _, n := range []int{10, 19, 20, 64, 1 << 20} {
		if got := b.backoff(n, 0); got != backoffCap {
			t.Errorf("failure %d: %v, want the cap", n, got)
		}
	}
	// Retry-After, and a spread of up to half of it (at most retryAfterSpread) on top.
	if got := b.backoff(1, 10*time.Minute); got != 10*time.Minute+retryAfterSpread-1 {
		t.Errorf("retry-after ignored: %v", got)
	}
	if got := b.backoff(1, 4*time.Second); got != 6*time.Second-1 {
		t.Errorf("retry-after 4s: %v, want 4s and a spread of 2s", got)
	}
	b.jitter = func(int64) int64 { return 0 } // the lowest draw still waits
	if got := b.backoff(1, 10*time.Minute); got != 10*time.Minute {
		t.Errorf("retry-after with the lowest spread: %v", got)
	}
	if got := b.backoff(3, 0); got <= 0 {
		t.Errorf("zero backoff window")
	}
}

func BenchmarkBrokerCachedToken(b *testing.B) {
	br := NewBroker(NewClient(ClientOptions{}), nil) // the real clock, as in production
	cfg := Config{Grant: GrantClientCredentials, TokenURL: "https://idp.example/token", ClientID: "x"}
	cached := &Token{AccessToken: "cached", Expiry: time.Now().Add(time.Hour)}
	persist := func(context.Context, *Token) error { return nil }
	ctx := context.Background()

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := br.Token(ctx, "cred", cfg, cached, time.Minute, persist); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(0, "upstream-requests/op")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := br.Token(ctx, "cred", cfg, cached, time.Minute, persist); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkBrokerMint measures a full mint against the local test
// server, for scale: this is what the cache saves.
func BenchmarkBrokerMint(b *testing.B) {
	p := newProvider(b, providerOptions{})
	clock := newFakeClock()
	br := NewBroker(newTestClient(clock), clock.Now)
	cfg := p.config(AuthStyleHeader)
	persist := func(context.Context, *Token) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		br.Forget("cred")              // defeat the broker's memory of the last token
		clock.Advance(requestInterval) // and stay within its request rate
		if _, err := br.Token(context.Background(), "cred", cfg, nil, time.Minute, persist); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(p.requests.Load())/float64(b.N), "upstream-requests/op")
}

// TestBrokerForgetsADiscardedToken: a persist callback refusing a token with
// ErrDiscarded (its settings changed meanwhile) ends it: the callers get the error,
// and the next call asks the provider again instead of storing the refused token.
func TestBrokerForgetsADiscardedToken(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	refuse := func(context.Context, *Token) error { return ErrDiscarded }
	if _, err := b.Token(context.Background(), "k", cfg, nil, time.Minute, refuse); !errors.Is(err, ErrDiscarded) {
		t.Fatalf("err = %v, want ErrDiscarded", err)
	}
	var st savedTokens
	res, err := b.Token(context.Background(), "k", cfg, nil, time.Minute, st.persist)
	if err != nil || p.requests.Load() != 2 || st.count() != 1 || st.lastSaved().AccessToken != res.Token.AccessToken {
		t.Fatalf("after a discard: %v, %d requests, %d saved; want a new token from a second request", err, p.requests.Load(), st.count())
	}
}

// TestBrokerTimeoutPerRequest: Config.Timeout bounds the request, so one long-lived
// Broker follows a changed request_timeout.
func TestBrokerTimeoutPerRequest(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	p.setBefore(func(_ http.ResponseWriter, r *http.Request) bool { <-r.Context().Done(); return true })
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	cfg.Timeout = 50 * time.Millisecond // the client's own is 5 s
	_, err := b.Token(context.Background(), "k", cfg, nil, time.Minute, (&savedTokens{}).persist)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTimeout {
		t.Fatalf("err = %v, want a timeout after Config.Timeout", err)
	}
}

// TestAssumedLifetimeRecorded: a token whose answer has no expires_in records the
// lifetime assumed for it, and is not Fresh under another default.
func TestAssumedLifetimeRecorded(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	p.setBefore(func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, http.StatusOK, `{"access_token":"a","token_type":"Bearer"}`)
		return true
	})
	clock := newFakeClock()
	cfg := p.config(AuthStyleHeader)
	cfg.DefaultLifetime = 10 * time.Minute
	tok, err := newTestClient(clock).Mint(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AssumedLifetime != 10*time.Minute || !tok.Expiry.Equal(clock.Now().Add(10*time.Minute)) {
		t.Fatalf("assumed %v expiry %v, want 10m", tok.AssumedLifetime, tok.Expiry)
	}
	if !tok.Fresh(clock.Now(), time.Minute, 10*time.Minute) || tok.Fresh(clock.Now(), time.Minute, time.Hour) {
		t.Fatal("Fresh does not follow the default lifetime in force")
	}
}

// Close cancels a request held at the provider (its token never persisted), and
// refuses every later request without asking the provider.
func TestBrokerClose(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	arrived, gate := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(gate) })
	p.setBefore(func(http.ResponseWriter, *http.Request) bool { arrived <- struct{}{}; <-gate; return false })
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	var st savedTokens
	done := make(chan error, 1)
	go func() {
		_, err := b.Token(context.Background(), "cred", cfg, expiredToken(clock), time.Minute, st.persist)
		done <- err
	}()
	<-arrived
	b.Close() // the provider still holds the request: Close cancelled it
	if err := <-done; err == nil {
		t.Fatal("the request cancelled by Close succeeded")
	}
	if st.count() != 0 {
		t.Fatal("a token was persisted after Close")
	}
	if _, err := b.Token(context.Background(), "other", cfg, nil, time.Minute, st.persist); !errors.Is(err, ErrClosed) {
		t.Fatalf("request after Close: %v, want ErrClosed", err)
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests, want only the one cancelled", n)
	}
}

// RetryAt is the end of a key's backoff after a failure, zero otherwise.
func TestBrokerRetryAt(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	var st savedTokens
	if !b.RetryAt("cred").IsZero() {
		t.Fatal("RetryAt of an unknown key is not zero")
	}
	cfg.ClientSecret = "SECRET-client-wrong"
	if _, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist); err == nil {
		t.Fatal("a refused request succeeded")
	}
	if got, want := b.RetryAt("cred"), clock.Now().Add(backoffBase); !got.Equal(want) {
		t.Fatalf("RetryAt after the first failure = %s, want %s", got, want)
	}
}

// A flight that panics (here in the persist callback, after the provider answered)
// fails its callers with a PanicError that carries no value, instead of killing the
// process on singleflight's goroutine; the token the provider issued is kept
// unpersisted and stored first by the next call, without a new request.
func TestBrokerFlightPanicIsAnError(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	const secret = "PANIC-VALUE-MARKER"
	_, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, func(context.Context, *Token) error {
		panic(secret)
	})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Type != "string" || len(pe.Stack) == 0 {
		t.Fatalf("err = %v, want a PanicError with the type and the stack", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(string(pe.Stack), secret) {
		t.Fatal("the panic's value is in the error")
	}
	var st savedTokens
	res, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.requests.Load(); n != 1 {
		t.Errorf("%d provider requests, want 1: the token minted before the panic is served", n)
	}
	if st.count() != 1 || res.Token.AccessToken != st.lastSaved().AccessToken {
		t.Errorf("the token minted before the panic was not stored first: saved %d", st.count())
	}
}
