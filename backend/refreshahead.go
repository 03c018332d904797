package backend

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// Refresh ahead (docs/ARCHITECTURE.md, Background work): a token that is being read is refreshed in the
// background before it falls due, so no reader waits on the provider; a token nobody
// reads is not refreshed.
//
// The rule (when a token falls due for a read, when its refresh window opens) is
// token_timing.go's, with every other timing rule of a mint.
//
// The first read in the window starts one background refresh (an atomic flag on the
// cached token: reads outside the window do one time comparison more, reads inside it
// an atomic load; neither takes a lock or allocates). It runs only on a node that may
// write (WriteSafeReplicationState), through the Broker's single flight, so a reader
// who arrives when the token is actually due joins the same provider request: one
// request per rollover. A token nobody reads in its window is never refreshed ahead;
// there is no timer.
//
// Failures are the Broker's: classified and backed off as on the read path. A
// transient one leaves the still-valid token served, with the Broker's warning, and
// the next read after the backoff tries again; at the due point readers fall back to
// the read path (served degraded or refused, as without refresh ahead). A permanent
// refusal marks the credential needs_reauth, as the read path does: the provider's
// answer is about the grant, not about who asked, and waiting for the due point would
// only hide for minutes what a person must fix (the Broker would refuse the next
// reader with the same error, without asking again).

// States of storedToken.ahead besides a not-before time.
const (
	aheadIdle    int64 = 0
	aheadRunning int64 = -1
	aheadNever   int64 = math.MaxInt64 // a node that may not write: never here
)

// aheadRetryPause is the pause before another background refresh after one failed
// without the Broker backing off (storage trouble, the request timing out).
const aheadRetryPause = time.Second

// handOverAt is when a reader of access/ needing demand (shortLivedDemand of its
// minValid) would next be handed a token other than tok: handOverPoint (token_timing.go)
// with st's refresh-ahead state (st nil: a token just minted) and, past the due point,
// the Broker's next attempt.
func (b *integrationsBackend) handOverAt(cfg *engineConfig, st *storedToken, name string, tok *oauth.Token, demand time.Duration, now time.Time) time.Time {
	retry := func() time.Time { return b.tokens.brokerOf().RetryAt(name) }
	if st == nil {
		return handOverPoint(cfg.RefreshAhead, nil, tok, demand, now, retry)
	}
	return handOverPoint(cfg.RefreshAhead, &st.ahead, tok, demand, now, retry)
}

// refreshAhead is called by a read that found the cached token st in its refresh
// window. It starts the background refresh unless one is running or backing off, and
// returns the warning of the last failed one ("" when none), for the reader.
func (b *integrationsBackend) refreshAhead(cfg *engineConfig, st *storedToken, name string, minValid time.Duration, now time.Time) string {
	warning := ""
	if w := st.aheadWarning.Load(); w != nil {
		warning = *w
	}
	v := st.ahead.Load()
	if v == aheadRunning || now.UnixNano() < v || !st.ahead.CompareAndSwap(v, aheadRunning) {
		return warning
	}
	// The job asks the node's write safety in the background, not on the read: it
	// may be a call to Vault. Not started (unloading, or a node that may not write):
	// not on this node.
	b.ahead.Go(func(ctx context.Context) {
		if b.storage == nil {
			st.ahead.Store(aheadNever)
			return
		}
		b.refreshInBackground(ctx, cfg, st, name, minValid)
	}, func() { st.ahead.Store(aheadNever) })
	return warning
}

// refreshInBackground refreshes st, the cached token of name, on a context detached
// from the read that started it, bounded by request_timeout and cancelled by Clean.
func (b *integrationsBackend) refreshInBackground(ctx context.Context, cfg *engineConfig, st *storedToken, name string, minValid time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	s := b.storage
	res, t, err := b.mintToken(ctx, s, cfg, mintForAhead(name, minValid, st))
	switch {
	case err == nil && res.Warning == "" && res.Token == &st.Token:
		// Nothing requested: the Broker still counts st valid beyond the window (a
		// read exactly at its opening: the read path's window includes that instant,
		// ValidFor too). st is idle again, so the next read in the window starts
		// another; left running, every reader would be answered ttl=1 until the due
		// point.
		st.ahead.Store(aheadIdle)
		return
	case err == nil && res.Warning == "":
		// The new token is stored and cached (a new storedToken, idle); st is no
		// longer served. The Broker may also have answered with a token minted
		// meanwhile, which is cached already.
		b.activity.setTransient(name, false)
		return
	case err == nil:
		// A transient failure: the Broker backs off and serves st degraded.
		w := res.Warning
		st.aheadWarning.Store(&w)
		b.activity.setTransient(name, true)
		b.recordEvent(name, usage.EventRefreshFailed, false, "", w)
	case errors.Is(err, errAheadStale), errors.Is(err, errCredentialGone), isDiscarded(err), errors.Is(err, oauth.ErrClosed):
		// Superseded: refreshed by someone else, or the credential changed or went
		// (its result, if any, was not stored), or the mount is going away.
		st.ahead.Store(aheadNever)
		return
	default:
		var oe *oauth.Error
		if !errors.As(err, &oe) {
			b.Logger().Warn("refreshing a token ahead of its expiry did not complete; it is served until it falls due", "credential", name, "error", err)
		}
		// The refresh's own context may have run out: recording gets a bound of its
		// own, still ended by Clean.
		rctx, rcancel := context.WithTimeout(b.ahead.Context(), cfg.RequestTimeout)
		defer rcancel()
		// Recorded only while the credential exists: events of one deleted meanwhile
		// would outlive it.
		if c, gerr := b.credentials.get(rctx, s, name); gerr == nil && c != nil { //nolint:contextcheck // on purpose: the refresh's context may have run out; rctx is bounded by the refresh-ahead context, which Clean ends
			_ = b.tokenFailure(rctx, s, t, err, b.now()) //nolint:contextcheck // as above. It records it; needs_reauth on a permanent refusal
		}
	}
	next := b.tokens.brokerOf().RetryAt(name)
	if now := b.now(); !next.After(now) {
		next = now.Add(aheadRetryPause)
	}
	st.ahead.Store(next.UnixNano())
}
