package backend

import (
	"context"
	"strings"
	"sync"
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

// newTestBackend returns a backend over in-memory storage and an injected clock.
func newTestBackend(t testing.TB) (*integrationsBackend, logical.Storage, *testClock) {
	t.Helper()
	clock := newTestClock()
	storage := &logical.InmemStorage{}
	b := newBackend(clock.Now)
	conf := &logical.BackendConfig{
		Logger:      hclog.NewNullLogger(),
		System:      &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour},
		StorageView: storage,
	}
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: storage}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b, storage, clock
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
