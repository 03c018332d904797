// The index snapshot: what the index scan derives from each credential (its type, tags,
// lifecycle state, the last use of its refresh token and whether it is failing), kept
// in storage in chunks by a hash of the name, so that a reload, restart or leader change
// loads the indexes in a few thousand reads instead of reading every credential. The
// active node keeps it current; Clean writes what is left and then the marker that
// says the chunks are complete. docs/ARCHITECTURE.md ("The index snapshot") states the
// protocol.

package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

const (
	// snapshotChunkPrefix holds the chunks: index/chunks/<n>, n in [0, snapshotChunks).
	snapshotChunkPrefix = "index/chunks/"
	// snapshotMarkerKey is the marker Clean writes once every chunk is current.
	snapshotMarkerKey = "index/clean"
	// snapshotFormat is the chunks' and the marker's format; another one is not read.
	snapshotFormat = 1
	// snapshotChunks is how many chunks the names hash into: at a million credentials
	// about 490 entries, ~110 KiB, a chunk, well under Raft's 1 MiB entry bound.
	snapshotChunks = 2048
	// snapshotMaxChunkBytes bounds what a chunk read decodes: a larger one is ignored.
	snapshotMaxChunkBytes = 8 << 20
	// snapshotStepChunks is how many dirty chunks one step of the snapshot job writes,
	// and snapshotStepPause the pause between steps: a bounded rate of storage writes.
	snapshotStepChunks = 32
	snapshotStepPause  = 250 * time.Millisecond
	// snapshotCleanReads bounds Clean's work: the credentials it reads for the dirty
	// chunks. More dirty than that and Clean writes no marker (the next start scans).
	snapshotCleanReads = 20000
	// snapshotLoadWorkers are the parallel chunk reads of a load.
	snapshotLoadWorkers = 16
	// verifyScanWorkers are the parallel reads of the verifying scan after a load.
	verifyScanWorkers = 2
)

// snapEntry is one credential in a chunk: the inputs of everything the index scan
// files for it (reindex, the label index, keep-alive, the failing set).
type snapEntry struct {
	Name         string          `json:"n"`
	Type         string          `json:"t"`
	Tags         []string        `json:"g,omitempty"`
	NotAfter     time.Time       `json:"na,omitzero"`
	SuspendAfter time.Duration   `json:"sa,omitempty"`
	PurgeAfter   time.Duration   `json:"pa,omitempty"`
	State        lifecycle.State `json:"s"`
	// Used is when the refresh token was last used (keep-alive); zero: none held.
	Used time.Time `json:"u,omitzero"`
	// Failing: in the failing set (a stored run of failures long enough).
	Failing bool `json:"f,omitempty"`
}

// snapChunk is the stored form of one chunk.
type snapChunk struct {
	Format  int         `json:"format"`
	Chunk   int         `json:"chunk"`
	Of      int         `json:"of"`
	Entries []snapEntry `json:"entries"`
}

// snapMarker is index/clean.
type snapMarker struct {
	Format      int       `json:"format"`
	Chunks      int       `json:"chunks"`
	Generation  uint64    `json:"generation"`
	Credentials int       `json:"credentials"`
	WrittenAt   time.Time `json:"written_at"`
}

// chunkOf is the chunk name is kept in.
func chunkOf(name string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int(h.Sum32() % snapshotChunks)
}

func chunkKey(i int) string { return fmt.Sprintf("%s%d", snapshotChunkPrefix, i) }

// entryOf is c's entry, c filed with the refresh token last used at used.
// The last verification's detail text is left out: no index is filed from it (alerts
// read it from the credential), and the chunks are not seal-wrapped.
func entryOf(c *credential, used time.Time, failing bool) snapEntry {
	st := c.State
	if st.Verified != nil && st.Verified.Detail != "" {
		v := *st.Verified
		v.Detail = ""
		st.Verified = &v
	}
	return snapEntry{Name: c.Name, Type: c.Type, Tags: c.Tags, NotAfter: c.NotAfter, SuspendAfter: c.SuspendAfter,
		PurgeAfter: c.PurgeAfter, State: st, Used: used, Failing: failing}
}

// credential is the credential without values the indexes are filed from.
func (e *snapEntry) credential() *credential {
	typ := e.Type
	if t, ok := credtype.Lookup(typ); ok && t.Name == typ {
		typ = t.Name // the catalog's string, shared
	}
	return &credential{Name: e.Name, Type: typ, Tags: e.Tags, NotAfter: e.NotAfter, SuspendAfter: e.SuspendAfter,
		PurgeAfter: e.PurgeAfter, State: e.State, Record: credentialRecordVersion}
}

// entryHash fingerprints an entry, to compare a loaded chunk with what a scan reads.
func entryHash(e *snapEntry) uint64 {
	raw, err := json.Marshal(e)
	if err != nil {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write(raw)
	return h.Sum64()
}

// encodeChunk encodes chunk i's entries, sorted by name.
func encodeChunk(i int, entries []snapEntry) ([]byte, error) {
	slices.SortFunc(entries, func(a, b snapEntry) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return json.Marshal(snapChunk{Format: snapshotFormat, Chunk: i, Of: snapshotChunks, Entries: entries})
}

// decodeChunk decodes chunk i strictly: its format, place and size; every entry a valid
// name of a known type that hashes into this chunk, once. Any error: the whole chunk is
// ignored.
func decodeChunk(i int, raw []byte) ([]snapEntry, error) {
	if len(raw) > snapshotMaxChunkBytes {
		return nil, fmt.Errorf("chunk %d: %d bytes, more than %d", i, len(raw), snapshotMaxChunkBytes)
	}
	var c snapChunk
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("chunk %d: %w", i, err)
	}
	if c.Format != snapshotFormat || c.Chunk != i || c.Of != snapshotChunks {
		return nil, fmt.Errorf("chunk %d: format %d, chunk %d of %d", i, c.Format, c.Chunk, c.Of)
	}
	for k := range c.Entries {
		e := &c.Entries[k]
		if !validName(e.Name) || chunkOf(e.Name) != i || (k > 0 && c.Entries[k-1].Name >= e.Name) {
			return nil, fmt.Errorf("chunk %d: entry %d: a name out of place", i, k)
		}
		if _, ok := credtype.Lookup(e.Type); !ok {
			return nil, fmt.Errorf("chunk %d: entry %d: unknown type", i, k)
		}
	}
	return c.Entries, nil
}

// dirtyChunk is what a chunk's next write reads afresh: names, and with replace every
// name of the chunk (all) without reading the stored chunk.
type dirtyChunk struct {
	// ids are the dirty names, as ids in the mount's names table (a reference each),
	// sorted by id and each once: 4 bytes a name while a mass write (a bulk creation, a
	// flush renewing every window) leaves most of the mount dirty, where a set of the
	// names' strings cost about 40.
	ids     []uint32
	replace bool
	all     []string
}

func (d *dirtyChunk) size() int { return len(d.ids) + len(d.all) }

// add files id, whose reference the caller passes on, once: a reference to an id
// already there is released.
func (d *dirtyChunk) add(tab *names.Table, id uint32) {
	i, found := slices.BinarySearch(d.ids, id)
	if found {
		tab.Release(id)
		return
	}
	d.ids = slices.Insert(d.ids, i, id)
}

// release drops the references of the dirty names: the chunk was written.
func (d *dirtyChunk) release(tab *names.Table) {
	for _, id := range d.ids {
		tab.Release(id)
	}
	d.ids = nil
}

// indexSnapshot keeps the snapshot on the active node.
type indexSnapshot struct {
	// mu orders changes against Clean's final pass: a change of a credential holds it
	// shared from before its storage write until its chunk is marked dirty (begin,
	// end); the final pass holds it exclusively while it writes the dirty chunks and
	// the marker, so no change lands between them unseen.
	mu sync.RWMutex
	// active: this node keeps the snapshot (the active node, from Initialize).
	active atomic.Bool
	// baseline: the stored chunks plus the dirty ones hold every credential (after a
	// load, or once a full scan has queued every chunk); before, no marker is written.
	baseline atomic.Bool
	// broken: a stored chunk this node merged into could not be decoded; no marker
	// for the rest of this node's run (the next start scans and rebuilds it).
	broken atomic.Bool

	sealMu sync.Mutex
	sealed bool // the marker is stored: the next change deletes it first

	dirtyMu sync.Mutex
	dirty   map[int]*dirtyChunk
	names   *names.Table // the mount's, which the dirty chunks' ids are of
	// touched records, while a load files the chunks, the names changed meanwhile:
	// their entries are stale, and a write files them itself.
	touchMu sync.Mutex
	touched map[string]struct{}
	wake    chan struct{}

	generation atomic.Uint64
	// storage is the mount's, where a hint's change after the marker deletes it.
	storage func() logical.Storage
	// pause arms the job's pause; nil: a real timer. Tests set one that never fires
	// and call snapshotStep themselves.
	pause func(d time.Duration) <-chan time.Time

	// loadedHook is a test hook: called once a load has made the index complete,
	// before the verifying scan; nil in production.
	loadedHook func()

	// tried tells the first index scan (Initialize's) to try the snapshot; later
	// scans (a config change) read every credential.
	tried atomic.Bool
}

func newIndexSnapshot(tab *names.Table, storage func() logical.Storage) *indexSnapshot {
	return &indexSnapshot{dirty: map[int]*dirtyChunk{}, names: tab, wake: make(chan struct{}, 1), storage: storage}
}

// markDirty queues name's chunk for a write. A change after the marker deletes it
// (unseal): for a credential write begin has done that already; for the hints marked
// from elsewhere (a refresh token's last use, the failing set) it is done in the
// background.
func (x *indexSnapshot) markDirty(name string) {
	if x == nil || !x.active.Load() {
		return
	}
	id := x.names.Acquire(name)
	x.dirtyMu.Lock()
	i := chunkOf(name)
	d := x.dirty[i]
	if d == nil {
		d = &dirtyChunk{}
		x.dirty[i] = d
	}
	d.add(x.names, id)
	x.dirtyMu.Unlock()
	x.sealMu.Lock()
	sealed := x.sealed
	x.sealMu.Unlock()
	if sealed {
		go func() { _ = x.unseal(context.Background(), x.storage()) }()
	}
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// unseal deletes the marker if this node wrote it.
func (x *indexSnapshot) unseal(ctx context.Context, s logical.Storage) error {
	x.sealMu.Lock()
	defer x.sealMu.Unlock()
	if !x.sealed {
		return nil
	}
	if err := s.Delete(ctx, snapshotMarkerKey); err != nil {
		return fmt.Errorf("deleting %s: %w", snapshotMarkerKey, err)
	}
	x.sealed = false
	return nil
}

// begin is called before a credential's storage write or delete: it holds off Clean's
// final pass and deletes the marker if it was written. The change calls the returned
// end after it (whether it was stored or not), which marks the chunk dirty.
func (x *indexSnapshot) begin(ctx context.Context, s logical.Storage, name string) (end func(), err error) {
	if x == nil || !x.active.Load() {
		return func() {}, nil
	}
	x.mu.RLock()
	if err := x.unseal(ctx, s); err != nil {
		x.mu.RUnlock()
		return nil, err
	}
	x.touch(name)
	return func() { //nolint:contextcheck // a marker deletion markDirty may start outlives this call, as a background job does
		x.markDirty(name)
		x.mu.RUnlock()
	}, nil
}

// touch records name as changed while a load runs.
func (x *indexSnapshot) touch(name string) {
	x.touchMu.Lock()
	if x.touched != nil {
		x.touched[name] = struct{}{}
	}
	x.touchMu.Unlock()
}

// queueReplace queues chunks whose every name is known (names, grouped by chunk) for a
// write from those names alone: after a full scan, or for a chunk a load could not use.
func (x *indexSnapshot) queueReplace(byChunk map[int][]string, only func(i int) bool) {
	x.dirtyMu.Lock()
	for i := range snapshotChunks {
		if only != nil && !only(i) {
			continue
		}
		d := x.dirty[i]
		if d == nil {
			d = &dirtyChunk{}
			x.dirty[i] = d
		}
		d.replace, d.all = true, byChunk[i]
	}
	x.dirtyMu.Unlock()
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// groupByChunk groups names by chunk.
func groupByChunk(names []string) map[int][]string {
	out := make(map[int][]string, snapshotChunks)
	for _, n := range names {
		i := chunkOf(n)
		out[i] = append(out[i], n)
	}
	return out
}

// dirtyNames counts the names the dirty chunks would read.
func (x *indexSnapshot) dirtyNames() (chunks, names int) {
	x.dirtyMu.Lock()
	defer x.dirtyMu.Unlock()
	for _, d := range x.dirty {
		names += d.size()
	}
	return len(x.dirty), names
}

// take removes up to n dirty chunks (all when n <= 0) from the queue.
func (x *indexSnapshot) take(n int) map[int]*dirtyChunk {
	x.dirtyMu.Lock()
	defer x.dirtyMu.Unlock()
	out := map[int]*dirtyChunk{}
	for i, d := range x.dirty {
		if n > 0 && len(out) == n {
			break
		}
		out[i] = d
		delete(x.dirty, i)
	}
	return out
}

// requeue puts back chunks a write failed to store.
func (x *indexSnapshot) requeue(failed map[int]*dirtyChunk) {
	x.dirtyMu.Lock()
	defer x.dirtyMu.Unlock()
	for i, d := range failed {
		cur := x.dirty[i]
		if cur == nil {
			x.dirty[i] = d
			continue
		}
		if d.replace && !cur.replace {
			cur.replace, cur.all = true, d.all
		}
		for _, id := range d.ids {
			cur.add(x.names, id)
		}
	}
}

// snapInput is name's entry as it stands: nil when the credential does not exist (or
// cannot be decoded, which the scan does not index either).
func (b *integrationsBackend) snapInput(ctx context.Context, s logical.Storage, name string) (*snapEntry, error) {
	c, _, err := b.credentials.indexView(ctx, s, name)
	if errors.Is(err, errUndecodable) {
		return nil, nil
	}
	if err != nil || c == nil {
		return nil, err
	}
	used, _ := b.tokens.kept.usedOf(name)
	e := entryOf(c, used, b.usage.isFailing(name))
	return &e, nil
}

// writeChunks writes the chunks taken: each merged into its stored form (or built from
// its names alone, replace), read afresh for the dirty names. Chunks that could not be
// written are queued again.
func (b *integrationsBackend) writeChunks(ctx context.Context, s logical.Storage, chunks map[int]*dirtyChunk) error {
	for i, d := range chunks {
		if err := b.writeChunk(ctx, s, i, d); err != nil {
			b.snapshot.requeue(chunks) // the failed one and those not reached
			return err
		}
		d.release(b.snapshot.names)
		delete(chunks, i)
	}
	return nil
}

func (b *integrationsBackend) writeChunk(ctx context.Context, s logical.Storage, i int, d *dirtyChunk) error {
	entries := map[string]snapEntry{}
	if !d.replace {
		raw, err := s.Get(ctx, chunkKey(i))
		if err != nil {
			return fmt.Errorf("reading index chunk %d: %w", i, err)
		}
		var stored []snapEntry
		if raw != nil {
			stored, err = decodeChunk(i, raw.Value)
		}
		if err != nil {
			// Merging into nothing would drop the names not dirty: no marker until a
			// scan (the next start) rebuilds the chunks. (A missing chunk is an empty
			// one: an empty chunk is deleted, not stored.)
			b.snapshot.broken.Store(true)
			b.Logger().Warn("an index snapshot chunk is missing or cannot be decoded: the next start scans", "chunk", i)
		}
		for _, e := range stored {
			entries[e.Name] = e
		}
	}
	read := func(name string) error {
		e, err := b.snapInput(ctx, s, name)
		if err != nil {
			return err
		}
		if e == nil {
			delete(entries, name)
		} else {
			entries[name] = *e
		}
		return nil
	}
	for _, name := range d.all {
		if err := read(name); err != nil {
			return err
		}
	}
	for _, id := range d.ids {
		if err := read(b.snapshot.names.Name(id)); err != nil {
			return err
		}
	}
	list := make([]snapEntry, 0, len(entries))
	for _, e := range entries {
		list = append(list, e)
	}
	if len(list) == 0 {
		if err := s.Delete(ctx, chunkKey(i)); err != nil {
			return fmt.Errorf("deleting index chunk %d: %w", i, err)
		}
		return nil
	}
	raw, err := encodeChunk(i, list)
	if err != nil {
		return fmt.Errorf("encoding index chunk %d: %w", i, err)
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: chunkKey(i), Value: raw}); err != nil {
		return fmt.Errorf("storing index chunk %d: %w", i, err)
	}
	return nil
}

// awaitSnapshot is the snapshot job's wait: until a chunk is dirty, then the pause
// that bounds the rate of chunk writes.
func (b *integrationsBackend) awaitSnapshot(ctx context.Context) bool {
	x := b.snapshot
	for {
		if c, _ := x.dirtyNames(); c > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return false
		case <-x.wake:
		}
	}
	after := x.pause
	if after == nil {
		after = time.After
	}
	select {
	case <-ctx.Done():
		return false
	case <-after(snapshotStepPause):
		return true
	}
}

// wakeSnapshot makes the job's wait look again.
func (b *integrationsBackend) wakeSnapshot() {
	select {
	case b.snapshot.wake <- struct{}{}:
	default:
	}
}

// snapshotStep is one step of the snapshot job: up to snapshotStepChunks dirty chunks.
func (b *integrationsBackend) snapshotStep(ctx context.Context, s logical.Storage) error {
	if !b.snapshot.active.Load() {
		return nil
	}
	return b.writeChunks(ctx, s, b.snapshot.take(snapshotStepChunks))
}

// finalSnapshot is the snapshot job's Final (Clean, after the last usage flush): under
// the exclusive lock, the dirty chunks written and then the marker, unless the
// snapshot is not whole (no baseline yet, a broken chunk) or more is dirty than Clean
// may read (snapshotCleanReads), when the next start scans instead.
func (b *integrationsBackend) finalSnapshot(ctx context.Context, s logical.Storage) {
	x := b.snapshot
	if !x.active.Load() {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, n := x.dirtyNames(); n > snapshotCleanReads {
		b.Logger().Info("the index snapshot has more changes than a reload may wait for: the next start scans", "credentials", n)
		return
	}
	if err := b.writeChunks(ctx, s, x.take(0)); err != nil {
		b.Logger().Warn("writing the index snapshot at unload failed: the next start scans", "error", err)
		return
	}
	if !x.baseline.Load() || x.broken.Load() {
		return
	}
	raw, err := json.Marshal(snapMarker{Format: snapshotFormat, Chunks: snapshotChunks, Generation: x.generation.Add(1),
		Credentials: int(b.activity.total.Load()), WrittenAt: b.now().UTC()})
	if err != nil {
		return
	}
	x.sealMu.Lock()
	defer x.sealMu.Unlock()
	if err := s.Put(ctx, &logical.StorageEntry{Key: snapshotMarkerKey, Value: raw}); err != nil {
		b.Logger().Warn("storing the index snapshot's marker failed: the next start scans", "error", err)
		return
	}
	x.sealed = true
}

// takeMarker reads and deletes the marker: whatever happens next, a start after this
// one scans unless this one's Clean writes the marker again. False when there is no
// valid marker (or it could not be deleted).
func (b *integrationsBackend) takeMarker(ctx context.Context, s logical.Storage) (bool, error) {
	raw, err := s.Get(ctx, snapshotMarkerKey)
	if err != nil || raw == nil {
		return false, err
	}
	if err := s.Delete(ctx, snapshotMarkerKey); err != nil {
		// Still stored: the first change must delete it before it is stored (begin),
		// or the next start would trust chunks this node no longer keeps whole.
		x := b.snapshot
		x.sealMu.Lock()
		x.sealed = true
		x.sealMu.Unlock()
		return false, fmt.Errorf("deleting %s: %w", snapshotMarkerKey, err)
	}
	var m snapMarker
	if err := json.Unmarshal(raw.Value, &m); err != nil || m.Format != snapshotFormat || m.Chunks != snapshotChunks {
		b.Logger().Warn("the index snapshot's marker is not this release's: scanning")
		return false, nil
	}
	x := b.snapshot
	x.generation.Store(m.Generation)
	return true, nil
}

// loadSnapshot files the indexes from the snapshot (the marker was valid): every chunk
// read in parallel, its entries filed unless a write changed the credential meanwhile,
// the names the listing has and the snapshot lacks (or a chunk that cannot be used
// holds) read one by one, and the names it has and the listing lacks dropped. Then the
// index is complete. It returns the listing, sorted, for the verifying scan.
func (b *integrationsBackend) loadSnapshot(ctx context.Context, s logical.Storage, cfg *engineConfig) (names []string, err error) {
	x := b.snapshot
	a := b.activity
	x.touchMu.Lock()
	x.touched = map[string]struct{}{}
	x.touchMu.Unlock()
	defer func() {
		x.touchMu.Lock()
		x.touched = nil
		x.touchMu.Unlock()
	}()
	b.credentials.labels.startFill()
	names, err = b.credentials.list(ctx, s)
	if err != nil {
		return nil, err
	}
	// Sorted, to be searched: no map of a million names.
	slices.Sort(names)
	isListed := func(n string) bool { _, ok := slices.BinarySearch(names, n); return ok }
	a.scanned.Store(0)
	a.total.Store(int64(len(names)))

	type label struct {
		name string
		t    *credtype.Type
		tags []string
	}
	var (
		labelsMu sync.Mutex
		labels   = make([]label, 0, len(names))
		bad      []int
		seen     = make([][]string, snapshotChunks) // per chunk: the names it holds, sorted
		skipped  []string
	)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range snapshotLoadWorkers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= snapshotChunks {
					return nil
				}
				raw, err := s.Get(gctx, chunkKey(i))
				if err != nil {
					return fmt.Errorf("reading index chunk %d: %w", i, err)
				}
				var entries []snapEntry
				if raw != nil {
					entries, err = decodeChunk(i, raw.Value)
				}
				if err != nil {
					labelsMu.Lock()
					bad = append(bad, i)
					labelsMu.Unlock()
					b.Logger().Warn("an index snapshot chunk cannot be decoded: its credentials are read", "chunk", i)
					continue
				}
				here := make([]string, 0, len(entries))
				var mine []label
				var skip []string
				for k := range entries {
					e := &entries[k]
					here = append(here, e.Name)
					if !isListed(e.Name) {
						x.markDirty(e.Name) //nolint:contextcheck // gone: dropped from the chunk (a marker deletion markDirty may start outlives this call)
						continue
					}
					c := e.credential()
					c.Tags = b.credentials.labels.intern(c.Tags)
					filed := false
					x.touchMu.Lock()
					if _, changed := x.touched[e.Name]; !changed {
						b.tokens.kept.holdAt(e.Name, e.Used) // quiet: a load changes nothing
						b.reindex(cfg, c, c.State)
						if e.Failing {
							b.usage.markFailing(e.Name)
						}
						filed = true
					}
					x.touchMu.Unlock()
					if !filed {
						skip = append(skip, e.Name)
						continue
					}
					mine = append(mine, label{e.Name, c.typeDef(), c.Tags})
					a.scanned.Add(1)
				}
				labelsMu.Lock()
				seen[i] = here
				labels = append(labels, mine...)
				skipped = append(skipped, skip...)
				labelsMu.Unlock()
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// The label index's sorted lists are cheap to grow at their ends only: filed in
	// name order, as the scan does.
	sort.Slice(labels, func(i, j int) bool { return labels[i].name < labels[j].name })
	for _, l := range labels {
		if l.t == nil {
			continue
		}
		x.touchMu.Lock()
		if _, changed := x.touched[l.name]; !changed {
			b.credentials.labels.file(l.name, l.t, l.tags)
		} else {
			skipped = append(skipped, l.name)
		}
		x.touchMu.Unlock()
	}
	labels = nil
	// What the snapshot cannot say is read, the way the scan reads it.
	var toRead []string
	for _, n := range names {
		if _, ok := slices.BinarySearch(seen[chunkOf(n)], n); !ok {
			toRead = append(toRead, n)
		}
	}
	toRead = append(toRead, skipped...)
	if len(toRead) > 0 {
		hasUsage, err := b.usage.stored(ctx, s)
		if err != nil {
			return nil, err
		}
		if err := b.indexNames(ctx, s, cfg, toRead, hasUsage, indexScanWorkers, nil); err != nil {
			return nil, err
		}
		for _, n := range toRead {
			x.markDirty(n) //nolint:contextcheck // a marker deletion markDirty may start outlives this call, as a background job does
		}
	}
	if len(bad) > 0 {
		badSet := map[int]bool{}
		for _, i := range bad {
			badSet[i] = true
		}
		x.queueReplace(groupByChunk(names), func(i int) bool { return badSet[i] })
	}
	a.indexedFor.Store(cfg)
	b.credentials.labels.markComplete()
	x.baseline.Store(true)
	return names, nil
}

// verifySnapshot is the verifying scan after a load: every credential read again, at
// low parallelism, and filed as the scan files it (a downgrade to a release that knew
// nothing of the snapshot, or a bug, may have left an entry stale). Then each chunk is
// read again and compared with what the scan read (a sum of entry fingerprints per
// chunk: no per-credential memory), and those that differ are queued to be written
// again from their names.
func (b *integrationsBackend) verifySnapshot(ctx context.Context, s logical.Storage, cfg *engineConfig, names []string) error {
	hasUsage, err := b.usage.stored(ctx, s)
	if err != nil {
		return err
	}
	read := make([]atomic.Uint64, snapshotChunks)
	if err := b.indexNames(ctx, s, cfg, names, hasUsage, verifyScanWorkers, func(e *snapEntry) {
		read[chunkOf(e.Name)].Add(entryHash(e))
	}); err != nil {
		return err
	}
	differ := map[int]bool{}
	for i := range snapshotChunks {
		raw, err := s.Get(ctx, chunkKey(i))
		if err != nil {
			return fmt.Errorf("reading index chunk %d: %w", i, err)
		}
		var entries []snapEntry
		if raw != nil {
			if entries, err = decodeChunk(i, raw.Value); err != nil {
				differ[i] = true
				continue
			}
		}
		var sum uint64
		for k := range entries {
			if _, ok := slices.BinarySearch(names, entries[k].Name); ok {
				sum += entryHash(&entries[k])
			} else {
				differ[i] = true // a name gone since the listing: dropped by the rewrite
			}
		}
		if sum != read[i].Load() {
			differ[i] = true
		}
	}
	if len(differ) > 0 {
		b.snapshot.queueReplace(groupByChunk(names), func(i int) bool { return differ[i] })
	}
	b.Logger().Info("the verifying scan after the index snapshot's load ended", "credentials", len(names), "stale_chunks", len(differ))
	return nil
}

// queueRebuild queues, after a full scan, every chunk that holds a name or is stored
// (it may hold names deleted since) to be written from the names the scan listed.
func (b *integrationsBackend) queueRebuild(ctx context.Context, s logical.Storage, names []string) error {
	keys, err := s.List(ctx, snapshotChunkPrefix)
	if err != nil {
		return fmt.Errorf("listing %s: %w", snapshotChunkPrefix, err)
	}
	stored := map[int]bool{}
	for _, k := range keys {
		var i int
		if _, err := fmt.Sscanf(k, "%d", &i); err == nil && i >= 0 && i < snapshotChunks && fmt.Sprint(i) == k {
			stored[i] = true
		}
	}
	byChunk := groupByChunk(names)
	b.snapshot.queueReplace(byChunk, func(i int) bool { return stored[i] || byChunk[i] != nil })
	return nil
}

// scanFromSnapshot is the index scan's first run on this node: the marker taken (read
// and deleted before anything else), and when it was valid the indexes loaded from
// the chunks, the index complete, and then the verifying scan. loaded false: no valid
// marker (a first start, a crash, a standby promoted after its active node died), or
// the load failed before the index was complete: the caller scans.
func (b *integrationsBackend) scanFromSnapshot(ctx context.Context, s logical.Storage) (loaded bool, err error) {
	ok, err := b.takeMarker(ctx, s)
	if !ok || err != nil {
		return false, err
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return false, err
	}
	start := time.Now()
	names, err := b.loadSnapshot(ctx, s, cfg)
	if err != nil {
		return false, err
	}
	b.Logger().Info("the index is loaded from the index snapshot: complete; the verifying scan follows",
		"credentials", len(names), "took", time.Since(start).Round(time.Millisecond).String())
	if hook := b.snapshot.loadedHook; hook != nil {
		hook()
	}
	return true, b.verifySnapshot(ctx, s, cfg, names)
}
