package usage

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxPending caps the unflushed events kept per credential, so memory between
// flushes is bounded however hard one credential is read. Only the newest survive,
// which is also all a capped log would keep.
const DefaultMaxPending = 1000

// shardCount spreads credentials over independent locks so concurrent readers of
// different credentials rarely wait for each other. A power of two keeps the modulo
// a mask.
const shardCount = 64

// Recorder collects usage in memory for the access path, which must do no storage
// I/O. The backend drains it every usage_flush_interval and on shutdown. It is safe
// for concurrent use.
//
// Names are not validated: record only credentials that exist, or a caller reading
// random names could grow the recorder until the next flush.
type Recorder struct {
	seed       maphash.Seed
	maxPending int
	shards     []shard
	// names counts the credentials with pending usage (an entry in some shard), so
	// the flush can be woken when they pass a threshold rather than only on its
	// interval: what a flush, and so Clean, has to write stays bounded.
	names atomic.Int64
	wake  atomic.Pointer[wakeRule]
}

// wakeRule is SetWake's: call fn when names reaches at.
type wakeRule struct {
	at int64
	fn func()
}

// SetWake makes the recorder call fn each time the number of credentials with pending
// usage reaches n (n < 1 turns it off). fn runs on the recording goroutine, under no
// lock of the recorder's, and must not block.
func (r *Recorder) SetWake(n int, fn func()) {
	if n < 1 || fn == nil {
		r.wake.Store(nil)
		return
	}
	r.wake.Store(&wakeRule{at: int64(n), fn: fn})
}

// Names is how many credentials have pending usage.
func (r *Recorder) Names() int { return int(r.names.Load()) }

// added counts a credential's new pending entry, and wakes the flush when that makes
// the threshold. Exactly one caller sees each crossing (Add returns distinct values).
func (r *Recorder) added() {
	n := r.names.Add(1)
	if w := r.wake.Load(); w != nil && n == w.at {
		w.fn()
	}
}

type shard struct {
	mu      sync.Mutex
	pending map[string]*entry
	// forgotten holds names deleted since the last Drain, so a Restore of data drained
	// before the delete does not bring a deleted credential's usage back.
	forgotten map[string]struct{}
	// Keep each shard's lock on its own cache line; neighbouring shards would
	// otherwise contend through false sharing.
	_ [40]byte
}

// entry is one credential's pending usage. events is a ring once it reaches the cap:
// head is then the index of the oldest event.
type entry struct {
	count    int64
	failures int64
	last     time.Time
	events   []Event
	head     int
}

// Pending is what has not been flushed yet for one credential.
type Pending struct {
	// Count is every access attempt, Failures the refused or failed part of it.
	Count    int64
	Failures int64
	// LastAccessed is the latest successful access; zero if none.
	LastAccessed time.Time
	// Events is oldest first, at most the recorder's cap.
	Events []Event
}

// NewRecorder returns a Recorder keeping up to DefaultMaxPending events per credential.
func NewRecorder() *Recorder { return NewRecorderCap(DefaultMaxPending) }

// NewRecorderCap returns a Recorder keeping up to maxPending events per credential
// (maxPending < 1 means DefaultMaxPending). Merge keeps only log_size events, so the
// backend can pass log_size and hold no event it would throw away.
func NewRecorderCap(maxPending int) *Recorder { return newRecorder(shardCount, maxPending) }

func newRecorder(shards, maxPending int) *Recorder {
	if maxPending < 1 {
		maxPending = DefaultMaxPending
	}
	r := &Recorder{seed: maphash.MakeSeed(), maxPending: maxPending, shards: make([]shard, shards)}
	for i := range r.shards {
		r.shards[i].pending = make(map[string]*entry)
	}
	return r
}

func (r *Recorder) shard(name string) *shard {
	if len(r.shards) == 1 {
		return &r.shards[0]
	}
	return &r.shards[maphash.String(r.seed, name)&uint64(len(r.shards)-1)] //nolint:gosec // G115: len() is never negative
}

// Access records one access attempt at the given time. ok reports whether the
// credential was handed out; only then does the access count as activity.
func (r *Recorder) Access(name string, at time.Time, integration string, ok bool, detail string) {
	status := StatusSuccess
	if !ok {
		status = StatusFailure
	}
	ev := Event{Time: at, Event: EventAccess, Status: status, Integration: integration, Detail: detail}
	s := r.shard(name)
	s.mu.Lock()
	e, created := s.entry(name)
	e.count++
	if !ok {
		e.failures++
	} else if at.After(e.last) {
		e.last = at
	}
	e.add(ev, r.maxPending)
	s.mu.Unlock()
	if created {
		r.added()
	}
}

// Log records any other event for a credential. It changes neither the count nor
// the last access: a warning or an update is not use.
func (r *Recorder) Log(name string, ev Event) {
	s := r.shard(name)
	s.mu.Lock()
	e, created := s.entry(name)
	e.add(ev, r.maxPending)
	s.mu.Unlock()
	if created {
		r.added()
	}
}

// LastAccessed is the latest unflushed successful access of one credential, zero if
// none. Unlike Peek it copies nothing, so the access path can afford it when deciding
// whether the inactivity window has run out.
func (r *Recorder) LastAccessed(name string) time.Time {
	s := r.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.pending[name]; e != nil {
		return e.last
	}
	return time.Time{}
}

// Peek returns the unflushed usage of one credential, so a read can show figures
// that include accesses since the last flush. The events are a copy.
func (r *Recorder) Peek(name string) Pending {
	s := r.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.pending[name]
	if e == nil {
		return Pending{}
	}
	return Pending{Count: e.count, Failures: e.failures, LastAccessed: e.last, Events: e.ordered(make([]Event, 0, len(e.events)))}
}

// Drain removes and returns everything pending, keyed by credential name. The caller
// persists it and hands it to Restore if that fails. Each shard is locked only long
// enough to swap its map, so readers are not held up by the flush.
func (r *Recorder) Drain() map[string]Pending {
	taken := make([]map[string]*entry, 0, len(r.shards))
	total := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if n := len(s.pending); n > 0 {
			// An idle shard keeps its empty map: no allocation per shard per flush.
			taken = append(taken, s.pending)
			// Not sized for n: after a burst (100k creations, each pending) the map
			// would keep room for all of them for good, though few are pending later.
			s.pending = make(map[string]*entry)
			total += n
			r.names.Add(-int64(n))
		}
		s.forgotten = nil
		s.mu.Unlock()
	}
	out := make(map[string]Pending, total)
	for _, m := range taken {
		for name, e := range m {
			out[name] = e.take()
		}
	}
	return out
}

// Restore puts back what a failed flush drained, merged with anything recorded since:
// counts add up and the restored events go before the newer ones, within the cap.
// Credentials forgotten since the drain are skipped. Restore takes ownership of p.
func (r *Recorder) Restore(p map[string]Pending) {
	for name, old := range p {
		s := r.shard(name)
		s.mu.Lock()
		created := false
		if _, gone := s.forgotten[name]; !gone {
			created = s.restore(name, old, r.maxPending)
		}
		s.mu.Unlock()
		if created {
			r.added()
		}
	}
}

// Forget drops a deleted credential's pending usage.
func (r *Recorder) Forget(name string) {
	s := r.shard(name)
	s.mu.Lock()
	if _, ok := s.pending[name]; ok {
		delete(s.pending, name)
		r.names.Add(-1)
	}
	if s.forgotten == nil {
		s.forgotten = make(map[string]struct{})
	}
	s.forgotten[name] = struct{}{}
	s.mu.Unlock()
}

// entry returns name's pending entry, creating it (created says so: the caller then
// calls Recorder.added, after unlocking). The caller holds s.mu.
func (s *shard) entry(name string) (e *entry, created bool) {
	e = s.pending[name]
	if e == nil {
		e = &entry{}
		s.pending[name] = e
		created = true
	}
	return e, created
}

// restore merges old (drained earlier, so older) into name's entry, and reports
// whether it created the entry. The caller holds s.mu.
func (s *shard) restore(name string, old Pending, maxPending int) bool {
	e, created := s.entry(name)
	e.count += old.Count
	e.failures += old.Failures
	if old.LastAccessed.After(e.last) {
		e.last = old.LastAccessed
	}
	events := make([]Event, 0, min(len(old.Events)+len(e.events), maxPending))
	if keep := maxPending - len(e.events); keep > 0 {
		// The oldest restored events give way first: newer pending events win the cap.
		events = append(events, old.Events[max(0, len(old.Events)-keep):]...)
	}
	e.events, e.head = e.ordered(events), 0
	return created
}

// add appends ev, overwriting the oldest event once the cap is reached so that a hot
// credential costs no allocation per access in the steady state.
func (e *entry) add(ev Event, maxPending int) {
	ev = Bound(ev)
	if len(e.events) < maxPending {
		e.events = append(e.events, ev)
		return
	}
	e.events[e.head] = ev
	e.head++
	if e.head == len(e.events) {
		e.head = 0
	}
}

// ordered appends e's events to dst, oldest first.
func (e *entry) ordered(dst []Event) []Event {
	return append(append(dst, e.events[e.head:]...), e.events[:e.head]...)
}

// take turns an entry no longer reachable from the recorder into Pending, reusing
// its event slice.
func (e *entry) take() Pending {
	events := e.events
	if e.head > 0 {
		// Rotate the ring in place: reverse both halves, then the whole.
		slices.Reverse(events[:e.head])
		slices.Reverse(events[e.head:])
		slices.Reverse(events)
	}
	return Pending{Count: e.count, Failures: e.failures, LastAccessed: e.last, Events: events}
}

// WithFailures returns the names whose pending usage holds a failed event, so a
// caller can find credentials whose run of failures may have grown since the last
// flush without visiting the others. Its cost follows what is pending.
func (r *Recorder) WithFailures() []string {
	var out []string
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for name, e := range s.pending {
			if slices.ContainsFunc(e.events, func(ev Event) bool { return ev.Status == StatusFailure }) {
				out = append(out, name)
			}
		}
		s.mu.Unlock()
	}
	return out
}
