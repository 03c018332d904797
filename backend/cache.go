package backend

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
)

// CacheEntries bounds how many decoded entries one genCache keeps. The cache is what
// makes a hot credential's access/ cost no storage read; it is not the only copy of
// anything (storage is), so a mount of 100,000 credentials keeps its hot ones, not all
// of them, and the plugin's memory follows the working set rather than the mount. A
// mount at or under the bound keeps everything it has read or written, as before.
// The benchmark report (e2e) reads its list pages against this bound.
const CacheEntries = 10_000

// genCache keeps decoded copies of storage entries by name, for a store that reads
// storage without holding a lock: it never lets a read that a write or an invalidation
// raced put back an older copy, nor bring back one that was deleted or forgotten
// meanwhile. Every set and drop moves on the generation of the name's lock shard; a
// read that missed the cache keeps what it decoded only if its shard's generation is
// the one it saw before reading storage. Values are never mutated in place: writers
// swap in a new one.
//
// It holds at most CacheEntries values, evicting the least recently used. Eviction is
// not a change and moves no generation: an evicted value is read from storage again,
// where it is the same.
type genCache[V any] struct {
	mu   sync.Mutex
	m    *simplelru.LRU[string, V]
	size int
	gens [256]uint64 // per locksutil shard, as the stores' name locks
}

func newGenCache[V any]() *genCache[V] { return newGenCacheSized[V](CacheEntries) }

// newGenCacheSized is a genCache of at most n values.
func newGenCacheSized[V any](n int) *genCache[V] {
	m, err := simplelru.NewLRU[string, V](n, nil)
	if err != nil {
		panic(err) // only for n <= 0
	}
	return &genCache[V]{m: m, size: n}
}

// get returns name's cached value, else the one load reads from storage. load reports
// whether its value may be cached (a store may choose not to cache a miss); it is
// cached only if no set or drop of name's shard came while load ran, and a value a
// racing write cached wins over it.
func (c *genCache[V]) get(name string, load func() (v V, keep bool, err error)) (V, error) {
	var shard uint8
	var gen uint64
	c.mu.Lock()
	v, ok := c.m.Get(name)
	if !ok { // a hit hashes nothing: the access path's common case
		shard = locksutil.LockIndexForKey(name)
		gen = c.gens[shard]
	}
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, keep, err := load()
	if err != nil || !keep {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m.Get(name); ok {
		return cur, nil
	}
	if c.gens[shard] == gen {
		c.m.Add(name, v)
	}
	return v, nil
}

// glance returns the cached value of name (ok false if none) and its shard's
// generation, for a reader that will check with ifUnchanged that nothing changed since,
// or that is not using the value in earnest (the sweep's and the list's views of many
// credentials): it never touches storage, and a hit does not count as a use, so a
// full list or scan does not evict the credentials integrations are reading.
func (c *genCache[V]) glance(name string) (v V, ok bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok = c.m.Peek(name)
	return v, ok, c.gens[locksutil.LockIndexForKey(name)]
}

// ifUnchanged runs fn and returns true if no set or drop of name's shard happened since
// peek returned gen; else it returns false without running fn. fn runs under the
// cache's read lock, so no such change can slip in before it ends.
func (c *genCache[V]) ifUnchanged(name string, gen uint64, fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[locksutil.LockIndexForKey(name)] != gen {
		return false
	}
	fn()
	return true
}

// hasRoom reports whether the cache holds fewer values than its bound, so adding one
// would evict nothing.
func (c *genCache[V]) hasRoom() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Len() < c.size
}

// set caches v as name's value, after a write stored it.
func (c *genCache[V]) set(name string, v V) {
	c.mu.Lock()
	c.m.Add(name, v)
	c.gens[locksutil.LockIndexForKey(name)]++
	c.mu.Unlock()
}

// drop forgets name's value: it was deleted, or changed elsewhere.
func (c *genCache[V]) drop(name string) {
	c.mu.Lock()
	c.m.Remove(name)
	c.gens[locksutil.LockIndexForKey(name)]++
	c.mu.Unlock()
}
