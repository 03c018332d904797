package oauth

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gateClock of the tests: time moves only by Advance, which fires the timers due.
type steppedClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*steppedTimer
}

type steppedTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newSteppedClock() *steppedClock {
	return &steppedClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppedClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &steppedTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves the clock by d in steps, firing each timer at its time.
func (c *steppedClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var due *steppedTimer
		for i, t := range c.timers {
			if t.stopped {
				continue
			}
			if !t.at.After(end) {
				due = t
				c.timers = append(c.timers[:i:i], c.timers[i+1:]...)
			}
			break
		}
		if due == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		if due.at.After(c.now) {
			c.now = due.at
		}
		c.mu.Unlock()
		due.f()
	}
}

const testHost = "https://idp.example:443"

func newTestGate(c *steppedClock) *hostGate {
	return newHostGate(gateClock{now: c.Now, afterFunc: c.AfterFunc})
}

// grant is one acquire run in the background: got receives its release (or error).
type grant struct {
	release func(int, string)
	err     error
}

func acquireAsync(ctx context.Context, g *hostGate, l HostLimits, p Priority) (<-chan grant, *urgency) {
	u := newUrgency(p)
	ch := make(chan grant, 1)
	go func() {
		r, err := g.acquire(ctx, testHost, l, u)
		ch <- grant{r, err}
	}()
	return ch, u
}

// waitQueued waits until the host's queues hold fg and bg requests (testHost's, or
// the only host's when the gate knows one other).
func waitQueued(t *testing.T, g *hostGate, fg, bg int) {
	t.Helper()
	for i := 0; i < 1_000_000; i++ {
		stats := g.stats()
		for _, s := range stats {
			if (s.Host == testHost || len(stats) == 1) && s.Foreground == fg && s.Background == bg {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("the queues never held %d foreground and %d background requests: %+v", fg, bg, g.stats())
}

func mustGrant(t *testing.T, ch <-chan grant) func(int, string) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("acquire: %v", r.err)
		}
		return r.release
	case <-time.After(10 * time.Second):
		t.Fatal("no slot was granted")
	}
	return nil
}

func notGranted(t *testing.T, ch <-chan grant) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("granted too early (err %v)", r.err)
	default:
	}
}

func TestHostOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://Login.Example.com/tenant/oauth2/token": "https://login.example.com:443",
		"https://login.example.com:443/other":           "https://login.example.com:443",
		"http://127.0.0.1:8080/token":                   "http://127.0.0.1:8080",
		"http://idp/token":                              "http://idp:80",
		"https://[::1]:9000/t":                          "https://::1:9000",
		"::not a url":                                   "",
	} {
		if got := HostOf(in); got != want {
			t.Errorf("HostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// At most Concurrency requests run at once; the next starts when one ends.
func TestHostGateConcurrency(t *testing.T) {
	t.Parallel()
	c := newSteppedClock()
	g := newTestGate(c)
	l := HostLimits{Concurrency: 2, Rate: 1e6}
	ctx := context.Background()
	r1 := mustGrant(t, func() <-chan grant { ch, _ := acquireAsync(ctx, g, l, Foreground); return ch }())
	c.Advance(time.Millisecond) // past the pace
	r2 := mustGrant(t, func() <-chan grant { ch, _ := acquireAsync(ctx, g, l, Foreground); return ch }())
	c.Advance(time.Millisecond)
	third, _ := acquireAsync(ctx, g, l, Foreground)
	waitQueued(t, g, 1, 0)
	c.Advance(time.Second)
	notGranted(t, third)
	r1(http.StatusOK, "")
	r3 := mustGrant(t, third)
	if s := g.stats()[0]; s.InFlight != 2 {
		t.Errorf("in flight = %d, want 2", s.InFlight)
	}
	r2(http.StatusOK, "")
	r3(http.StatusOK, "")
	r3(http.StatusOK, "") // a second release changes nothing
	if s := g.stats()[0]; s.InFlight != 0 {
		t.Errorf("in flight = %d after every release, want 0", s.InFlight)
	}
}

// Requests start at most Rate a second, evenly paced, whoever asks.
func TestHostGatePace(t *testing.T) {
	t.Parallel()
	c := newSteppedClock()
	g := newTestGate(c)
	l := HostLimits{Concurrency: 100, Rate: 10} // one every 100 ms
	ctx := context.Background()
	start := c.Now()
	var chans []<-chan grant
	for i := 0; i < 5; i++ {
		ch, _ := acquireAsync(ctx, g, l, Background)
		chans = append(chans, ch)
		if i == 0 {
			mustGrant(t, ch)(http.StatusOK, "")
		} else {
			waitQueued(t, g, 0, i) // queued in order
		}
	}
	for i := 1; i < 5; i++ {
		c.Advance(99 * time.Millisecond)
		notGranted(t, chans[i])
		c.Advance(time.Millisecond)
		mustGrant(t, chans[i])(http.StatusOK, "")
		if got := c.Now().Sub(start); got != time.Duration(i)*100*time.Millisecond {
			t.Fatalf("request %d started at %v", i, got)
		}
	}
}

// A foreground request goes before every queued background one, and background ones
// leave it a reserved slot.
func TestHostGateForegroundFirst(t *testing.T) {
	t.Parallel()
	c := newSteppedClock()
	g := newTestGate(c)
	l := HostLimits{Concurrency: 4, Rate: 10} // reserved: 1 slot
	ctx := context.Background()
	var releases []func(int, string)
	for i := 0; i < 3; i++ {
		ch, _ := acquireAsync(ctx, g, l, Background)
		releases = append(releases, mustGrant(t, ch))
		c.Advance(100 * time.Millisecond)
	}
	// The fourth slot is the reserved one: background waits even when paced.
	bg, _ := acquireAsync(ctx, g, l, Background)
	waitQueued(t, g, 0, 1)
	c.Advance(time.Second)
	notGranted(t, bg)
	fg, _ := acquireAsync(ctx, g, l, Foreground)
	rf := mustGrant(t, fg) // at once: the reserved slot, and the pace allows it
	// A second foreground request queues behind the pace and the full host, but
	// ahead of the background one.
	fg2, _ := acquireAsync(ctx, g, l, Foreground)
	waitQueued(t, g, 1, 1)
	releases[0](http.StatusOK, "")
	c.Advance(100 * time.Millisecond)
	mustGrant(t, fg2)(http.StatusOK, "")
	notGranted(t, bg)
	rf(http.StatusOK, "")
	c.Advance(100 * time.Millisecond)
	mustGrant(t, bg)(http.StatusOK, "")
}

// A background request a foreground caller joins (raise) moves ahead of the others.
func TestHostGateRaise(t *testing.T) {
	t.Parallel()
	c := newSteppedClock()
	g := newTestGate(c)
	l := HostLimits{Concurrency: 10, Rate: 1} // one a second
	ctx := context.Background()
	first, _ := acquireAsync(ctx, g, l, Background)
	mustGrant(t, first)(http.StatusOK, "")
	a, _ := acquireAsync(ctx, g, l, Background)
	waitQueued(t, g, 0, 1)
	b, ub := acquireAsync(ctx, g, l, Background)
	waitQueued(t, g, 0, 2)
	ub.raise()
	waitQueued(t, g, 1, 1)
	c.Advance(time.Second)
	mustGrant(t, b)(http.StatusOK, "")
	notGranted(t, a)
	c.Advance(time.Second)
	mustGrant(t, a)(http.StatusOK, "")
}

// A 429 with Retry-After pauses the whole host (not one credential), capped at
// MaxHostPause; requests then leave at half the pace, which grows back.
func TestHostGateRetryAfterPausesHost(t *testing.T) {
	t.Parallel()
	c := newSteppedClock()
	g := newTestGate(c)
	l := HostLimits{Concurrency: 10, Rate: 10}
	ctx := context.Background()
	first, _ := acquireAsync(ctx, g, l, Foreground)
	release := mustGrant(t, first)
	release(http.StatusTooManyRequests, "5")
	start := c.Now()
	var chans []<-chan grant
	for i := 0; i < 3; i++ {
		ch, _ := acquireAsync(ctx, g, l, Background)
		chans = append(chans, ch)
		waitQueued(t, g, 0, i+1)
	}
	if s := g.stats()[0]; !s.Paused || s.Pauses != 1 || s.Rate != 5 {
		t.Fatalf("after a 429: %+v, want paused once at half the pace", s)
	}
	// Another host is not paused.
	other, err := g.acquire(ctx, "https://other.example:443", l, newUrgency(Foreground))
	if err != nil {
		t.Fatal(err)
	}
	other(http.StatusOK, "")
	c.Advance(5*time.Second - time.Millisecond)
	notGranted(t, chans[0])
	c.Advance(time.Millisecond)
	mustGrant(t, chans[0])(http.StatusOK, "")
	// Half the pace: 200 ms apart (the pace grows back from the pause's end, by
	// 1/60 of the rest a second: still under 5.02/s 200 ms later).
	c.Advance(190 * time.Millisecond)
	notGranted(t, chans[1])
	c.Advance(10 * time.Millisecond)
	mustGrant(t, chans[1])(http.StatusOK, "")
	if got := c.Now().Sub(start); got != 5200*time.Millisecond {
		t.Errorf("second request after the pause at %v", got)
	}
	c.Advance(time.Second)
	mustGrant(t, chans[2])(http.StatusOK, "")
	// A minute after the pause the pace is whole again.
	c.Advance(hostRecovery)
	if s := g.stats()[0]; s.Paused || s.Rate != 10 {
		t.Errorf("after recovery: %+v", s)
	}

	// A Retry-After of an hour pauses the host for MaxHostPause; a 503 without one, for
	// hostPauseDefault.
	ch, _ := acquireAsync(ctx, g, l, Foreground)
	mustGrant(t, ch)(http.StatusServiceUnavailable, "3600")
	ch, _ = acquireAsync(ctx, g, l, Foreground)
	waitQueued(t, g, 1, 0)
	c.Advance(MaxHostPause - time.Millisecond)
	notGranted(t, ch)
	c.Advance(time.Millisecond)
	mustGrant(t, ch)(http.StatusServiceUnavailable, "")
	ch, _ = acquireAsync(ctx, g, l, Foreground)
	waitQueued(t, g, 1, 0)
	c.Advance(hostPauseDefault)
	mustGrant(t, ch)(http.StatusOK, "")
}

// Waiting honours the context: a cancelled wait leaves the queue, and a request whose
// deadline falls inside the pause (or behind the queue) fails at once as throttled.
func TestHostGateContext(t *testing.T) {
	t.Parallel()
	c := newSteppedClock()
	g := newTestGate(c)
	l := HostLimits{Concurrency: 1, Rate: 1}
	first, err := g.acquire(context.Background(), testHost, l, newUrgency(Foreground))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, _ := acquireAsync(ctx, g, l, Foreground)
	waitQueued(t, g, 1, 0)
	cancel()
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", r.err)
	}
	waitQueued(t, g, 0, 0)
	first(http.StatusTooManyRequests, "30")

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	_, err = g.acquire(dctx, testHost, l, newUrgency(Foreground))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeThrottled || e.RetryAfter != 30*time.Second {
		t.Fatalf("inside a pause longer than the deadline: %v", err)
	}

	// Behind a queue it cannot pass before its deadline (1 a second, 20 queued).
	c.Advance(30 * time.Second)
	for i := 0; i < 20; i++ {
		acquireAsync(context.Background(), g, l, Background)
	}
	waitQueued(t, g, 0, 19)
	_, err = g.acquire(dctx, testHost, l, newUrgency(Background))
	if !errors.As(err, &e) || e.Code != CodeThrottled {
		t.Fatalf("behind a long queue: %v", err)
	}
}

// Through the Broker: a reader (foreground) joining a refresh that waits behind
// background work at the same host raises it, so it takes the slot kept for readers
// instead of waiting for the background request in flight.
func TestBrokerReaderRaisesBackgroundFlight(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	held, release := make(chan struct{}), make(chan struct{})
	var n atomic.Int32
	p.setBefore(func(http.ResponseWriter, *http.Request) bool {
		if n.Add(1) == 1 { // the first request (a's) is held
			close(held)
			<-release
		}
		return false
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	clock := newFakeClock()
	b := newTestBroker(clock)
	cfg := p.config(AuthStyleHeader)
	cfg.Host = HostLimits{Concurrency: 2, Rate: 1000} // background may fill one slot
	var st savedTokens
	bg := WithPriority(context.Background(), Background)

	// A background refresh of "a" holds the one background slot at the provider.
	aDone := make(chan error, 1)
	go func() {
		_, err := b.Token(bg, "a", cfg, nil, time.Minute, st.persist)
		aDone <- err
	}()
	<-held
	// A background refresh of "b" queues behind it.
	bDone := make(chan error, 1)
	go func() {
		_, err := b.Token(bg, "b", cfg, nil, time.Minute, st.persist)
		bDone <- err
	}()
	waitQueued(t, b.client.gate, 0, 1)
	// A reader of "b" joins that flight and raises it: both are served while "a" is
	// still held.
	res, err := b.Token(context.Background(), "b", cfg, nil, time.Minute, st.persist)
	if err != nil || res.Token == nil {
		t.Fatalf("the reader: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("the background refresh of b: %v", err)
	}
	select {
	case err := <-aDone:
		t.Fatalf("a ended before its release: %v", err)
	default:
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
}

// Through the Client and a real HTTP answer: a 429 with Retry-After for one credential
// pauses every credential at that token host (the transport keeps the header for the
// gate), and a request whose deadline falls inside the pause is not sent.
func TestClientRetryAfterPausesHost(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	var n atomic.Int32
	p.setBefore(func(w http.ResponseWriter, _ *http.Request) bool {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "20")
			http.Error(w, `{"error":"slow_down"}`, http.StatusTooManyRequests)
			return true
		}
		return false
	})
	clock := newFakeClock()
	c := newTestClient(clock)
	one := p.config(AuthStyleHeader)
	_, err := c.Mint(context.Background(), one, "")
	wantError(t, err, Transient, CodeRateLimited)

	// Another credential (another client) at the same host, within its 5 s timeout.
	other := p.config(AuthStyleHeader)
	other.ClientID = "another-client"
	_, err = c.Mint(context.Background(), other, "")
	e := wantError(t, err, Transient, CodeThrottled)
	if e.RetryAfter != 20*time.Second {
		t.Errorf("retry after %v, want the rest of the pause, 20s", e.RetryAfter)
	}
	if got := p.requests.Load(); got != 1 {
		t.Fatalf("%d requests reached the provider during the pause, want 1", got)
	}
	if s := c.HostStats(); len(s) != 1 || !s[0].Paused || s[0].Pauses != 1 {
		t.Fatalf("host stats %+v, want one host, paused once", s)
	}
	// Past the pause the host is asked again.
	clock.Advance(20 * time.Second)
	if _, err := c.Mint(context.Background(), one, ""); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
	if got := p.requests.Load(); got != 2 {
		t.Fatalf("%d requests, want 2", got)
	}
}
