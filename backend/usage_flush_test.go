package backend

import (
	"context"
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
