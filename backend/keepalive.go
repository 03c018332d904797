// Keep-alive (docs/ARCHITECTURE.md, Background work): a refresh token held for an idle
// credential is exercised — one refresh, through the Broker's single flight, as an
// access/ read would make — at least every keepalive_interval since it was last used,
// so providers that expire unused refresh tokens do not. It is the one deliberate
// provider call for an idle credential (refresh ahead only refreshes tokens being
// read), and it is not usage: no access is counted and the inactivity window is not
// renewed. Suspended and needs_reauth credentials are not kept alive (lifecycle.
// NextKeepAlive). Only the active node runs it; the due times are an index filed by
// every token write and every reindex, and rebuilt by the index scan, so a tick costs
// the credentials due, not those stored.

package backend

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

const (
	// maxKeepAliveInFlight bounds the keep-alive refreshes running at once.
	maxKeepAliveInFlight = 4
	// keepAliveBatch is how many due names one pass takes from the index.
	keepAliveBatch = 256
	// keepAliveRetry files a credential whose keep-alive started, so a run never takes
	// it twice; a refresh stores a token, which files the next time.
	keepAliveRetry = 15 * time.Minute
	// keepAliveRecheck files a credential whose keep-alive minted nothing (it joined
	// a request in flight that served a token without refreshing): judged again from
	// its stored token at a tick soon after.
	keepAliveRecheck = time.Minute
)

// Outcomes of a keep-alive, the result label of its counter and its log line.
const (
	keepAliveOK        = "ok"
	keepAliveTransient = "transient"
	keepAlivePermanent = "permanent"
)

// keepAlive is the keep-alive schedule, owned by the token store: when each held
// refresh token was last used (the issue time of the token state holding it) and the
// due-time index filed from it under the credential's state. Only credentials of a
// type that refreshes (credtype.Type.RefreshTokens) and hold a refresh token are in
// it. The times are hints that are never later than the truth (a token only gets
// newer): a due name is judged afresh from its stored token before anything is asked.
type keepAlive struct {
	due *lifecycle.Index

	mu   sync.Mutex
	used map[string]time.Time
	// mint is the token request of a keep-alive; nil (but in tests) is mintToken of
	// mintForKeepAlive.
	mint func(ctx context.Context, s logical.Storage, cfg *engineConfig, name string) (oauth.Result, tokenTicket, error)
	// changed is told of a token write that changed what is held for name (hold,
	// forget): the index snapshot's chunk of name is written again. The scan's and
	// the snapshot load's holdAt of a stored time tells nothing.
	changed func(name string)
	// started is when this node took up the background work (Initialize on the
	// active node): the keep-alives overdue then are spread, not run in one burst.
	started time.Time
}

// start records that this node takes up keep-alive now; Initialize calls it before
// the index scan files the held tokens.
func (k *keepAlive) start(now time.Time) {
	k.mu.Lock()
	k.started = now
	k.mu.Unlock()
}

// next is when c's refresh token, last used at used, is next exercised under cfg:
// lifecycle.NextKeepAlive, the overdue spread from when this node started or
// keepalive_interval last changed, whichever is later.
func (k *keepAlive) next(cfg *engineConfig, name string, st lifecycle.State, used time.Time) time.Time {
	k.mu.Lock()
	since := k.started
	k.mu.Unlock()
	if cfg.KeepaliveSince.After(since) {
		since = cfg.KeepaliveSince
	}
	return lifecycle.NextKeepAlive(name, st, used, cfg.KeepaliveInterval, since)
}

func newKeepAlive(tab *names.Table) *keepAlive {
	return &keepAlive{due: lifecycle.NewIndexOn(tab), used: make(map[string]time.Time)}
}

// hold records the token state tok of the credential name of type t: the time its
// refresh token was last used, or nothing when it holds none.
func (k *keepAlive) hold(name string, tok *storedToken, t *credtype.Type) {
	if tok == nil || tok.RefreshToken == "" || t == nil || !t.RefreshTokens() {
		k.holdAt(name, time.Time{})
		return
	}
	k.mu.Lock()
	was, held := k.used[name]
	k.used[name] = tok.IssuedAt
	k.mu.Unlock()
	if (!held || !was.Equal(tok.IssuedAt)) && k.changed != nil {
		k.changed(name)
	}
}

// usedOf is when name's refresh token was last used, as held; false: none held.
func (k *keepAlive) usedOf(name string) (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	used, held := k.used[name]
	return used, held
}

// holdAt records that name's refresh token was last used at used; zero: it holds none.
func (k *keepAlive) holdAt(name string, used time.Time) {
	if used.IsZero() {
		k.forget(name)
		return
	}
	k.mu.Lock()
	k.used[name] = used
	k.mu.Unlock()
}

// forget drops name: its token state went (a repoint, a delete, a purge).
func (k *keepAlive) forget(name string) {
	k.mu.Lock()
	_, held := k.used[name]
	delete(k.used, name)
	k.mu.Unlock()
	k.due.Remove(name)
	if held && k.changed != nil {
		k.changed(name)
	}
}

// file files c under its next keep-alive (lifecycle.NextKeepAlive); reindex calls it
// for every credential it files, and a token write for its own.
func (k *keepAlive) file(cfg *engineConfig, c *credential) {
	k.mu.Lock()
	used, held := k.used[c.Name]
	k.mu.Unlock()
	if !held {
		return
	}
	k.due.Set(c.Name, k.next(cfg, c.Name, c.State, used))
}

// scannedUse is when the refresh token of a credential the index scan found was last
// used, for holdAt (zero: none held, or its type does not refresh). The scan reads
// every refresh-capable credential's token, so it never goes through the bounded
// token cache: a cached copy is glanced at (not promoted), else the entry is decoded
// from storage, only the fields keep-alive needs, and not cached, so an index build
// over a large mount does not evict the hot working set. An entry that cannot be
// decoded is logged by name (never its content) and not kept alive; the scan carries
// on, and reads of the token fail alike.
func (b *integrationsBackend) scannedUse(ctx context.Context, s logical.Storage, c *credential) (time.Time, error) {
	if t := c.typeDef(); t == nil || !t.RefreshTokens() {
		return time.Time{}, nil
	}
	used, err := b.tokens.refreshHeldSince(ctx, s, c.Name)
	if errors.Is(err, errUndecodable) {
		b.Logger().Error("a stored token cannot be decoded: not kept alive", "credential", c.Name)
		return time.Time{}, nil
	}
	return used, err
}

// runKeepAlives is the keep-alive job's run (started by the tick, one at a time): a
// keep-alive of every refresh token due, at most maxKeepAliveInFlight at once.
func (b *integrationsBackend) runKeepAlives(ctx context.Context, s logical.Storage) error {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil || cfg.KeepaliveInterval == 0 {
		return nil //nolint:nilerr // a config that cannot be read is retried at the next tick
	}
	b.runDue(ctx, b.keepalives, b.keepAliveFull, b.tokens.kept.due, maxKeepAliveInFlight, keepAliveBatch, keepAliveRetry, func(ctx context.Context, name string) {
		// Asked for each one: a node that lost the right to write stops here.
		if b.WriteSafeReplicationState() {
			b.keepAliveOne(ctx, s, cfg, name)
		}
	})
	return nil
}

// keepAliveOne exercises the refresh token of name if it is due, judged afresh: the
// credential exists, is active and usable, and its stored token holds a refresh token
// learnt under its destination and last used keepalive_interval ago or more.
// Otherwise it is filed at its true time, or dropped until a change files it again.
func (b *integrationsBackend) keepAliveOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string) {
	k := b.tokens.kept
	c, err := b.credentials.get(ctx, s, name)
	var tok *storedToken
	if err == nil && c != nil {
		tok, err = b.tokens.heldRefreshToken(ctx, s, c)
	}
	if err != nil {
		b.Logger().Warn("keep-alive could not read the credential or its token state; retried later", "credential", name, "error", err)
		return
	}
	if tok == nil { // gone, or holding no refresh token any more
		k.forget(name)
		return
	}
	k.hold(name, tok, c.typeDef())
	now := b.now().UTC()
	st := b.currentState(c)
	next := k.next(cfg, name, st, tok.IssuedAt)
	if next.After(now) || next.IsZero() {
		k.due.Set(name, next) // zero: not kept alive until a change files it again
		return
	}
	if b.policyFor(cfg, c).Usable(st, now) != nil {
		// A window or expiry ran out: the sweep suspends it, which files it again.
		k.due.Remove(name)
		return
	}
	// force: the grant runs whatever access token is cached, through the same single
	// flight as access/ (a read arriving meanwhile joins it). Not an access: nothing
	// is recorded in the usage recorder but the token's own events.
	mint := k.mint
	if mint == nil {
		mint = func(ctx context.Context, s logical.Storage, cfg *engineConfig, name string) (oauth.Result, tokenTicket, error) {
			return b.mintToken(ctx, s, cfg, mintForKeepAlive(name, cfg))
		}
	}
	res, t, err := mint(ctx, s, cfg, name)
	switch {
	case err == nil && res.Warning != "":
		b.activity.setTransient(name, true)
		b.keepAliveDone(name, keepAliveTransient, res.Warning)
	case err == nil && !res.Minted:
		// Joined a request in flight that served a token without refreshing: nothing
		// was stored and the refresh token was not exercised by this one. Not counted;
		// judged again soon from the stored token (a refresh that stored one meanwhile
		// files it an interval on).
		k.due.Set(name, now.Add(keepAliveRecheck))
		return
	case err == nil:
		b.activity.setTransient(name, false)
		b.keepAliveDone(name, keepAliveOK, "")
		return // the stored token filed the next one
	case mintRefusal(name, err, "") != nil, errors.Is(err, oauth.ErrClosed), ctx.Err() != nil:
		return // changed, gone or unloading meanwhile: whatever changed it files it
	default:
		_ = b.tokenFailure(ctx, s, t, err, now) // records it; needs_reauth on a permanent refusal
		var oe *oauth.Error
		if errors.As(err, &oe) && oe.Permanent() {
			b.keepAliveDone(name, keepAlivePermanent, oe.Error())
			return // needs_reauth: reindex dropped it
		}
		detail := "the token request did not complete"
		if oe != nil {
			detail = oe.Error()
		}
		b.keepAliveDone(name, keepAliveTransient, detail)
	}
	// A transient failure: tried again when the Broker's backoff ends, the token state
	// as it was.
	retry := b.tokens.brokerOf().RetryAt(name)
	if !retry.After(now) {
		retry = now.Add(aheadRetryPause)
	}
	k.due.Set(name, retry)
}

// keepAliveDone logs and counts one keep-alive outcome; detail names a failure by the
// provider's status and OAuth error code only, never its text or a token.
func (b *integrationsBackend) keepAliveDone(name, result, detail string) {
	b.metrics.keepAlives.WithLabelValues(result).Inc()
	switch result {
	case keepAliveOK:
		b.Logger().Info("kept a refresh token alive", "credential", name)
	case keepAlivePermanent:
		b.Logger().Warn("keep-alive: the provider refused the refresh token; the credential needs re-authorization", "credential", name, "error", detail)
	default:
		b.Logger().Warn("keep-alive failed transiently; retried with backoff", "credential", name, "error", detail)
	}
}
