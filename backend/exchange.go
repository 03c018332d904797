// Token exchange (RFC 8693) behind exchange/<name> (path_exchange.go): the cache of
// exchanged tokens, the single flight per (credential, request), the exchange itself
// and its refresh ahead.
//
// Exchanged tokens are held in memory only, never stored: the subject token they were
// exchanged from is stored (tokens/<name>), and a restart, a leader change or an
// eviction costs one exchange, a cheap request that spends nothing only a person can
// give back. Per credential at most exchangesPerCredential distinct requests are
// kept (least recently used dropped), for at most exchangeCredentials credentials.
// An entry is valid for the token generation it was exchanged under
// (tokenStore.generation): an update, repoint, new client, re-authorization, delete
// or another node's change of the credential moves it on, so every exchange made
// before is dropped (and settleSecondary and invalidate drop the credential's cache
// outright).

package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

const (
	// exchangesPerCredential bounds the distinct exchange requests cached per
	// credential.
	exchangesPerCredential = 64
	// exchangeCredentials bounds the credentials whose exchanges are cached.
	exchangeCredentials = 1024
	// exchangeBackoffCap caps the pause after failed exchanges of one request.
	exchangeBackoffCap = 5 * time.Minute
)

// exchangeRequest is one validated request of exchange/<name>: audiences, resources and
// scopes sorted and without duplicates, so equal requests share one cache entry.
type exchangeRequest struct {
	audiences, resources, scopes []string
	tokenType                    string // requested_token_type; "" for the provider's default
}

// key is the request's cache key. Its values hold no control character (credtype's
// rules), so the separators cannot be forged.
func (r exchangeRequest) key() string {
	return strings.Join(r.audiences, "\x00") + "\x01" + strings.Join(r.resources, "\x00") + "\x01" +
		strings.Join(r.scopes, "\x00") + "\x01" + r.tokenType
}

func (r exchangeRequest) oauth() oauth.ExchangeRequest {
	return oauth.ExchangeRequest{Audiences: r.audiences, Resources: r.resources, Scopes: r.scopes, RequestedTokenType: r.tokenType}
}

// exchangeEntry is the outcome of the last exchange of one request: the token (nil
// when none was ever obtained), and after a failure its error and the time before which
// it is not asked again. Entries are replaced whole; only the refresh-ahead state
// (as storedToken's: aheadIdle, aheadRunning, aheadNever or a not-before time) changes
// in place.
type exchangeEntry struct {
	ex       *oauth.Exchanged
	gen      uint64
	failure  *oauth.Error
	until    time.Time
	failures int

	ahead        atomic.Int64
	aheadWarning atomic.Pointer[string]
}

// token is the entry's token, nil when it has none.
func (e *exchangeEntry) token() *oauth.Token {
	if e == nil || e.ex == nil {
		return nil
	}
	return &e.ex.Token
}

// credExchanges is one credential's cached exchanges, for one token generation.
type credExchanges struct {
	gen  uint64
	reqs *simplelru.LRU[string, *exchangeEntry]
}

// exchangeCache holds the exchanged tokens of the mount. Its mutex is a leaf: nothing
// else is locked under it and it is never held across a call.
type exchangeCache struct {
	mu    sync.Mutex
	creds *simplelru.LRU[string, *credExchanges]
	group singleflight.Group
}

func newExchangeCache() *exchangeCache {
	creds, err := simplelru.NewLRU[string, *credExchanges](exchangeCredentials, nil)
	if err != nil {
		panic(err)
	}
	return &exchangeCache{creds: creds}
}

// get returns the entry of name's request key exchanged under generation gen, nil when
// none.
func (x *exchangeCache) get(name, key string, gen uint64) *exchangeEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	ce, ok := x.creds.Get(name)
	if !ok || ce.gen != gen {
		return nil
	}
	e, _ := ce.reqs.Get(key)
	return e
}

// put caches e for name's request key, unless the credential's generation is no longer
// e's (current reads it).
func (x *exchangeCache) put(name, key string, e *exchangeEntry, current func() uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if current() != e.gen {
		return
	}
	ce, ok := x.creds.Get(name)
	if !ok || ce.gen != e.gen {
		reqs, err := simplelru.NewLRU[string, *exchangeEntry](exchangesPerCredential, nil)
		if err != nil {
			panic(err)
		}
		ce = &credExchanges{gen: e.gen, reqs: reqs}
		x.creds.Add(name, ce)
	}
	ce.reqs.Add(key, e)
}

// drop forgets every exchange of name.
func (x *exchangeCache) drop(name string) {
	x.mu.Lock()
	x.creds.Remove(name)
	x.mu.Unlock()
}

// size is how many requests of name are cached (for tests).
func (x *exchangeCache) size(name string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	ce, ok := x.creds.Get(name)
	if !ok {
		return 0
	}
	return ce.reqs.Len()
}

// exchangeServable returns e's token when it may be served for a read needing
// minValid, by the access/ rules (shortLivedDemand, a lifetime in force).
func exchangeServable(e *exchangeEntry, cfg *engineConfig, now time.Time, minValid time.Duration) *oauth.Token {
	tok := e.token()
	if tok == nil || !tok.Fresh(now, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok), cfg.DefaultTokenLifetime) {
		return nil
	}
	return tok
}

// exchangeResult is what a read of exchange/<name> is handed.
type exchangeResult struct {
	entry    *exchangeEntry
	fresh    bool     // exchanged for this read (or the flight it joined)
	warnings []string // a degraded answer, a degraded subject token
}

// exchangeWait joins or starts the one exchange in flight for c's request r. ahead is,
// for refresh ahead, the entry being refreshed (nil for a read): its demand reaches
// beyond the entry's refresh window, so a still-servable token is exchanged again.
func (b *integrationsBackend) exchangeWait(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, r exchangeRequest, minValid time.Duration, ahead *exchangeEntry) (exchangeResult, error) {
	flightCtx := context.WithoutCancel(ctx)
	ch := b.exchanges.group.DoChan(c.Name+"\x00"+r.key(), func() (any, error) {
		// Two requests at most (the subject token, the exchange), each bounded by
		// request_timeout; the Broker's Close cancels both.
		fctx, cancel := context.WithTimeout(flightCtx, 2*cfg.RequestTimeout)
		defer cancel()
		return b.exchangeOnce(fctx, s, cfg, c, r, minValid, ahead)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return exchangeResult{}, res.Err
		}
		return res.Val.(exchangeResult), nil
	case <-ctx.Done():
		return exchangeResult{}, fmt.Errorf("waiting for the token exchange of %q: %w", c.Name, ctx.Err())
	}
}

// errExchangeChanged: the credential changed while its token was exchanged.
var errExchangeChanged = errors.New("the credential changed while its token was exchanged")

// exchangeOnce is the body of one flight: the entry again (a flight that just ended
// may have filled it), its backoff, the subject token as access/ mints it, the
// exchange, and the outcome cached under the generation it started with.
func (b *integrationsBackend) exchangeOnce(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, r exchangeRequest, minValid time.Duration, ahead *exchangeEntry) (exchangeResult, error) {
	name, key := c.Name, r.key()
	// The credential again, with the generation, read together (as a mint does): the
	// reader's copy may be older than the generation, and an exchange made under its
	// settings must not be cached as current.
	t, c, err := b.tokens.ticket(ctx, s, name)
	if err != nil {
		return exchangeResult{}, err
	}
	if c == nil {
		return exchangeResult{}, errCredentialGone
	}
	if err := exchangeAllowed(b, c, r); err != nil {
		return exchangeResult{}, err
	}
	gen := t.gen
	e := b.exchanges.get(name, key, gen)
	now := b.now()
	if ahead != nil && e != ahead {
		return exchangeResult{entry: e}, errAheadStale // refreshed, or dropped, meanwhile
	}
	demand := shortLivedDemand(minValid, cfg.ExpiryBuffer, e.token())
	if ahead != nil {
		demand += aheadLead(ahead.token(), demand)
	}
	if tok := e.token(); tok != nil && tok.Fresh(now, demand, cfg.DefaultTokenLifetime) {
		return exchangeResult{entry: e}, nil
	}
	if e != nil && e.failure != nil && now.Before(e.until) {
		return degradeExchange(e, e.failure, e.until, now)
	}
	// The subject token: the credential's current access token, as access/ would
	// hand it out (from the cache, or minted through the Broker and stored first).
	data, warnings, err := b.tokenAccess(ctx, s, cfg, c, 0, now)
	if err != nil {
		return exchangeResult{}, err
	}
	subject, _ := data["access_token"].(string)
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return exchangeResult{}, fmt.Errorf("building the OAuth configuration of %q: %w", name, err)
	}
	ex, err := b.tokens.brokerOf().TokenExchange(ctx, name, oc, subject, r.oauth())
	now = b.now()
	if err != nil {
		var oe *oauth.Error
		if !errors.As(err, &oe) {
			return exchangeResult{}, err
		}
		if oe.Code == oauth.CodeThrottled {
			// Nothing was sent and nothing failed: no backoff of its own.
			return degradeExchange(e, oe, now.Add(oe.RetryAfter), now)
		}
		failed := &exchangeEntry{gen: gen, failure: oe}
		if e != nil {
			failed.ex, failed.failures = e.ex, e.failures
		}
		failed.failures++
		failed.until = now.Add(max(exchangeBackoff(failed.failures), oe.RetryAfter))
		b.exchanges.put(name, key, failed, func() uint64 { return b.tokens.generation(name) })
		return degradeExchange(failed, oe, failed.until, now)
	}
	fresh := &exchangeEntry{ex: ex, gen: gen}
	if b.tokens.generation(name) != gen {
		return exchangeResult{}, errExchangeChanged
	}
	b.exchanges.put(name, key, fresh, func() uint64 { return b.tokens.generation(name) })
	return exchangeResult{entry: fresh, fresh: true, warnings: warnings}, nil
}

// exchangeBackoff is the pause after the n-th consecutive failed exchange of one
// request: 1 s doubling, at most exchangeBackoffCap.
func exchangeBackoff(n int) time.Duration {
	if n > 20 {
		return exchangeBackoffCap
	}
	return min(exchangeBackoffCap, time.Second<<(n-1))
}

// degradeExchange is what a caller gets when the exchange failed or may not be asked
// (backoff, throttled) until until: e's token, with a warning, while the failure is
// transient and the token has not expired; otherwise the failure.
func degradeExchange(e *exchangeEntry, oe *oauth.Error, until, now time.Time) (exchangeResult, error) {
	if tok := e.token(); oe.Class == oauth.Transient && tok != nil && tok.Expiry.After(now) {
		return exchangeResult{entry: e, warnings: []string{fmt.Sprintf(
			"serving the exchanged token, valid until %s: the exchange failed: %s; next attempt after %s",
			rfc3339(tok.Expiry), oe.Error(), rfc3339(until))}}, nil
	}
	return exchangeResult{}, oe
}

// exchangeAhead is called by a read that found e in its refresh window: it starts one
// background exchange unless one is running or backing off, and returns the warning
// of the last failed one ("" when none).
func (b *integrationsBackend) exchangeAhead(cfg *engineConfig, c *credential, r exchangeRequest, e *exchangeEntry, minValid time.Duration, now time.Time) string {
	warning := ""
	if w := e.aheadWarning.Load(); w != nil {
		warning = *w
	}
	v := e.ahead.Load()
	if v == aheadRunning || now.UnixNano() < v || !e.ahead.CompareAndSwap(v, aheadRunning) {
		return warning
	}
	b.ahead.Go(func(ctx context.Context) {
		if b.storage == nil {
			e.ahead.Store(aheadNever)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 2*cfg.RequestTimeout)
		defer cancel()
		// Nobody waits on it: behind every reader at the token host (oauth's host gate).
		ctx = oauth.WithPriority(ctx, oauth.Background)
		res, err := b.exchangeWait(ctx, b.storage, cfg, c, r, minValid, e)
		switch {
		case err == nil && res.entry == e && len(res.warnings) == 0:
			e.ahead.Store(aheadIdle) // still valid beyond the window: nothing asked
			return
		case err == nil && res.entry != e:
			return // the new token is cached; e is no longer served
		case errors.Is(err, errAheadStale):
			e.ahead.Store(aheadNever)
			return
		case err == nil:
			w := res.warnings[0]
			e.aheadWarning.Store(&w)
		default:
			b.Logger().Warn("exchanging a token ahead of its expiry did not complete; it is served until it falls due", "credential", c.Name, "error", err)
		}
		next := b.now().Add(aheadRetryPause)
		if f := b.exchanges.get(c.Name, r.key(), e.gen); f != nil && f.until.After(next) {
			next = f.until
		}
		e.ahead.Store(next.UnixNano())
	}, func() { e.ahead.Store(aheadNever) })
	return warning
}

// exchangeHandOverAt is handOverAt for an exchanged token (handOverPoint,
// token_timing.go): past its due point, the exchange's own backoff says when it is
// tried again. e is nil for a token just exchanged.
func exchangeHandOverAt(cfg *engineConfig, e *exchangeEntry, tok *oauth.Token, demand time.Duration, now time.Time) time.Time {
	if e == nil {
		return handOverPoint(cfg.RefreshAhead, nil, tok, demand, now, nil)
	}
	return handOverPoint(cfg.RefreshAhead, &e.ahead, tok, demand, now, func() time.Time { return e.until })
}

// exchangeFailure turns a failed exchange of r into the caller's error. The provider's
// refusal of the exchange is about this request, not the credential's grant: it never
// marks needs_reauth (access/ is unaffected). A refused target, scope or request is
// 400 naming the parameter; another refusal 403; throttled 429; transient 502.
func exchangeFailure(name string, r exchangeRequest, oe *oauth.Error, now time.Time) error {
	sent := func() string {
		var p []string
		if len(r.audiences) > 0 {
			p = append(p, "audience")
		}
		if len(r.resources) > 0 {
			p = append(p, "resource")
		}
		if len(r.scopes) > 0 {
			p = append(p, "scope")
		}
		if r.tokenType != "" {
			p = append(p, "requested_token_type")
		}
		if len(p) == 0 {
			return "the request"
		}
		return strings.Join(p, ", ")
	}
	switch {
	case oe.Code == oauth.CodeThrottled:
		return throttledError(name, oe, now)
	case oe.Code == "invalid_target":
		param := "audience"
		switch {
		case len(r.audiences) > 0 && len(r.resources) > 0:
			param = "audience or resource"
		case len(r.resources) > 0:
			param = "resource"
		}
		return logical.CodedError(http.StatusBadRequest, fmt.Sprintf("%s: the provider refused the requested target for credential %q (invalid_target)", param, name))
	case oe.Code == "invalid_scope":
		return logical.CodedError(http.StatusBadRequest, fmt.Sprintf("scope: the provider refused the requested scope for credential %q (invalid_scope)", name))
	case oe.Code == "invalid_request":
		return logical.CodedError(http.StatusBadRequest, fmt.Sprintf("%s: the provider refused the exchange request of credential %q as invalid (invalid_request)", sent(), name))
	case oe.Permanent():
		return logical.CodedError(http.StatusForbidden, fmt.Sprintf("credential %q: the provider refused to exchange its token (%s); the credential itself is unaffected", name, oe.Error()))
	}
	return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("credential %q: the provider could not exchange its token: %s", name, oe.Error()))
}

// sortedUnique sorts l and drops duplicates, in place.
func sortedUnique(l []string) []string {
	sort.Strings(l)
	out := l[:0]
	for i, v := range l {
		if i == 0 || v != l[i-1] {
			out = append(out, v)
		}
	}
	return out
}
