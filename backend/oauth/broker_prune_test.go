package oauth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestBrokerPruneDropsIdleStates: Prune drops the state of client-credentials keys
// whose token was stored StateIdle ago, and keeps every state that still protects
// something: a younger token, an unstored one, a backoff, a refresh token.
func TestBrokerPruneDropsIdleStates(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	ctx := context.Background()
	var st savedTokens
	const n = 50
	for i := range n {
		if _, err := b.Token(ctx, fmt.Sprint("cc-", i), cfg, nil, time.Minute, st.persist); err != nil {
			t.Fatal(err)
		}
	}
	// An unstored token: its persist fails.
	failing := &savedTokens{err: errors.New("storage unavailable")}
	if _, err := b.Token(ctx, "unstored", cfg, nil, time.Minute, failing.persist); err == nil {
		t.Fatal("want the persist error")
	}
	if got := b.States(); got != n+1 {
		t.Fatalf("%d states, want %d", got, n+1)
	}
	// Young tokens are kept.
	clock.Advance(StateIdle - time.Second)
	if got := b.Prune(); got != 0 {
		t.Fatalf("Prune dropped %d states minted under StateIdle ago, want 0", got)
	}
	clock.Advance(2 * time.Second)
	// A key in backoff: its provider has just refused.
	bad := cfg
	bad.ClientSecret = "wrong"
	if _, err := b.Token(ctx, "refused", bad, nil, time.Minute, st.persist); err == nil {
		t.Fatal("want the provider's refusal")
	}
	if got := b.Prune(); got != n {
		t.Fatalf("Prune dropped %d, want the %d idle stored tokens", got, n)
	}
	if got := b.States(); got != 2 {
		t.Fatalf("%d states left, want the unstored token and the backoff", got)
	}
	// The backoff holds after the prune: no request is sent for the refused key.
	before := p.requests.Load()
	if _, err := b.Token(ctx, "refused", bad, nil, time.Minute, st.persist); err == nil {
		t.Fatal("want the backoff's error")
	}
	if got := p.requests.Load(); got != before {
		t.Fatalf("%d provider requests during the backoff, want 0", got-before)
	}
	// The unstored token is stored by the next call, without a provider request.
	failing.err = nil
	if _, err := b.Token(ctx, "unstored", cfg, nil, time.Minute, failing.persist); err != nil {
		t.Fatal(err)
	}
	if got := p.requests.Load(); got != before {
		t.Fatalf("%d provider requests storing the kept token, want 0", got-before)
	}
	// A pruned key that is read with its stored copy costs no request while it is fresh.
	saved := st.lastSaved()
	if res, err := b.Token(ctx, fmt.Sprint("cc-", n-1), cfg, saved, time.Minute, st.persist); err != nil || res.Minted {
		t.Fatalf("pruned key with its stored copy: %+v, %v", res, err)
	}
}

// TestBrokerPruneKeepsRefreshTokens: a state whose token carries a refresh token is
// never pruned, however old: a reader with the copy from before a rotation must still
// be sent to the rotated refresh token, not back to the provider with the retired one.
func TestBrokerPruneKeepsRefreshTokens(t *testing.T) {
	t.Parallel()
	p, clock, b, cfg, first := rotatingGrant(t)
	var st savedTokens
	if _, err := b.Token(context.Background(), "cred", cfg, first, time.Minute, st.persist); err != nil {
		t.Fatal(err)
	}
	rotated := st.lastSaved().RefreshToken
	clock.Advance(3 * time.Hour) // the rotated token is idle (and expired) too
	if got := b.Prune(); got != 0 {
		t.Fatalf("Prune dropped %d states holding a refresh token, want 0", got)
	}
	// The reader holding the first copy refreshes with the rotated refresh token.
	if _, err := b.Token(context.Background(), "cred", cfg, first, time.Minute, st.persist); err != nil {
		t.Fatal(err)
	}
	if got := p.last(t).Form.Get("refresh_token"); got != rotated {
		t.Fatalf("refreshed with %q, want the rotated %q", got, rotated)
	}
}
