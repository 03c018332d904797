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

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// testClock is the injected clock: tests move time forward by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newTestBackend returns a backend over in-memory storage and an injected clock, with
// its background work started.
func newTestBackend(t testing.TB) (*integrationsBackend, logical.Storage, *testClock) {
	t.Helper()
	return newBackendWith(t, backendOptions{initialize: true})
}

// backendOptions adjusts the backend newBackendWith builds.
type backendOptions struct {
	storage logical.Storage     // default: fresh InmemStorage
	clock   *testClock          // default: newTestClock()
	events  logical.EventSender // default: none (the server has no event support)
	logs    *lcLogBuffer        // default: null logger
	system  logical.SystemView  // default: a writable primary
	// config, when set, is written before the background work starts, so its
	// usage_flush_interval applies from the first flush.
	config map[string]any
	// initialize runs the InitializeFunc: the background flush loop, the notifier and
	// the index build. Off, nothing runs behind the test's back.
	initialize bool
	// flushTimer replaces the flush loop's timer (activity.flushTimer).
	flushTimer func(d time.Duration) (<-chan time.Time, func() bool)
	// scanRunning returns from newBackendWith while the initial index scan may still
	// run; by default it waits for the scan, so tests start from a built index.
	scanRunning bool
}

// newBackendWith is newTestBackend with the knobs the lifecycle tests need.
func newBackendWith(t testing.TB, o backendOptions) (*integrationsBackend, logical.Storage, *testClock) {
	t.Helper()
	if o.storage == nil {
		// A view over the in-memory storage, as Vault gives a mount: it refuses keys
		// with "..", as the real server does.
		o.storage = logical.NewStorageView(&logical.InmemStorage{}, "")
	}
	if o.clock == nil {
		o.clock = newTestClock()
	}
	if o.system == nil {
		o.system = &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	}
	logger := hclog.NewNullLogger()
	if o.logs != nil {
		logger = hclog.New(&hclog.LoggerOptions{Output: o.logs, Level: hclog.Debug})
	}
	b := newBackend(o.clock.Now)
	// The token hosts' bound paces on the wall clock, moved on by the test clock's
	// advances: a host paused by a Retry-After ends when the test moves past it.
	start := o.clock.Now()
	b.hostNow = func() time.Time { return time.Now().Add(o.clock.Now().Sub(start)) }
	b.activity.flushTimer = o.flushTimer
	// The index snapshot job waits for ever: tests write chunks by calling its step
	// (snapshotStep), and Clean writes what is dirty, so nothing writes behind a
	// test's back.
	b.snapshot.pause = func(time.Duration) <-chan time.Time { return nil }
	conf := &logical.BackendConfig{Logger: logger, System: o.system, StorageView: o.storage, EventsSender: o.events}
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	b.storage = o.storage
	if o.config != nil {
		mustOK(t, b, o.storage, logical.UpdateOperation, "config", o.config)
	}
	if o.initialize {
		if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: o.storage}); err != nil {
			t.Fatal(err)
		}
		if !o.scanRunning {
			waitIndexBuilt(t, b)
		}
	}
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b, o.storage, o.clock
}

// waitIndexBuilt returns once the background scan that builds the lifecycle index,
// if one was started, has ended.
func waitIndexBuilt(t testing.TB, b *integrationsBackend) {
	t.Helper()
	b.indexScan.Wait()
}

// call sends one request and fails the test on a transport-level error (not on an
// error response: those are what many tests look at).
func call(t testing.TB, b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data, Storage: s,
	})
	if err != nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// mustOK is call that also fails on an error response.
func mustOK(t testing.TB, b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp := call(t, b, s, op, path, data)
	if resp != nil && resp.IsError() {
		t.Fatalf("%s %s: %v", op, path, resp.Error())
	}
	return resp
}

// wantFieldError asserts a 400-class error response that names the field.
func wantFieldError(t testing.TB, resp *logical.Response, field string) {
	t.Helper()
	if resp == nil || !resp.IsError() {
		t.Fatalf("want an error naming %q, got %#v", field, resp)
	}
	if msg := resp.Error().Error(); !strings.Contains(msg, field) {
		t.Fatalf("error %q does not name field %q", msg, field)
	}
}

// countingStorage wraps a storage and counts every operation, so tests can prove what
// a path, a flush or a sweep does (and does not do) to storage. It can also make Puts
// fail: all of them, those under a prefix, or one key.
type countingStorage struct {
	logical.Storage
	gets, puts, deletes, lists atomic.Int64
	failPuts                   atomic.Bool
	failPutsUnder              atomic.Value // string: Puts of keys with this prefix fail

	mu      sync.Mutex
	written []*logical.StorageEntry // entries Put successfully since the last reset
	failPut string                  // Put of this key fails while set
}

func newCountingStorage() *countingStorage {
	return &countingStorage{Storage: &logical.InmemStorage{}}
}

func (c *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.gets.Add(1)
	return c.Storage.Get(ctx, key)
}

func (c *countingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	c.puts.Add(1)
	prefix, _ := c.failPutsUnder.Load().(string)
	c.mu.Lock()
	fail := c.failPuts.Load() || (prefix != "" && strings.HasPrefix(e.Key, prefix)) || (c.failPut != "" && c.failPut == e.Key)
	if !fail {
		c.written = append(c.written, e)
	}
	c.mu.Unlock()
	if fail {
		return errors.New("storage unavailable")
	}
	return c.Storage.Put(ctx, e)
}

func (c *countingStorage) Delete(ctx context.Context, key string) error {
	c.deletes.Add(1)
	return c.Storage.Delete(ctx, key)
}

func (c *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	c.lists.Add(1)
	return c.Storage.List(ctx, prefix)
}

func (c *countingStorage) reads() int64  { return c.gets.Load() + c.lists.Load() }
func (c *countingStorage) writes() int64 { return c.puts.Load() + c.deletes.Load() }
func (c *countingStorage) total() int64  { return c.reads() + c.writes() }

func (c *countingStorage) reset() {
	c.gets.Store(0)
	c.puts.Store(0)
	c.deletes.Store(0)
	c.lists.Store(0)
	c.mu.Lock()
	c.written = nil
	c.mu.Unlock()
}

func (c *countingStorage) String() string {
	return fmt.Sprintf("get %d, put %d, delete %d, list %d", c.gets.Load(), c.puts.Load(), c.deletes.Load(), c.lists.Load())
}
