// Package jobs runs a mount's background work. Every job is registered once, in the
// order that is both its tick order and its stop order, with its trigger and bound;
// the runner applies the same three rules to all of them:
//
//   - write safety: a job's body starts only after WriteSafeReplicationState said yes,
//     asked just before it starts (each loop step, each tick, each run, each restart);
//   - stopping: Stop closes the runner (nothing starts after) and then stops the jobs one
//     by one in registration order, each cancelled and waited for before the next;
//   - panics: recovered, logged by job name and the panic's type (never its value,
//     which may hold a secret), and the job started again after a pause.
package jobs

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// Trigger is what starts a job.
type Trigger int

const (
	// Loop runs for the mount's life from Start: Wait, then Do, over and over.
	Loop Trigger = iota
	// Tick runs Do inline on the periodic tick, in registration order; an error
	// skips the Tick jobs after it (they run again at the next tick).
	Tick
	// Run is one background run at a time (Bound 1), started by Handle.Start or, with
	// OnTick, by the tick after the Tick jobs.
	Run
	// Demand runs a function handed to Handle.Go, up to Bound at once (0: no bound here;
	// the caller bounds it).
	Demand
)

func (t Trigger) String() string {
	switch t {
	case Loop:
		return "loop"
	case Tick:
		return "tick"
	case Run:
		return "run"
	case Demand:
		return "demand"
	}
	return "unknown"
}

// Spec describes one job.
type Spec struct {
	Name    string
	Trigger Trigger
	// Bound is how many runs of the job go at once (Loop and Run: 1).
	Bound int
	// OnTick: the periodic tick starts a Run job, or calls a Loop job's Wake.
	OnTick bool
	// Wait (Loop) blocks until the next step is due; false when ctx is done.
	Wait func(ctx context.Context) bool
	// Wake (Loop) makes a Wait return at once, without blocking.
	Wake func()
	// Do is the body of a Loop step, a Tick job and a Run.
	Do func(ctx context.Context, s logical.Storage) error
	// Stopping is called by Stop after the job's context is cancelled and before the
	// wait: it cancels work the context does not reach (requests shared in flight).
	Stopping func()
	// Final runs once the job has stopped, on a node that may write (a last flush).
	Final func(ctx context.Context, s logical.Storage)
}

// Options are the runner's dependencies.
type Options struct {
	Logger    func() hclog.Logger
	WriteSafe func() bool
	// Storage is the mount's storage for Loop steps and Final (nil: they are skipped).
	Storage func() logical.Storage
	// RestartPause is how long a job that panicked waits before it starts again, by
	// the number of panics in a row; nil: one second doubling to a minute.
	RestartPause func(panics int) time.Duration
	// After arms the restart pause; nil: time.After.
	After func(d time.Duration) <-chan time.Time
}

// Runner holds the registered jobs.
type Runner struct {
	o Options

	mu      sync.Mutex
	jobs    []*Handle
	started bool
	closed  bool
}

// New returns a runner with no jobs.
func New(o Options) *Runner {
	if o.RestartPause == nil {
		o.RestartPause = func(n int) time.Duration { return min(time.Second<<min(n-1, 6), time.Minute) }
	}
	if o.After == nil {
		o.After = time.After
	}
	return &Runner{o: o}
}

// PauseWith replaces the clock that arms the restart pause (tests).
func (r *Runner) PauseWith(after func(d time.Duration) <-chan time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.o.After = after
}

// Handle is a registered job: what its trigger calls, and what tests wait on.
type Handle struct {
	r    *Runner
	spec Spec

	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc

	mu        sync.Mutex
	running   int
	idle      chan struct{}      // closed when running drops to zero
	runCancel context.CancelFunc // Run: the current run's
	starts    int64
}

// Register adds a job. The order of registration is the tick order and the stop order.
func (r *Runner) Register(s Spec) *Handle {
	switch {
	case s.Trigger == Loop && (s.Wait == nil || s.Do == nil),
		(s.Trigger == Tick || s.Trigger == Run) && s.Do == nil,
		(s.Trigger == Loop || s.Trigger == Run) && s.Bound != 1,
		s.OnTick && s.Trigger == Loop && s.Wake == nil,
		s.OnTick && s.Trigger != Loop && s.Trigger != Run:
		panic(fmt.Sprintf("jobs: job %q: inconsistent spec", s.Name))
	}
	h := &Handle{r: r, spec: s}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.jobs {
		if j.spec.Name == s.Name {
			panic(fmt.Sprintf("jobs: job %q registered twice", s.Name))
		}
	}
	r.jobs = append(r.jobs, h)
	return h
}

// Jobs lists the registered jobs in order (the documentation's table is checked
// against it).
func (r *Runner) Jobs() []Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Spec, len(r.jobs))
	for i, h := range r.jobs {
		out[i] = h.spec
	}
	return out
}

// Start starts the Loop jobs (Initialize); later calls do nothing.
func (r *Runner) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	for _, h := range r.jobs {
		if h.spec.Trigger == Loop {
			h.begin()
			go h.loop()
		}
	}
}

// Tick runs the Tick jobs in order, then starts the OnTick Run jobs and wakes the
// OnTick Loop jobs, in order. Nothing runs on a node that may not write. It returns the
// first Tick job's error; the others start whatever it was.
func (r *Runner) Tick(ctx context.Context, s logical.Storage) error {
	if !r.o.WriteSafe() {
		return nil
	}
	r.mu.Lock()
	handles := append([]*Handle(nil), r.jobs...)
	r.mu.Unlock()
	var err error
	for _, h := range handles {
		if h.spec.Trigger == Tick && err == nil {
			err = h.inline(ctx, s)
		}
	}
	for _, h := range handles {
		switch {
		case !h.spec.OnTick:
		case h.spec.Trigger == Run:
			h.Start(s) //nolint:contextcheck // a run outlives the tick: it runs on the job's context, which Stop ends
		case h.spec.Trigger == Loop:
			h.spec.Wake()
		}
	}
	return err
}

// Stop closes the runner, so no job starts again, then stops each job in registration
// order: its context cancelled, its Stopping called, every run of it waited for, then
// its Final on a node that may write. Later calls do nothing.
func (r *Runner) Stop(ctx context.Context) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	handles := append([]*Handle(nil), r.jobs...)
	r.mu.Unlock()
	for _, h := range handles {
		h.cancel()
		if h.spec.Stopping != nil {
			h.spec.Stopping()
		}
		h.Wait()
		if h.spec.Final == nil {
			continue
		}
		if s := r.o.Storage(); s != nil && r.o.WriteSafe() {
			h.guard(func() { h.spec.Final(ctx, s) })
		}
	}
}

// Context is the job's context, cancelled by Stop.
func (h *Handle) Context() context.Context { return h.ctx }

// Starts is how many runs were started (Run, Demand), for tests.
func (h *Handle) Starts() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.starts
}

// Wait returns once no run of the job is going.
func (h *Handle) Wait() {
	h.mu.Lock()
	idle := h.idle
	running := h.running
	h.mu.Unlock()
	if running > 0 {
		<-idle
	}
}

// Start starts a Run job on s unless one is running, the node may not write or the
// runner is closed; it reports whether it did.
func (h *Handle) Start(s logical.Storage) bool {
	if h.spec.Trigger != Run {
		panic("jobs: Start on a job that is not a run: " + h.spec.Name)
	}
	if !h.r.o.WriteSafe() {
		return false
	}
	ctx, cancel := context.WithCancel(h.ctx)
	if !h.acquire(cancel) {
		cancel()
		return false
	}
	go func() {
		defer h.release()
		defer cancel()
		h.repeat(ctx, h.r.o.WriteSafe, func(ctx context.Context) { _ = h.spec.Do(ctx, s) })
	}()
	return true
}

// Restart cancels the running Run (if any), waits for it and starts another: a scan
// under changed settings. Nothing happens before the job first started.
func (h *Handle) Restart(s logical.Storage) bool {
	h.mu.Lock()
	cancel, started := h.runCancel, h.starts > 0
	h.mu.Unlock()
	if !started {
		return false
	}
	if cancel != nil {
		cancel()
	}
	h.Wait()
	return h.Start(s)
}

// Go runs f in the background, unless the runner is closed or the job is at its bound,
// and reports whether it did. The node's write safety is asked in the background (it
// may be a call to Vault, kept off the caller's path). Whenever f does not run (closed,
// at the bound, or the node may not write), skipped is called instead.
func (h *Handle) Go(f func(ctx context.Context), skipped func()) bool {
	if h.spec.Trigger != Demand {
		panic("jobs: Go on a job that is not on demand: " + h.spec.Name)
	}
	if !h.acquire(nil) {
		if skipped != nil {
			skipped()
		}
		return false
	}
	go func() {
		defer h.release()
		h.repeat(h.ctx, func() bool {
			if !h.r.o.WriteSafe() {
				if skipped != nil {
					skipped()
				}
				return false
			}
			return true
		}, f)
	}()
	return true
}

// acquire counts a run in, unless the runner is closed or the bound is reached; cancel
// (a Run's) is what Restart calls to end it.
func (h *Handle) acquire(cancel context.CancelFunc) bool {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if h.r.closed {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.spec.Bound > 0 && h.running >= h.spec.Bound {
		return false
	}
	h.begin0()
	if h.spec.Trigger != Tick {
		h.starts++
	}
	if cancel != nil {
		h.runCancel = cancel
	}
	return true
}

func (h *Handle) begin() {
	h.mu.Lock()
	h.begin0()
	h.mu.Unlock()
}

func (h *Handle) begin0() {
	if h.running == 0 {
		h.idle = make(chan struct{})
	}
	h.running++
}

func (h *Handle) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running--
	if h.running == 0 {
		close(h.idle)
		h.runCancel = nil
	}
}

// repeat runs f on ctx while allowed says yes, again after a pause each time it
// panics, until it returns or ctx ends.
func (h *Handle) repeat(ctx context.Context, allowed func() bool, f func(ctx context.Context)) {
	for panics := 0; ; {
		if !allowed() {
			return
		}
		if !h.guard(func() { f(ctx) }) {
			return
		}
		panics++
		if !h.pause(ctx, panics) {
			return
		}
	}
}

// loop is a Loop job's goroutine.
func (h *Handle) loop() {
	defer h.release()
	for panics := 0; ; {
		stopped := false
		if h.guard(func() {
			if !h.spec.Wait(h.ctx) {
				stopped = true
				return
			}
			if h.r.o.WriteSafe() {
				_ = h.spec.Do(h.ctx, h.r.o.Storage())
			}
		}) {
			panics++
			if !h.pause(h.ctx, panics) {
				return
			}
			continue
		}
		if stopped || h.ctx.Err() != nil {
			return
		}
		panics = 0
	}
}

// inline runs a Tick job on the caller's goroutine, counted so Stop waits for it, on a
// context Stop also cancels. A panic is an error for the tick; the next tick runs it.
func (h *Handle) inline(ctx context.Context, s logical.Storage) (err error) {
	if !h.acquire(nil) {
		return nil
	}
	defer h.release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(h.ctx, cancel)() //nolint:contextcheck // Stop ends the tick's work too: the job's context cancels the tick's
	if h.guard(func() { err = h.spec.Do(ctx, s) }) {
		return fmt.Errorf("background job %q failed", h.spec.Name)
	}
	return err
}

// guard runs f and reports whether it panicked, logging the panic without its value.
func (h *Handle) guard(f func()) (panicked bool) {
	return Guard(h.r.o.Logger(), h.spec.Name, "background job panicked; restarted", f)
}

// Guard runs f, one piece of a job's work on a goroutine of its own (a worker of a
// run, a flush worker), and reports whether it panicked. A panic is recovered and
// logged as the runner logs a job's own: the job's name, the panic's type and the
// stack, never the value, which may hold a secret (a formatted token, a request). The
// piece's work is lost; the job goes on with the next.
func Guard(logger hclog.Logger, job, msg string, f func()) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			logger.Error(msg, "job", job, "panic_type", fmt.Sprintf("%T", v), "stack", string(debug.Stack()))
		}
	}()
	f()
	return false
}

// Guard runs f, a piece of h's work on a goroutine of its own, as the package's Guard.
func (h *Handle) Guard(f func()) (panicked bool) {
	return Guard(h.r.o.Logger(), h.spec.Name, "a piece of a background job panicked; the job goes on", f)
}

// pause waits out the restart pause after panics panics; false when ctx ended first.
func (h *Handle) pause(ctx context.Context, panics int) bool {
	h.r.mu.Lock()
	after := h.r.o.After
	h.r.mu.Unlock()
	select {
	case <-ctx.Done():
		return false
	case <-after(h.r.o.RestartPause(panics)):
		return ctx.Err() == nil
	}
}
