package lifecycle

import (
	"math"
	"sync"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// Index files credentials under the time their next lifecycle action is due
// (Policy.NextDue), so a sweep finds the few with something due without visiting the
// many without. It is a binary min-heap of (name id, due time); it is safe for
// concurrent use. Equal times are ordered by name so sweeps are deterministic.
//
// It is laid out for mounts of a million credentials: names are interned once in a
// names.Table shared by every index of a mount (and the other per-credential
// structures), the heap is one slice of 8-byte pointer-free values (the name's id and
// the due time in whole seconds, dueSeconds), and each id's heap position is an int32
// in a slice indexed by id (a map while the index files few of the mount's names), so
// a filed name costs 12 bytes here and nothing for the garbage collector to scan
// (BenchmarkIndexMemory). Sifting updates the moved ids' positions.
type Index struct {
	mu    sync.Mutex
	names *names.Table
	heap  []indexEntry
	// pos is each id's heap position plus one; 0 for an id not filed here. It is as
	// long as the table's ids reached (ids are reused, so it stays dense). An index
	// that files few of the table's names (verification, overlaps, keys, keep-alive)
	// keeps the positions in sparse instead, and pos is nil: 4 bytes for every name
	// of the mount would outweigh a map entry for each of the few.
	pos    []int32
	sparse map[uint32]int32
}

// Thresholds of the positions' two forms: dense once more than 1,024 names are filed
// and at least one id in denseShare; sparse again once fewer than one position in
// sparseShare is used (and pos is long enough to matter). A map entry costs about 15
// bytes and a dense position 4 for every id of the mount, so the map is the smaller
// while the index files fewer than about a quarter of the names.
const (
	denseAbove  = 1024
	denseShare  = 4
	sparseShare = 16
	sparseAbove = 4096
)

// position is id's heap position plus one; 0 when id is not filed here. The caller
// holds x.mu.
func (x *Index) position(id uint32) int32 {
	if x.sparse != nil {
		return x.sparse[id]
	}
	if int(id) >= len(x.pos) {
		return 0
	}
	return x.pos[id]
}

// setPosition sets id's heap position plus one; 0 unfiles it. The caller holds x.mu.
func (x *Index) setPosition(id uint32, p int32) {
	switch {
	case x.sparse != nil && p == 0:
		delete(x.sparse, id)
	case x.sparse != nil:
		x.sparse[id] = p
	default:
		if int(id) >= len(x.pos) {
			if p == 0 {
				return
			}
			x.pos = append(x.pos, make([]int32, int(id)+1-len(x.pos))...)
		}
		x.pos[id] = p
	}
}

// reshape moves the positions to the form that fits how many names are filed among
// the table's ids. The caller holds x.mu.
func (x *Index) reshape() {
	n := len(x.heap)
	switch {
	case x.sparse != nil && n > denseAbove && n*denseShare > x.names.IDs():
		x.sparse, x.pos = nil, make([]int32, x.names.IDs())
	case x.sparse == nil && len(x.pos) > sparseAbove && n*sparseShare < len(x.pos):
		x.sparse, x.pos = make(map[uint32]int32, n), nil
	default:
		return
	}
	for i, e := range x.heap {
		x.setPosition(e.id, int32(i+1)) //nolint:gosec // G115: as in Set
	}
}

type indexEntry struct {
	due uint32 // whole seconds since dueEpoch, saturated (dueSeconds)
	id  uint32
}

// dueEpoch is where the entries' seconds count from: 2000-01-01 UTC. 32 bits of
// seconds from there reach into 2136.
const dueEpoch = 946684800

// dueSeconds is t in whole seconds since dueEpoch, rounded up when up is set (a due
// time) and down otherwise (the now Due is asked about), saturated at the ends of
// uint32: a time before 2000 counts as 2000, one after 2136 as 2136. Index keeps due
// times to the second, 8 bytes an entry rather than 16 at a million credentials; with
// due times rounded up and now rounded down, Due never names a credential before its
// exact due time, and names it less than a second after it.
func dueSeconds(t time.Time, up bool) uint32 {
	s := t.Unix() - dueEpoch
	if up && t.Nanosecond() > 0 {
		s++
	}
	switch {
	case s < 0:
		return 0
	case s > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(s)
}

// NewIndex returns an empty Index with a names table of its own.
func NewIndex() *Index { return NewIndexOn(names.NewTable()) }

// NewIndexOn returns an empty Index filing its names in tab, which it may share with
// other structures: a name filed in several of them is stored once.
func NewIndexOn(tab *names.Table) *Index {
	return &Index{names: tab, sparse: make(map[uint32]int32)}
}

// lookup returns the heap position of name, if filed. The caller holds x.mu: an id
// this index holds cannot be released and reused meanwhile, so an id found whose
// position is set is name's.
func (x *Index) lookup(name string) (int, bool) {
	id, ok := x.names.Lookup(name)
	if !ok {
		return 0, false
	}
	p := x.position(id)
	return int(p - 1), p != 0
}

// Set files name under due, replacing any earlier entry; a zero due removes it, as
// NextDue returns zero for a credential with nothing ever due.
func (x *Index) Set(name string, due time.Time) {
	if due.IsZero() {
		x.Remove(name)
		return
	}
	d := dueSeconds(due, true)
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, ok := x.lookup(name); ok {
		x.heap[i].due = d
		if !x.up(i) {
			x.down(i)
		}
		return
	}
	id := x.names.Acquire(name)
	i := len(x.heap)
	x.heap = append(x.heap, indexEntry{id: id, due: d})
	x.setPosition(id, int32(i+1)) //nolint:gosec // G115: an index holds far fewer than 2^31 names
	x.up(i)
	x.reshape()
}

// Remove drops name, for a deleted credential. Removing an absent name is a no-op.
func (x *Index) Remove(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.lookup(name)
	if !ok {
		return
	}
	last := len(x.heap) - 1
	x.swap(i, last)
	id := x.heap[last].id
	x.heap = x.heap[:last]
	x.setPosition(id, 0)
	x.names.Release(id)
	if i < last && !x.up(i) {
		x.down(i)
	}
	if cap(x.heap) > 4096 && len(x.heap) < cap(x.heap)/4 {
		x.heap = append(make([]indexEntry, 0, len(x.heap)*2), x.heap...)
	}
	x.reshape()
}

// Due returns the names due at or before now, earliest first, at most limit of them
// (limit < 1: all). It keeps times to the second: a name filed under a time within
// now's second but not on it is due once that second ends. They stay filed: the sweep
// re-Sets each after processing it, so one that fails is retried on the next sweep.
// The cost grows with the number returned, not with the size of the index.
func (x *Index) Due(now time.Time, limit int) []string {
	names, _ := x.due(now, limit)
	return names
}

// due also returns how many heap nodes it examined, which the tests bound.
func (x *Index) due(now time.Time, limit int) ([]string, int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := dueSeconds(now, false)
	if len(x.heap) == 0 || x.heap[0].due > n {
		return nil, 0
	}
	// The due entries form a subtree at the root. Walking it through a small frontier
	// heap yields them in order in O(k log k) for k names, never touching the rest.
	var out []string
	frontier := frontierHeap{x: x, nodes: []int{0}}
	visited := 1
	for len(frontier.nodes) > 0 && (limit < 1 || len(out) < limit) {
		i := frontier.pop()
		out = append(out, x.names.Name(x.heap[i].id))
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(x.heap) && x.heap[c].due <= n {
				frontier.push(c)
				visited++
			}
		}
	}
	return out, visited
}

func (x *Index) less(i, j int) bool {
	a, b := &x.heap[i], &x.heap[j]
	if a.due != b.due {
		return a.due < b.due
	}
	if a.id == b.id {
		return false
	}
	return x.names.Name(a.id) < x.names.Name(b.id)
}

func (x *Index) swap(i, j int) {
	if i == j {
		return
	}
	x.heap[i], x.heap[j] = x.heap[j], x.heap[i]
	x.setPosition(x.heap[i].id, int32(i+1)) //nolint:gosec // G115: as in Set
	x.setPosition(x.heap[j].id, int32(j+1)) //nolint:gosec // G115: as in Set
}

// up moves entry i toward the root and reports whether it moved.
func (x *Index) up(i int) bool {
	start := i
	for i > 0 {
		parent := (i - 1) / 2
		if !x.less(i, parent) {
			break
		}
		x.swap(i, parent)
		i = parent
	}
	return i != start
}

func (x *Index) down(i int) {
	n := len(x.heap)
	for {
		smallest := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < n && x.less(c, smallest) {
				smallest = c
			}
		}
		if smallest == i {
			return
		}
		x.swap(i, smallest)
		i = smallest
	}
}

// frontierHeap is a min-heap of positions in x.heap, ordered like x.heap.
type frontierHeap struct {
	x     *Index
	nodes []int
}

func (f *frontierHeap) push(node int) {
	f.nodes = append(f.nodes, node)
	for i := len(f.nodes) - 1; i > 0; {
		parent := (i - 1) / 2
		if !f.x.less(f.nodes[i], f.nodes[parent]) {
			break
		}
		f.nodes[i], f.nodes[parent] = f.nodes[parent], f.nodes[i]
		i = parent
	}
}

func (f *frontierHeap) pop() int {
	top := f.nodes[0]
	last := len(f.nodes) - 1
	f.nodes[0] = f.nodes[last]
	f.nodes = f.nodes[:last]
	for i := 0; ; {
		smallest := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(f.nodes) && f.x.less(f.nodes[c], f.nodes[smallest]) {
				smallest = c
			}
		}
		if smallest == i {
			return top
		}
		f.nodes[i], f.nodes[smallest] = f.nodes[smallest], f.nodes[i]
		i = smallest
	}
}
