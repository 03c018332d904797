package oauth

import (
	"container/list"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The token requests the Client sends to one token host (the token URL's scheme, host
// and port) share one bound, whatever asks for them: access/ mints, refresh ahead,
// keep-alive, verify, token exchanges, code exchanges, the device flow. It sits beside
// the per-credential bucket (ratelimit.go), which stays: that one keeps a credential
// from looping, this one keeps twenty thousand credentials at one provider from
// arriving at once.
//
//   - At most Concurrency requests to a host are in flight at once, and requests start
//     at most Rate a second, paced (no burst: any window of one second holds at most
//     Rate+1 starts).
//   - Foreground before background: a request whose context is not marked Background
//     (an access/ read with no servable token, an operator's verify, a code exchange)
//     is dispatched before every queued background one, and background requests may
//     fill at most Concurrency − reservedFor(Concurrency) slots, so a reader finds a
//     slot free and waits at most one pacing interval behind a herd of refreshes.
//   - A 429 or 503 answer pauses the whole host until its Retry-After (hostPauseDefault
//     without one), at most MaxHostPause, and halves the host's pace; the pace grows
//     back linearly over hostRecovery after the pause. The requests queued meanwhile
//     leave one by one at the slower pace: no storm when the pause ends.
//   - Waiting honours the request's context (the request timeout): a request whose
//     deadline falls before the host's pause ends fails at once with CodeThrottled.
//   - No lock is held across a network call: the gate's mutex covers only its queues.

// Defaults of the host bound (config token_host_concurrency and token_host_rate).
const (
	// DefaultHostConcurrency: Okta caps concurrent transactions per org at 75 across
	// all API traffic and notes that even bulk loads rarely need more than 10.
	DefaultHostConcurrency = 10
	// DefaultHostRate: the lowest published per-client limit of a token endpoint among
	// the providers the engine serves, Microsoft Entra External ID's 20 requests a
	// second per IP address per tenant (200 per tenant).
	DefaultHostRate = 20
	// MaxHostPause caps the Retry-After a host pause honours: Entra answers a throttled
	// client_credentials request with Retry-After: 60, Okta's windows are a minute. A
	// credential's own backoff still honours up to an hour (maxRetryAfter).
	MaxHostPause = time.Minute
	// hostPauseDefault is the host pause after a 429 or 503 without Retry-After.
	hostPauseDefault = time.Second
	// hostRecovery is how long after a pause the pace takes to grow back to Rate.
	hostRecovery = time.Minute
	// minHostScale is the slowest pace repeated pauses leave: an eighth of Rate.
	minHostScale = 1.0 / 8
	// maxHosts bounds the hosts the gate remembers; idle ones are dropped first.
	maxHosts = 4096
)

// HostLimits bound the token requests to one host. Zero fields take the defaults.
type HostLimits struct {
	Concurrency int
	Rate        float64 // requests a second
}

func (l HostLimits) withDefaults() HostLimits {
	if l.Concurrency <= 0 {
		l.Concurrency = DefaultHostConcurrency
	}
	if l.Rate <= 0 {
		l.Rate = DefaultHostRate
	}
	return l
}

// reservedFor is how many of a host's slots only foreground requests may take: a
// quarter, at least one (with a single slot, background requests wait for an idle host).
func reservedFor(concurrency int) int { return max(1, concurrency/4) }

// Priority orders the requests waiting for one host.
type Priority uint8

const (
	// Foreground is a request someone waits for: an access/ read without a servable
	// token, an operator's verify or code exchange. The default.
	Foreground Priority = iota
	// Background is a request nobody waits for: refresh ahead (of access/ and
	// exchange/), keep-alive, scheduled verification, device polling.
	Background
)

// urgency is the priority of one request, or of a Broker flight that callers of
// another priority may join: raise promotes it, in the queue too.
type urgency struct {
	mu   sync.Mutex
	fg   bool
	hook func() // set while the request waits in a gate queue
}

func newUrgency(p Priority) *urgency { return &urgency{fg: p == Foreground} }

func (u *urgency) foreground() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fg
}

// raise makes u foreground; a request waiting in the background queue moves ahead.
func (u *urgency) raise() {
	u.mu.Lock()
	if u.fg {
		u.mu.Unlock()
		return
	}
	u.fg = true
	hook := u.hook
	u.mu.Unlock()
	if hook != nil {
		hook()
	}
}

type urgencyKey struct{}

// WithPriority marks ctx's token requests with p (Background for work nobody waits on).
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, urgencyKey{}, newUrgency(p))
}

// urgencyOf is ctx's urgency; an unmarked context is foreground.
func urgencyOf(ctx context.Context) *urgency {
	if u, ok := ctx.Value(urgencyKey{}).(*urgency); ok {
		return u
	}
	return newUrgency(Foreground)
}

// HostOf is the host key of a token URL: scheme, host and port (the default port
// made explicit), lower-cased; "" when it does not parse.
func HostOf(tokenURL string) string {
	u, err := url.Parse(tokenURL)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = "443"
		if scheme == "http" {
			port = "80"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// gateClock is the gate's time: now, and a timer calling f after d (tests inject both).
type gateClock struct {
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) (stop func() bool)
}

func realAfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// hostGate is the per-host bound of one Client.
type hostGate struct {
	clock gateClock

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	key         string
	limits      HostLimits
	inflight    int
	next        time.Time // the earliest start of the next request (pacing)
	pausedUntil time.Time
	scale       float64   // the pace after pauses: Rate·scale, growing back from recoverAt
	recoverAt   time.Time // when the pace starts growing back (a pause's end)
	fg, bg      list.List // *gateWaiter, oldest first
	timerAt     time.Time // when the armed timer fires; zero when none
	stopTimer   func() bool
	pauses      uint64 // 429/503 pauses, for metrics
}

type gateWaiter struct {
	ready   chan struct{} // closed when granted
	granted bool
	elem    *list.Element
	inFG    bool
}

func newHostGate(clock gateClock) *hostGate {
	if clock.now == nil {
		clock.now = time.Now
	}
	if clock.afterFunc == nil {
		clock.afterFunc = realAfterFunc
	}
	return &hostGate{clock: clock, hosts: make(map[string]*hostState)}
}

// hostLocked returns key's state, made when absent.
func (g *hostGate) hostLocked(key string, l HostLimits, now time.Time) *hostState {
	h := g.hosts[key]
	if h == nil {
		if len(g.hosts) >= maxHosts {
			g.pruneLocked(now)
		}
		h = &hostState{key: key, scale: 1}
		g.hosts[key] = h
	}
	h.limits = l
	return h
}

// pruneLocked drops hosts with nothing in flight, queued or paused.
func (g *hostGate) pruneLocked(now time.Time) {
	for k, h := range g.hosts {
		if h.inflight == 0 && h.fg.Len() == 0 && h.bg.Len() == 0 && !h.pausedUntil.After(now) && h.scaleAt(now) >= 1 {
			delete(g.hosts, k)
		}
	}
}

// scaleAt is the host's pace factor at now: scale, growing back linearly to 1 over
// hostRecovery from recoverAt.
func (h *hostState) scaleAt(now time.Time) float64 {
	if h.scale >= 1 {
		return 1
	}
	if now.Before(h.recoverAt) {
		return h.scale
	}
	s := h.scale + (1-h.scale)*float64(now.Sub(h.recoverAt))/float64(hostRecovery)
	if s >= 1 {
		h.scale = 1
		return 1
	}
	return s
}

// interval is the pacing interval at now.
func (h *hostState) interval(now time.Time) time.Duration {
	return time.Duration(float64(time.Second) / (h.limits.Rate * h.scaleAt(now)))
}

// startAt is when a request of priority fg could start: the zero time when it may now,
// or the time it becomes possible by the clock alone; ok false when it waits for a slot.
func (h *hostState) startAt(fg bool, now time.Time) (at time.Time, ok bool) {
	limit := h.limits.Concurrency
	if !fg {
		// With a single slot there is nothing to reserve: background takes it when idle.
		limit = max(1, limit-reservedFor(h.limits.Concurrency))
	}
	if h.inflight >= limit {
		return time.Time{}, false
	}
	at = h.next
	if h.pausedUntil.After(at) {
		at = h.pausedUntil
	}
	if !at.After(now) {
		return time.Time{}, true
	}
	return at, true
}

// grantLocked starts one request on h at now.
func (h *hostState) grantLocked(now time.Time) {
	h.inflight++
	start := now
	if h.next.After(start) {
		start = h.next
	}
	h.next = start.Add(h.interval(now))
}

// dispatchLocked grants the waiters that may start now, foreground first, and arms the
// timer for the earliest one that may start later.
func (g *hostGate) dispatchLocked(h *hostState) {
	now := g.clock.now()
	var wake time.Time
	for {
		q, fg := &h.fg, true
		if q.Len() == 0 {
			q, fg = &h.bg, false
		}
		e := q.Front()
		if e == nil {
			break
		}
		at, ok := h.startAt(fg, now)
		if !ok {
			break // a slot must free first: release dispatches again
		}
		if !at.IsZero() {
			wake = at
			break
		}
		w := q.Remove(e).(*gateWaiter)
		w.elem, w.granted = nil, true
		h.grantLocked(now)
		close(w.ready)
	}
	if wake.IsZero() || (!h.timerAt.IsZero() && !h.timerAt.After(wake)) {
		return
	}
	if h.stopTimer != nil {
		h.stopTimer()
	}
	h.timerAt = wake
	key := h.key
	h.stopTimer = g.clock.afterFunc(wake.Sub(now), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if hh := g.hosts[key]; hh == h && h.timerAt.Equal(wake) {
			h.timerAt, h.stopTimer = time.Time{}, nil
			g.dispatchLocked(h)
		}
	})
}

// errHostPaused is the failure of a request whose deadline falls before its host may
// be asked again.
func errHostPaused(now, until time.Time) *Error {
	wait := (until.Sub(now) + time.Second - 1).Truncate(time.Second)
	return &Error{Class: Transient, Code: CodeThrottled, RetryAfter: wait,
		detail: "no request was sent: the provider asked the engine to slow down (429 or 503) and its token host is paused"}
}

// errHostBusy is the failure of a request that would wait for its host beyond its
// deadline.
func errHostBusy(now, eta time.Time) *Error {
	wait := (eta.Sub(now) + time.Second - 1).Truncate(time.Second)
	return &Error{Class: Transient, Code: CodeThrottled, RetryAfter: wait,
		detail: "no request was sent: the token host's queue (token_host_concurrency, token_host_rate) would not reach it before the request timeout"}
}

// acquire waits for a slot on host key under l, foreground before background (u), until
// ctx ends. release must be called once the request has ended, with the answer's status
// and Retry-After header.
func (g *hostGate) acquire(ctx context.Context, key string, l HostLimits, u *urgency) (release func(status int, retryAfter string), err error) {
	l = l.withDefaults()
	w := &gateWaiter{ready: make(chan struct{})}
	u.mu.Lock()
	u.hook = func() { g.promote(key, w) }
	fg := u.fg
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.hook = nil
		u.mu.Unlock()
	}()

	g.mu.Lock()
	now := g.clock.now()
	h := g.hostLocked(key, l, now)
	if d, ok := ctx.Deadline(); ok {
		// The deadline on the gate's clock (the wall clock but in tests).
		dl := now.Add(time.Until(d))
		if h.pausedUntil.After(dl) {
			until := h.pausedUntil
			g.mu.Unlock()
			return nil, errHostPaused(now, until)
		}
		// A request that would not reach the front of the queue before its deadline
		// is not queued: it fails at once, saying when to come back.
		queued := h.fg.Len()
		if !fg {
			queued += h.bg.Len()
		}
		start := h.next
		if h.pausedUntil.After(start) {
			start = h.pausedUntil
		}
		if start.Before(now) {
			start = now
		}
		if eta := start.Add(time.Duration(queued) * h.interval(now)); queued > 0 && eta.After(dl) {
			g.mu.Unlock()
			return nil, errHostBusy(now, eta)
		}
	}
	if h.fg.Len() == 0 && (!fg && h.bg.Len() == 0 || fg) {
		if at, ok := h.startAt(fg, now); ok && at.IsZero() {
			h.grantLocked(now)
			g.mu.Unlock()
			return g.releaser(h), nil
		}
	}
	if fg {
		w.elem, w.inFG = h.fg.PushBack(w), true
	} else {
		w.elem = h.bg.PushBack(w)
	}
	g.dispatchLocked(h)
	g.mu.Unlock()

	select {
	case <-w.ready:
		return g.releaser(h), nil
	case <-ctx.Done():
		g.mu.Lock()
		if w.granted {
			g.mu.Unlock()
			g.releaser(h)(0, "")
		} else {
			if w.inFG {
				h.fg.Remove(w.elem)
			} else {
				h.bg.Remove(w.elem)
			}
			w.elem = nil
			g.dispatchLocked(h)
			g.mu.Unlock()
		}
		// An *Error like every other failure of a request (classify), so the callers'
		// verdicts (transient, canceled or timed out) do not depend on where the
		// request was when its context ended.
		e := classify(ctx.Err(), nil, g.clock.now())
		if e.Code == CodeTimeout {
			e.detail = "the request timeout ended while it waited for its token host (token_host_concurrency, token_host_rate)"
		}
		return nil, e
	}
}

// promote moves w, when still queued as background, to the end of the foreground queue.
func (g *hostGate) promote(key string, w *gateWaiter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.hosts[key]
	if h == nil || w.granted || w.elem == nil || w.inFG {
		return
	}
	h.bg.Remove(w.elem)
	w.elem, w.inFG = h.fg.PushBack(w), true
	g.dispatchLocked(h)
}

// releaser ends one request on h: it frees the slot and, on a 429 or 503, pauses the host.
func (g *hostGate) releaser(h *hostState) func(int, string) {
	var once sync.Once
	return func(status int, retryAfter string) {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			h.inflight--
			if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
				now := g.clock.now()
				d := hostPauseDefault
				if retryAfter != "" {
					if ra := parseRetryAfter(retryAfter, now); ra > 0 {
						d = ra
					}
				}
				d = min(d, MaxHostPause)
				g.pauseLocked(h, now, d)
			}
			g.dispatchLocked(h)
		})
	}
}

// pauseLocked pauses h for d from now and halves its pace (at most down to
// minHostScale), growing back from the pause's end.
func (g *hostGate) pauseLocked(h *hostState, now time.Time, d time.Duration) {
	until := now.Add(d)
	if until.After(h.pausedUntil) {
		h.pausedUntil = until
	}
	h.scale = max(h.scaleAt(now)/2, minHostScale)
	h.recoverAt = h.pausedUntil
	if h.next.Before(h.pausedUntil) {
		h.next = h.pausedUntil
	}
	h.pauses++
}

// HostStat is what the gate shows of one token host, for the metrics.
type HostStat struct {
	Host       string
	InFlight   int
	Foreground int // requests queued
	Background int
	Paused     bool // until a 429/503's Retry-After
	Pauses     uint64
	// Rate is the pace in force (requests a second): the configured rate, or less
	// after a pause.
	Rate float64
}

// stats lists the hosts the gate knows, sorted by host.
func (g *hostGate) stats() []HostStat {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock.now()
	out := make([]HostStat, 0, len(g.hosts))
	for _, h := range g.hosts {
		out = append(out, HostStat{Host: h.key, InFlight: h.inflight, Foreground: h.fg.Len(), Background: h.bg.Len(),
			Paused: h.pausedUntil.After(now), Pauses: h.pauses, Rate: h.limits.Rate * h.scaleAt(now)})
	}
	slices.SortFunc(out, func(a, b HostStat) int { return strings.Compare(a.Host, b.Host) })
	return out
}
