package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// writeLatencyStorage adds a latency to every write, as a Raft log entry costs, and counts
// the writes and deletes.
type writeLatencyStorage struct {
	logical.Storage
	delay   time.Duration
	writes  atomic.Int64
	handoff atomic.Int64 // writes under usage-handoff/
	failPut func(key string) bool
	onPut   func(key string) // called before each write (the test's view of the flush's progress)
}

func (s *writeLatencyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.writes.Add(1)
	if strings.HasPrefix(e.Key, usageHandoffPrefix) {
		s.handoff.Add(1)
	}
	if s.onPut != nil {
		s.onPut(e.Key)
	}
	time.Sleep(s.delay) // the write's latency, not a wait for anything
	if s.failPut != nil && s.failPut(e.Key) {
		return fmt.Errorf("refused %s", e.Key)
	}
	return s.Storage.Put(ctx, e)
}

func (s *writeLatencyStorage) Delete(ctx context.Context, key string) error {
	s.writes.Add(1)
	time.Sleep(s.delay)
	return s.Storage.Delete(ctx, key)
}

func newWriteLatencyStorage() *writeLatencyStorage {
	return &writeLatencyStorage{Storage: logical.NewStorageView(&logical.InmemStorage{}, ""), delay: time.Millisecond}
}

// accessAll reads access/ of each name, the first k names twice.
func accessAll(t *testing.T, b *integrationsBackend, s logical.Storage, names []string, k int) {
	t.Helper()
	for i, name := range names {
		lcAccess(t, b, s, name)
		if i < k {
			lcAccess(t, b, s, name)
		}
	}
}

// budgetSpent makes b's last flush find its time budget spent from the start:
// everything pending is handed off, as on a storage too slow for any of it.
func budgetSpent(b *integrationsBackend) {
	b.activity.cleanStop = func() (<-chan struct{}, func()) {
		c := make(chan struct{})
		close(c)
		return c, func() {}
	}
}

// budgetEndsAfter makes b's last flush run out of its budget at the k-th usage/ write
// st sees from now: the credentials started by then finish, the rest is handed off.
func budgetEndsAfter(b *integrationsBackend, st *writeLatencyStorage, k int64) {
	stop := make(chan struct{})
	var puts atomic.Int64
	st.onPut = func(key string) {
		if strings.HasPrefix(key, usagePrefix) && puts.Add(1) == k {
			close(stop)
		}
	}
	b.activity.cleanStop = func() (<-chan struct{}, func()) { return stop, func() {} }
}

func handoffKeys(t testing.TB, s logical.Storage) []string {
	t.Helper()
	keys, err := s.List(context.Background(), usageHandoffPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// checkUsage asserts name's usage is what a full flush stores: the count, the last
// access, and the inactivity window renewed at it.
func checkUsage(t *testing.T, b *integrationsBackend, s logical.Storage, name string, count int64, at time.Time) {
	t.Helper()
	u, err := b.usage.load(context.Background(), s, name)
	if err != nil {
		t.Fatal(err)
	}
	accesses := 0
	for _, ev := range u.Events {
		if ev.Event == usage.EventAccess {
			accesses++
		}
	}
	if u.Count != count || !u.LastAccessed.Equal(at) || accesses != int(count) {
		t.Fatalf("%s: stored count %d, last access %s, %d access events; want %d, %s, %d", name, u.Count, u.LastAccessed, accesses, count, at, count)
	}
	c, err := b.credentials.view(context.Background(), s, name)
	if err != nil || c == nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !c.State.ActivityAt.Equal(at) {
		t.Fatalf("%s: inactivity window from %s, want %s", name, c.State.ActivityAt, at)
	}
}

// A reload whose last flush finds its time budget spent (a storage too slow for the
// usage pending) costs Clean a bounded number of storage writes (not two per
// credential), and the next Initialize restores all of it: after its first flush every
// credential's usage is what a full flush at Clean would have stored.
func TestCleanHandsOffPendingUsage(t *testing.T) {
	const n = 300
	st := newWriteLatencyStorage()
	b, s, clock, names, at := handoffMount(t, st, n, "c%03d")
	accessAll(t, b, s, names, n/2)

	budgetSpent(b)
	// The index snapshot's chunks the creations left dirty are the snapshot job's
	// to write: written now, so that Clean's writes are the usage's alone.
	if err := b.writeChunks(context.Background(), s, b.snapshot.take(0)); err != nil {
		t.Fatal(err)
	}
	st.writes.Store(0)
	b.Clean(context.Background())
	if w := st.writes.Load(); w > 4 {
		t.Fatalf("Clean made %d storage writes for %d credentials' pending usage; want a bounded few", w, n)
	}
	if st.handoff.Load() == 0 {
		t.Fatal("nothing handed off")
	}
	for _, key := range handoffKeys(t, s) {
		e, err := s.Get(context.Background(), usageHandoffPrefix+key)
		if err != nil || e == nil || !strings.Contains(string(e.Value), fmt.Sprintf(`"record_version":%d`, usageHandoffRecordVersion)) {
			t.Fatalf("handoff entry %s not stamped with its record version: %v", key, err)
		}
	}

	b2, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
	// Served from the restored usage before any flush.
	if v := lcRead(t, b2, s, names[0]); fmt.Sprint(v["access_count"]) != "2" || v["last_accessed"] != rfc3339(at) {
		t.Fatalf("after the reload %s reads access_count %v, last_accessed %v", names[0], v["access_count"], v["last_accessed"])
	}
	if err := b2.flushUsage(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		want := int64(1)
		if i < n/2 {
			want = 2
		}
		checkUsage(t, b2, s, name, want, at)
	}
	if keys := handoffKeys(t, s); len(keys) != 0 {
		t.Fatalf("handoff entries left after the flush: %v", keys)
	}
}

// Usage handed off and restored, then handed off again before any flush (two reloads
// in a row), is counted once; what the middle run counted adds to it.
func TestHandoffTwiceCountsOnce(t *testing.T) {
	const n = 40
	st := newWriteLatencyStorage()
	st.delay = 0
	b, s, clock, names, _ := handoffMount(t, st, n, "c%02d")
	accessAll(t, b, s, names, 0)
	budgetSpent(b)
	b.Clean(context.Background())

	b2, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
	clock.Advance(time.Hour)
	at := clock.Now().UTC()
	lcAccess(t, b2, s, names[0])
	budgetSpent(b2)
	b2.Clean(context.Background())
	if keys := handoffKeys(t, s); len(keys) != 1 {
		t.Fatalf("handoff entries after the second Clean: %v, want the one it wrote", keys)
	}

	b3, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
	if err := b3.flushUsage(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, b3, s, names[0], 2, at)
	checkUsage(t, b3, s, names[1], 1, at.Add(-time.Hour))
}

// A credential read just before a reload is not suspended for inactivity afterwards:
// the next owner's sweep counts the handed-off access.
func TestHandedOffAccessRenewsInactivityWindow(t *testing.T) {
	st := newWriteLatencyStorage()
	st.delay = 0
	cfg := map[string]any{"suspend_after": "100d"}
	b, s, clock := newBackendWith(t, backendOptions{storage: st, initialize: true, config: cfg})
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("c%02d", i)
		lcCreateBasic(t, b, s, names[i], nil)
	}
	clock.Advance(99 * 24 * time.Hour)
	accessAll(t, b, s, names, 0)
	budgetSpent(b)
	b.Clean(context.Background())
	if len(handoffKeys(t, s)) == 0 {
		t.Fatal("nothing handed off")
	}

	b2, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
	clock.Advance(3 * 24 * time.Hour)
	if err := b2.sweep(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if v := lcRead(t, b2, s, name); v["status"] != "active" {
			t.Fatalf("%s is %v after a sweep 3 days after its last access", name, v["status"])
		}
	}
}

// A few credentials' usage is flushed at Clean as before, within the real budget:
// nothing handed off, so an older release (after a downgrade) reads all of it.
func TestCleanFlushesFewDirectly(t *testing.T) {
	st := newWriteLatencyStorage()
	st.delay = 0
	b, s, clock := newBackendWith(t, backendOptions{storage: st, initialize: true})
	lcCreateBasic(t, b, s, "one", nil)
	clock.Advance(time.Hour)
	at := clock.Now().UTC()
	lcAccess(t, b, s, "one")
	b.Clean(context.Background())
	if keys := handoffKeys(t, s); len(keys) != 0 {
		t.Fatalf("handed off %v", keys)
	}
	checkUsage(t, b, s, "one", 1, at)
}

// A handoff chunk storage refuses keeps the entries restored earlier, so no usage is
// lost: the next owner still restores them.
func TestRefusedHandoffKeepsRestoredEntries(t *testing.T) {
	const n = 20
	st := newWriteLatencyStorage()
	st.delay = 0
	b, s, clock, names, at := handoffMount(t, st, n, "c%02d")
	accessAll(t, b, s, names, 0)
	budgetSpent(b)
	b.Clean(context.Background())
	first := handoffKeys(t, s)

	b2, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
	budgetSpent(b2)
	st.failPut = func(key string) bool { return strings.HasPrefix(key, usageHandoffPrefix) }
	b2.Clean(context.Background())
	st.failPut = nil
	if keys := handoffKeys(t, s); fmt.Sprint(keys) != fmt.Sprint(first) {
		t.Fatalf("handoff entries %v after a refused handoff, want %v kept", keys, first)
	}
	b3, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
	if err := b3.flushUsage(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		checkUsage(t, b3, s, name, 1, at)
	}
}

// Within its budget Clean writes usage/<name> directly, however many credentials (here
// 300, far more than a round of workers): no handoff entry, so an older release reads
// every count after a downgrade.
func TestCleanFlushesDirectlyWithinBudget(t *testing.T) {
	const n = 300
	st := newWriteLatencyStorage()
	st.delay = 0
	b, s, _, names, at := handoffMount(t, st, n, "c%03d")
	accessAll(t, b, s, names, 10)
	b.activity.cleanStop = func() (<-chan struct{}, func()) { return nil, func() {} } // a budget never spent
	b.Clean(context.Background())
	if st.handoff.Load() != 0 || len(handoffKeys(t, s)) != 0 {
		t.Fatalf("handed off %d entries within the budget", st.handoff.Load())
	}
	for i, name := range names {
		want := int64(1)
		if i < 10 {
			want = 2
		}
		checkUsage(t, b, s, name, want, at)
	}
}

// The budget runs out part way (at the 40th usage/ write of 200): the credentials
// started finish, the rest is handed off; the next start restores it while flushes and
// reads race the restore, and every access is counted exactly once.
func TestCleanBudgetHandsOffTheRest(t *testing.T) {
	const n = 200
	st := newWriteLatencyStorage()
	st.delay = 0
	b, s, clock, names, at := handoffMount(t, st, n, "c%03d")
	accessAll(t, b, s, names, n/2)
	budgetEndsAfter(b, st, 40)
	b.Clean(context.Background())
	st.onPut = nil
	direct := 0
	for _, name := range names {
		if e, err := s.Get(context.Background(), usagePrefix+name); err != nil {
			t.Fatal(err)
		} else if e != nil {
			direct++
		}
	}
	// Up to a round of workers was under way when the budget ran out.
	if direct < 40 || direct > 40+flushWorkers || len(handoffKeys(t, s)) == 0 {
		t.Fatalf("%d credentials flushed directly, %d handoff entries; want 40 to %d, and the rest handed off", direct, len(handoffKeys(t, s)), 40+flushWorkers)
	}

	// The next start: Initialize restores the handoff while flushes and reads race it.
	b2, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock})
	later := clock.Now().UTC()
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Go(func() {
		<-start
		if err := b2.initialize(context.Background(), &logical.InitializationRequest{Storage: s}); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		<-start
		for range 5 {
			if err := b2.flushUsage(context.Background(), s); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		<-start
		for range 3 {
			if resp, err := lcDo(b2, s, logical.ReadOperation, "access/"+names[n-1], "", nil); err != nil || resp.IsError() {
				t.Errorf("access/%s: %s", names[n-1], outcome(resp, err))
			}
		}
	})
	close(start)
	wg.Wait()
	if err := b2.flushUsage(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for i, name := range names[:n-1] {
		want := int64(1)
		if i < n/2 {
			want = 2
		}
		checkUsage(t, b2, s, name, want, at)
	}
	checkUsage(t, b2, s, names[n-1], 4, later)
	if keys := handoffKeys(t, s); len(keys) != 0 {
		t.Fatalf("handoff entries left after the flush: %v", keys)
	}
}

// handoffChunks splits what is pending into entries of at most handoffChunkBytes, each
// a storedHandoff stamped with its record version, holding every credential once with
// its usage as encoded (hostile names included).
func TestHandoffChunksBoundedAndComplete(t *testing.T) {
	t.Parallel()
	pending := make(map[string]usage.Pending)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3000 {
		name := fmt.Sprintf("c-%04d-\"<&>\u2028", i)
		events := make([]usage.Event, i%7)
		for j := range events {
			events[j] = usage.Event{Time: at, Event: usage.EventAccess, Status: usage.StatusSuccess, Integration: strings.Repeat("x", 100)}
		}
		pending[name] = usage.Pending{Count: int64(i), LastAccessed: at, Events: events}
	}
	chunks, err := handoffChunks(pending)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 2 {
		t.Fatalf("%d chunks for about a MiB of usage", len(chunks))
	}
	seen := 0
	for i, c := range chunks {
		if len(c.value) > handoffChunkBytes {
			t.Fatalf("chunk %d: %d bytes, over %d", i, len(c.value), handoffChunkBytes)
		}
		var h storedHandoff
		if err := (&logical.StorageEntry{Value: c.value}).DecodeJSON(&h); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if h.Record != usageHandoffRecordVersion || len(h.Usage) != len(c.names) {
			t.Fatalf("chunk %d: record_version %d, %d credentials for %d names", i, h.Record, len(h.Usage), len(c.names))
		}
		for name, u := range h.Usage {
			p, ok := pending[name]
			if !ok || u.Count != p.Count || !u.LastAccessed.Equal(p.LastAccessed) || len(u.Events) != len(p.Events) {
				t.Fatalf("chunk %d: %q decoded as %+v", i, name, u)
			}
			delete(pending, name)
			seen++
		}
	}
	if len(pending) != 0 || seen != 3000 {
		t.Fatalf("%d credentials decoded, %d missing", seen, len(pending))
	}
}

// What storage refuses at Clean's direct flush is handed off with what the budget left,
// and counted once after the next start.
func TestCleanHandsOffRefusedUsage(t *testing.T) {
	const n = 60
	st := newWriteLatencyStorage()
	st.delay = 0
	b, s, clock, names, at := handoffMount(t, st, n, "c%02d")
	accessAll(t, b, s, names, n)
	for _, refuseOnly := range []bool{true, false} { // refused alone; refused and budget-left together
		if refuseOnly {
			b.activity.cleanStop = func() (<-chan struct{}, func()) { return nil, func() {} }
		} else {
			budgetEndsAfter(b, st, 20)
		}
		refused := map[string]bool{usagePrefix + "c01": true, usagePrefix + "c02": true, usagePrefix + "c03": true}
		st.failPut = func(key string) bool { return refused[key] }
		b.Clean(context.Background())
		st.failPut, st.onPut = nil, nil
		if len(handoffKeys(t, s)) == 0 {
			t.Fatal("refused usage not handed off")
		}
		b2, _, _ := newBackendWith(t, backendOptions{storage: st, clock: clock, initialize: true})
		if err := b2.flushUsage(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			checkUsage(t, b2, s, name, 2, at)
		}
		if keys := handoffKeys(t, s); len(keys) != 0 {
			t.Fatalf("handoff entries left after the flush: %v", keys)
		}
		if !refuseOnly {
			break
		}
		// Again, from a fresh count: reset the stored usage by a new round of reads.
		for _, name := range names {
			if err := b2.usage.remove(context.Background(), s, name); err != nil {
				t.Fatal(err)
			}
			b2.usage.forget(name)
		}
		accessAll(t, b2, s, names, n)
		b = b2
	}
}

// handoffMount is an initialized mount over st with n basic credentials named by
// format (c%03d: c000, c001, …), created an hour before the time it returns.
func handoffMount(t *testing.T, st *writeLatencyStorage, n int, format string) (*integrationsBackend, logical.Storage, *testClock, []string, time.Time) {
	t.Helper()
	b, s, clock := newBackendWith(t, backendOptions{storage: st, initialize: true})
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf(format, i)
		lcCreateBasic(t, b, s, names[i], nil)
	}
	clock.Advance(time.Hour)
	return b, s, clock, names, clock.Now().UTC()
}
