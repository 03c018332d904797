package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// armedTimer is one wait the flush loop armed: how long, and the channel that ends it.
type armedTimer struct {
	d    time.Duration
	fire chan time.Time
}

// TestLoweredFlushIntervalAppliesAtOnce: the flush loop started under the default
// usage_flush_interval (10 s) follows a config write that lowers it, instead of
// sleeping out the old interval first, and counts the new interval from the last
// flush: what a kill may lose is bounded by the interval in force. The loop's waits
// are computed on the injected clock and handed to timers the test fires.
func TestLoweredFlushIntervalAppliesAtOnce(t *testing.T) {
	t.Parallel()
	timers := make(chan armedTimer)
	done := make(chan struct{})
	b, s, clock := newBackendWith(t, backendOptions{initialize: true, flushTimer: func(d time.Duration) (<-chan time.Time, func() bool) {
		fire := make(chan time.Time, 1)
		select {
		case timers <- armedTimer{d, fire}:
		case <-done: // the test has ended: nobody fires it, the loop stops
		}
		return fire, func() bool { return true }
	}})
	t.Cleanup(func() { close(done) }) // runs before the backend's cleanup stops the loop
	next := func(after string) armedTimer {
		t.Helper()
		select {
		case a := <-timers:
			return a
		case <-time.After(10 * time.Second): // a failure bound only: the loop never re-armed
			t.Fatalf("the flush loop armed no wait after %s", after)
			return armedTimer{}
		}
	}

	if a := next("starting"); a.d != defaultUsageFlushInterval {
		t.Fatalf("first wait %v, want the default usage_flush_interval %v", a.d, defaultUsageFlushInterval)
	}
	clock.Advance(400 * time.Millisecond)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"usage_flush_interval": 1})
	lowered := next("lowering usage_flush_interval")
	if lowered.d != 600*time.Millisecond {
		t.Fatalf("after lowering usage_flush_interval to 1 s, 400 ms after the loop started: wait %v, want 600ms", lowered.d)
	}
	lcCreateBasic(t, b, s, "svc", nil)
	mustOK(t, b, s, logical.ReadOperation, "access/svc", nil)
	if e, err := s.Get(context.Background(), usagePrefix+"svc"); err != nil || e != nil {
		t.Fatalf("usage stored before the flush was due: %v, %v", e, err)
	}
	clock.Advance(600 * time.Millisecond)
	lowered.fire <- clock.Now()
	// The loop arms its next wait once the flush is done: a full interval from it.
	if a := next("a flush"); a.d != time.Second {
		t.Fatalf("wait after a flush %v, want the new usage_flush_interval 1s", a.d)
	}
	if e, err := s.Get(context.Background(), usagePrefix+"svc"); err != nil || e == nil {
		t.Fatalf("no usage stored after the loop's flush: %v, %v", e, err)
	}
}

// usageWatchStorage reports each usage/ write on a channel and refuses them while refuse
// is set.
type usageWatchStorage struct {
	logical.Storage
	usagePuts chan string
	refuse    atomic.Bool
	refuseOne atomic.Pointer[string] // one key refused on its own
}

func (s *usageWatchStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, usagePrefix) {
		s.usagePuts <- e.Key
		if one := s.refuseOne.Load(); s.refuse.Load() || (one != nil && *one == e.Key) {
			return errors.New("refused")
		}
	}
	return s.Storage.Put(ctx, e)
}

// TestBurstWakesFlushBeforeInterval: once the credentials with pending usage reach the
// threshold, the flush loop flushes without waiting out usage_flush_interval (the
// injected timers never fire here), so what Clean has to write stays bounded. After a
// flush storage refused, another burst waits for the interval: a failing storage is
// not retried in a loop.
func TestBurstWakesFlushBeforeInterval(t *testing.T) {
	t.Parallel()
	const threshold = 30
	timers := make(chan armedTimer)
	done := make(chan struct{})
	st := &usageWatchStorage{Storage: logical.NewStorageView(&logical.InmemStorage{}, ""), usagePuts: make(chan string, 4*threshold)}
	b, s, _ := newBackendWith(t, backendOptions{storage: st, flushTimer: func(d time.Duration) (<-chan time.Time, func() bool) {
		fire := make(chan time.Time, 1)
		select {
		case timers <- armedTimer{d, fire}:
		case <-done:
		}
		return fire, func() bool { return true }
	}})
	t.Cleanup(func() { close(done) })
	for i := range threshold {
		lcCreateBasic(t, b, s, fmt.Sprintf("c%02d", i), nil)
	}
	b.usage.drain() // the creations' events: the burst below starts from nothing pending
	b.usage.flushed()
	b.activity.setFlushThreshold(threshold)
	if err := b.initialize(context.Background(), &logical.InitializationRequest{Storage: s}); err != nil {
		t.Fatal(err)
	}
	next := func(after string) armedTimer {
		t.Helper()
		select {
		case a := <-timers:
			return a
		case <-time.After(10 * time.Second): // a failure bound only
			t.Fatalf("the flush loop armed no wait after %s", after)
			return armedTimer{}
		}
	}
	puts := func(k int, after string) {
		t.Helper()
		for range k {
			select {
			case <-st.usagePuts:
			case <-time.After(10 * time.Second): // a failure bound only
				t.Fatalf("the flush loop wrote no usage after %s", after)
			}
		}
	}
	if a := next("starting"); a.d != defaultUsageFlushInterval {
		t.Fatalf("first wait %v", a.d)
	}
	for i := range threshold - 1 {
		lcAccess(t, b, s, fmt.Sprintf("c%02d", i))
	}
	lcAccess(t, b, s, "c00") // not a new credential: no wake
	if n := b.activity.recorder.Names(); n != threshold-1 {
		t.Fatalf("%d credentials pending, want %d", n, threshold-1)
	}
	lcAccess(t, b, s, fmt.Sprintf("c%02d", threshold-1))
	puts(threshold, "the threshold's access")
	if a := next("the burst's flush"); a.d != defaultUsageFlushInterval {
		t.Fatalf("wait after the burst's flush %v, want a whole interval", a.d)
	}
	for i := range threshold {
		checkStoredCount(t, b, s, fmt.Sprintf("c%02d", i))
	}

	// A refused flush: the next burst waits for the interval.
	st.refuse.Store(true)
	for i := range threshold {
		lcAccess(t, b, s, fmt.Sprintf("c%02d", i))
	}
	puts(threshold, "the second burst")
	if a := next("a refused flush"); a.d != defaultUsageFlushInterval {
		t.Fatalf("wait after a refused flush %v", a.d)
	}
	// The refused usage went back to the recorder (a burst again): the loop looked at
	// it and armed its interval instead of flushing.
	rearmed := next("the refused usage's wake-up")
	if n := b.activity.recorder.Names(); n != threshold {
		t.Fatalf("%d credentials pending after the refused flush, want %d", n, threshold)
	}
	select {
	case k := <-st.usagePuts:
		t.Fatalf("flushed %s again before the interval after a refused flush", k)
	default:
	}
	st.refuse.Store(false)
	rearmed.fire <- time.Time{}
	puts(threshold, "the interval")
	next("the interval's flush")

	// One credential refused on its own (a corrupt entry, say) does not turn the early
	// wake off: the next burst is flushed at once too.
	one := usagePrefix + "c00"
	st.refuseOne.Store(&one)
	for round := range 2 {
		for i := range threshold {
			lcAccess(t, b, s, fmt.Sprintf("c%02d", i))
		}
		puts(threshold, fmt.Sprintf("burst %d with one credential refused", round))
		next(fmt.Sprintf("burst %d's flush", round))
	}
}

// checkStoredCount fails unless name's stored usage counts at least one access.
func checkStoredCount(t *testing.T, b *integrationsBackend, s logical.Storage, name string) {
	t.Helper()
	u, err := b.usage.load(context.Background(), s, name)
	if err != nil || u.Count < 1 {
		t.Fatalf("%s: stored count %d (%v) after the burst's flush", name, u.Count, err)
	}
}
