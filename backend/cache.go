package backend

import (
	"sync"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
)

// genCache keeps decoded copies of storage entries by name, for a store that reads
// storage without holding a lock: it never lets a read that a write or an invalidation
// raced put back an older copy, nor bring back one that was deleted or forgotten
// meanwhile. Every set and drop moves on the generation of the name's lock shard; a
// read that missed the cache keeps what it decoded only if its shard's generation is
// the one it saw before reading storage. Values are never mutated in place: writers
// swap in a new one.
type genCache[V any] struct {
	mu   sync.RWMutex
	m    map[string]V
	gens [256]uint64 // per locksutil shard, as the stores' name locks
}

func newGenCache[V any]() *genCache[V] { return &genCache[V]{m: make(map[string]V)} }

// get returns name's cached value, else the one load reads from storage. load reports
// whether its value may be cached (a store may choose not to cache a miss); it is
// cached only if no set or drop of name's shard came while load ran, and a value a
// racing write cached wins over it.
func (c *genCache[V]) get(name string, load func() (v V, keep bool, err error)) (V, error) {
	v, ok, gen := c.peek(name)
	if ok {
		return v, nil
	}
	v, keep, err := load()
	if err != nil || !keep {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m[name]; ok {
		return cur, nil
	}
	if c.gens[locksutil.LockIndexForKey(name)] == gen {
		c.m[name] = v
	}
	return v, nil
}

// peek returns the cached value of name (ok false if none) and its shard's generation,
// for a reader that will check with ifUnchanged that nothing changed since. It never
// touches storage.
func (c *genCache[V]) peek(name string) (v V, ok bool, gen uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok = c.m[name]
	return v, ok, c.gens[locksutil.LockIndexForKey(name)]
}

// ifUnchanged runs fn and returns true if no set or drop of name's shard happened since
// peek returned gen; else it returns false without running fn. fn runs under the
// cache's read lock, so no such change can slip in before it ends.
func (c *genCache[V]) ifUnchanged(name string, gen uint64, fn func()) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.gens[locksutil.LockIndexForKey(name)] != gen {
		return false
	}
	fn()
	return true
}

// set caches v as name's value, after a write stored it.
func (c *genCache[V]) set(name string, v V) {
	c.mu.Lock()
	c.m[name] = v
	c.gens[locksutil.LockIndexForKey(name)]++
	c.mu.Unlock()
}

// drop forgets name's value: it was deleted, or changed elsewhere.
func (c *genCache[V]) drop(name string) {
	c.mu.Lock()
	delete(c.m, name)
	c.gens[locksutil.LockIndexForKey(name)]++
	c.mu.Unlock()
}
