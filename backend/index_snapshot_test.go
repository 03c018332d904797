package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// snapSeeded is a fresh storage view, as Vault gives a mount, filled by snapSeed, and
// the clock it was filled at.
func snapSeeded(t *testing.T) (logical.Storage, *testClock) {
	t.Helper()
	clock := newTestClock()
	s := logical.NewStorageView(&logical.InmemStorage{}, "")
	snapSeed(t, s, clock)
	return s, clock
}

// snapSeed fills storage with a mix: idle credentials of two ages (one warned of its
// suspension), created through the API with types and tags.
func snapSeed(t *testing.T, s logical.Storage, clock *testClock) {
	t.Helper()
	lcSeed(t, s, clock, "idle-", 40, 0)
	lcSeed(t, s, clock, "old-", 10, 95*day)
	b, _, _ := newBackendWith(t, backendOptions{storage: s, clock: clock})
	for i := range 20 {
		lcCreateBasic(t, b, s, fmt.Sprintf("basic-%02d", i), map[string]any{"tags": []string{"team-a", fmt.Sprintf("n%d", i%3)}})
		mustOK(t, b, s, logical.CreateOperation, fmt.Sprintf("credentials/bearer-%02d", i),
			map[string]any{"type": "bearer", "token": "t", "tags": []string{"team-b"}})
	}
}

// indexPrint is what the indexes answer: alerts, list pages by type and tag, the due
// names of every index at a range of times, the label index's pages.
func indexPrint(t *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock) string {
	t.Helper()
	var out strings.Builder
	resp := mustOK(t, b, s, logical.ReadOperation, "alerts", nil)
	if len(resp.Warnings) != 0 {
		t.Fatalf("alerts: warnings %q", resp.Warnings)
	}
	raw, _ := json.Marshal(resp.Data["alerts"])
	fmt.Fprintf(&out, "alerts %s\n", raw)
	for _, f := range []map[string]any{nil, {"type": "basic"}, {"type": "bearer"}, {"tag": "team-a"}, {"tag": "team-b"}, {"tag": "n1"}, {"type": "basic", "tag": "n2"}} {
		names, _ := listAllCredentials(t, b, s, f, 7)
		fmt.Fprintf(&out, "list %v %v\n", f, names)
	}
	a := b.activity
	for _, h := range []time.Duration{0, day, 10 * day, 30 * day, 60 * day, 85 * day, 90 * day, 100 * day, 200 * day, 400 * day, 4000 * day} {
		at := clock.Now().Add(h)
		for k, x := range []*lifecycle.Index{a.index, a.alerting, a.verifying, a.overlaps, a.clientKeys, b.tokens.kept.due} {
			due := x.Due(at, 1<<20)
			slices.Sort(due)
			fmt.Fprintf(&out, "due %d %v %v\n", k, h, due)
		}
	}
	return out.String()
}

// snapStart starts a backend over s with the scan running; loaded reports whether it
// loaded the snapshot, and print (when not nil) is called at that moment, before the
// verifying scan.
func snapStart(t *testing.T, s logical.Storage, clock *testClock, atLoad func(b *integrationsBackend)) (*integrationsBackend, *bool) {
	t.Helper()
	b, _, _ := newBackendWith(t, backendOptions{storage: s, clock: clock})
	loaded := new(bool)
	b.snapshot.loadedHook = func() {
		*loaded = true
		if atLoad != nil {
			atLoad(b)
		}
	}
	if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: s}); err != nil {
		t.Fatal(err)
	}
	waitIndexBuilt(t, b)
	return b, loaded
}

func hasMarker(t *testing.T, s logical.Storage) bool {
	t.Helper()
	e, err := s.Get(context.Background(), snapshotMarkerKey)
	if err != nil {
		t.Fatal(err)
	}
	return e != nil
}

// scanPrint is the print of a full scan of s (the marker, if any, put back after).
func scanPrint(t *testing.T, s logical.Storage, clock *testClock) string {
	t.Helper()
	ctx := context.Background()
	marker, _ := s.Get(ctx, snapshotMarkerKey)
	_ = s.Delete(ctx, snapshotMarkerKey)
	b, loaded := snapStart(t, s, clock, nil)
	if *loaded {
		t.Fatal("a start without the marker loaded the snapshot")
	}
	p := indexPrint(t, b, s, clock)
	b.snapshot.active.Store(false) // this one writes nothing at its Clean
	b.Cleanup(ctx)
	_ = s.Delete(ctx, snapshotMarkerKey)
	if marker != nil {
		_ = s.Put(ctx, marker)
	}
	return p
}

// TestSnapshotLoadEqualsScan: after a Clean, a start loads the snapshot (the marker
// deleted before anything else), the index is complete at once, and what it answers
// equals what a full scan of the same storage answers, before and after the
// verifying scan.
func TestSnapshotLoadEqualsScan(t *testing.T) {
	t.Parallel()
	s, clock := snapSeeded(t)
	b1, loaded := snapStart(t, s, clock, nil)
	if *loaded {
		t.Fatal("the first start loaded a snapshot")
	}
	// Changes after the scan: a retag, a delete, a create, a suspension.
	mustOK(t, b1, s, logical.PatchOperation, "credentials/basic-03", map[string]any{"tags": []string{"moved"}})
	mustOK(t, b1, s, logical.DeleteOperation, "credentials/bearer-04", nil)
	lcCreateBasic(t, b1, s, "late", map[string]any{"tags": []string{"team-a"}})
	clock.Advance(100 * day)
	if err := b1.sweep(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	b1.Cleanup(context.Background())
	if !hasMarker(t, s) {
		t.Fatal("no marker after Clean")
	}
	want := scanPrint(t, s, clock)

	var atLoad string
	b2, loaded := snapStart(t, s, clock, func(b *integrationsBackend) {
		if hasMarker(t, s) {
			t.Error("the marker is still stored when the load ends")
		}
		cfg, err := b.loadConfig(context.Background(), s)
		if err != nil || !b.indexComplete(cfg) {
			t.Errorf("the index is not complete after the load: %v", err)
		}
	})
	if !*loaded {
		t.Fatal("the start after a Clean did not load the snapshot")
	}
	_ = atLoad
	if got := indexPrint(t, b2, s, clock); got != want {
		t.Fatalf("after the load and the verifying scan:\n%s\nwant (a full scan):\n%s", got, want)
	}
	if c, n := b2.snapshot.dirtyNames(); c != 0 {
		t.Fatalf("the verifying scan found %d chunks (%d names) stale in an up-to-date snapshot", c, n)
	}
}

// loadPrint starts over s expecting a load and returns the print taken right after the
// load, before the verifying scan, and the backend.
func loadPrint(t *testing.T, s logical.Storage, clock *testClock) (string, *integrationsBackend) {
	t.Helper()
	// The print needs requests, which the load hook cannot make while the scan job
	// holds its run: the hook blocks the scan until the print is taken.
	got := make(chan string, 1)
	proceed := make(chan struct{})
	var b *integrationsBackend
	b, _, _ = newBackendWith(t, backendOptions{storage: s, clock: clock})
	loaded := false
	b.snapshot.loadedHook = func() {
		loaded = true
		got <- ""
		<-proceed
	}
	if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: s}); err != nil {
		t.Fatal(err)
	}
	var p string
	select {
	case <-got:
		p = indexPrint(t, b, s, clock)
		close(proceed)
	case <-afterIndexScan(b):
		t.Fatal("the start did not load the snapshot")
	}
	waitIndexBuilt(t, b)
	if !loaded {
		t.Fatal("not loaded")
	}
	return p, b
}

// afterIndexScan is closed when b's index scan has ended.
func afterIndexScan(b *integrationsBackend) <-chan struct{} {
	done := make(chan struct{})
	go func() { b.indexScan.Wait(); close(done) }()
	return done
}

// TestSnapshotStaleChunkRepaired: an entry changed behind the engine's back (as an
// older release would) is loaded stale, repaired by the verifying scan, and the chunk
// written again, so the next load is right before any scan.
func TestSnapshotStaleChunkRepaired(t *testing.T) {
	t.Parallel()
	s, clock := snapSeeded(t)
	b1, _ := snapStart(t, s, clock, nil)
	b1.Cleanup(context.Background())
	// An older release retags basic-05 and ages idle-00: it knows nothing of index/.
	ctx := context.Background()
	for name, change := range map[string]func(c *credential){
		"basic-05":   func(c *credential) { c.Tags = []string{"elsewhere"} },
		"idle-00000": func(c *credential) { c.State = lifecycle.NewState(clock.Now().Add(-95 * day)) },
	} {
		e, _ := s.Get(ctx, credentialPrefix+name)
		var c credential
		if err := e.DecodeJSON(&c); err != nil {
			t.Fatal(err)
		}
		change(&c)
		e, _ = logical.StorageEntryJSON(credentialPrefix+name, &c)
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	want := scanPrint(t, s, clock)
	stale, b2 := loadPrint(t, s, clock)
	if stale == want {
		t.Fatal("the test changed nothing the snapshot holds")
	}
	if got := indexPrint(t, b2, s, clock); got != want {
		t.Fatalf("after the verifying scan:\n%s\nwant:\n%s", got, want)
	}
	b2.Cleanup(ctx)
	if !hasMarker(t, s) {
		t.Fatal("no marker after the repair's Clean")
	}
	if got, _ := loadPrint(t, s, clock); got != want {
		t.Fatalf("the load after the repair, before its verifying scan:\n%s\nwant:\n%s", got, want)
	}
}

// TestSnapshotCorruptChunk: chunks that cannot be used (garbage, another chunk's
// content, a name out of place) are ignored: their credentials are read, the index
// after the load is whole, and nothing panics or fails.
func TestSnapshotCorruptChunk(t *testing.T) {
	t.Parallel()
	s, clock := snapSeeded(t)
	b1, _ := snapStart(t, s, clock, nil)
	b1.Cleanup(context.Background())
	ctx := context.Background()
	a, bb, c := chunkOf("basic-01"), chunkOf("bearer-02"), chunkOf("idle-00007")
	if a == bb || a == c || bb == c {
		t.Skip("the names share a chunk")
	}
	ea, _ := s.Get(ctx, chunkKey(a))
	eb, _ := s.Get(ctx, chunkKey(bb))
	ec, _ := s.Get(ctx, chunkKey(c))
	if ea == nil || eb == nil || ec == nil {
		t.Fatal("chunks missing")
	}
	_ = s.Put(ctx, &logical.StorageEntry{Key: chunkKey(a), Value: []byte(`{"format":1,"chunk":`)})
	_ = s.Put(ctx, &logical.StorageEntry{Key: chunkKey(bb), Value: ea.Value}) // chunk a's content
	var ch snapChunk
	if err := json.Unmarshal(ec.Value, &ch); err != nil {
		t.Fatal(err)
	}
	ch.Entries = append(ch.Entries, snapEntry{Name: "zz-not-here", Type: "basic"}) // hashes elsewhere
	raw, _ := json.Marshal(ch)
	_ = s.Put(ctx, &logical.StorageEntry{Key: chunkKey(c), Value: raw})
	want := scanPrint(t, s, clock)
	got, b2 := loadPrint(t, s, clock)
	if got != want {
		t.Fatalf("after a load with corrupt chunks:\n%s\nwant:\n%s", got, want)
	}
	b2.Cleanup(ctx)
	for _, i := range []int{a, bb, c} {
		e, _ := s.Get(ctx, chunkKey(i))
		if e == nil {
			continue
		}
		if _, err := decodeChunk(i, e.Value); err != nil {
			t.Fatalf("chunk %d not rewritten: %v", i, err)
		}
	}
}

// TestSnapshotDecodeStrict: decodeChunk refuses what is not exactly a chunk of its
// place, never panics.
func TestSnapshotDecodeStrict(t *testing.T) {
	t.Parallel()
	i := chunkOf("x1")
	good, _ := encodeChunk(i, []snapEntry{{Name: "x1", Type: "basic"}})
	if _, err := decodeChunk(i, good); err != nil {
		t.Fatalf("a good chunk: %v", err)
	}
	for name, raw := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("\x00\xff"),
		"truncated": good[:len(good)-2],
		"format":    []byte(strings.Replace(string(good), `"format":1`, `"format":2`, 1)),
		"place":     good, // decoded as another chunk below
		"type":      []byte(strings.Replace(string(good), `"t":"basic"`, `"t":"nope"`, 1)),
		"name":      []byte(strings.Replace(string(good), `"n":"x1"`, `"n":"../x"`, 1)),
		"huge":      make([]byte, snapshotMaxChunkBytes+1),
	} {
		j := i
		if name == "place" {
			j = (i + 1) % snapshotChunks
		}
		if _, err := decodeChunk(j, raw); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	dup, _ := json.Marshal(snapChunk{Format: snapshotFormat, Chunk: i, Of: snapshotChunks, Entries: []snapEntry{{Name: "x1", Type: "basic"}, {Name: "x1", Type: "basic"}}})
	if _, err := decodeChunk(i, dup); err == nil {
		t.Error("a name twice: decoded")
	}
}

// TestSnapshotCrashMeansScan: a start deletes the marker before it loads; a crash
// (no Clean) then leaves none, and the next start scans.
func TestSnapshotCrashMeansScan(t *testing.T) {
	t.Parallel()
	s, clock := snapSeeded(t)
	b1, _ := snapStart(t, s, clock, nil)
	b1.Cleanup(context.Background())
	b2, loaded := snapStart(t, s, clock, nil)
	if !*loaded || hasMarker(t, s) {
		t.Fatalf("loaded %v, marker kept %v", *loaded, hasMarker(t, s))
	}
	// b2 "crashes": it never runs Clean (its test cleanup's Clean is kept from writing).
	b2.snapshot.active.Store(false)
	mustOK(t, b2, s, logical.DeleteOperation, "credentials/basic-00", nil)
	b3, loaded := snapStart(t, s, clock, nil)
	if *loaded {
		t.Fatal("a start after a crash loaded the snapshot")
	}
	if names, _ := listAllCredentials(t, b3, s, map[string]any{"type": "basic"}, 100); slices.Contains(names, "basic-00") {
		t.Fatal("the deleted credential is listed")
	}
}

// TestSnapshotStandbyWritesNothing: a performance standby keeps no snapshot: no chunk
// and no marker, whatever it serves, and its Clean writes nothing.
func TestSnapshotStandbyWritesNothing(t *testing.T) {
	t.Parallel()
	s := newCountingStorage()
	standby := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	lcSeed(t, s, newTestClock(), "seeded-", 5, 0)
	b, _, _ := newBackendWith(t, backendOptions{storage: s, system: standby, initialize: true})
	b.snapshot.markDirty("seeded-00001")
	if err := b.snapshotStep(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	b.Cleanup(context.Background())
	keys, err := s.List(context.Background(), "index/")
	if err != nil || len(keys) != 0 {
		t.Fatalf("a standby stored %v (%v)", keys, err)
	}
}

// TestSnapshotCleanRacingWrites: writes racing Clean either land in the snapshot or
// leave no marker: when the marker is there, a load (before any verifying scan) equals
// a full scan.
func TestSnapshotCleanRacingWrites(t *testing.T) {
	t.Parallel()
	for round := range 4 {
		clock := newTestClock()
		s := logical.NewStorageView(&logical.InmemStorage{}, "")
		snapSeed(t, s, clock)
		b0, _ := snapStart(t, s, clock, nil)
		b0.Cleanup(context.Background()) // a whole snapshot, so the next Clean may mark it
		b1, _ := snapStart(t, s, clock, nil)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					name := fmt.Sprintf("basic-%02d", (w*5+i)%20)
					_, _ = b1.HandleRequest(context.Background(), &logical.Request{Operation: logical.PatchOperation, Path: "credentials/" + name,
						Storage: s, Data: map[string]any{"tags": []string{fmt.Sprintf("r%d-%d", round, i)}}})
					_, _ = b1.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: fmt.Sprintf("credentials/new-%d-%d", w, i),
						Storage: s, Data: map[string]any{"type": "basic", "username": "u", "password": "p", "tags": []string{"new"}}})
				}
			}()
		}
		b1.Cleanup(context.Background())
		wg.Wait()
		if !hasMarker(t, s) {
			continue // a write after the marker deleted it: the next start scans
		}
		want := scanPrint(t, s, clock)
		if got, _ := loadPrint(t, s, clock); got != want {
			t.Fatalf("round %d: the marker is stored but the load differs from a scan:\n%s\nwant:\n%s", round, got, want)
		}
	}
}

// TestSnapshotWritesRacingTheLoad: a retag and a delete while a chunk read is held:
// the load does not file the stale entries over them.
func TestSnapshotWritesRacingTheLoad(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	snapSeed(t, gs, clock)
	b1, _ := snapStart(t, gs, clock, nil)
	b1.Cleanup(context.Background())
	gt := gs.gate("get:" + chunkKey(chunkOf("basic-07")))
	gd := gs.gate("get:" + chunkKey(chunkOf("bearer-08")))
	b, _, _ := newBackendWith(t, backendOptions{storage: gs, clock: clock})
	hold := make(chan struct{})
	loadedNow := make(chan struct{})
	b.snapshot.loadedHook = func() { close(loadedNow); <-hold }
	if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: gs}); err != nil {
		t.Fatal(err)
	}
	<-gt.entered
	<-gd.entered
	mustOK(t, b, gs, logical.PatchOperation, "credentials/basic-07", map[string]any{"tags": []string{"retagged"}})
	mustOK(t, b, gs, logical.DeleteOperation, "credentials/bearer-08", nil)
	close(gt.release)
	close(gd.release)
	// Checked while the hook holds the scan: before the verifying scan, which would
	// repair what the load got wrong.
	defer waitIndexBuilt(t, b)
	defer close(hold)
	<-loadedNow
	if names, _ := listAllCredentials(t, b, gs, map[string]any{"tag": "retagged"}, 50); !slices.Equal(names, []string{"basic-07"}) {
		t.Fatalf("tag retagged: %v", names)
	}
	if names, _ := listAllCredentials(t, b, gs, map[string]any{"tag": "team-a"}, 50); slices.Contains(names, "basic-07") {
		t.Fatal("the old tag came back with the load")
	}
	if names, _ := listAllCredentials(t, b, gs, map[string]any{"type": "bearer"}, 50); slices.Contains(names, "bearer-08") {
		t.Fatal("the deleted credential came back with the load")
	}
}

// TestSnapshotJobKeepsChunksCurrent: the job's steps, racing writes, keep the chunks
// current: after the last step (and Clean), a load equals a scan.
func TestSnapshotJobKeepsChunksCurrent(t *testing.T) {
	t.Parallel()
	s, clock := snapSeeded(t)
	b1, _ := snapStart(t, s, clock, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 30 {
			mustOK(t, b1, s, logical.PatchOperation, fmt.Sprintf("credentials/bearer-%02d", i%20), map[string]any{"tags": []string{fmt.Sprintf("j%d", i)}})
		}
	}()
	for range 20 {
		if err := b1.snapshotStep(ctx, s); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	for {
		if c, _ := b1.snapshot.dirtyNames(); c == 0 {
			break
		}
		if err := b1.snapshotStep(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// Written by the job: Clean has nothing left but the marker.
	b1.Cleanup(ctx)
	want := scanPrint(t, s, clock)
	if got, _ := loadPrint(t, s, clock); got != want {
		t.Fatalf("load after the job's steps:\n%s\nwant:\n%s", got, want)
	}
}

// markerStorage refuses to delete the marker while refuse is set.
type markerStorage struct {
	logical.Storage
	mu     sync.Mutex
	refuse bool
}

func (m *markerStorage) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	refuse := m.refuse
	m.mu.Unlock()
	if refuse && key == snapshotMarkerKey {
		return fmt.Errorf("storage refuses")
	}
	return m.Storage.Delete(ctx, key)
}

// TestSnapshotMarkerNotDeleted: a start that cannot delete the marker scans instead of
// loading, and its first write deletes the marker before it is stored.
func TestSnapshotMarkerNotDeleted(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	ms := &markerStorage{Storage: logical.NewStorageView(&logical.InmemStorage{}, "")}
	snapSeed(t, ms, clock)
	b1, _ := snapStart(t, ms, clock, nil)
	b1.Cleanup(context.Background())
	ms.mu.Lock()
	ms.refuse = true
	ms.mu.Unlock()
	b2, loaded := snapStart(t, ms, clock, nil)
	if *loaded || !hasMarker(t, ms) {
		t.Fatalf("loaded %v, marker %v", *loaded, hasMarker(t, ms))
	}
	resp, err := b2.HandleRequest(context.Background(), &logical.Request{Operation: logical.PatchOperation,
		Path: "credentials/basic-01", Storage: ms, Data: map[string]any{"tags": []string{"x"}}})
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("a write stored while the marker it would falsify could not be deleted")
	}
	ms.mu.Lock()
	ms.refuse = false
	ms.mu.Unlock()
	mustOK(t, b2, ms, logical.PatchOperation, "credentials/basic-01", map[string]any{"tags": []string{"x"}})
	if hasMarker(t, ms) {
		t.Fatal("the marker survived a write")
	}
}

// putGate holds the first Put of key until released.
type putGate struct {
	logical.Storage
	key              string
	once             sync.Once
	entered, release chan struct{}
}

func (p *putGate) Put(ctx context.Context, e *logical.StorageEntry) error {
	if e.Key == p.key {
		held := false
		p.once.Do(func() { held = true })
		if held {
			close(p.entered)
			<-p.release
		}
	}
	return p.Storage.Put(ctx, e)
}

// TestSnapshotWriteHoldsOffClean: a credential's write holds the snapshot's lock shared
// across its storage write, so Clean's final pass (the exclusive lock) cannot write
// the marker between the write and its dirty mark; Clean then includes the write.
func TestSnapshotWriteHoldsOffClean(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	pg := &putGate{Storage: logical.NewStorageView(&logical.InmemStorage{}, ""), key: credentialPrefix + "basic-01",
		entered: make(chan struct{}), release: make(chan struct{})}
	snapSeed(t, pg.Storage, clock)
	b0, _ := snapStart(t, pg.Storage, clock, nil)
	b0.Cleanup(context.Background())
	b, _ := snapStart(t, pg, clock, nil)
	wrote := make(chan error, 1)
	go func() {
		_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.PatchOperation,
			Path: "credentials/basic-01", Storage: pg, Data: map[string]any{"tags": []string{"during-clean"}}})
		wrote <- err
	}()
	<-pg.entered
	if b.snapshot.mu.TryLock() {
		b.snapshot.mu.Unlock()
		close(pg.release)
		t.Fatal("Clean's final pass could run while a write is between its storage write and its dirty mark")
	}
	cleaned := make(chan struct{})
	go func() { b.Cleanup(context.Background()); close(cleaned) }()
	close(pg.release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	<-cleaned
	if !hasMarker(t, pg) {
		t.Fatal("no marker after Clean")
	}
	want := scanPrint(t, pg.Storage, clock)
	if got, _ := loadPrint(t, pg.Storage, clock); got != want {
		t.Fatalf("the load after a write during Clean:\n%s\nwant:\n%s", got, want)
	}
}

// TestSnapshotDirtyNamesHoldReferences: a dirty name is held in the mount's names
// table (an id, 4 bytes, instead of its string) until its chunk is written, even after
// its credential is deleted, and released then: once every credential is deleted and
// every chunk written, the table is empty again.
func TestSnapshotDirtyNamesHoldReferences(t *testing.T) {
	t.Parallel()
	s, clock := snapSeeded(t)
	b, _ := snapStart(t, s, clock, nil)
	ctx := context.Background()
	write := func() {
		t.Helper()
		if err := b.writeChunks(ctx, s, b.snapshot.take(0)); err != nil {
			t.Fatal(err)
		}
	}
	write() // what the start left dirty
	names, err := s.List(ctx, credentialPrefix)
	if err != nil || len(names) == 0 {
		t.Fatalf("listing the seeded credentials: %d, %v", len(names), err)
	}
	for _, name := range names {
		mustOK(t, b, s, logical.DeleteOperation, "credentials/"+name, nil)
	}
	lcFlush(t, b, s)
	if _, dirty := b.snapshot.dirtyNames(); dirty != len(names) {
		t.Fatalf("%d dirty names after deleting %d credentials, want each once", dirty, len(names))
	}
	for _, name := range names {
		if _, ok := b.names.Lookup(name); !ok {
			t.Fatalf("%s: deleted and dirty, but no longer in the names table: its chunk could not be written", name)
		}
	}
	write()
	if got := b.names.Len(); got != 0 {
		t.Fatalf("the names table holds %d names after every credential was deleted and every chunk written, want 0", got)
	}
	for i := range snapshotChunks {
		if e, err := s.Get(ctx, chunkKey(i)); err != nil || e != nil {
			t.Fatalf("chunk %d still stored (%v) after every credential was deleted", i, err)
		}
	}
}
