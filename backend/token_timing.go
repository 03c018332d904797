// The timing rules of a token, in one place: what a mint is asked for (mintRequest),
// when a cached token may be served as it is (servable, lifetimeInForce), when it falls
// due for a read and when its refresh window opens (refreshAt), and the demand each
// kind of mint puts to the Broker (mintRequest.demand). The Broker applies two rules
// of its own, which stay in backend/oauth: oauth.Token.Fresh (valid for the demand,
// and not resting on a default_token_lifetime no longer in force) decides whether it
// serves the token it is given without a request, and its degrade serves that token,
// with a warning, while the provider fails transiently and the token has not expired.
// The table in token_timing_test.go covers every combination the callers use.

package backend

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// mintReason says why a token is minted; with forced it decides the demand put to
// the Broker and what a success settles.
type mintReason uint8

const (
	// mintRead is the slow path of an access/ read: a token valid for minValid, or
	// served degraded as the Broker decides.
	mintRead mintReason = iota
	// mintAhead is refresh ahead's background refresh of the served token ahead: a
	// token valid beyond ahead's refresh window, so the Broker requests one even
	// though ahead is still servable.
	mintAhead
	// mintVerify is credentials/<name>/verify: the grant runs whatever is cached.
	mintVerify
	// mintKeepAlive exercises a held refresh token: the grant runs whatever is cached.
	mintKeepAlive
)

func (r mintReason) String() string {
	switch r {
	case mintRead:
		return "read"
	case mintAhead:
		return "ahead"
	case mintVerify:
		return "verify"
	case mintKeepAlive:
		return "keep-alive"
	}
	return "unknown"
}

// mintRequest is one token request of mintToken. Build it with mintForRead,
// mintForAhead, mintForVerify or mintForKeepAlive.
type mintRequest struct {
	reason mintReason
	name   string
	// minValid is what the caller needs of the token's remaining life (minimum_seconds
	// or expiry_buffer), before shortLivedDemand lowers it for short-lived tokens.
	minValid time.Duration
	// forced: the grant runs whatever is cached (verifyDemand). A forced mint that
	// succeeds does not settle a failed verification (verifiedByMint): it is the
	// verification, or a keep-alive that proves only the refresh token.
	forced bool
	// ahead is, for mintAhead, the cached token being refreshed: once another is
	// cached the request is stale (errAheadStale).
	ahead *storedToken
}

func mintForRead(name string, minValid time.Duration) mintRequest {
	return mintRequest{reason: mintRead, name: name, minValid: minValid}
}

func mintForAhead(name string, minValid time.Duration, st *storedToken) mintRequest {
	return mintRequest{reason: mintAhead, name: name, minValid: minValid, ahead: st}
}

func mintForVerify(name string, cfg *engineConfig) mintRequest {
	return mintRequest{reason: mintVerify, name: name, minValid: cfg.ExpiryBuffer, forced: true}
}

func mintForKeepAlive(name string, cfg *engineConfig) mintRequest {
	return mintRequest{reason: mintKeepAlive, name: name, minValid: cfg.ExpiryBuffer, forced: true}
}

// verifyDemand is the demand of a forced mint: longer than any token lives, so
// neither the cached token nor the Broker's last one is served and the grant runs.
const verifyDemand = time.Duration(math.MaxInt64 / 2)

// demand is the validity the Broker is asked for, src being the token the mint starts
// from (mintSource): shortLivedDemand of minValid; verifyDemand when forced; for
// refresh ahead, that plus the refresh lead (aheadLead), which puts src (still servable) out of
// the Broker's reach so it requests a new one.
func (r mintRequest) demand(src *oauth.Token, buffer time.Duration) time.Duration {
	d := shortLivedDemand(r.minValid, buffer, src)
	if r.forced {
		d = verifyDemand
	}
	if r.reason == mintAhead && src != nil {
		d += aheadLead(src, d)
	}
	return d
}

// mintSource is the token a mint starts from, given the token state cached for the
// credential c (nil when none is held, or when it was learnt for another destination
// or client): the cached token itself while it is servable, else a copy whose access
// token is withheld when it was minted before c's settings last changed (its refresh
// token, if any, is still used).
func mintSource(cached *storedToken, c *credential, cfg *engineConfig, now time.Time, minValid time.Duration) *oauth.Token {
	if cached == nil {
		return nil
	}
	if tok := servable(cached, c, cfg, now, minValid); tok != nil {
		return tok
	}
	old := cached.Token
	if cached.IssuedAt.Before(c.UpdatedAt) {
		old.AccessToken = ""
	}
	return &old
}

// servable returns the cached token when it may be handed out as it is: minted under
// the credential's current settings (not before its last update, and not on a
// default_token_lifetime no longer in force) and valid for the demand
// (shortLivedDemand). Otherwise nil.
func servable(cached *storedToken, c *credential, cfg *engineConfig, now time.Time, minValid time.Duration) *oauth.Token {
	if cached == nil || cached.unsaved || cached.IssuedAt.Before(c.UpdatedAt) {
		return nil
	}
	tok := &cached.Token
	if !tok.Fresh(now, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok), cfg.DefaultTokenLifetime) {
		return nil
	}
	return tok
}

// lifetimeInForce reports whether tok's expiry does not rest on a
// default_token_lifetime other than cfg's: a provider sent expires_in, or the lifetime
// it was assumed from is still the engine's. A token that fails it is neither served
// (oauth.Token.Fresh applies the same rule) nor stored as current (tokenStore.put).
func lifetimeInForce(tok *oauth.Token, cfg *engineConfig) bool {
	return tok.AssumedLifetime == 0 || tok.AssumedLifetime == cfg.DefaultTokenLifetime
}

// inRefreshWindow reports whether a read at now, needing minValid, that was served
// tok should start its refresh in the background (refresh_ahead on, and the window
// open).
func inRefreshWindow(cfg *engineConfig, tok *oauth.Token, minValid time.Duration, now time.Time) bool {
	return cfg.RefreshAhead && !now.Before(refreshAt(tok, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok)))
}

// shortLivedDemand is how long tok must still be valid to be served, given the demand
// minValid (minimum_seconds or expiry_buffer) and the engine's expiry_buffer. When
// tok's whole lifetime is not longer than minValid, no token from this provider could
// meet the demand, and minting again would only repeat the request on every read: the
// demand becomes expiry_buffer, or half the lifetime when expiry_buffer is not shorter
// than the lifetime either.
func shortLivedDemand(minValid, buffer time.Duration, tok *oauth.Token) time.Duration {
	if tok == nil || tok.AccessToken == "" {
		return minValid
	}
	life := tok.Expiry.Sub(tok.IssuedAt)
	if life <= 0 || minValid < life {
		return minValid
	}
	if buffer < life {
		return buffer
	}
	return life / 2
}

// A token falls due for a read at expiry − demand, where demand is what the read
// needs (expiry_buffer, or minimum_seconds, lowered by shortLivedDemand for tokens
// that never live that long): from then on that reader is not served it. Its refresh
// window opens lead earlier, with
//
//	lead = min(max(lifetime/5, minRefreshLead), (due − issued)/2)
//
// A fifth of the lifetime leaves room for the provider to answer and, after a
// failure, for retries under the Broker's backoff before anyone is refused the token;
// minRefreshLead keeps that room for short-lived tokens; and the window never opens
// in the first half of the time a token may be served, so a provider of very short
// tokens is asked at most twice as often as without refresh ahead (never on every
// read). For an hour-long token and the default 60 s expiry_buffer the window opens
// 13 minutes before expiry; for a 4 s token with a 1 s buffer, 1.5 s after issue.
const minRefreshLead = 10 * time.Second

// refreshLead is how long before its due point (expiry − demand) the refresh window
// of tok opens.
func refreshLead(tok *oauth.Token, demand time.Duration) time.Duration {
	life := tok.Expiry.Sub(tok.IssuedAt)
	return max(0, min(max(life/5, minRefreshLead), (life-demand)/2))
}

// refreshAt is when the refresh window of tok opens for a read needing demand:
// aheadLead before the due point.
func refreshAt(tok *oauth.Token, demand time.Duration) time.Time {
	return tok.Expiry.Add(-demand - aheadLead(tok, demand))
}

// aheadLead is how long before its due point the refresh window of tok opens: the
// lead (refreshLead), and tok's own spread (refreshSpread) within a quarter of it
// more, so tokens minted together (twenty thousand at one provider after a restore)
// do not all fall due together. The spread only ever opens the window earlier, never
// in the first half of the time the token may be served: every rule that rests on
// the lead (the room for retries, a periodic reader's interval) still holds.
func aheadLead(tok *oauth.Token, demand time.Duration) time.Duration {
	lead := refreshLead(tok, demand)
	life := tok.Expiry.Sub(tok.IssuedAt)
	window := min(lead/4, (life-demand)/2-lead)
	return lead + refreshSpread(tok, window)
}

// refreshSpread is tok's own point in [0, window): a hash of its issue time and the
// end of its access token (a JWT's signature, or the random token itself), the same
// on every read and every node, different for tokens minted in the same instant.
func refreshSpread(tok *oauth.Token, window time.Duration) time.Duration {
	if window <= 0 {
		return 0
	}
	h := uint64(14695981039346656037) // FNV-1a
	mix := func(b byte) { h = (h ^ uint64(b)) * 1099511628211 }
	n := uint64(tok.IssuedAt.UnixNano())
	for i := 0; i < 8; i++ {
		mix(byte(n >> (8 * i))) //nolint:gosec // G115: the low byte, on purpose
	}
	a := tok.AccessToken
	for i := max(0, len(a)-32); i < len(a); i++ {
		mix(a[i])
	}
	return time.Duration(h % uint64(window)) //nolint:gosec // G115: less than window, a positive duration
}

// handOverPoint is when a reader needing demand would next be handed another token
// than tok (handOverAt for access/, exchangeHandOverAt for exchange/): the opening of
// tok's refresh window with refresh ahead, its due point without. Inside the window a
// refresh is running or about to (a read started it): one second from now, unless it
// is backing off after a failure (ahead holds the time of its next attempt), when
// that or the due point, whichever is first. ahead is tok's refresh-ahead state, nil
// for a token just minted (idle). Past the due point (tok served degraded while the
// provider fails) retry says when the next attempt is (nil: none known). Never before
// now + 1s, so a reader that re-reads at this time (Vault Agent, through the ttl of
// the answer) never spins.
func handOverPoint(refreshAhead bool, ahead *atomic.Int64, tok *oauth.Token, demand time.Duration, now time.Time, retry func() time.Time) time.Time {
	soonest := now.Add(time.Second)
	due := tok.Expiry.Add(-demand)
	point := due
	if refreshAhead {
		if at := refreshAt(tok, demand); at.After(now) {
			point = at
		} else if ahead == nil {
			point = soonest
		} else if v := ahead.Load(); v == aheadIdle || v == aheadRunning {
			point = soonest
		} else if v != aheadNever {
			point = time.Unix(0, v)
			if due.Before(point) {
				point = due
			}
		}
	}
	if !point.After(now) && retry != nil {
		point = retry()
	}
	if point.Before(soonest) {
		return soonest
	}
	return point
}
