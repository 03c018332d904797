// Package names interns the names of a mount's credentials once, for the per-credential
// structures that would otherwise each keep their own copy and their own map: the
// lifecycle indexes, the metrics' state codes, the usage summaries, the token store's
// generations. Each of them keys a slice by a name's id rather than a map by its name.
package names

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// chunkSize is the size of the arena's chunks. A chunk is never moved or written
// twice, so the strings Name returns stay valid (and unchanged) for as long as they
// are held; one held string pins one chunk, not the arena.
const chunkSize = 64 << 10

// MaxLen is the longest name a Table files, in bytes: a name always fits in a chunk.
const MaxLen = chunkSize - 1

// Table interns names: each is stored once, in an append-only arena of name bytes,
// under a small integer id, and found again through an open-addressing hash index of
// ids (4 bytes a slot). A name is filed while anyone holds it (Acquire, Release: a
// count per id); the id of a name no one holds is reused by the next new name, so ids
// stay dense and slices indexed by id stay as long as the most names ever filed at
// once. The bytes of a released name stay in the arena until the released bytes
// outweigh the filed ones, when the filed names are copied to fresh chunks.
//
// Per filed name it keeps the name's bytes, 8 bytes of location, 4 of count and
// 5.3–10.7 bytes of hash index (its load is kept between 3/8 and 3/4 as names are
// filed, and at least 3/16 as they go), none of it holding a pointer, so a
// million names cost the garbage collector a few large objects to scan, not a
// million small ones. It is safe for concurrent use; its lock is a leaf (never held
// while calling out).
type Table struct {
	mu     sync.RWMutex
	seed   maphash.Seed
	chunks [][]byte // chunks[len-1] is the one appended to
	// loc is where each id's name is: chunk<<32 | offset<<16 | length, with
	// offset in units of the chunk (< chunkSize) or, for a name filling a chunk
	// of its own, 0. refs is how many hold the id; 0 for a free id.
	loc  []uint64
	refs []uint32
	free []uint32 // released ids, reused last-in first-out
	// slots is the hash index: id+1 per slot, 0 for an empty one; linear probing,
	// backward-shift deletion (no tombstones). len(slots) is a power of two.
	slots   []uint32
	filed   int // names filed
	live    int // bytes of filed names in the arena
	garbage int // bytes of released names still in the arena
}

// NewTable returns an empty Table.
func NewTable() *Table {
	return &Table{seed: maphash.MakeSeed(), slots: make([]uint32, 16)}
}

// Lookup returns name's id, if it is filed. An id found is only stable while the
// caller (or something it holds the lock of) holds a reference to it: see Acquire.
func (t *Table) Lookup(name string) (uint32, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, id, ok := t.find(name)
	return id, ok
}

// Acquire files name (when new) and takes a reference to it, returning its id. The id
// names name until the reference is released; each Acquire needs one Release.
// It panics on a name longer than MaxLen.
func (t *Table) Acquire(name string) uint32 {
	if len(name) > MaxLen {
		panic("names: name longer than MaxLen")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	slot, id, ok := t.find(name)
	if ok {
		t.refs[id]++
		return id
	}
	id = t.newID(name)
	t.slots[slot] = id + 1
	t.filed++
	if t.filed*4 > len(t.slots)*3 {
		t.rehash(len(t.slots) * 2)
	}
	return id
}

// Release drops a reference Acquire returned; the last one unfiles the name and
// frees its id for reuse.
func (t *Table) Release(id uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(id) >= len(t.refs) || t.refs[id] == 0 {
		panic("names: release of an id not held")
	}
	t.refs[id]--
	if t.refs[id] > 0 {
		return
	}
	name := t.nameLocked(id)
	slot, _, _ := t.find(name)
	t.unslot(slot)
	t.filed--
	t.live -= len(name)
	t.garbage += len(name)
	t.loc[id] = 0
	t.free = append(t.free, id)
	if t.filed*16 < len(t.slots)*3 && len(t.slots) > 16 {
		t.rehash(len(t.slots) / 2)
	}
	if t.garbage > chunkSize && t.garbage > t.live {
		t.compact()
	}
}

// Name returns the name filed under id; the caller holds a reference to id. The string
// shares the arena's bytes (they never change) and allocates nothing.
func (t *Table) Name(id uint32) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nameLocked(id)
}

// Is reports whether id is filed under name.
func (t *Table) Is(id uint32, name string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int(id) < len(t.refs) && t.refs[id] > 0 && t.nameLocked(id) == name
}

// Search finds name in ids, sorted by their names, as slices.BinarySearch does: the
// position where name is or would be, and whether it is there. The caller holds a
// reference to every id in ids. One lock covers the whole search.
func (t *Table) Search(ids []uint32, name string) (int, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.BinarySearchFunc(ids, name, func(id uint32, name string) int {
		return strings.Compare(t.nameLocked(id), name)
	})
}

// Insert files name in ids, sorted by their names, taking a reference to it, unless
// ids holds it already; it returns ids and whether name was added. The caller holds a
// reference to every id in ids (the one Insert takes becomes ids' own, for Remove to
// release) and serialises the changes of ids. This is how a sorted list of names is
// kept as ids (4 bytes a name, nothing for the garbage collector to scan) rather than
// as strings that each keep a copy of the name alive.
func (t *Table) Insert(ids []uint32, name string) ([]uint32, bool) {
	i, found := t.Search(ids, name)
	if found {
		return ids, false
	}
	return slices.Insert(ids, i, t.Acquire(name)), true
}

// Remove unfiles name from ids, releasing the reference Insert took; it returns ids
// and whether name was there. The caller serialises the changes of ids, as for Insert.
func (t *Table) Remove(ids []uint32, name string) ([]uint32, bool) {
	i, found := t.Search(ids, name)
	if !found {
		return ids, false
	}
	t.Release(ids[i])
	return slices.Delete(ids, i, i+1), true
}

// Len returns how many names are filed.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.filed
}

// IDs returns the number of ids ever handed out: every id is below it.
func (t *Table) IDs() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.refs)
}

func (t *Table) nameLocked(id uint32) string {
	l := t.loc[id]
	c, off, n := l>>32, (l>>16)&0xffff, l&0xffff
	if n == 0 {
		return ""
	}
	chunk := t.chunks[c]
	// The bytes are never written again (store only appends past them), so the string
	// is immutable as Go requires.
	return unsafe.String(&chunk[off], int(n)) //nolint:gosec // G103: audited, as above
}

// home is name's first slot in a hash index of mask+1 slots.
func (t *Table) home(name string, mask int) int {
	return int(maphash.String(t.seed, name) & uint64(mask)) //nolint:gosec // G115: masked to below len(t.slots)
}

// find returns name's slot and id when filed, else the empty slot it would take.
func (t *Table) find(name string) (slot int, id uint32, ok bool) {
	mask := len(t.slots) - 1
	for i := t.home(name, mask); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, 0, false
		}
		if t.nameLocked(s-1) == name {
			return i, s - 1, true
		}
	}
}

// unslot empties slot i and shifts back the entries of the probe run after it.
func (t *Table) unslot(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		home := t.home(t.nameLocked(t.slots[j]-1), mask)
		// Move j's entry into the hole at i if its home is not in (i, j].
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
}

func (t *Table) rehash(size int) {
	old := t.slots
	t.slots = make([]uint32, size)
	mask := size - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := t.home(t.nameLocked(s-1), mask)
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// newID stores name's bytes and gives it an id with one reference.
func (t *Table) newID(name string) uint32 {
	var id uint32
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		id = uint32(len(t.refs)) //nolint:gosec // G115: fewer than 2^32 names
		t.loc = append(t.loc, 0)
		t.refs = append(t.refs, 0)
	}
	t.loc[id] = t.store(name)
	t.refs[id] = 1
	t.live += len(name)
	return id
}

// store appends name to the arena and returns its location.
func (t *Table) store(name string) uint64 {
	if len(name) == 0 {
		return 0
	}
	last := len(t.chunks) - 1
	if last < 0 || len(t.chunks[last])+len(name) > chunkSize {
		t.chunks = append(t.chunks, make([]byte, 0, chunkSize))
		last++
	}
	c := t.chunks[last]
	off := len(c)
	t.chunks[last] = append(c, name...)
	return uint64(last)<<32 | uint64(off)<<16 | uint64(len(name)) //nolint:gosec // G115: bounded
}

// compact copies the filed names to fresh chunks, dropping the released ones' bytes.
// Strings handed out earlier keep the old chunks they point into alive, unchanged.
func (t *Table) compact() {
	old := t.chunks
	t.chunks = nil
	for id, r := range t.refs {
		if r == 0 {
			continue
		}
		l := t.loc[id]
		c, off, n := l>>32, (l>>16)&0xffff, l&0xffff
		if n == 0 {
			continue
		}
		t.loc[id] = t.store(unsafe.String(&old[c][off], int(n))) //nolint:gosec // G103: read once, copied by store
	}
	t.garbage = 0
}
