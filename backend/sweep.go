// The sweep: the due-time and alerting indexes, the background scan that builds them,
// and the periodic pass that warns about, suspends and purges credentials.

package backend

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
	"golang.org/x/sync/errgroup"
)

// sweepBatch caps the credentials one sweep processes; the rest wait for the next.
const sweepBatch = 5000

// afterCredentialChange re-indexes a credential whose settings or state changed.
func (b *integrationsBackend) afterCredentialChange(ctx context.Context, s logical.Storage, name string) error {
	c, err := b.credentials.get(ctx, s, name)
	if err != nil || c == nil {
		b.activity.unindex(name)
		return err
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return err
	}
	b.reindex(cfg, c, c.State)
	return nil
}

// reindex files a credential in the sweep's two indexes, under the policy cfg gives
// it, and in the verify schedule's (nextVerify): the due-time index under its next action judged from due (the state acted on:
// c's stored state, or the sweep's current one, which counts unflushed accesses), and
// the alerting index under the time c's stored state may first show an alert (never
// later than the current one's). Every write, flush, scan and sweep files through here.
func (b *integrationsBackend) reindex(cfg *engineConfig, c *credential, due lifecycle.State) {
	p := b.policyFor(cfg, c)
	b.activity.index.Set(c.Name, p.NextDue(due))
	b.activity.alerting.Set(c.Name, p.AlertsFrom(c.State))
	b.activity.states.set(c.Name, c.State.Status, b.indexedHealth(p, c, due))
	b.activity.verifying.Set(c.Name, b.nextVerify(cfg, c))
	b.activity.overlaps.Set(c.Name, overlapUntil(c.State))
	b.activity.clientKeys.Set(c.Name, nextClientKeyWork(c, b.now()))
	b.tokens.kept.file(cfg, c)
}

// unindex drops a credential from the indexes and the metrics' counts.
func (a *activity) unindex(name string) {
	a.index.Remove(name)
	a.alerting.Remove(name)
	a.verifying.Remove(name)
	a.overlaps.Remove(name)
	a.clientKeys.Remove(name)
	a.states.remove(name)
}

// scanIndex is the index scan job: one run (re)builds the indexes from storage. Until
// it ends the sweep acts on what is indexed (every write indexes its credential), and
// alerts says it may be incomplete. It is started at Initialize, by a sweep that finds
// the index missing or built under other windows (unless a scan is running: a config
// change meanwhile makes the next sweep start another) and by rebuildIndex.
func (b *integrationsBackend) scanIndex(ctx context.Context, s logical.Storage) error {
	if b.snapshot.active.Load() && b.snapshot.tried.CompareAndSwap(false, true) {
		// The first scan after Initialize: from the snapshot when Clean left it whole.
		if loaded, err := b.scanFromSnapshot(ctx, s); loaded || ctx.Err() != nil {
			if err != nil && ctx.Err() == nil {
				b.Logger().Error("the verifying scan after the index snapshot's load failed; the snapshot is written again as it changes", "error", err)
			}
			if hook := b.activity.buildFinished; hook != nil {
				hook()
			}
			return nil
		} else if err != nil {
			b.Logger().Warn("loading the index snapshot failed: scanning", "error", err)
		}
	}
	if err := b.buildIndex(ctx, s); err != nil && ctx.Err() == nil {
		b.Logger().Error("building the lifecycle index failed; the next sweep retries", "error", err)
	}
	if hook := b.activity.buildFinished; hook != nil {
		hook()
	}
	return nil
}

// rebuildIndex starts the scan again after a config change (a write or a delete of
// config), so the indexes are rebuilt under the new windows at once rather than at
// the next sweep, up to a minute later, with alerts saying the index is still being
// built meanwhile. A scan under the old config is cancelled first. Nothing happens
// before the background work has started (Initialize builds the index then) or on a
// node that may not write.
func (b *integrationsBackend) rebuildIndex(s logical.Storage) {
	if b.WriteSafeReplicationState() {
		b.indexScan.Restart(s)
	}
}

// indexComplete reports whether the indexes hold every credential under the current
// config.
func (b *integrationsBackend) indexComplete(cfg *engineConfig) bool {
	return b.activity.indexedFor.Load() == cfg
}

// buildIndex fills the indexes from storage: every credential's next due action and
// alert time, and the stored runs of failures. It takes no credential lock: what it
// read is filed only if the credential's store generation did not move meanwhile (see
// indexOne), so a write or delete racing the scan wins and nothing deleted comes
// back. It decodes only the fields the indexes need and caches nothing, so the scan
// costs no memory for credentials nobody reads.
// indexScanWorkers bounds the index scan's parallel storage reads: enough to keep the
// storage connection busy, few enough to leave Vault room for the requests it serves
// meanwhile.
var indexScanWorkers = 8 // a variable only for BenchmarkIndexScan

func (b *integrationsBackend) buildIndex(ctx context.Context, s logical.Storage) error {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return err
	}
	a := b.activity
	b.credentials.labels.startFill()
	names, err := b.credentials.list(ctx, s)
	if err != nil {
		return err
	}
	hasUsage, err := b.usage.stored(ctx, s)
	if err != nil {
		return err
	}
	a.scanned.Store(0)
	a.total.Store(int64(len(names)))
	if err := b.indexNames(ctx, s, cfg, names, hasUsage, indexScanWorkers, nil); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	a.indexedFor.Store(cfg)
	b.credentials.labels.markComplete()
	if x := b.snapshot; x.active.Load() && !x.baseline.Load() {
		// Every chunk of the snapshot is written again from what storage holds now,
		// by the snapshot job at its bounded rate; then Clean may write the marker.
		if err := b.queueRebuild(ctx, s, names); err != nil {
			return err
		}
		x.baseline.Store(true)
	}
	return nil
}

// indexNames indexes names (indexOne), workers at a time; seen, when not nil, is told
// each credential's snapshot entry as filed.
func (b *integrationsBackend) indexNames(ctx context.Context, s logical.Storage, cfg *engineConfig, names []string, hasUsage usageKeys, workers int, seen func(*snapEntry)) error {
	a := b.activity
	// Each credential is one storage read (two with usage) and a decode; through the
	// plugin's storage connection that is a round trip each, so reads one at a time
	// leave the scan waiting on the wire (~50 s per 100,000). indexScanWorkers read in
	// parallel. indexOne is safe against itself as against writes (it files only what
	// no change of the credential's shard raced), and the workers take names in list
	// order, so the label index's sorted lists still grow at their ends.
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(workers, len(names)) {
		g.Go(func() error {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(names)) {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				name := names[i]
				if err := b.indexOne(gctx, s, cfg, name, hasUsage.has(name), seen); err != nil {
					return err
				}
				a.scanned.Add(1)
			}
		})
	}
	return g.Wait()
}

func (b *integrationsBackend) indexOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, hasUsage bool, seen func(*snapEntry)) error {
	a := b.activity
	var filed *credential
	var filedUsed time.Time
	defer func() {
		if seen != nil && filed != nil {
			e := entryOf(filed, filedUsed, b.usage.isFailing(name))
			seen(&e)
		}
	}()
	for attempt := 0; ; attempt++ {
		if attempt == 8 {
			// The credential's shard keeps changing under the scan: index it the way a
			// write does, under its lock.
			if err := b.indexUnderLock(ctx, s, name); err != nil {
				return err
			}
			break
		}
		c, gen, err := b.credentials.indexView(ctx, s, name)
		if errors.Is(err, errUndecodable) {
			// One undecodable entry must not keep the rest unindexed; reads of it fail
			// with the same error.
			b.Logger().Error("a stored credential cannot be decoded: not indexed", "credential", name, "error", err)
			return nil
		}
		if err != nil {
			return err
		}
		var used time.Time
		if c != nil {
			if used, err = b.scannedUse(ctx, s, c); err != nil {
				return err
			}
		}
		// Filed only if no write, delete or invalidation of the credential's shard
		// came between the read and now: those index (or unindex) the credential
		// themselves after their change, so a stale read must not land after them
		// (nor a deleted credential's refresh token stay held).
		if b.credentials.ifUnchanged(name, gen, func() {
			if c == nil {
				a.unindex(name)
				b.credentials.labels.unfile(name)
				return
			}
			b.tokens.kept.holdAt(name, used)
			b.reindex(cfg, c, c.State)
			b.credentials.labels.file(name, c.typeDef(), c.Tags)
			filed, filedUsed = c, used
		}) {
			break
		}
	}
	if !hasUsage {
		return nil
	}
	err := b.usage.indexFailing(ctx, s, name)
	if errors.Is(err, errUndecodable) {
		b.Logger().Warn("stored usage cannot be decoded", "credential", name, "error", err)
		return nil
	}
	return err
}

// indexUnderLock takes name's lock and indexes it (indexLocked); the lock is released
// by defer, so that a panic the job runner recovers does not leave it held.
func (b *integrationsBackend) indexUnderLock(ctx context.Context, s logical.Storage, name string) error {
	h, unlock := b.credentials.lock(name)
	defer unlock()
	return b.indexLocked(ctx, s, h)
}

// indexLocked indexes a credential the way a write does, the caller holding its lock
// (h): its refresh token held for keep-alive, then filed in every index and the labels.
func (b *integrationsBackend) indexLocked(ctx context.Context, s logical.Storage, h credentialHeld) error {
	name := h.name
	c, err := b.credentials.get(ctx, s, name)
	if err == nil && c != nil {
		var used time.Time
		if used, err = b.scannedUse(ctx, s, c); err == nil {
			b.tokens.kept.holdAt(name, used)
		}
	}
	if err == nil {
		err = b.afterCredentialChange(ctx, s, name)
	}
	if err == nil {
		err = b.credentials.refile(ctx, s, name)
	}
	return err
}

// sweep warns about, suspends and purges the credentials whose time has come. Its cost
// follows the number of credentials with something due, not the number stored.
func (b *integrationsBackend) sweep(ctx context.Context, s logical.Storage) (err error) {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	defer func(start time.Time) { b.metrics.sweepRan(start, err) }(time.Now())
	// No flush may run while the sweep judges credentials: one that drained an access
	// but has not yet renewed its credential's window would let the sweep suspend a
	// credential used moments before its deadline.
	defer lockRanked(rankFlush, &b.activity.flushMu)()
	if err := b.flushLocked(ctx, s); err != nil {
		b.Logger().Warn("flushing usage before the sweep failed", "error", err)
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return err
	}
	if !b.indexComplete(cfg) {
		// Never built, or built under other windows: rebuild in the background and
		// act meanwhile on what is indexed. Each due name is judged afresh under its
		// lock, so a partial index can delay an action (until the scan files the
		// credential) but never repeat one or act on a stale state.
		b.indexScan.Start(s) //nolint:contextcheck // background work that outlives this call: it runs under the job's own context, which Clean ends, not the request's
	}
	now := b.now().UTC()
	var errs []error
	for _, name := range b.activity.index.Due(now, sweepBatch) {
		if err := b.sweepOne(ctx, s, cfg, name, now); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.sweepOverlaps(ctx, s, cfg, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *integrationsBackend) sweepOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, now time.Time) error {
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.view(ctx, s, name)
	if err != nil {
		return err
	}
	if c == nil {
		b.activity.unindex(name)
		return nil
	}
	p := b.policyFor(cfg, c)
	state := b.currentState(c)
	action, ok := p.Due(state, now)
	if !ok {
		b.reindex(cfg, c, state) // alerting from the stored state: never later than the current one's
		return nil
	}
	// Each change is stored before it is announced: a notification never tells of a
	// warning, suspension or purge that storage refused (the next sweep tries again,
	// and announces it then).
	if action.Kind == lifecycle.ActionPurge {
		if err := b.deleteCredential(ctx, s, held, c); err != nil {
			return err
		}
		b.notify(ctx, c, action)
		return nil
	}
	n := c.clone()
	n.State = lifecycle.Apply(state, action, now)
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		return err
	}
	b.notify(ctx, n, action)
	event := usage.EventWarning
	if action.Kind == lifecycle.ActionSuspend {
		event = usage.EventSuspended
	}
	b.recordEvent(name, event, true, "", action.Message())
	b.reindex(cfg, n, n.State)
	return nil
}
