// Usage write-behind: access counts and events kept in memory, flushed to usage/<name>
// in batches, with the renewal of each credential's inactivity window.

package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// usagePrefix is where each credential's usage figures and event log are stored, apart
// from the credential so that flushing usage never rewrites secrets.
const usagePrefix = "usage/"

// touchGranularity bounds how often a flush rewrites a credential to renew its
// inactivity window: windows are measured in days, so a minute is precise enough.
const touchGranularity = time.Minute

// usageSummary is the part of a credential's stored usage kept in memory for reads and
// lists: the event log itself stays in storage.
type usageSummary struct {
	count               int64
	lastAccessed        time.Time
	consecutiveFailures int
}

// summary returns the credential's usage figures, stored plus unflushed.
func (b *integrationsBackend) summary(ctx context.Context, s logical.Storage, name string) (usageSummary, error) {
	a := b.activity
	a.mu.Lock()
	_, ok := a.summaries[name]
	a.mu.Unlock()
	if !ok {
		u, err := loadUsage(ctx, s, name)
		if err != nil {
			return usageSummary{}, err
		}
		// A flush files the summary it started from before it stores anything, so a
		// summary filed meanwhile wins over what was just loaded.
		a.mu.Lock()
		if _, raced := a.summaries[name]; !raced {
			a.fileSummary(name, summarize(u))
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	sum := a.summaries[name]
	in := a.inflight[name]
	p := a.recorder.Peek(name)
	a.mu.Unlock()
	for _, more := range []usage.Pending{in, p} {
		sum.count += more.Count
		if more.LastAccessed.After(sum.lastAccessed) {
			sum.lastAccessed = more.LastAccessed
		}
		sum.consecutiveFailures = trailingFailures(more.Events, sum.consecutiveFailures)
	}
	return sum, nil
}

// fileSummary keeps name's stored summary, and whether its run of failures makes it a
// candidate for the failing alert. The caller holds a.mu.
func (a *activity) fileSummary(name string, sum usageSummary) {
	a.summaries[name] = sum
	if sum.consecutiveFailures >= lifecycle.FailingAfter {
		a.failing[name] = struct{}{}
	} else {
		delete(a.failing, name)
	}
}

func summarize(u *usage.Usage) usageSummary {
	return usageSummary{count: u.Count, lastAccessed: u.LastAccessed, consecutiveFailures: trailingFailures(u.Events, 0)}
}

// trailingFailures extends a run of failed accesses and refreshes with newer events:
// a success ends the run.
func trailingFailures(events []usage.Event, run int) int {
	for _, ev := range events {
		if ev.Event != usage.EventAccess && ev.Event != usage.EventRefreshFailed && ev.Event != usage.EventTokenMinted {
			continue
		}
		if ev.Status == usage.StatusFailure {
			run++
		} else {
			run = 0
		}
	}
	return run
}

func loadUsage(ctx context.Context, s logical.Storage, name string) (*usage.Usage, error) {
	u := &usage.Usage{}
	entry, err := s.Get(ctx, usagePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading usage of %q: %w", name, err)
	}
	if entry != nil {
		if err := entry.DecodeJSON(u); err != nil {
			return nil, fmt.Errorf("decoding usage of %q: %w", name, err)
		}
	}
	return u, nil
}

// flushUsage writes the usage counted in memory to storage, and renews the inactivity
// window of every credential accessed since. What cannot be written is put back.
func (b *integrationsBackend) flushUsage(ctx context.Context, s logical.Storage) error {
	if s == nil || !b.WriteSafeReplicationState() {
		return nil
	}
	a := b.activity
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	return b.flushLocked(ctx, s)
}

// flushLocked is flushUsage for a caller holding flushMu.
func (b *integrationsBackend) flushLocked(ctx context.Context, s logical.Storage) error {
	a := b.activity
	a.mu.Lock()
	pending := a.recorder.Drain()
	if len(pending) > 0 {
		a.inflight = maps.Clone(pending)
		a.flushing.Store(true)
	}
	a.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	defer func() {
		a.mu.Lock()
		a.inflight = nil
		a.flushing.Store(false)
		a.mu.Unlock()
	}()
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		for name, p := range pending {
			b.landed(name, nil, &p)
		}
		return err
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
				if err := b.flushOne(ctx, s, cfg, j.name, j.p); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
				}
			}
		}()
	}
	for name, p := range pending {
		jobs <- job{name, p}
	}
	close(jobs)
	wg.Wait()
	return errors.Join(errs...)
}

// flushWorkers is how many credentials a flush writes at once.
const flushWorkers = 16

// landed ends name's flight: u (when stored) becomes its summary, and back (when
// something could not be stored) returns to the recorder for the next flush. One lock
// covers both, so no reader sees the usage twice or not at all.
func (b *integrationsBackend) landed(name string, u *usage.Usage, back *usage.Pending) {
	a := b.activity
	a.mu.Lock()
	defer a.mu.Unlock()
	if u != nil {
		a.fileSummary(name, summarize(u))
	}
	if back != nil {
		a.recorder.Restore(map[string]usage.Pending{name: *back})
	}
	delete(a.inflight, name)
}

func (b *integrationsBackend) flushOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, p usage.Pending) error {
	unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, name)
	if err != nil {
		b.landed(name, nil, &p)
		return err
	}
	if c == nil {
		b.landed(name, nil, nil) // deleted since: its usage goes with it
		return nil
	}
	u, err := loadUsage(ctx, s, name)
	if err != nil {
		b.landed(name, nil, &p)
		return err
	}
	a := b.activity
	a.mu.Lock()
	if _, ok := a.summaries[name]; !ok {
		a.fileSummary(name, summarize(u)) // see summary: filed before anything is stored
	}
	a.mu.Unlock()
	u.Merge(p, cfg.LogSize)
	entry, usageErr := logical.StorageEntryJSON(usagePrefix+name, u)
	if usageErr == nil {
		usageErr = s.Put(ctx, entry)
	}
	// The renewal does not wait on the log: an access that was served renews the
	// window even when its log entry cannot be stored (it is retried below).
	var touchErr error
	if !p.LastAccessed.IsZero() && p.LastAccessed.Sub(c.State.ActivityAt) >= touchGranularity {
		n := c.clone()
		n.State = lifecycle.Touch(n.State, p.LastAccessed)
		if touchErr = b.credentials.put(ctx, s, n); touchErr == nil {
			b.activity.file(name, b.policyFor(cfg, n), n.State, n.NotAfter)
		}
	}
	switch {
	case usageErr != nil:
		// Everything goes back for the next flush; a renewal already stored is not
		// repeated, since the stored window already starts at it.
		b.landed(name, nil, &p)
		return errors.Join(fmt.Errorf("storing usage of %q: %w", name, usageErr), touchErr)
	case touchErr != nil:
		// The counts and events are stored: only the renewal is left to retry.
		b.landed(name, u, &usage.Pending{LastAccessed: p.LastAccessed})
		return touchErr
	}
	b.landed(name, u, nil)
	return nil
}
