// Package keywork bounds the expensive key work of the whole plugin process: key
// derivations (PBKDF2, scrypt, bcrypt) and key generation. Each is capped on its own
// (credtype checks a key's parameters before anything derives), but a cap per input
// does not bound how many run at once, and the plugin is multiplexed: one process
// serves every mount, so a burst of writes on one mount could exhaust the memory of
// all. A Gate admits at most Limits.Concurrent pieces of work at once whose memory adds
// up to at most Limits.Memory; the others wait their turn, first come first served, for
// a bounded time, and are then refused with *Busy, which says when to retry.
//
// It imports no Vault package.
package keywork

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Limits are what a Gate admits at once and how long a caller waits for its turn.
type Limits struct {
	// Concurrent is how many pieces of work run at once.
	Concurrent int
	// Memory bounds the sum of the memory costs of the work running, in bytes. A single
	// piece costing more is admitted alone (its own cap is its caller's business).
	Memory int64
	// MaxWait is the longest a caller waits for its turn.
	MaxWait time.Duration
	// MaxWaiting bounds the queue: a caller finding this many already waiting is
	// refused at once, since it could not get a turn within MaxWait anyway. 0: no bound.
	MaxWaiting int
	// Reserve is how long before its context's deadline a caller stops waiting: the
	// time the work itself may take once admitted, so the answer (a result, or Busy)
	// still reaches the caller before the deadline.
	Reserve time.Duration
}

// Busy is the refusal of a caller that did not get its turn in time. It carries no
// input: it is safe to show.
type Busy struct {
	// RetryAfter is when a retry is likely to get a turn: about a second per round of
	// the work running and queued now, at least one second.
	RetryAfter time.Duration
	// Limits are the gate's, for the message.
	Limits Limits
}

// Error says what was refused and why, in the words of the limits.
func (e *Busy) Error() string {
	return fmt.Sprintf("the engine is busy with other key derivations (at most %d at a time and %d MiB of KDF memory in flight, for the whole plugin process); retry after %d s",
		e.Limits.Concurrent, e.Limits.Memory>>20, e.RetrySeconds())
}

// RetrySeconds is RetryAfter in whole seconds, rounded up, as an HTTP Retry-After
// header gives it.
func (e *Busy) RetrySeconds() int {
	return int((e.RetryAfter + time.Second - 1) / time.Second)
}

// AsBusy returns the refusal err is or wraps; nil for any other error.
func AsBusy(err error) *Busy {
	var busy *Busy
	if errors.As(err, &busy) {
		return busy
	}
	return nil
}

// maxRetryAfter bounds the advice of Busy.
const maxRetryAfter = time.Minute

// Stats are a Gate's counters, for diagnostics and tests.
type Stats struct {
	// Running and Waiting are the work admitted and the callers queued now; Memory is
	// the memory cost of the work running.
	Running, Waiting int
	Memory           int64
	// PeakRunning and PeakMemory are the largest Running and Memory seen.
	PeakRunning int
	PeakMemory  int64
	// Admitted and Refused count the calls of Acquire that got a turn and that did not.
	Admitted, Refused uint64
}

// Gate admits key work within its Limits. The zero value is not usable: use New.
type Gate struct {
	limits Limits

	mu      sync.Mutex
	running int
	memory  int64
	queue   []*waiter // first come, first served
	stats   Stats
}

type waiter struct {
	cost  int64
	ready chan struct{} // closed when admitted
}

// New returns a Gate with the given limits (Concurrent at least 1).
func New(l Limits) *Gate {
	l.Concurrent = max(l.Concurrent, 1)
	return &Gate{limits: l}
}

// Limits returns the gate's limits.
func (g *Gate) Limits() Limits { return g.limits }

// Acquire waits for a turn for work costing cost bytes of memory and returns the
// function that ends it (call it once the work is done; later calls do nothing). It
// waits at most MaxWait, and stops Reserve before ctx's deadline; a caller that gets
// no turn by then, whose ctx ends, or who finds MaxWaiting callers queued ahead, gets
// *Busy. Turns are given in arrival order: a
// large piece of work at the head of the queue is not overtaken by smaller ones.
func (g *Gate) Acquire(ctx context.Context, cost int64) (release func(), err error) {
	cost = max(cost, 0)
	g.mu.Lock()
	if len(g.queue) == 0 && g.fits(cost) && ctx.Err() == nil {
		g.admit(cost)
		g.mu.Unlock()
		return g.releaser(cost), nil
	}
	wait := g.waitLimit(ctx)
	if wait <= 0 || (g.limits.MaxWaiting > 0 && len(g.queue) >= g.limits.MaxWaiting) {
		defer g.mu.Unlock()
		return nil, g.refuse()
	}
	w := &waiter{cost: cost, ready: make(chan struct{})}
	g.queue = append(g.queue, w)
	g.stats.Waiting = len(g.queue)
	g.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-w.ready:
		return g.releaser(cost), nil
	case <-ctx.Done():
	case <-timer.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.ready:
		// Admitted as the wait ended: the caller has given up, so hand the turn on.
		g.end(cost)
	default:
		for i, q := range g.queue {
			if q == w {
				g.queue = append(g.queue[:i], g.queue[i+1:]...)
				break
			}
		}
		g.stats.Waiting = len(g.queue)
		g.wake() // the head may have left: the next may fit now
	}
	return nil, g.refuse()
}

// Stats returns the gate's counters now.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.Running, s.Waiting, s.Memory = g.running, len(g.queue), g.memory
	return s
}

// waitLimit is how long a caller with ctx may wait now; g.mu is held.
func (g *Gate) waitLimit(ctx context.Context) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	wait := g.limits.MaxWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-g.limits.Reserve)
	}
	return wait
}

// fits reports whether work costing cost may start now; g.mu is held.
func (g *Gate) fits(cost int64) bool {
	if g.running >= g.limits.Concurrent {
		return false
	}
	return g.running == 0 || g.memory+cost <= g.limits.Memory
}

// admit starts work costing cost; g.mu is held.
func (g *Gate) admit(cost int64) {
	g.running++
	g.memory += cost
	g.stats.Admitted++
	g.stats.PeakRunning = max(g.stats.PeakRunning, g.running)
	g.stats.PeakMemory = max(g.stats.PeakMemory, g.memory)
}

// end finishes work costing cost and admits what fits; g.mu is held.
func (g *Gate) end(cost int64) {
	g.running--
	g.memory -= cost
	g.wake()
}

// wake admits the queued callers, in order, while the head fits; g.mu is held.
func (g *Gate) wake() {
	for len(g.queue) > 0 && g.fits(g.queue[0].cost) {
		w := g.queue[0]
		g.queue = g.queue[1:]
		g.admit(w.cost)
		close(w.ready)
	}
	g.stats.Waiting = len(g.queue)
}

// refuse counts a refusal and returns it, with its advice; g.mu is held.
func (g *Gate) refuse() *Busy {
	g.stats.Refused++
	rounds := (g.running + len(g.queue) + g.limits.Concurrent - 1) / g.limits.Concurrent
	after := min(max(time.Duration(rounds)*time.Second, time.Second), maxRetryAfter)
	return &Busy{RetryAfter: after, Limits: g.limits}
}

func (g *Gate) releaser(cost int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.end(cost)
		})
	}
}
