package notify

import (
	"context"
	"testing"
)

// TestWaitWakesAndStops: the delivery job's wait returns at once when woken, and false
// once its context ends.
func TestWaitWakesAndStops(t *testing.T) {
	t.Parallel()
	o, _ := newTestOutbox(t)
	o.Wake()
	o.Wake() // one pending wake is enough: this one does not block
	if !o.Wait(context.Background()) {
		t.Fatal("woken, Wait said stop")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o.Wait(ctx) {
		t.Fatal("stopped, Wait said go")
	}
}

// A panic in the middle of a pass, while it records an attempt (the job runner
// recovers it), leaves the outbox unlocked: the sweep's next Enqueue and the next pass
// go on.
func TestPassPanicLeavesTheOutboxUnlocked(t *testing.T) {
	t.Parallel()
	o, m := newTestOutbox(t)
	ctx := context.Background()
	o.Enqueue(ctx, Notification{Event: "suspended", Credential: "svc", Message: "one", Time: RFC3339(m.clock())})
	m.panicOnAttempt.Store(true)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the pass did not reach the attempt's record")
			}
		}()
		o.Deliver(ctx)
	}()
	if !o.mu.TryLock() {
		t.Fatal("the outbox's lock is still held after the recovered panic: every Enqueue would now block")
	}
	o.mu.Unlock()
	m.panicOnAttempt.Store(false)
	o.Enqueue(ctx, Notification{Event: "suspension-warning", Credential: "svc", Message: "two", Time: RFC3339(m.clock())})
	if got := stored(t, m.s); len(got) != 2 {
		t.Fatalf("%d entries stored after the panic, want 2", len(got))
	}
}
