package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// loader counts how often a genCache went to storage for a name.
type loader map[string]int

func (l loader) load(name string) func() (string, bool, error) {
	return func() (string, bool, error) {
		l[name]++
		return "stored-" + name, true, nil
	}
}

func TestGenCacheIsBounded(t *testing.T) {
	c := newGenCacheSized[string](2)
	c.set("a", "A")
	c.set("b", "B")
	c.set("c", "C") // a is the least recently used
	if got := c.m.Len(); got != 2 {
		t.Fatalf("cache holds %d values, want at most 2", got)
	}
	reads := loader{}
	if v, err := c.get("a", reads.load("a")); err != nil || v != "stored-a" || reads["a"] != 1 {
		t.Fatalf("evicted a: got %q, %v after %d storage reads; want it read from storage once", v, err, reads["a"])
	}
	// a is cached again (it evicted b); a second read does not go to storage.
	if v, _ := c.get("a", reads.load("a")); v != "stored-a" || reads["a"] != 1 {
		t.Fatalf("a read again: %q after %d storage reads, want the cached copy", v, reads["a"])
	}
	if _, ok, _ := c.glance("b"); ok {
		t.Fatal("b is still cached: the least recently used value was not the one evicted")
	}
}

func TestGenCacheGlanceIsNotAUse(t *testing.T) {
	for _, tc := range []struct {
		look    func(c *genCache[string], name string) (string, bool, uint64)
		name    string
		evicted string
	}{
		{func(c *genCache[string], name string) (string, bool, uint64) {
			v, err := c.get(name, func() (string, bool, error) { return "", false, errors.New("not cached") })
			return v, err == nil, 0
		}, "get", "b"},
		{(*genCache[string]).glance, "glance", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newGenCacheSized[string](2)
			c.set("a", "A")
			c.set("b", "B")
			if v, ok, _ := tc.look(c, "a"); !ok || v != "A" {
				t.Fatalf("%s(a) = %q, %v", tc.name, v, ok)
			}
			c.set("c", "C")
			if _, ok, _ := c.glance(tc.evicted); ok {
				t.Fatalf("after %s(a), %s is still cached; want it evicted", tc.name, tc.evicted)
			}
		})
	}
}

// An eviction is not a change: a read that missed the cache before another name was
// evicted from its shard still caches what it read.
func TestGenCacheEvictionMovesNoGeneration(t *testing.T) {
	c := newGenCacheSized[string](1)
	c.set("a", "A")
	_, _, before := c.glance("b")
	v, err := c.get("b", func() (string, bool, error) {
		c.mu.Lock()
		c.m.Add("x", "X") // evicts a, as a racing cached read would
		c.mu.Unlock()
		return "B", true, nil
	})
	if err != nil || v != "B" {
		t.Fatalf("get(b) = %q, %v", v, err)
	}
	if _, _, after := c.glance("b"); after != before {
		t.Fatalf("the generation of b's shard moved from %d to %d without a set or drop", before, after)
	}
}

// With more credentials than the cache holds, every one still reads back exactly
// through access/, the cache stays within its bound, and a full list leaves the
// credentials being accessed cached.
func TestCredentialCacheBoundedOnTheMount(t *testing.T) {
	b, s, _ := newTestBackend(t)
	b.credentials.cache = newGenCacheSized[*credential](4)
	const n = 12
	for i := range n {
		mustOK(t, b, s, logical.CreateOperation, fmt.Sprintf("credentials/c%02d", i),
			map[string]any{"type": "bearer", "token": fmt.Sprintf("TOKEN-%02d", i)})
	}
	for round := range 2 {
		for i := range n {
			resp := mustOK(t, b, s, logical.ReadOperation, fmt.Sprintf("access/c%02d", i), nil)
			if got, want := resp.Data["token"], fmt.Sprintf("TOKEN-%02d", i); got != want {
				t.Fatalf("round %d: access/c%02d token = %v, want %s", round, i, got, want)
			}
			if l := b.credentials.cache.m.Len(); l > 4 {
				t.Fatalf("cache holds %d credentials, bound 4", l)
			}
		}
	}
	for i := range 3 { // the hot set
		mustOK(t, b, s, logical.ReadOperation, fmt.Sprintf("access/c%02d", i), nil)
	}
	resp := mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"limit": 100})
	if keys, _ := resp.Data["keys"].([]string); len(keys) != n {
		t.Fatalf("list returned %d names, want %d: %v", len(keys), n, keys)
	}
	for i := range 3 {
		if _, ok, _ := b.credentials.cache.glance(fmt.Sprintf("c%02d", i)); !ok {
			t.Fatalf("c%02d, accessed just before the list, was evicted by it", i)
		}
	}
}

// barrierStorage holds every credential read until want of them are in flight at once,
// so a caller reading them one after another never gets past the first: it fails
// after a generous bound instead of hanging.
type barrierStorage struct {
	logical.Storage
	want    int32
	waiting atomic.Int32
	open    chan struct{}
	once    sync.Once
}

func (g *barrierStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(key, credentialPrefix) {
		if g.waiting.Add(1) >= g.want {
			g.once.Do(func() { close(g.open) })
		}
		select {
		case <-g.open:
		case <-time.After(10 * time.Second):
			return nil, errors.New("credential reads were not concurrent")
		}
	}
	return g.Storage.Get(ctx, key)
}

func TestListPageReadsUncachedCredentialsConcurrently(t *testing.T) {
	b, s, _ := newTestBackend(t)
	const n = 8
	for i := range n {
		mustOK(t, b, s, logical.CreateOperation, fmt.Sprintf("credentials/c%02d", i),
			map[string]any{"type": "bearer", "token": fmt.Sprintf("TOKEN-%02d", i), "description": fmt.Sprintf("number %d", i)})
	}
	dropAllCached(b.credentials.cache)
	gated := &barrierStorage{Storage: s, want: n, open: make(chan struct{})}
	resp := mustOK(t, b, gated, logical.ListOperation, "credentials/", map[string]any{"limit": n})
	keys, _ := resp.Data["keys"].([]string)
	info, _ := resp.Data["key_info"].(map[string]any)
	if len(keys) != n {
		t.Fatalf("list returned %v, want %d names", keys, n)
	}
	for i, k := range keys {
		got, _ := info[k].(map[string]any)
		if want := fmt.Sprintf("number %d", i); got["description"] != want {
			t.Fatalf("key_info[%s].description = %v, want %q", k, got["description"], want)
		}
	}
}

// A list page fills the cache while it has room (a mount within the bound, just
// started), so the next list is served from memory; a full cache it leaves alone.
func TestListFillsTheCacheOnlyWhileItHasRoom(t *testing.T) {
	b, s, _ := newTestBackend(t)
	for i := range 6 {
		mustOK(t, b, s, logical.CreateOperation, fmt.Sprintf("credentials/c%02d", i),
			map[string]any{"type": "bearer", "token": fmt.Sprintf("TOKEN-%02d", i)})
	}
	b.credentials.cache = newGenCacheSized[*credential](10)
	mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"limit": 100})
	if got := b.credentials.cache.m.Len(); got != 6 {
		t.Fatalf("after a list of 6 with room for 10, the cache holds %d", got)
	}
	b.credentials.cache = newGenCacheSized[*credential](2)
	mustOK(t, b, s, logical.ReadOperation, "access/c04", nil)
	mustOK(t, b, s, logical.ReadOperation, "access/c05", nil)
	mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"limit": 100})
	for _, name := range []string{"c04", "c05"} {
		if _, ok, _ := b.credentials.cache.glance(name); !ok {
			t.Fatalf("%s, accessed before the list, was evicted by it", name)
		}
	}
}
