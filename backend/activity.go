package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
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

// sweepBatch caps the credentials one sweep processes; the rest wait for the next.
const sweepBatch = 5000

// usageSummary is the part of a credential's stored usage kept in memory for reads and
// lists: the event log itself stays in storage.
type usageSummary struct {
	count               int64
	lastAccessed        time.Time
	consecutiveFailures int
}

// activity tracks usage in memory, flushes it in batches and keeps the due-time index
// the sweep works from.
type activity struct {
	recorder *usage.Recorder
	index    *lifecycle.Index
	// alerting files credentials under Policy.AlertsFrom, so alerts visits only those
	// with something to show; failing (under mu) names those whose stored run of
	// failures reached lifecycle.FailingAfter. Both may hold more than alert (alerts
	// judges each afresh), never less.
	alerting *lifecycle.Index
	failing  map[string]struct{}

	mu        sync.Mutex
	summaries map[string]usageSummary
	// transient marks credentials whose last provider call failed in a way that may
	// pass (a cached token was served). A sync.Map, because the cached-token access
	// path reads it on every call and must not take a shared lock.
	transient sync.Map // name -> struct{}
	// inflight is what a flush drained and has not yet stored, so reads in the meantime
	// still count it; flushing says whether there is any (the access path checks it
	// without the lock). Both change under mu, with the Drain, so a reader holding mu
	// sees an access in the recorder, in flight or in the summary: never twice, never
	// nowhere.
	inflight map[string]usage.Pending
	flushing atomic.Bool

	flushMu sync.Mutex // one flush at a time
	// indexedFor is the config the index's due times were computed with; the sweep
	// rebuilds the index when config changes, or shortened windows would only be
	// noticed at the due times filed under the old ones.
	indexedFor atomic.Pointer[engineConfig]
	stop       chan struct{}
	done       chan struct{}

	// The index is built by a background scan (startIndexBuild), so a mount of many
	// credentials serves from the moment it is set up. buildMu guards the scan's
	// handle; scanned and total report its progress.
	buildMu       sync.Mutex
	buildCancel   context.CancelFunc
	buildDone     chan struct{}
	scanned       atomic.Int64
	total         atomic.Int64
	scanCount     atomic.Int64 // scans started, for tests
	buildFinished func()       // test hook: called when a scan ends; nil in production
}

func newActivity() *activity {
	return &activity{
		recorder:  usage.NewRecorder(),
		index:     lifecycle.NewIndex(),
		alerting:  lifecycle.NewIndex(),
		failing:   make(map[string]struct{}),
		summaries: make(map[string]usageSummary),
	}
}

// recordEvent logs a non-access event for a credential (in memory until the flush).
func (b *integrationsBackend) recordEvent(name, event string, ok bool, integration, detail string) {
	status := usage.StatusSuccess
	if !ok {
		status = usage.StatusFailure
	}
	b.activity.recorder.Log(name, usage.Event{
		Time: b.now().UTC(), Event: event, Status: status, Integration: integration, Detail: detail,
	})
}

// requestIntegration names who is calling, for the usage log: the caller's Vault
// display name, else its entity, made to follow integrationRule. Vault sets the display
// name from a role or token name, which the caller may have chosen.
func requestIntegration(req *logical.Request) string {
	who := req.DisplayName
	if who == "" {
		who = req.EntityID
	}
	return clampIntegration(who)
}

// policyFor is the effective lifecycle policy of a credential: the engine's config with
// the credential's overrides.
func (b *integrationsBackend) policyFor(cfg *engineConfig, c *credential) lifecycle.Policy {
	p := lifecycle.Policy{SuspendAfter: cfg.SuspendAfter, PurgeAfter: cfg.PurgeAfter, WarnBefore: cfg.WarnBefore}
	if c.SuspendAfter > 0 {
		p.SuspendAfter = c.SuspendAfter
	}
	if c.PurgeAfter > 0 {
		p.PurgeAfter = c.PurgeAfter
	}
	return p
}

// currentState is the credential's lifecycle state with unflushed accesses counted.
func (b *integrationsBackend) currentState(c *credential) lifecycle.State {
	a := b.activity
	st := c.State
	if a.flushing.Load() {
		a.mu.Lock()
		last := a.inflight[c.Name].LastAccessed
		a.mu.Unlock()
		if !last.IsZero() {
			st = lifecycle.Touch(st, last)
		}
	}
	if last := a.recorder.LastAccessed(c.Name); !last.IsZero() {
		st = lifecycle.Touch(st, last)
	}
	return st
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

// healthInput gathers what health and alerts are judged on.
func (b *integrationsBackend) healthInput(c *credential, sum usageSummary) lifecycle.HealthInput {
	_, transient := b.activity.transient.Load(c.Name)
	return lifecycle.HealthInput{
		State:               b.currentState(c),
		Accessed:            !sum.lastAccessed.IsZero(),
		NotAfter:            c.NotAfter,
		ConsecutiveFailures: sum.consecutiveFailures,
		TransientFailure:    transient,
	}
}

// lifecycleView is the lifecycle and usage part of a credential's management view.
func (b *integrationsBackend) lifecycleView(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential) map[string]any {
	now := b.now()
	sum, err := b.summary(ctx, s, c.Name)
	if err != nil {
		b.Logger().Warn("reading usage failed", "credential", c.Name, "error", err)
	}
	p := b.policyFor(cfg, c)
	in := b.healthInput(c, sum)
	st := in.State
	status := string(st.Status)
	reason := string(st.Reason)
	// A window that ran out is reported as such even before the sweep gets to it.
	var unavailable *lifecycle.UnavailableError
	if err := p.Usable(st, now); errors.As(err, &unavailable) && st.Status == lifecycle.StatusActive {
		status, reason = string(lifecycle.StatusSuspended), string(unavailable.Reason)
	}
	return map[string]any{
		"status":        status,
		"status_reason": reason,
		"health":        p.Health(in, now),
		"last_accessed": rfc3339(sum.lastAccessed),
		"access_count":  sum.count,
		"suspend_at":    rfc3339(p.SuspendAt(st)),
		"purge_at":      rfc3339(p.PurgeAt(st)),
		"expires_at":    rfc3339(st.ExpiresAt),
		"suspended_at":  rfc3339(st.SuspendedAt),
	}
}

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
	b.activity.file(name, b.policyFor(cfg, c), c.State, c.NotAfter)
	return nil
}

// file puts a credential in the sweep's index under its next due action and in the
// alerting index under the time it may first show an alert.
func (a *activity) file(name string, p lifecycle.Policy, st lifecycle.State, notAfter time.Time) {
	a.index.Set(name, p.NextDue(st))
	a.alerting.Set(name, p.AlertsFrom(st, notAfter))
}

// unindex drops a credential from both indexes.
func (a *activity) unindex(name string) {
	a.index.Remove(name)
	a.alerting.Remove(name)
}

// forgetCredential drops every in-memory trace of a deleted credential.
func (b *integrationsBackend) forgetCredential(name string) {
	a := b.activity
	a.recorder.Forget(name)
	a.unindex(name)
	a.mu.Lock()
	delete(a.summaries, name)
	delete(a.failing, name)
	delete(a.inflight, name)
	a.mu.Unlock()
	a.transient.Delete(name)
	b.forgetToken(name)
}

// startActivity begins the flush loop; stopActivity ends it and flushes what is left.
func (b *integrationsBackend) startActivity() {
	a := b.activity
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.done)
		for {
			interval := defaultUsageFlushInterval
			if cfg, err := b.loadConfig(context.Background(), b.storage); err == nil {
				interval = cfg.UsageFlushInterval
			}
			timer := time.NewTimer(interval)
			select {
			case <-a.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
			if err := b.flushUsage(context.Background(), b.storage); err != nil {
				b.Logger().Warn("flushing usage failed; will retry", "error", err)
			}
		}
	}()
}

func (b *integrationsBackend) stopActivity(ctx context.Context) {
	a := b.activity
	if a.stop != nil {
		close(a.stop)
		<-a.done
		a.stop = nil
	}
	if err := b.flushUsage(ctx, b.storage); err != nil {
		b.Logger().Error("flushing usage at shutdown failed", "error", err)
	}
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

// startIndexBuild starts the background scan that (re)builds the indexes from storage,
// unless one is running. Until it ends the sweep acts on what is indexed (every write
// indexes its credential), and alerts says it may be incomplete.
func (b *integrationsBackend) startIndexBuild(s logical.Storage) {
	a := b.activity
	a.buildMu.Lock()
	defer a.buildMu.Unlock()
	if a.buildDone != nil {
		select {
		case <-a.buildDone:
		default:
			return // one is running; a config change meanwhile makes the next sweep start another
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.buildCancel, a.buildDone = cancel, done
	a.scanCount.Add(1)
	go func() {
		defer close(done)
		defer cancel()
		if err := b.buildIndex(ctx, s); err != nil && ctx.Err() == nil {
			b.Logger().Error("building the lifecycle index failed; the next sweep retries", "error", err)
		}
		if a.buildFinished != nil {
			a.buildFinished()
		}
	}()
}

// stopIndexBuild cancels a running scan and waits for it to end.
func (b *integrationsBackend) stopIndexBuild() {
	a := b.activity
	a.buildMu.Lock()
	cancel, done := a.buildCancel, a.buildDone
	a.buildMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
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
func (b *integrationsBackend) buildIndex(ctx context.Context, s logical.Storage) error {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return err
	}
	a := b.activity
	names, err := s.List(ctx, credentialPrefix)
	if err != nil {
		return fmt.Errorf("listing credentials: %w", err)
	}
	// Only credentials ever used have a usage entry: read those only.
	used, err := s.List(ctx, usagePrefix)
	if err != nil {
		return fmt.Errorf("listing usage: %w", err)
	}
	hasUsage := make(map[string]struct{}, len(used))
	for _, n := range used {
		hasUsage[n] = struct{}{}
	}
	a.scanned.Store(0)
	a.total.Store(int64(len(names)))
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, usage := hasUsage[name]
		if err := b.indexOne(ctx, s, cfg, name, usage); err != nil {
			return err
		}
		a.scanned.Add(1)
	}
	a.indexedFor.Store(cfg)
	return nil
}

// indexedCredential is the part of a stored credential the indexes are computed from.
type indexedCredential struct {
	NotAfter     time.Time       `json:"not_after,omitzero"`
	SuspendAfter time.Duration   `json:"suspend_after,omitempty"`
	PurgeAfter   time.Duration   `json:"purge_after,omitempty"`
	State        lifecycle.State `json:"state"`
}

// indexedUsage is the part of a usage entry the failing alert is computed from.
type indexedUsage struct {
	Events []struct {
		Event  string `json:"event"`
		Status string `json:"status"`
	} `json:"events"`
}

func (b *integrationsBackend) indexOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, hasUsage bool) error {
	a := b.activity
	for attempt := 0; ; attempt++ {
		if attempt == 8 {
			// The credential's shard keeps changing under the scan: index it the way a
			// write does, under its lock.
			unlock := b.credentials.lock(name)
			err := b.afterCredentialChange(ctx, s, name)
			unlock()
			if err != nil {
				return err
			}
			break
		}
		c, gen := b.credentials.cachedGen(name)
		var ic indexedCredential
		found := c != nil
		if found {
			ic = indexedCredential{NotAfter: c.NotAfter, SuspendAfter: c.SuspendAfter, PurgeAfter: c.PurgeAfter, State: c.State}
		} else {
			entry, err := s.Get(ctx, credentialPrefix+name)
			if err != nil {
				return fmt.Errorf("reading credential %q: %w", name, err)
			}
			if found = entry != nil; found {
				if err := entry.DecodeJSON(&ic); err != nil {
					// One undecodable entry must not keep the rest unindexed; reads
					// of it fail with the same error.
					b.Logger().Error("a stored credential cannot be decoded: not indexed", "credential", name, "error", err)
					return nil
				}
			}
		}
		// Filed only if no write, delete or invalidation of the credential's shard
		// came between the read and now: those index (or unindex) the credential
		// themselves after their change, so a stale read must not land after them.
		if b.credentials.ifUnchanged(name, gen, func() {
			if !found {
				a.unindex(name)
				return
			}
			a.file(name, b.policyFor(cfg, &credential{SuspendAfter: ic.SuspendAfter, PurgeAfter: ic.PurgeAfter}), ic.State, ic.NotAfter)
		}) {
			break
		}
	}
	if !hasUsage {
		return nil
	}
	a.mu.Lock()
	_, filed := a.summaries[name]
	a.mu.Unlock()
	if filed {
		return nil // a read or flush filed it, and keeps failing up to date
	}
	entry, err := s.Get(ctx, usagePrefix+name)
	if err != nil || entry == nil {
		return err
	}
	var u indexedUsage
	if err := entry.DecodeJSON(&u); err != nil {
		b.Logger().Warn("stored usage cannot be decoded", "credential", name, "error", err)
		return nil
	}
	events := make([]usage.Event, len(u.Events))
	for i, ev := range u.Events {
		events[i] = usage.Event{Event: ev.Event, Status: ev.Status}
	}
	if trailingFailures(events, 0) >= lifecycle.FailingAfter {
		a.mu.Lock()
		if _, filed := a.summaries[name]; !filed {
			a.failing[name] = struct{}{}
		}
		a.mu.Unlock()
	}
	return nil
}

// sweep warns about, suspends and purges the credentials whose time has come. Its cost
// follows the number of credentials with something due, not the number stored.
func (b *integrationsBackend) sweep(ctx context.Context, s logical.Storage) error {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	// No flush may run while the sweep judges credentials: one that drained an access
	// but has not yet renewed its credential's window would let the sweep suspend a
	// credential used moments before its deadline.
	b.activity.flushMu.Lock()
	defer b.activity.flushMu.Unlock()
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
		b.startIndexBuild(s)
	}
	now := b.now().UTC()
	var errs []error
	for _, name := range b.activity.index.Due(now, sweepBatch) {
		if err := b.sweepOne(ctx, s, cfg, name, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *integrationsBackend) sweepOne(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, now time.Time) error {
	unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, name)
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
		b.activity.index.Set(name, p.NextDue(state))
		b.activity.alerting.Set(name, p.AlertsFrom(c.State, c.NotAfter)) // the stored state: never later than the current one's
		return nil
	}
	b.notify(ctx, c, action)
	if action.Kind == lifecycle.ActionPurge {
		return b.deleteCredential(ctx, s, c)
	}
	n := c.clone()
	n.State = lifecycle.Apply(state, action, now)
	if err := b.credentials.put(ctx, s, n); err != nil {
		return err
	}
	event := usage.EventWarning
	if action.Kind == lifecycle.ActionSuspend {
		event = usage.EventSuspended
	}
	b.recordEvent(name, event, true, "", action.Message())
	b.activity.file(name, p, n.State, n.NotAfter)
	return nil
}

// setTransient records whether a credential's last provider call failed transiently.
// Clearing an unset flag costs one lock-free lookup, so the hot path can call it.
func (a *activity) setTransient(name string, failed bool) {
	if failed {
		a.transient.Store(name, struct{}{})
	} else if _, set := a.transient.Load(name); set {
		a.transient.Delete(name)
	}
}
