package oauth

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestBrokerRequestBucket: on the injected clock, one key makes RequestBurst provider
// requests at once and then one per refill interval; a request the bucket holds back
// reaches no provider, serves a still-valid token with a warning (or fails with
// CodeThrottled and the wait), is not a failure (no backoff), and survives Forget —
// the reset a write of new secrets makes. Another key has a bucket of its own.
func TestBrokerRequestBucket(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	var st savedTokens
	ctx := context.Background()
	// An unbounded demand: every call needs a request, as a verification does.
	const always = time.Duration(1 << 62)

	for i := range RequestBurst {
		if _, err := b.Token(ctx, "k", cfg, nil, always, st.persist); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b.Forget("k") // a write: backoff and last token gone, the bucket not
	}
	if got := p.requests.Load(); got != RequestBurst {
		t.Fatalf("%d provider requests for a burst of %d", got, RequestBurst)
	}
	_, err := b.Token(ctx, "k", cfg, nil, always, st.persist)
	e := wantError(t, err, Transient, CodeThrottled)
	if e.RetryAfter != requestInterval {
		t.Errorf("RetryAfter %s, want %s", e.RetryAfter, requestInterval)
	}
	if at := b.RetryAt("k"); !at.Equal(clock.Now().Add(requestInterval)) {
		t.Errorf("RetryAt %s, want the refill at %s", at, clock.Now().Add(requestInterval))
	}
	// A still-valid token is served instead, with the reason.
	valid := &Token{AccessToken: "still-good", Expiry: clock.Now().Add(time.Minute), IssuedAt: clock.Now()}
	res, err := b.Token(ctx, "k", cfg, valid, always, st.persist)
	if err != nil || res.Token.AccessToken != "still-good" || res.Failure == nil || res.Failure.Code != CodeThrottled || res.Warning == "" {
		t.Fatalf("throttled with a valid token: %+v, %v", res, err)
	}
	if got := p.requests.Load(); got != RequestBurst {
		t.Fatalf("a held-back request reached the provider: %d requests", got)
	}
	// A code exchange draws on the same bucket.
	codeCfg := cfg
	codeCfg.Grant = GrantAuthorizationCode
	_, err = b.Exchange(ctx, "k", codeCfg, "a-code", "")
	wantError(t, err, Transient, CodeThrottled)
	if got := p.requests.Load(); got != RequestBurst {
		t.Fatalf("a held-back request reached the provider: %d requests", got)
	}
	// Another key is not held back.
	if _, err := b.Token(ctx, "other", cfg, nil, always, st.persist); err != nil {
		t.Fatalf("another key: %v", err)
	}
	// Sustained: one request per interval, whatever the callers do meanwhile.
	sent := p.requests.Load()
	for i := range 3 * RequestsPerMinute {
		b.Forget("k")
		_, _ = b.Token(ctx, "k", cfg, nil, always, st.persist)
		if i%2 == 1 {
			clock.Advance(requestInterval / 2)
		}
	}
	// 60 calls, two every half interval: the last at 14.5 intervals on, so one
	// request at each of the 14 refills.
	if got := p.requests.Load() - sent; got != 14 {
		t.Fatalf("%d requests in 14.5 refill intervals, want 14", got)
	}
}

// TestRequestLimiterForgetsFullBuckets: a key whose bucket has refilled holds no
// memory once the map is swept, so memory follows the keys requesting lately.
func TestRequestLimiterForgetsFullBuckets(t *testing.T) {
	t.Parallel()
	l := newRequestLimiter(RequestBurst, requestInterval)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range minPrune - 1 {
		if ok, _ := l.take(fmt.Sprintf("k%d", i), now); !ok {
			t.Fatal("a first request was held back")
		}
	}
	if l.size() != minPrune-1 {
		t.Fatalf("size %d", l.size())
	}
	// One interval on, every bucket is full again: the next take sweeps them out.
	now = now.Add(requestInterval)
	l.take("new", now)
	if got := l.size(); got != 1 {
		t.Fatalf("%d keys kept after the sweep, want 1", got)
	}
	if !l.next("k1", now).IsZero() {
		t.Fatal("a swept key is held back")
	}
}
