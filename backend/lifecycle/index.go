package lifecycle

import (
	"math"
	"sync"
	"time"
)

// Index files credentials under the time their next lifecycle action is due
// (Policy.NextDue), so a sweep finds the few with something due without visiting the
// many without. It is a binary min-heap with a name-to-position map; it is safe for
// concurrent use. Equal times are ordered by name so sweeps are deterministic.
//
// It is laid out for mounts of a million credentials: the heap is one slice of
// pointer-light values (the name, shared with the caller, and the due time in
// nanoseconds) and the map holds only each name's position, so a filed name costs the
// map's slot and one 24-byte heap value, not a separate allocation per credential
// (BenchmarkIndexMemory). Sifting updates the moved names' positions in the map.
type Index struct {
	mu    sync.Mutex
	heap  []indexEntry
	names map[string]int32 // heap position
	// peak is the most names filed since the map was last rebuilt: a Go map keeps its
	// size after deletions, so one that shrank to a quarter of it is rebuilt.
	peak int
}

type indexEntry struct {
	name string
	due  int64 // Unix nanoseconds, saturated (dueNanos)
}

// dueNanos is t in Unix nanoseconds, saturated at the ends of int64 (years 1678 and
// 2262), which keeps the order of every time the engine files.
func dueNanos(t time.Time) int64 {
	switch {
	case t.After(maxDue):
		return math.MaxInt64
	case t.Before(minDue):
		return math.MinInt64
	}
	return t.UnixNano()
}

var (
	maxDue = time.Unix(0, math.MaxInt64)
	minDue = time.Unix(0, math.MinInt64)
)

// NewIndex returns an empty Index.
func NewIndex() *Index { return &Index{names: make(map[string]int32)} }

// Set files name under due, replacing any earlier entry; a zero due removes it, as
// NextDue returns zero for a credential with nothing ever due.
func (x *Index) Set(name string, due time.Time) {
	if due.IsZero() {
		x.Remove(name)
		return
	}
	d := dueNanos(due)
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, ok := x.names[name]; ok {
		x.heap[i].due = d
		if !x.up(int(i)) {
			x.down(int(i))
		}
		return
	}
	i := len(x.heap)
	x.heap = append(x.heap, indexEntry{name: name, due: d})
	x.names[name] = int32(i) //nolint:gosec // G115: an index holds far fewer than 2^31 names
	x.peak = max(x.peak, len(x.heap))
	x.up(i)
}

// Remove drops name, for a deleted credential. Removing an absent name is a no-op.
func (x *Index) Remove(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p, ok := x.names[name]
	if !ok {
		return
	}
	i, last := int(p), len(x.heap)-1
	x.swap(i, last)
	x.heap[last] = indexEntry{} // let the name be collected
	x.heap = x.heap[:last]
	delete(x.names, name)
	if i < last && !x.up(i) {
		x.down(i)
	}
	if x.peak > 4096 && len(x.heap) < x.peak/4 {
		x.compact()
	}
}

// compact rebuilds the map and the heap at their present size, after most names left.
// The caller holds x.mu.
func (x *Index) compact() {
	x.heap = append(make([]indexEntry, 0, len(x.heap)), x.heap...)
	x.names = make(map[string]int32, len(x.heap))
	for i, e := range x.heap {
		x.names[e.name] = int32(i) //nolint:gosec // G115: as in Set
	}
	x.peak = len(x.heap)
}

// Due returns the names due at or before now, earliest first, at most limit of them
// (limit < 1: all). They stay filed: the sweep re-Sets each after processing it, so one
// that fails is retried on the next sweep. The cost grows with the number returned,
// not with the size of the index.
func (x *Index) Due(now time.Time, limit int) []string {
	names, _ := x.due(now, limit)
	return names
}

// due also returns how many heap nodes it examined, which the tests bound.
func (x *Index) due(now time.Time, limit int) ([]string, int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := dueNanos(now)
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
		out = append(out, x.heap[i].name)
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
	return a.name < b.name
}

func (x *Index) swap(i, j int) {
	if i == j {
		return
	}
	x.heap[i], x.heap[j] = x.heap[j], x.heap[i]
	x.names[x.heap[i].name] = int32(i) //nolint:gosec // G115: as in Set
	x.names[x.heap[j].name] = int32(j) //nolint:gosec // G115: as in Set
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
