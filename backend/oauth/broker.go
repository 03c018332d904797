package oauth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Backoff after a failed token request: exponential from backoffBase, capped
// at backoffCap, with full jitter so credentials that failed together (a
// provider outage) do not retry in lockstep.
const (
	backoffBase = time.Second
	backoffCap  = 5 * time.Minute
)

// Broker mints tokens per credential key: at most one provider request per
// key at a time, at most RequestBurst at once and RequestsPerMinute sustained
// (a token bucket per key that Forget does not reset), backoff after failures,
// and a still-valid token served when the provider is briefly unavailable or the
// bucket is empty. It applies no policy of its own (who
// may read, when a credential is suspended): the backend decides that and
// keeps the token cache in storage; the Broker only remembers the newest
// token it minted per key, so a reader holding an older cached copy neither
// triggers a second request nor refreshes with a rotated-away refresh token.
// That state is kept per key until Forget, or until Prune finds it idle: a token
// without a refresh token, stored, not failing, minted StateIdle ago.
type Broker struct {
	client *Client
	now    func() time.Time
	group  singleflight.Group

	mu   sync.Mutex
	keys map[string]*keyState
	// running holds, per key, a channel closed when the key's request in flight (and
	// its persist) has ended. Forget leaves it, so a request that Forget detached
	// still orders the next one: the two never both spend one refresh token.
	running map[string]chan struct{}
	// ordered counts the requests waiting for an earlier one of their key (running).
	ordered atomic.Int64
	// urgent holds, per key, the urgency of its flight (hostgate.go): a foreground
	// caller joining a background flight (a reader arriving while refresh ahead
	// waits for the host) raises it, so the reader does not queue behind the herd.
	urgent  map[string]*urgency
	limit   *requestLimiter // per key; outlives Forget
	closed  bool            // Close was called: no request starts any more
	flights sync.WaitGroup  // requests in flight, for Close to wait on

	// base ends with Close; every request in flight is cancelled with it.
	base   context.Context
	cancel context.CancelFunc

	// jitter returns a uniform value in [0, n); tests make it deterministic.
	jitter func(n int64) int64
}

// keyState is what the Broker knows about one key. A state replaced by Forget
// is detached: a request still in flight for it cannot write back.
type keyState struct {
	last      *Token    // newest token minted for the key
	persisted bool      // whether persist accepted last
	failures  int       // consecutive failed requests
	until     time.Time // no provider request before this
	lastErr   *Error    // why, while until is in the future
}

// Result is what Broker.Token hands back.
type Result struct {
	// Token is the token to use: the caller's own cached token, or a copy no
	// other caller shares.
	Token *Token
	// Minted is true when the token was obtained (or first persisted) by this
	// call or the in-flight request it joined, so the backend can record it.
	Minted bool
	// Warning is set when an older, still unexpired token is served because
	// minting failed transiently (or is backing off after such a failure, or
	// the key's request bucket is empty); it is safe to show and log.
	Warning string
	// Failure is why Warning was set: the failure the older token stands in
	// for (Code CodeThrottled when no request was sent). Nil otherwise.
	Failure *Error
}

// NewBroker returns a Broker making its requests with c; now is its clock
// (time.Now when nil).
func NewBroker(c *Client, now func() time.Time) *Broker {
	if now == nil {
		now = time.Now
	}
	base, cancel := context.WithCancel(context.Background())
	return &Broker{
		client:  c,
		now:     now,
		keys:    make(map[string]*keyState),
		running: make(map[string]chan struct{}),
		urgent:  make(map[string]*urgency),
		limit:   newRequestLimiter(RequestBurst, requestInterval),
		jitter:  rand.Int64N,
		base:    base,
		cancel:  cancel,
	}
}

// HostStats lists the token hosts' bound (Client.HostStats).
func (b *Broker) HostStats() []HostStat { return b.client.HostStats() }

// Ordered is how many requests are waiting for an earlier request of their key that
// Forget detached (see ErrRetry).
func (b *Broker) Ordered() int64 { return b.ordered.Load() }

// ErrRetry is what the callers of a request get when it waited for an earlier request
// of the same key that Forget had detached: the token state may have changed meanwhile,
// so the caller reads it again and asks again.
var ErrRetry = errors.New("an earlier token request for the credential ended meanwhile; start again from its result")

// ErrClosed is what a request gets once the Broker is closed.
var ErrClosed = errors.New("the token broker is closed")

// Close cancels every request in flight, waits until each has returned, and makes
// every later one fail with ErrClosed. The backend calls it when the mount is
// unloaded, so nothing reaches the provider or storage afterwards.
func (b *Broker) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.flights.Wait()
}

// RetryAt is when the next provider request for key may be made: the end of its
// backoff after failed ones or, if later, when its request bucket next holds a
// request; the zero time when neither holds it back.
func (b *Broker) RetryAt(key string) time.Time {
	b.mu.Lock()
	var until time.Time
	if st := b.keys[key]; st != nil {
		until = st.until
	}
	b.mu.Unlock()
	if next := b.limit.next(bucketOf(key), b.now()); next.After(until) {
		return next
	}
	return until
}

// startFlight registers a request about to run on ctx, which it makes end with Close
// as well; done must be called when the request has returned.
func (b *Broker) startFlight(ctx context.Context) (_ context.Context, done func(), _ error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, ErrClosed
	}
	b.flights.Add(1)
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.base, cancel)
	return ctx, func() {
		stop()
		cancel()
		b.flights.Done()
	}, nil
}

// Token returns a token for key valid for at least minValid.
//
// cached is the caller's cached token (nil when none); it is returned as is
// when valid for minValid, without locking or allocating. Otherwise at most
// one provider request per key is in flight: concurrent callers wait for it
// (until their ctx ends) and share its result. The request runs on a context
// detached from every caller but bounded by the client timeout and ended by
// Close, so a Vault request ending does not cancel it for the others.
//
// On success persist(ctx, tok) runs before anyone receives tok, so a rotated
// refresh token is stored first; a persist error is returned (and persisting
// is retried by the next call, without a new provider request).
//
// A failure (*Error) puts the key into backoff, during which no request is
// made. For a transient failure, a cached token that has not yet expired is
// served with Result.Warning; otherwise the *Error is returned. Permanent
// failures are backed off too: repeating a refused password or client secret
// can lock the account at some providers. Forget ends the backoff.
func (b *Broker) Token(ctx context.Context, key string, cfg Config, cached *Token, minValid time.Duration,
	persist func(context.Context, *Token) error) (Result, error) {
	if cached.Fresh(b.now(), minValid, b.client.lifetimeFor(cfg)) {
		return Result{Token: cached}, nil
	}
	return b.wait(ctx, key, cfg, cached, minValid, persist)
}

// wait joins or starts the in-flight request for key. It is separate from
// Token because the closure below captures cfg, which would otherwise move
// to the heap on every call, the cached fast path included.
func (b *Broker) wait(ctx context.Context, key string, cfg Config, cached *Token, minValid time.Duration,
	persist func(context.Context, *Token) error) (Result, error) {
	// The flight's urgency: the one already registered for key (raised when this
	// caller is foreground), else this caller's, registered for later joiners.
	mine := urgencyOf(ctx)
	b.mu.Lock()
	u := b.urgent[key]
	if u == nil {
		u = mine
		b.urgent[key] = u
	}
	b.mu.Unlock()
	if u != mine && mine.foreground() {
		u.raise()
	}
	flightCtx := context.WithValue(context.WithoutCancel(ctx), urgencyKey{}, u)
	var started atomic.Bool // whether this call's function became the flight
	ch := b.group.DoChan(key, func() (val any, err error) {
		// singleflight re-panics a flight's panic on a goroutine of its own, where
		// nothing can recover it: the flight recovers it here and fails with a
		// PanicError, which carries no value. A token the flight minted but did not
		// store stays unpersisted in the key's state, and the next request stores
		// it first.
		defer func() {
			if v := recover(); v != nil {
				val, err = Result{}, &PanicError{Type: fmt.Sprintf("%T", v), Stack: debug.Stack()}
			}
		}()
		started.Store(true)
		defer func() {
			b.mu.Lock()
			delete(b.urgent, key)
			b.mu.Unlock()
		}()
		fctx, done, err := b.startFlight(flightCtx)
		if err != nil {
			return Result{}, err
		}
		defer done()
		return b.fly(fctx, key, cfg, cached, minValid, persist)
	})
	select {
	case r := <-ch:
		if !started.Load() {
			b.client.observer.Waiter()
		}
		if r.Err != nil {
			return Result{}, r.Err
		}
		res := r.Val.(Result)
		// Waiters share one result; each gets its own copy of the token so
		// none can disturb another's.
		tok := *res.Token
		res.Token = &tok
		return res, nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("waiting for a token for %q: %w", key, ctx.Err())
	}
}

// Exchange completes an authorization-code grant for key (Client.Exchange) when
// key's request bucket lets a request through; otherwise it sends nothing and
// fails with CodeThrottled. A code exchange is a token request like any other, so a
// loop of authorizations completed by hand is bounded as a loop of refreshes is.
func (b *Broker) Exchange(ctx context.Context, key string, cfg Config, code, verifier string) (*Token, error) {
	return limited(ctx, b, key, func(ctx context.Context) (*Token, error) {
		return b.client.Exchange(ctx, cfg, code, verifier)
	})
}

// limited sends one request of its own for bucket through the Broker: when bucket's
// request bucket lets it through, as a flight of its own (Close cancels it and waits
// for it like any other); otherwise it sends nothing and fails with CodeThrottled.
// The code exchange, the device flow's requests and token exchanges go through it;
// token requests for access/ go through Token's single flight.
func limited[T any](ctx context.Context, b *Broker, bucket string, request func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	now := b.now()
	if ok, at := b.limit.take(bucket, now); !ok {
		b.client.observer.Throttled()
		return zero, throttled(now, at)
	}
	ctx, done, err := b.startFlight(ctx)
	if err != nil {
		return zero, err
	}
	defer done()
	return request(ctx)
}

// StateIdle is how long after its mint a key's state is kept when it holds nothing only
// the Broker knows (Prune). Within it, a reader whose cached copy predates the mint is
// served the newer token instead of sending a second request; a reader would have to
// stall this long between reading its copy and asking the Broker to miss that.
const StateIdle = time.Minute

// Prune drops the state of every key that holds nothing the Broker alone knows and
// returns how many it dropped. A state goes when no request of its key is running,
// no failure holds it back (backoff), and its last token is stored, minted at least
// StateIdle ago and carries no refresh token; a state that never received a token
// (a request the bucket held back, a token discarded) goes when it holds no
// backoff either. A state holding a refresh token is kept: it is what stops a reader
// with an older copy from spending a rotated-away refresh token, and a second use of
// one can revoke the grant. Without Prune the Broker would keep, per OAuth credential
// that ever minted, its newest token (a JWT of a kilobyte or more at most providers):
// memory growing with the mount, although the token store holds the same token.
// The token store calls it on the periodic tick.
func (b *Broker) Prune() int {
	now := b.now()
	cutoff := now.Add(-StateIdle)
	b.mu.Lock()
	defer b.mu.Unlock()
	dropped := 0
	for key, st := range b.keys {
		if b.running[key] == nil && st.idle(now, cutoff) {
			delete(b.keys, key)
			dropped++
		}
	}
	if dropped > 0 && dropped >= len(b.keys) {
		// A map keeps the buckets it grew to: after a mass mint (a restart's warm-up)
		// has gone idle, copy what is left to a map of its size (maps.Clone would copy
		// the buckets too).
		kept := make(map[string]*keyState, len(b.keys))
		maps.Copy(kept, b.keys)
		b.keys = kept
	}
	return dropped
}

// States is how many keys the Broker holds a state for.
func (b *Broker) States() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.keys)
}

// idle reports whether st holds nothing only the Broker knows at now: see Prune.
func (st *keyState) idle(now, cutoff time.Time) bool {
	if st.failures > 0 || st.lastErr != nil || st.until.After(now) {
		return false
	}
	if st.last == nil {
		return true
	}
	return st.persisted && st.last.RefreshToken == "" && !st.last.IssuedAt.After(cutoff)
}

// Forget drops what the Broker knows about key: backoff, the last minted
// token, and the in-flight request (callers arriving later start a new one).
// The request bucket stays: a write may let one request through at once, not
// a loop of them.
// The backend calls it after a credential is updated, deleted or
// re-authorized. An in-flight request is not cancelled; its result still
// reaches the callers already waiting and its persist callback.
func (b *Broker) Forget(key string) {
	b.mu.Lock()
	delete(b.keys, key)
	b.mu.Unlock()
	b.group.Forget(key)
}

// fly is the body of the single in-flight request for key.
func (b *Broker) fly(ctx context.Context, key string, cfg Config, cached *Token, minValid time.Duration,
	persist func(context.Context, *Token) error) (Result, error) {
	b.mu.Lock()
	prev, done := b.running[key], make(chan struct{})
	b.running[key] = done
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.running[key] == done {
			delete(b.running, key)
		}
		b.mu.Unlock()
		close(done)
	}()
	if prev != nil {
		// A request for key that Forget detached is still at the provider: with a
		// provider that rotates refresh tokens it is spending the one this request
		// would send, and a second use of a retired refresh token can revoke the
		// grant. Wait for it to end and to store what it got, then let the caller
		// start again from there.
		b.ordered.Add(1)
		defer b.ordered.Add(-1)
		select {
		case <-prev:
			return Result{}, ErrRetry
		case <-ctx.Done():
			return Result{}, fmt.Errorf("waiting for an earlier token request for %q: %w", key, ctx.Err())
		}
	}
	b.mu.Lock()
	st := b.keys[key]
	if st == nil {
		st = &keyState{}
		b.keys[key] = st
	}
	last, persisted, until, lastErr := st.last, st.persisted, st.until, st.lastErr
	b.mu.Unlock()

	now := b.now()
	lifetime := b.client.lifetimeFor(cfg)
	if last != nil && !persisted {
		// A token whose persist failed: store it before serving it or
		// refreshing from it, or a rotated refresh token could exist only in
		// memory.
		if err := b.persist(ctx, key, st, last, persist, cfg); err != nil {
			return Result{}, err
		}
		if last.Fresh(now, minValid, lifetime) {
			return Result{Token: last, Minted: true}, nil
		}
	}
	if last.Fresh(now, minValid, lifetime) {
		// Minted by an earlier request the caller's cache has not caught up
		// with.
		return Result{Token: last}, nil
	}

	// Refresh from the newest token either side knows: after a rotation the
	// caller's copy may hold a refresh token the provider already retired.
	src := newest(cached, last)
	if lastErr != nil && now.Before(until) {
		return degrade(src, lastErr, until, now)
	}

	if ok, at := b.limit.take(bucketOf(key), now); !ok {
		// The bucket is empty: no request, and no failure either (the backoff
		// stays as it is).
		b.client.observer.Throttled()
		return degrade(src, throttled(now, at), at, now)
	}
	tok, err := b.client.Mint(ctx, cfg, src.refreshToken()) // bounded by cfg's timeout
	if err != nil {
		e := classify(err, nil, now)
		now = b.now()
		b.mu.Lock()
		if b.keys[key] == st {
			st.failures++
			st.until = now.Add(b.backoff(st.failures, e.RetryAfter))
			st.lastErr = e
		}
		until = st.until
		b.mu.Unlock()
		return degrade(src, e, until, now)
	}

	b.mu.Lock()
	if b.keys[key] == st {
		st.last, st.persisted = tok, false
		st.failures, st.until, st.lastErr = 0, time.Time{}, nil
	}
	b.mu.Unlock()
	if err := b.persist(ctx, key, st, tok, persist, cfg); err != nil {
		return Result{}, err
	}
	return Result{Token: tok, Minted: true}, nil
}

// VariantKey is the Broker key of a variant of key's token (a GitHub App token
// narrowed for one caller): its own single flight, backoff and last token, but key's
// request bucket, so variants cannot multiply a credential's requests.
func VariantKey(key, variant string) string { return key + "\x00" + variant }

// bucketOf is the request bucket of a Broker key: the credential's, for a variant.
func bucketOf(key string) string {
	if i := strings.IndexByte(key, 0); i >= 0 {
		return key[:i]
	}
	return key
}

// PanicError is a token request that panicked (in the Client, or in the persist
// callback): the panic's type and the stack, never its value, which may hold a secret.
// The backend logs it.
type PanicError struct {
	Type  string
	Stack []byte
}

func (e *PanicError) Error() string {
	return "internal error: the token request panicked (" + e.Type + "); the plugin's log has the stack"
}

// ErrDiscarded is what a persist callback returns (wrapped) to refuse a token for
// good: the settings it was requested under are gone (the credential was updated
// or deleted meanwhile). The Broker then forgets the token instead of storing it
// on the next call, and the callers of that request get the error.
var ErrDiscarded = errors.New("the token was requested under settings that have changed since; it was discarded")

func (b *Broker) persist(ctx context.Context, key string, st *keyState, tok *Token,
	persist func(context.Context, *Token) error, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, b.client.timeoutFor(cfg))
	defer cancel()
	if err := persist(ctx, tok); err != nil {
		if errors.Is(err, ErrDiscarded) {
			b.mu.Lock()
			if st.last == tok {
				st.last, st.persisted = nil, false
			}
			b.mu.Unlock()
		}
		return fmt.Errorf("persisting the token for %q: %w", key, err)
	}
	b.mu.Lock()
	if st.last == tok {
		st.persisted = true
	}
	b.mu.Unlock()
	return nil
}

// backoff is the pause after the n-th consecutive failure: full jitter over
// (0, min(cap, base·2ⁿ⁻¹)], and never shorter than the provider's Retry-After. After a
// Retry-After (the provider's, or a paused or busy token host's) a spread of up to half
// of it, at most retryAfterSpread, is added: the credentials a 429 stopped together do
// not come back together when it ends.
func (b *Broker) backoff(n int, retryAfter time.Duration) time.Duration {
	ceiling := backoffCap
	if n < 20 { // beyond that the shift has long passed the cap
		ceiling = min(backoffCap, backoffBase<<(n-1))
	}
	// +1 keeps the window non-empty: a zero draw would allow an immediate retry.
	d := time.Duration(b.jitter(int64(ceiling))) + 1
	if retryAfter <= 0 {
		return d
	}
	return max(d, retryAfter+time.Duration(b.jitter(int64(RetryAfterSpread(retryAfter)))))
}

// RetryAfterSpread is the most backoff adds to a Retry-After of d: half of it, at
// least a second, at most retryAfterSpread.
func RetryAfterSpread(d time.Duration) time.Duration {
	return min(max(d/2, time.Second), retryAfterSpread)
}

// retryAfterSpread caps the spread added to a Retry-After.
const retryAfterSpread = 30 * time.Second

// degrade decides what a caller gets when no request may or could be made.
func degrade(src *Token, e *Error, until, now time.Time) (Result, error) {
	if e.Class == Transient && src != nil && src.AccessToken != "" && src.Expiry.After(now) {
		return Result{
			Token:   src,
			Failure: e,
			Warning: fmt.Sprintf("serving the cached token, valid until %s: %s; next attempt after %s",
				src.Expiry.UTC().Format(time.RFC3339), e.Error(), until.UTC().Format(time.RFC3339)),
		}, nil
	}
	return Result{}, e
}

// newest returns whichever token was issued later; ties go to a.
func newest(a, b *Token) *Token {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case b.IssuedAt.After(a.IssuedAt):
		return b
	}
	return a
}

func (t *Token) refreshToken() string {
	if t == nil {
		return ""
	}
	return t.RefreshToken
}
