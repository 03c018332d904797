package backend

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// usagePrefix is where each credential's usage figures and event log are stored, apart
// from the credential so that flushing usage never rewrites secrets.
const usagePrefix = "usage/"

// usageSummary is the part of a credential's stored usage kept in memory for reads and
// lists: the event log itself stays in storage.
type usageSummary struct {
	count               int64
	lastAccessed        time.Time
	consecutiveFailures int
	// readFailures are the times of the run's failed token requests not yet paired
	// with a failed access: a failed access at one of them is the same read
	// failing, not another failure (trailingFailures). Nil when there are none.
	readFailures []time.Time
}

// filedSummary is how the usageStore keeps a usageSummary per credential: 24
// pointer-free bytes rather than 64 (the time as Unix nanoseconds, the rare read
// failures in a map of their own), in a slice by name id that holds every credential
// read or written on a mount of up to a million.
type filedSummary struct {
	count               int64
	lastAccessed        int64 // Unix nanoseconds; 0 for none
	consecutiveFailures int32
	filed               bool // false: no summary for this id
}

func fileSummary(sum usageSummary) filedSummary {
	f := filedSummary{count: sum.count, consecutiveFailures: int32(min(sum.consecutiveFailures, math.MaxInt32)), filed: true} //nolint:gosec // G115: bounded just before
	if !sum.lastAccessed.IsZero() {
		f.lastAccessed = sum.lastAccessed.UnixNano()
	}
	return f
}

func (f filedSummary) summary(readFailures []time.Time) usageSummary {
	sum := usageSummary{count: f.count, consecutiveFailures: int(f.consecutiveFailures), readFailures: readFailures}
	if f.lastAccessed != 0 {
		sum.lastAccessed = time.Unix(0, f.lastAccessed).UTC()
	}
	return sum
}

// usageStore is the one owner of the usage/<name> entries: their storage, the
// summaries decoded from them, the failing set derived from those, and what a flush
// drained from the recorder but has not stored yet. One lock, mu, covers all of them
// and the recorder's drain, so a reader sees an access in the recorder, in flight or
// in the summary: never twice, never nowhere.
type usageStore struct {
	recorder *usage.Recorder // the activity's; drained and peeked under mu

	mu sync.Mutex
	// summaries are the filed summaries by name id in names (a reference held while
	// filed); readFailures the few summaries' unpaired read failures, by id.
	summaries    []filedSummary
	readFailures map[uint32][]time.Time
	names        *names.Table
	// failing names those whose stored run of failures reached lifecycle.FailingAfter;
	// it may hold more than alert (alerts judges each afresh), never less.
	failing map[string]struct{}
	// inflight is what a flush drained and has not yet stored, so reads in the
	// meantime still count it; flushing says whether there is any (the access path
	// checks it without the lock).
	inflight map[string]usage.Pending
	flushing atomic.Bool
	// failingChanged is told, under mu, when a filed summary moves name into or out of
	// the failing set: the index snapshot's chunk of name is written again.
	failingChanged func(name string)
}

func newUsageStore(recorder *usage.Recorder, tab *names.Table) *usageStore {
	return &usageStore{recorder: recorder, names: tab, readFailures: make(map[uint32][]time.Time), failing: make(map[string]struct{})}
}

// summaryID returns the id of name's filed summary, if it has one. The caller holds
// us.mu, so an id filed here (its reference held) is not reused meanwhile.
func (us *usageStore) summaryID(name string) (uint32, bool) {
	id, ok := us.names.Lookup(name)
	if !ok || int(id) >= len(us.summaries) || !us.summaries[id].filed {
		return 0, false
	}
	return id, true
}

// summaryLocked is name's filed summary; zero when it has none. The caller holds us.mu.
func (us *usageStore) summaryLocked(name string) usageSummary {
	id, ok := us.summaryID(name)
	if !ok {
		return usageSummary{}
	}
	return us.summaries[id].summary(us.readFailures[id])
}

// unfileLocked drops name's summary. The caller holds us.mu.
func (us *usageStore) unfileLocked(name string) {
	if id, ok := us.summaryID(name); ok {
		us.summaries[id] = filedSummary{}
		delete(us.readFailures, id)
		us.names.Release(id)
	}
}

// load reads a credential's stored usage; empty when it has none.
func (us *usageStore) load(ctx context.Context, s logical.Storage, name string) (*usage.Usage, error) {
	u := &storedUsage{}
	entry, err := s.Get(ctx, usagePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading usage of %q: %w", name, err)
	}
	if entry != nil {
		if err := entry.DecodeJSON(u); err != nil {
			return nil, fmt.Errorf("decoding usage of %q: %w", name, err)
		}
		upgradeUsage(u)
	}
	return &u.Usage, nil
}

// put stores a credential's usage (the flush of it, under the credential's lock).
func (us *usageStore) put(ctx context.Context, s logical.Storage, name string, u *usage.Usage) error {
	entry, err := recordEntry(usagePrefix+name, &storedUsage{Usage: *u})
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		return fmt.Errorf("storing usage of %q: %w", name, err)
	}
	return nil
}

// remove deletes a credential's stored usage.
func (us *usageStore) remove(ctx context.Context, s logical.Storage, name string) error {
	if err := s.Delete(ctx, usagePrefix+name); err != nil {
		return fmt.Errorf("deleting %s%s: %w", usagePrefix, name, err)
	}
	return nil
}

// forget drops what memory holds of a deleted credential's usage.
func (us *usageStore) forget(name string) {
	us.mu.Lock()
	us.unfileLocked(name)
	delete(us.failing, name)
	delete(us.inflight, name)
	us.mu.Unlock()
}

// invalidated drops the summary of an entry another node changed.
func (us *usageStore) invalidated(name string) {
	us.mu.Lock()
	us.unfileLocked(name)
	us.mu.Unlock()
}

// summary returns the credential's usage figures, stored plus unflushed.
func (us *usageStore) summary(ctx context.Context, s logical.Storage, name string) (usageSummary, error) {
	us.mu.Lock()
	_, ok := us.summaryID(name)
	us.mu.Unlock()
	if !ok {
		u, err := us.load(ctx, s, name)
		if err != nil {
			return usageSummary{}, err
		}
		// A flush files the summary it started from before it stores anything, so a
		// summary filed meanwhile wins over what was just loaded.
		us.fileIfMissing(name, u)
	}
	us.mu.Lock()
	sum := us.summaryLocked(name)
	in := us.inflight[name]
	p := us.recorder.Peek(name)
	us.mu.Unlock()
	for _, more := range []usage.Pending{in, p} {
		sum.count += more.Count
		if more.LastAccessed.After(sum.lastAccessed) {
			sum.lastAccessed = more.LastAccessed
		}
		sum.consecutiveFailures, sum.readFailures = trailingFailures(more.Events, sum.consecutiveFailures, sum.readFailures)
	}
	return sum, nil
}

// loadMissing files the stored summaries of those of names that have none filed yet,
// reading them from storage viewWorkers at a time rather than one round trip after
// another: after a reload, restart or leader change no summary is filed, and a list
// page (one summary per credential it shows) would otherwise cost a storage read per
// credential in turn (about a millisecond each on integrated storage). A read that
// fails files nothing; summary reads it again and reports it.
func (us *usageStore) loadMissing(ctx context.Context, s logical.Storage, names []string) {
	us.mu.Lock()
	var missing []string
	for _, name := range names {
		if _, ok := us.summaryID(name); !ok {
			missing = append(missing, name)
		}
	}
	us.mu.Unlock()
	// Bounded as the page's credential reads are (credentialStore.viewMany).
	var g errgroup.Group
	g.SetLimit(viewWorkers)
	for _, name := range missing {
		g.Go(func() error {
			if u, err := us.load(ctx, s, name); err == nil {
				us.fileIfMissing(name, u)
			}
			return nil // summary reads a failed one again and reports it
		})
	}
	_ = g.Wait()
}

// fileIfMissing files the summary of u unless one is filed already.
func (us *usageStore) fileIfMissing(name string, u *usage.Usage) {
	us.mu.Lock()
	if _, filed := us.summaryID(name); !filed {
		us.fileLocked(name, summarize(u))
	}
	us.mu.Unlock()
}

// fileLocked keeps name's stored summary, and whether its run of failures makes it a
// candidate for the failing alert. The caller holds us.mu.
func (us *usageStore) fileLocked(name string, sum usageSummary) {
	id, ok := us.summaryID(name)
	if !ok {
		id = us.names.Acquire(name)
		if int(id) >= len(us.summaries) {
			us.summaries = append(us.summaries, make([]filedSummary, int(id)+1-len(us.summaries))...)
		}
	}
	us.summaries[id] = fileSummary(sum)
	if len(sum.readFailures) > 0 {
		us.readFailures[id] = sum.readFailures
	} else {
		delete(us.readFailures, id)
	}
	_, was := us.failing[name]
	failing := sum.consecutiveFailures >= lifecycle.FailingAfter
	if failing {
		us.failing[name] = struct{}{}
	} else {
		delete(us.failing, name)
	}
	if was != failing && us.failingChanged != nil {
		us.failingChanged(name)
	}
}

// markFailing puts name in the failing set as the index snapshot recorded it, unless
// a summary is filed (which keeps the set up to date itself and wins).
func (us *usageStore) markFailing(name string) {
	us.mu.Lock()
	if _, filed := us.summaryID(name); !filed {
		us.failing[name] = struct{}{}
	}
	us.mu.Unlock()
}

func summarize(u *usage.Usage) usageSummary {
	sum := usageSummary{count: u.Count, lastAccessed: u.LastAccessed}
	sum.consecutiveFailures, sum.readFailures = trailingFailures(u.Events, 0, nil)
	return sum
}

// trailingFailures extends a run of failed accesses and refreshes with newer events:
// a success ends the run. A read whose token request fails logs two events at the
// read's time (access/ takes the time once): the refresh_failed, then the failed
// access. They are one failure, so a failed access dated as an unpaired failed token
// request (pending, carried from the previous batch of events) is not counted again,
// however concurrent reads' events interleave; a refresh that fails with no read
// (refresh ahead, keep-alive, a verification) still counts. It returns the run and
// the unpaired token-request failures for the next batch (at most
// maxUnpairedFailures, the newest).
func trailingFailures(events []usage.Event, run int, pending []time.Time) (int, []time.Time) {
	pending = slices.Clip(slices.Clone(pending)) // the caller's copy may be shared: never written
	for _, ev := range events {
		if ev.Event != usage.EventAccess && ev.Event != usage.EventRefreshFailed && ev.Event != usage.EventTokenMinted {
			continue
		}
		switch {
		case ev.Status != usage.StatusFailure:
			run, pending = 0, nil
		case ev.Event == usage.EventRefreshFailed:
			run++
			if len(pending) == maxUnpairedFailures {
				pending = slices.Delete(pending, 0, 1)
			}
			pending = append(pending, ev.Time)
		case ev.Event == usage.EventAccess:
			if i := slices.IndexFunc(pending, ev.Time.Equal); i >= 0 {
				// the read whose token request failed: counted already
				pending = slices.Delete(pending, i, i+1)
				if len(pending) == 0 {
					pending = nil
				}
				continue
			}
			run++
		default:
			run++
		}
	}
	return run, pending
}

// maxUnpairedFailures bounds the failed token requests a summary keeps waiting for
// their failed access: more reads than this failing at once may count twice.
const maxUnpairedFailures = 16

// indexedUsage is the part of a usage entry the failing alert is computed from.
type indexedUsage struct {
	Events []struct {
		Time   time.Time `json:"time"`
		Event  string    `json:"event"`
		Status string    `json:"status"`
	} `json:"events"`
}

// list names every credential with stored usage.
func (us *usageStore) list(ctx context.Context, s logical.Storage) ([]string, error) {
	used, err := s.List(ctx, usagePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing usage: %w", err)
	}
	return used, nil
}

// stored is the set of names with a usage entry: only credentials ever used have one,
// so a scan reads usage for those only.
func (us *usageStore) stored(ctx context.Context, s logical.Storage) (usageKeys, error) {
	used, err := us.list(ctx, s)
	if err != nil {
		return nil, err
	}
	if !slices.IsSorted(used) {
		slices.Sort(used)
	}
	return usageKeys(used), nil
}

// usageKeys are the names with a usage entry, sorted: a scan of a million credentials
// looks each up in the list storage gave (a binary search) rather than in a map built
// from it, which cost tens of megabytes more for the scan's length.
type usageKeys []string

// has reports whether name has a usage entry.
func (u usageKeys) has(name string) bool {
	_, ok := slices.BinarySearch(u, name)
	return ok
}

// indexFailing marks name failing if its stored run of failures is long enough, for
// the index scan: it decodes only the events' kinds and statuses and keeps no summary.
// A summary filed by a read or a flush keeps failing up to date itself and wins.
func (us *usageStore) indexFailing(ctx context.Context, s logical.Storage, name string) error {
	us.mu.Lock()
	_, filed := us.summaryID(name)
	us.mu.Unlock()
	if filed {
		return nil
	}
	entry, err := s.Get(ctx, usagePrefix+name)
	if err != nil || entry == nil {
		return err
	}
	// A partial decode that skips upgradeUsage: the only version-0 rule (bounding
	// each event's fields) changes no event's time, kind or status, which is all this
	// reads.
	var u indexedUsage
	if err := entry.DecodeJSON(&u); err != nil {
		return fmt.Errorf("%w: usage of %q: %w", errUndecodable, name, err)
	}
	events := make([]usage.Event, len(u.Events))
	for i, ev := range u.Events {
		events[i] = usage.Event{Time: ev.Time, Event: ev.Event, Status: ev.Status}
	}
	if run, _ := trailingFailures(events, 0, nil); run >= lifecycle.FailingAfter {
		us.mu.Lock()
		if _, filed := us.summaryID(name); !filed {
			us.failing[name] = struct{}{}
		}
		us.mu.Unlock()
	}
	return nil
}

// drain takes what the recorder counted for a flush; it stays in flight, counted by
// readers, until landed.
func (us *usageStore) drain() map[string]usage.Pending {
	us.mu.Lock()
	defer us.mu.Unlock()
	pending := us.recorder.Drain()
	if len(pending) > 0 {
		us.inflight = maps.Clone(pending)
		us.flushing.Store(true)
	}
	return pending
}

// flushed ends a flush: nothing is in flight any more.
func (us *usageStore) flushed() {
	us.mu.Lock()
	us.inflight = nil
	us.flushing.Store(false)
	us.mu.Unlock()
}

// landed ends name's flight: u (when stored) becomes its summary, and back (when
// something could not be stored) returns to the recorder for the next flush. One lock
// covers both, so no reader sees the usage twice or not at all.
func (us *usageStore) landed(name string, u *usage.Usage, back *usage.Pending) {
	us.mu.Lock()
	defer us.mu.Unlock()
	if u != nil {
		us.fileLocked(name, summarize(u))
	}
	if back != nil {
		us.recorder.Restore(map[string]usage.Pending{name: *back})
	}
	delete(us.inflight, name)
}

// inflightAccess is when name was last accessed in what a flush has in flight; zero
// when nothing is. It costs one atomic load while no flush runs.
func (us *usageStore) inflightAccess(name string) time.Time {
	if !us.flushing.Load() {
		return time.Time{}
	}
	us.mu.Lock()
	defer us.mu.Unlock()
	return us.inflight[name].LastAccessed
}

// failingCandidates names the credentials whose stored run of failures is long enough
// and those with a failure in flight, for alerts.
func (us *usageStore) failingCandidates() []string {
	us.mu.Lock()
	defer us.mu.Unlock()
	names := make([]string, 0, len(us.failing))
	for name := range us.failing {
		names = append(names, name)
	}
	for name, p := range us.inflight {
		if slices.ContainsFunc(p.Events, func(ev usage.Event) bool { return ev.Status == usage.StatusFailure }) {
			names = append(names, name)
		}
	}
	return names
}

// everAccessed reports whether name's usage in memory shows a successful access; for
// the health gauge (metrics.go).
func (us *usageStore) everAccessed(name string) bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	id, ok := us.summaryID(name)
	return ok && us.summaries[id].lastAccessed != 0
}

// isFailing reports whether name is in the failing set, for the health gauge.
func (us *usageStore) isFailing(name string) bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	_, failing := us.failing[name]
	return failing
}
