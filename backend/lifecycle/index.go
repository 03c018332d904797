package lifecycle

import (
	"sync"
	"time"
)

// Index files credentials under the time their next lifecycle action is due
// (Policy.NextDue), so a sweep finds the few with something due without visiting the
// many without. It is a binary min-heap with a name-to-entry map; it is safe for
// concurrent use. Equal times are ordered by name so sweeps are deterministic.
type Index struct {
	mu    sync.Mutex
	heap  []*indexEntry
	names map[string]*indexEntry
}

// indexEntry keeps its own heap position, so sifting swaps pointers and never
// writes to the map.
type indexEntry struct {
	name string
	due  time.Time
	pos  int
}

// NewIndex returns an empty Index.
func NewIndex() *Index { return &Index{names: make(map[string]*indexEntry)} }

// Set files name under due, replacing any earlier entry; a zero due removes it, as
// NextDue returns zero for a credential with nothing ever due.
func (x *Index) Set(name string, due time.Time) {
	if due.IsZero() {
		x.Remove(name)
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.names[name]; ok {
		e.due = due
		if !x.up(e.pos) {
			x.down(e.pos)
		}
		return
	}
	e := &indexEntry{name: name, due: due, pos: len(x.heap)}
	x.heap = append(x.heap, e)
	x.names[name] = e
	x.up(e.pos)
}

// Remove drops name, for a deleted credential. Removing an absent name is a no-op.
func (x *Index) Remove(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.names[name]
	if !ok {
		return
	}
	i, last := e.pos, len(x.heap)-1
	x.swap(i, last)
	x.heap[last] = nil // let the entry be collected
	x.heap = x.heap[:last]
	delete(x.names, name)
	if i < last && !x.up(i) {
		x.down(i)
	}
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
	if len(x.heap) == 0 || x.heap[0].due.After(now) {
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
			if c < len(x.heap) && !x.heap[c].due.After(now) {
				frontier.push(c)
				visited++
			}
		}
	}
	return out, visited
}

func (x *Index) less(i, j int) bool {
	a, b := x.heap[i], x.heap[j]
	if c := a.due.Compare(b.due); c != 0 {
		return c < 0
	}
	return a.name < b.name
}

func (x *Index) swap(i, j int) {
	x.heap[i], x.heap[j] = x.heap[j], x.heap[i]
	x.heap[i].pos = i
	x.heap[j].pos = j
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
