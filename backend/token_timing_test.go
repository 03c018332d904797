package backend

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// timingProvider answers every token request 503: a transient failure, after which
// the Broker's degrade decides whether the token it was given is served.
type timingProvider struct{ requests atomic.Int32 }

func (p *timingProvider) RoundTrip(r *http.Request) (*http.Response, error) {
	p.requests.Add(1)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"error":"temporarily_unavailable"}`)), Request: r}, nil
}

// timingOutcome is what a mint request r meets with the token state cached, the
// credential c and the engine settings cfg at now, the provider failing transiently:
//
//	cache        a read is served the cached token, no mint (the access path's hot path)
//	cache+ahead  the same, and the read starts a background refresh (refresh window)
//	stale        a refresh ahead finds nothing to refresh (errAheadStale)
//	held         the Broker serves the token the mint starts from, asking nothing
//	degraded     the Broker asks the provider, and serves that token with a warning
//	refused      the Broker asks the provider, and the caller gets the error
//
// It runs the production rules (servable, inRefreshWindow, mintSource,
// mintRequest.demand) and the real Broker (Token.Fresh, degrade).
func timingOutcome(t *testing.T, r mintRequest, cached *storedToken, c *credential, cfg *engineConfig, now time.Time) string {
	t.Helper()
	if r.reason == mintRead {
		if tok := servable(cached, c, cfg, now, r.minValid); tok != nil {
			if inRefreshWindow(cfg, tok, r.minValid, now) {
				return "cache+ahead"
			}
			return "cache"
		}
	}
	src := mintSource(cached, c, cfg, now, r.minValid)
	if r.reason == mintAhead && (cached != r.ahead || src == nil) {
		return "stale"
	}
	p := &timingProvider{}
	clock := func() time.Time { return now }
	broker := oauth.NewBroker(oauth.NewClient(oauth.ClientOptions{Timeout: time.Second, Now: clock, Transport: p}), clock)
	defer broker.Close()
	oc := oauth.Config{Grant: oauth.GrantClientCredentials, TokenURL: "https://provider.test/token", ClientID: "id", ClientSecret: "secret",
		Timeout: time.Second, DefaultLifetime: cfg.DefaultTokenLifetime}
	res, err := broker.Token(context.Background(), r.name, oc, src, r.demand(src, cfg.ExpiryBuffer), func(context.Context, *oauth.Token) error {
		t.Fatal("nothing is minted: the provider fails")
		return nil
	})
	switch {
	case p.requests.Load() == 0 && err == nil && res.Token == src && res.Warning == "":
		return "held"
	case p.requests.Load() == 0:
		t.Fatalf("%s: no request, answer %+v, %v", r.reason, res, err)
	case err == nil && res.Token != nil && src != nil && res.Token.AccessToken == src.AccessToken && res.Warning != "":
		return "degraded"
	case err != nil:
		return "refused"
	}
	t.Fatalf("%s: unexpected answer %+v", r.reason, res)
	return ""
}

// Every combination the callers of mintToken make (path_access.go's read and its slow
// path, refresh ahead, verify, keep-alive; forced exactly for verify and keep-alive),
// against every token state and demand, with refresh_ahead on and off.
func TestTokenTimingTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const (
		buffer   = time.Minute
		lifetime = time.Hour
	)
	// Demands (minValid): expiry_buffer; a minimum_seconds shorter than the tokens'
	// lifetime; one longer, which shortLivedDemand lowers to expiry_buffer.
	demands := []struct {
		name string
		d    time.Duration
	}{{"short", buffer}, {"long", 30 * time.Minute}, {"beyond-life", 2 * time.Hour}}
	type state struct {
		name    string
		tok     func() *storedToken
		updated time.Time // the credential's UpdatedAt
	}
	tok := func(issued, expiry time.Duration, assumed time.Duration) func() *storedToken {
		return func() *storedToken {
			return &storedToken{Token: oauth.Token{AccessToken: "at", TokenType: "Bearer",
				IssuedAt: now.Add(issued), Expiry: now.Add(expiry), AssumedLifetime: assumed}}
		}
	}
	long := now.Add(-3 * time.Hour)
	states := []state{
		{"absent", func() *storedToken { return nil }, long},
		{"fresh", tok(-10*time.Minute, 50*time.Minute, 0), long},
		{"in-window", tok(-50*time.Minute, 10*time.Minute, 0), long},
		{"past-due", tok(-59*time.Minute-30*time.Second, 30*time.Second, 0), long},
		{"expired", tok(-61*time.Minute, -time.Minute, 0), long},
		// Minted before the credential's last update: its access token is never used.
		{"stale-edit", tok(-10*time.Minute, 50*time.Minute, 0), now.Add(-5 * time.Minute)},
		// Its lifetime rests on a default_token_lifetime no longer in force.
		{"stale-lifetime", tok(-10*time.Minute, 20*time.Minute, 30*time.Minute), long},
	}
	// want[state][reason] is the outcome per demand (short, long, beyond-life) with
	// refresh_ahead on; with it off, cache+ahead is cache.
	all := func(s string) [3]string { return [3]string{s, s, s} }
	want := map[string]map[mintReason][3]string{
		"absent": {mintRead: all("refused"), mintAhead: all("stale"), mintVerify: all("refused"), mintKeepAlive: all("refused")},
		"fresh": {mintRead: all("cache"), mintAhead: all("held"),
			mintVerify: all("degraded"), mintKeepAlive: all("degraded")},
		"in-window": {mintRead: {"cache+ahead", "degraded", "cache+ahead"}, mintAhead: all("degraded"),
			mintVerify: all("degraded"), mintKeepAlive: all("degraded")},
		"past-due": {mintRead: all("degraded"), mintAhead: all("degraded"), mintVerify: all("degraded"), mintKeepAlive: all("degraded")},
		"expired":  {mintRead: all("refused"), mintAhead: all("refused"), mintVerify: all("refused"), mintKeepAlive: all("refused")},
		"stale-edit": {mintRead: all("refused"), mintAhead: all("refused"),
			mintVerify: all("refused"), mintKeepAlive: all("refused")},
		"stale-lifetime": {mintRead: all("degraded"), mintAhead: all("degraded"),
			mintVerify: all("degraded"), mintKeepAlive: all("degraded")},
	}
	for _, ahead := range []bool{true, false} {
		cfg := &engineConfig{ExpiryBuffer: buffer, DefaultTokenLifetime: lifetime, RefreshAhead: ahead, RequestTimeout: time.Second}
		for _, st := range states {
			c := &credential{Name: "crm", UpdatedAt: st.updated}
			for i, dm := range demands {
				cached := st.tok()
				reqs := []mintRequest{
					mintForRead(c.Name, dm.d),
					mintForAhead(c.Name, dm.d, cached),
					// Forced mints take expiry_buffer; the demand column varies it all the
					// same, to show it does not matter.
					{reason: mintVerify, name: c.Name, minValid: dm.d, forced: true},
					{reason: mintKeepAlive, name: c.Name, minValid: dm.d, forced: true},
				}
				for _, r := range reqs {
					exp := want[st.name][r.reason][i]
					if !ahead && exp == "cache+ahead" {
						exp = "cache"
					}
					if got := timingOutcome(t, r, cached, c, cfg, now); got != exp {
						t.Errorf("refresh_ahead=%t %s token, %s demand, %s (forced %t): %s, want %s", ahead, st.name, dm.name, r.reason, r.forced, got, exp)
					}
				}
			}
		}
	}
}

// The constructors are the only way callers build a request: forced exactly for a
// verification and a keep-alive, whose demand is expiry_buffer.
func TestMintRequestConstructors(t *testing.T) {
	cfg := &engineConfig{ExpiryBuffer: time.Minute}
	st := &storedToken{}
	for _, c := range []struct {
		r      mintRequest
		reason mintReason
		forced bool
		min    time.Duration
	}{
		{mintForRead("a", time.Hour), mintRead, false, time.Hour},
		{mintForAhead("a", time.Hour, st), mintAhead, false, time.Hour},
		{mintForVerify("a", cfg), mintVerify, true, time.Minute},
		{mintForKeepAlive("a", cfg), mintKeepAlive, true, time.Minute},
	} {
		if c.r.reason != c.reason || c.r.forced != c.forced || c.r.minValid != c.min || c.r.name != "a" {
			t.Errorf("%s: %+v", c.reason, c.r)
		}
		if (c.r.ahead != nil) != (c.reason == mintAhead) {
			t.Errorf("%s: ahead %v", c.reason, c.r.ahead)
		}
	}
	// A forced mint's demand is beyond any token's life; refresh ahead's is the read's
	// plus the refresh lead.
	tok := &oauth.Token{AccessToken: "x", IssuedAt: time.Unix(0, 0), Expiry: time.Unix(3600, 0)}
	if d := mintForVerify("a", cfg).demand(tok, time.Minute); d != verifyDemand {
		t.Errorf("verify demand %s", d)
	}
	if d := mintForAhead("a", time.Minute, st).demand(tok, time.Minute); d != time.Minute+12*time.Minute+refreshSpread(tok, 3*time.Minute) {
		t.Errorf("ahead demand %s, want 13m and the token's spread", d)
	}
}

// A token whose lifetime the engine assumed is current only while that is still the
// engine's default_token_lifetime; one with the provider's expires_in always is. The
// Broker's Token.Fresh agrees.
func TestLifetimeInForce(t *testing.T) {
	cfg := &engineConfig{DefaultTokenLifetime: time.Hour}
	now := time.Unix(1000, 0)
	for _, c := range []struct {
		assumed time.Duration
		want    bool
	}{{0, true}, {time.Hour, true}, {30 * time.Minute, false}} {
		tok := &oauth.Token{AccessToken: "x", IssuedAt: now, Expiry: now.Add(time.Hour), AssumedLifetime: c.assumed}
		if got := lifetimeInForce(tok, cfg); got != c.want {
			t.Errorf("assumed %s: %t, want %t", c.assumed, got, c.want)
		}
		if fresh := tok.Fresh(now, time.Minute, cfg.DefaultTokenLifetime); fresh != c.want {
			t.Errorf("assumed %s: Token.Fresh %t, want %t", c.assumed, fresh, c.want)
		}
	}
}

// Tokens minted in the same instant open their refresh windows at points spread over
// a quarter of the lead before it (refreshSpread), the same point on every call; a
// token too short-lived for room (the window would open in the first half of its
// serving time) gets none.
func TestRefreshWindowSpread(t *testing.T) {
	t.Parallel()
	issued := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const life, demand = 15 * time.Minute, time.Minute
	tok := func(i int) *oauth.Token {
		return &oauth.Token{AccessToken: fmt.Sprintf("eyJhbGciOi.payload.sig-%08x", i*2654435761), IssuedAt: issued, Expiry: issued.Add(life)}
	}
	lead := refreshLead(tok(0), demand) // 3 minutes: a fifth of 15
	if lead != 3*time.Minute {
		t.Fatalf("lead %v", lead)
	}
	latest := issued.Add(life - demand - lead)
	const n, buckets = 20_000, 9
	var counts [buckets]int
	for i := range n {
		at := refreshAt(tok(i), demand)
		early := latest.Sub(at)
		if early < 0 || early >= lead/4 {
			t.Fatalf("token %d opens %v before the unspread opening, outside [0, %v)", i, early, lead/4)
		}
		counts[early*buckets/(lead/4)]++
		if !refreshAt(tok(i), demand).Equal(at) {
			t.Fatal("the opening moved between two calls")
		}
	}
	// 20,000 tokens over 45 s: about 444 a second rather than 20,000 in one instant.
	for i, c := range counts {
		if c < n/buckets*8/10 || c > n/buckets*12/10 {
			t.Errorf("5-second bucket %d holds %d of %d: %v", i, c, n, counts)
		}
	}
	// The Broker is asked for a token valid past the spread opening: a refresh started
	// there requests one.
	first := tok(1)
	r := mintForAhead("x", demand, nil)
	if d := r.demand(first, demand); first.ValidFor(refreshAt(first, demand), d+time.Nanosecond) {
		t.Errorf("at the opening the token is still valid for the ahead demand %v", d)
	}
	// 20 s tokens with a 1 s buffer: the lead (9.5 s) already reaches the middle.
	short := &oauth.Token{AccessToken: "a", IssuedAt: issued, Expiry: issued.Add(20 * time.Second)}
	if got, want := refreshAt(short, time.Second), issued.Add(20*time.Second-time.Second-9500*time.Millisecond); !got.Equal(want) {
		t.Errorf("short-lived token opens at %v, want %v", got, want)
	}
}
