package keywork

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const mib = 1 << 20

func testLimits() Limits {
	return Limits{Concurrent: 2, Memory: 256 * mib, MaxWait: time.Hour, Reserve: 5 * time.Second}
}

// waitFor yields until cond holds: the goroutines it waits on are runnable, so this
// ends without any clock.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		runtime.Gosched()
	}
}

// TestGateBoundsConcurrency: of 8 callers, 2 run and 6 queue; the work itself counts
// how many run at once, and that never exceeds 2.
func TestGateBoundsConcurrency(t *testing.T) {
	t.Parallel()
	g := New(testLimits())
	var inFlight, peak atomic.Int64
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := g.Acquire(context.Background(), 1*mib)
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() { //nolint:revive // empty-block: a compare-and-swap loop; the loop header is the work
			}
			<-hold
			inFlight.Add(-1)
		}()
	}
	waitFor(t, func() bool { return int(inFlight.Load())+g.Stats().Waiting == 8 })
	if n := inFlight.Load(); n != 2 {
		t.Fatalf("%d pieces of work run at once, want 2", n)
	}
	close(hold)
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak %d pieces of work at once, want 2", p)
	}
	if s := g.Stats(); s.Admitted != 8 || s.Running != 0 || s.Memory != 0 || s.PeakRunning != 2 {
		t.Fatalf("stats after all ended: %+v", s)
	}
}

// TestGateBoundsMemory: with a slot free, work that would take the memory in flight
// past the budget waits; a single piece larger than the budget runs alone.
func TestGateBoundsMemory(t *testing.T) {
	t.Parallel()
	g := New(testLimits())
	r1, err := g.Acquire(context.Background(), 200*mib)
	if err != nil {
		t.Fatal(err)
	}
	admitted := make(chan func())
	go func() {
		r, err := g.Acquire(context.Background(), 100*mib)
		if err != nil {
			t.Error(err)
		}
		admitted <- r
	}()
	waitFor(t, func() bool { s := g.Stats(); return s.Running+s.Waiting == 2 })
	if s := g.Stats(); s.Running != 1 || s.Memory != 200*mib {
		t.Fatalf("300 MiB would be in flight: %+v", s)
	}
	r1()
	r2 := <-admitted
	if s := g.Stats(); s.Running != 1 || s.Memory != 100*mib || s.PeakMemory != 200*mib {
		t.Fatalf("after the first ended: %+v", s)
	}
	r2()
	big, err := g.Acquire(context.Background(), 300*mib)
	if err != nil {
		t.Fatalf("a piece larger than the budget, alone: %v", err)
	}
	big()
}

// TestGateFirstComeFirstServed: a large piece of work at the head of the queue is not
// overtaken by a small one that would fit beside the work running; once the large one
// fits, both start.
func TestGateFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	g := New(testLimits())
	r1, _ := g.Acquire(context.Background(), 128*mib)
	// callers counts each caller once it is running or queued.
	enqueue := func(cost int64, callers int) {
		go func() {
			if _, err := g.Acquire(context.Background(), cost); err != nil {
				t.Error(err)
			} // held until the test ends: admission is what is measured
		}()
		waitFor(t, func() bool { s := g.Stats(); return s.Running+s.Waiting == callers })
	}
	enqueue(200*mib, 2) // does not fit beside r1
	enqueue(1*mib, 3)   // would fit beside r1, but arrived second
	if s := g.Stats(); s.Running != 1 || s.Waiting != 2 {
		t.Fatalf("the small one overtook the large one: %+v", s)
	}
	r1()
	if s := g.Stats(); s.Running != 2 || s.Waiting != 0 || s.Memory != 201*mib {
		t.Fatalf("after the first ended, want the large and the small running: %+v", s)
	}
}

// TestGateRefusesPastDeadline: a caller whose context ends while it waits, or whose
// deadline is nearer than the reserve, or who waits MaxWait, gets *Busy with advice of
// at least a second, and leaves the queue; the next caller gets the freed turn.
func TestGateRefusesPastDeadline(t *testing.T) {
	t.Parallel()
	g := New(testLimits())
	r1, _ := g.Acquire(context.Background(), 128*mib)
	r2, _ := g.Acquire(context.Background(), 128*mib)

	// Cancelled while queued.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := g.Acquire(ctx, 1*mib)
		errc <- err
	}()
	waitFor(t, func() bool { return g.Stats().Waiting == 1 })
	cancel()
	assertBusy(t, <-errc)
	if s := g.Stats(); s.Waiting != 0 || s.Refused != 1 {
		t.Fatalf("a refused caller stays queued: %+v", s)
	}

	// A deadline nearer than the reserve: refused at once, never queued.
	near, cancelNear := context.WithTimeout(context.Background(), time.Second)
	defer cancelNear()
	_, err := g.Acquire(near, 1*mib)
	assertBusy(t, err)

	// MaxWait spent.
	short := New(Limits{Concurrent: 1, Memory: mib, MaxWait: time.Nanosecond})
	hold, _ := short.Acquire(context.Background(), 0)
	_, err = short.Acquire(context.Background(), 0)
	assertBusy(t, err)
	hold()

	// A caller whose context has already ended gets no turn, even a free one.
	free := New(testLimits())
	gone, cancelGone := context.WithCancel(context.Background())
	cancelGone()
	_, err = free.Acquire(gone, 1*mib)
	assertBusy(t, err)
	if s := free.Stats(); s.Admitted != 0 {
		t.Fatalf("an ended caller was admitted: %+v", s)
	}

	// A full queue: refused at once, without waiting.
	full := New(Limits{Concurrent: 1, Memory: mib, MaxWait: time.Hour, MaxWaiting: 1})
	holdFull, _ := full.Acquire(context.Background(), 0)
	queued := make(chan error)
	go func() {
		r, err := full.Acquire(context.Background(), 0)
		if r != nil {
			r()
		}
		queued <- err
	}()
	waitFor(t, func() bool { return full.Stats().Waiting == 1 })
	_, err = full.Acquire(context.Background(), 0)
	assertBusy(t, err)
	holdFull()
	if err := <-queued; err != nil {
		t.Fatalf("the caller queued before the queue filled: %v", err)
	}

	// The turns freed go to the next caller, and releasing twice frees one turn.
	r1()
	r1()
	if s := g.Stats(); s.Running != 1 {
		t.Fatalf("a double release freed two turns: %+v", s)
	}
	r3, err := g.Acquire(context.Background(), 1*mib)
	if err != nil {
		t.Fatal(err)
	}
	r2()
	r3()
}

func assertBusy(t *testing.T, err error) {
	t.Helper()
	var busy *Busy
	if !errors.As(err, &busy) {
		t.Fatalf("err = %v, want *Busy", err)
	}
	if busy.RetrySeconds() < 1 || busy.RetryAfter > maxRetryAfter {
		t.Fatalf("retry after %v", busy.RetryAfter)
	}
}
