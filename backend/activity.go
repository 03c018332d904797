// The activity of a mount: what it tracks in memory about usage and lifecycle, the
// usage log of non-access events, and the background loop that flushes usage.
// usage_store.go owns the stored usage, usage_flush.go writes it behind, sweep.go acts
// on the lifecycle rules, and credential_view.go is the management view built from
// them.

package backend

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// activity tracks usage in memory (the usage store flushes it) and keeps the due-time
// index the sweep works from.
type activity struct {
	recorder *usage.Recorder
	index    *lifecycle.Index
	// alerting files credentials under Policy.AlertsFrom, so alerts visits only those
	// with something to show. It may hold more than alert (alerts judges each
	// afresh), never less.
	alerting *lifecycle.Index
	// states counts the indexed credentials by status and health, for the metrics.
	states *stateCounts
	// verifying files credentials under their next scheduled verification
	// (verify_schedule.go); those never verified on a schedule are not filed.
	verifying *lifecycle.Index
	// overlaps files credentials keeping a previous client secret under the end of
	// its overlap, when the sweep forgets it (secret_overlap.go).
	overlaps *lifecycle.Index
	// clientKeys files credentials with generated keys under their key schedule's
	// next event (client_keys.go: nextClientKeyWork).
	clientKeys *lifecycle.Index

	// transient marks credentials whose last provider call failed in a way that may
	// pass (a cached token was served). A sync.Map, because the cached-token access
	// path reads it on every call and must not take a shared lock.
	transient sync.Map // name -> struct{}

	flushMu sync.Mutex // one flush at a time, and none while the sweep judges
	// indexedFor is the config the index's due times were computed with; the sweep
	// rebuilds the index when config changes, or shortened windows would only be
	// noticed at the due times filed under the old ones.
	indexedFor atomic.Pointer[engineConfig]
	// flushedAt is when the flush loop last flushed (or found nothing to do); only
	// the loop's goroutine touches it.
	flushedAt time.Time
	// reconfigured wakes the flush loop when config changes, so a new
	// usage_flush_interval applies from the last flush, not after the old one.
	reconfigured chan struct{}
	// flushTimer arms the flush loop's wait, computed on the backend's clock; nil
	// arms a real timer. Tests set one they fire by hand.
	flushTimer func(d time.Duration) (fire <-chan time.Time, stop func() bool)
	// Bounded pending usage (usage_flush.go): burst wakes the flush loop when the
	// credentials with pending usage reach flushThreshold; flushStalled (the last
	// flush stored nothing it started) makes it wait out the interval instead.
	// cleanStop arms the last flush's time budget; nil arms a real timer of
	// cleanFlushBudget. Tests set one they close by hand.
	burst          chan struct{}
	flushThreshold atomic.Int64
	flushStalled   atomic.Bool
	cleanStop      func() (stop <-chan struct{}, release func())
	// handoffKeys names the usage-handoff/ entries restored into the recorder and not
	// yet deleted: the flush that stores all their usage deletes them
	// (usage_handoff.go). Guarded by flushMu.
	handoffKeys []string

	// The index is built by a background scan (the index scan job, sweep.go), so a
	// mount of many credentials serves from the moment it is set up; scanned and
	// total report its progress.
	scanned       atomic.Int64
	total         atomic.Int64
	buildFinished func() // test hook: called when a scan ends; nil in production
}

// newActivity returns a mount's activity, its indexes filing names in tab.
func newActivity(tab *names.Table) *activity {
	a := &activity{recorder: usage.NewRecorder(), index: lifecycle.NewIndexOn(tab), alerting: lifecycle.NewIndexOn(tab),
		verifying: lifecycle.NewIndexOn(tab), overlaps: lifecycle.NewIndexOn(tab), clientKeys: lifecycle.NewIndexOn(tab),
		states: newStateCounts(tab), reconfigured: make(chan struct{}, 1)}
	a.burst = make(chan struct{}, 1)
	a.setFlushThreshold(usageFlushThreshold)
	return a
}

// configChanged tells the flush loop to read usage_flush_interval again. It never
// blocks: one pending wake-up is enough.
func (a *activity) configChanged() {
	select {
	case a.reconfigured <- struct{}{}:
	default:
	}
}

// recordEvent logs a non-access event for a credential (in memory until the flush).
func (b *integrationsBackend) recordEvent(name, event string, ok bool, integration, detail string) {
	b.recordEventAt(b.now(), name, event, ok, integration, detail)
}

// recordEventAt is recordEvent dated at, for a request that has taken its time already.
func (b *integrationsBackend) recordEventAt(at time.Time, name, event string, ok bool, integration, detail string) {
	status := usage.StatusSuccess
	if !ok {
		status = usage.StatusFailure
	}
	b.activity.recorder.Log(name, usage.Event{
		Time: at.UTC(), Event: event, Status: status, Integration: integration, Detail: detail,
	})
}

// forget drops what the activity holds of a deleted credential: its unflushed usage,
// its place in the indexes, its transient flag.
func (a *activity) forget(name string) {
	a.recorder.Forget(name)
	a.unindex(name)
	a.transient.Delete(name)
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
