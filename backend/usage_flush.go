// Usage write-behind: access counts and events kept in memory, flushed to usage/<name>
// in batches, with the renewal of each credential's inactivity window.

package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	bgjobs "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/jobs"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// touchGranularity bounds how often a flush rewrites a credential to renew its
// inactivity window: windows are measured in days, so a minute is precise enough.
const touchGranularity = time.Minute

// flushUsage writes the usage counted in memory to storage, and renews the inactivity
// window of every credential accessed since. What cannot be written is put back.
func (b *integrationsBackend) flushUsage(ctx context.Context, s logical.Storage) error {
	return b.flushUsageUntil(ctx, s, nil)
}

// flushUsageUntil is flushUsage whose workers start no credential once stop is closed
// (nil: never): what they have not started goes back to the recorder.
func (b *integrationsBackend) flushUsageUntil(ctx context.Context, s logical.Storage, stop <-chan struct{}) error {
	if s == nil || !b.WriteSafeReplicationState() {
		return nil
	}
	a := b.activity
	defer lockRanked(rankFlush, &a.flushMu)()
	rest, err := b.flushPending(ctx, s, b.usage.drain(), stop)
	if len(rest) > 0 {
		b.usage.restore(rest)
	}
	return err
}

// flushLocked is flushUsage for a caller holding flushMu.
func (b *integrationsBackend) flushLocked(ctx context.Context, s logical.Storage) error {
	_, err := b.flushPending(ctx, s, b.usage.drain(), nil) // no stop: no rest
	return err
}

// flushPending stores what a drain took. The caller holds flushMu. Once stop is closed
// (nil: never) the workers start no further credential: the ones started finish, and
// the rest is returned, no longer in flight, for the caller to put back into the
// recorder or hand off. The handoff entries restored at Initialize are deleted once a
// flush has taken everything (no rest): their usage was in pending, and what storage
// refused is back in the recorder (handed off again at Clean).
func (b *integrationsBackend) flushPending(ctx context.Context, s logical.Storage, pending map[string]usage.Pending, stop <-chan struct{}) (rest map[string]usage.Pending, err error) {
	if len(pending) == 0 {
		return nil, nil
	}
	defer b.usage.flushed()
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		b.usage.restore(pending)
		b.activity.flushStalled.Store(true)
		return nil, err
	}
	// Each credential's flush is a few storage round trips (through Vault, for an
	// external plugin): a pool of workers overlaps them, so a flush of many
	// credentials (after a burst of writes, or at Clean, which a plugin reload waits
	// for) takes a fraction of the time. flushOne locks only its own credential.
	type job struct {
		name string
		p    usage.Pending
	}
	jobs := make(chan job)
	var (
		errMu sync.Mutex
		errs  []error
		wg    sync.WaitGroup
	)
	for range min(flushWorkers, len(pending)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var err error
				// Guarded: a panic in one credential's flush is logged and counted as
				// its failure (what it held stays pending), the others go on.
				if panicked := bgjobs.Guard(b.Logger(), "usage flush", "flushing one credential's usage panicked", func() {
					err = b.flushOne(ctx, s, cfg, j.name, j.p)
				}); panicked {
					err = fmt.Errorf("flushing the usage of %q panicked", j.name)
				}
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
				}
			}
		}()
	}
	started := 0
	for name, p := range pending {
		if rest == nil {
			select {
			case <-stop:
			default:
				select {
				case jobs <- job{name, p}:
					started++
					continue
				case <-stop:
				}
			}
			rest = make(map[string]usage.Pending)
		}
		rest[name] = p
	}
	close(jobs)
	wg.Wait()
	// Stalled: every credential it started failed (storage refusing writes), as
	// opposed to a few that fail on their own, which must not turn the early wake off.
	b.activity.flushStalled.Store(started > 0 && len(errs) >= started)
	if len(rest) > 0 {
		return rest, errors.Join(errs...)
	}
	errs = append(errs, b.dropRestoredHandoff(ctx, s))
	return nil, errors.Join(errs...)
}

// flushWorkers is how many credentials a flush writes at once.
const flushWorkers = 16

func (b *integrationsBackend) flushOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, p usage.Pending) error {
	held, unlock := b.credentials.lock(name)
	defer unlock()
	us := b.usage
	c, err := b.credentials.view(ctx, s, name)
	if err != nil {
		us.landed(name, nil, &p)
		return err
	}
	if c == nil {
		us.landed(name, nil, nil) // deleted since: its usage goes with it
		return nil
	}
	u, err := us.load(ctx, s, name)
	if err != nil {
		us.landed(name, nil, &p)
		return err
	}
	us.fileIfMissing(name, u) // see usageStore.summary: filed before anything is stored
	u.Merge(p, cfg.LogSize)
	usageErr := us.put(ctx, s, name, u)
	// The renewal does not wait on the log: an access that was served renews the
	// window even when its log entry cannot be stored (it is retried below).
	var touchErr error
	if !p.LastAccessed.IsZero() && p.LastAccessed.Sub(c.State.ActivityAt) >= touchGranularity {
		n := c.clone()
		n.State = lifecycle.Touch(n.State, p.LastAccessed)
		if touchErr = b.credentials.put(ctx, s, held, n); touchErr == nil {
			b.reindex(cfg, n, n.State)
		}
	}
	switch {
	case usageErr != nil:
		// Everything goes back for the next flush; a renewal already stored is not
		// repeated, since the stored window already starts at it.
		us.landed(name, nil, &p)
		return errors.Join(usageErr, touchErr)
	case touchErr != nil:
		// The counts and events are stored: only the renewal is left to retry.
		us.landed(name, u, &usage.Pending{LastAccessed: p.LastAccessed})
		return touchErr
	}
	us.landed(name, u, nil)
	return nil
}

// usageFlushThreshold is how many credentials with pending usage wake the flush before
// its interval. Clean writes what is pending (a reload, a restart and a leader change
// wait for it), so this bounds that work in normal running. Measured
// (BenchmarkCleanPending, storage writes of 3 ms as a single Raft node's, each
// credential a usage write and an inactivity renewal): 1,000 pending take Clean 0.58 to
// 0.70 s on two busy cores, so 1,000 plus what is counted while a flush runs fit
// cleanFlushBudget; and a mount whose reads touch fewer distinct credentials per
// usage_flush_interval (the default 10 s: 100 a second) never flushes early. A lower
// threshold buys nothing (the writes follow the distinct credentials read, not the
// flushes), a higher one outgrows the budget.
const usageFlushThreshold = 1000

// setFlushThreshold sets how many credentials with pending usage wake the flush loop.
func (a *activity) setFlushThreshold(n int) {
	a.flushThreshold.Store(int64(n))
	a.recorder.SetWake(n, a.wakeFlush)
}

// wakeFlush wakes the flush loop for a burst of distinct credentials. It never blocks:
// one pending wake-up is enough.
func (a *activity) wakeFlush() {
	select {
	case a.burst <- struct{}{}:
	default:
	}
}

// burstPending reports whether enough credentials have pending usage to flush now.
func (a *activity) burstPending() bool {
	n := a.flushThreshold.Load()
	return n > 0 && int64(a.recorder.Names()) >= n
}

// awaitFlush is the usage flush job's wait: an interval after the last flush, or
// earlier once usageFlushThreshold credentials have pending usage (not after a flush
// that stored nothing: that one waits out the interval, so a storage refusing writes
// is not retried in a loop). When config changes it re-arms from there, so a lowered
// usage_flush_interval applies at once and a stream of config writes cannot put the
// flush off.
func (b *integrationsBackend) awaitFlush(ctx context.Context) bool {
	a := b.activity
	arm := a.flushTimer
	if arm == nil {
		arm = func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		}
	}
	if a.flushedAt.IsZero() {
		a.flushedAt = b.now()
	}
	for {
		if !a.flushStalled.Load() && a.burstPending() {
			// Counted while the last flush ran (its wake-up, if any, is spent here).
			select {
			case <-a.burst:
			default:
			}
			break
		}
		interval := defaultUsageFlushInterval
		if cfg, err := b.loadConfig(ctx, b.storage); err == nil {
			interval = cfg.UsageFlushInterval
		}
		fire, stop := arm(a.flushedAt.Add(interval).Sub(b.now()))
		select {
		case <-ctx.Done():
			stop()
			return false
		case <-a.reconfigured:
			stop()
			continue
		case <-a.burst:
			stop()
			continue // flushed at the top unless the last flush stalled
		case <-fire:
		}
		break
	}
	// Due again an interval on, whether or not this node may write now.
	a.flushedAt = b.now()
	return true
}

// flushStep is one scheduled flush. A flush under way when Clean comes stops starting
// credentials (those started finish): the last flush, within its budget, takes the
// rest.
func (b *integrationsBackend) flushStep(ctx context.Context, s logical.Storage) error {
	if err := b.flushUsageUntil(context.WithoutCancel(ctx), s, ctx.Done()); err != nil {
		b.Logger().Warn("flushing usage failed; will retry", "error", err)
	}
	b.activity.flushedAt = b.now()
	return nil
}
