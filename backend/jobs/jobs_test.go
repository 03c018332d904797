package jobs

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testRunner is a runner whose node's write safety the test switches, whose restart
// pause fires at once (an injected clock: no test waits out a real pause), and whose
// log the test reads.
func testRunner(t *testing.T) (*Runner, *atomic.Bool, *logBuffer) {
	t.Helper()
	standby := &atomic.Bool{}
	logs := &logBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	fired := make(chan time.Time)
	close(fired)
	r := New(Options{
		Logger:    func() hclog.Logger { return logger },
		WriteSafe: func() bool { return !standby.Load() },
		Storage:   func() logical.Storage { return &logical.InmemStorage{} },
		After:     func(time.Duration) <-chan time.Time { return fired },
	})
	t.Cleanup(func() { r.Stop(context.Background()) })
	return r, standby, logs
}

const secret = "s3cr3t-refresh-token"

type secretPanic struct{ token string }

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

// TestLoopJob: a Loop job steps when its Wait says so, skips the step on a node that
// may not write, survives a panic (logged without the panic's value, the loop started
// again), and Stop waits for it; the tick wakes it.
func TestLoopJob(t *testing.T) {
	r, standby, logs := testRunner(t)
	wake := make(chan struct{}, 1)
	entered := make(chan struct{}) // each Wait, so the test knows the loop is idle
	steps := make(chan int, 10)
	var n atomic.Int64
	r.Register(Spec{Name: "loop", Trigger: Loop, Bound: 1, OnTick: true,
		Wake: func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		},
		Wait: func(ctx context.Context) bool {
			select {
			case <-ctx.Done():
				return false
			case entered <- struct{}{}:
			}
			select {
			case <-ctx.Done():
				return false
			case <-wake:
				return true
			}
		},
		Do: func(context.Context, logical.Storage) error {
			if n.Add(1) == 2 {
				panic(secretPanic{secret})
			}
			steps <- int(n.Load())
			return nil
		}})
	r.Start()
	<-entered
	if err := r.Tick(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := <-steps; got != 1 {
		t.Fatalf("step %d, want 1", got)
	}
	<-entered
	wake <- struct{}{} // the second step panics; the loop is started again
	<-entered
	wake <- struct{}{}
	if got := <-steps; got != 3 {
		t.Fatalf("step %d after the panic, want 3", got)
	}
	if l := logs.String(); !strings.Contains(l, "background job panicked; restarted") || !strings.Contains(l, "job=loop") || strings.Contains(l, secret) {
		t.Fatalf("the panic's log line: want it named, without the panic's value:\n%s", l)
	}
	<-entered
	standby.Store(true)
	wake <- struct{}{}
	<-entered // back without a step
	standby.Store(false)
	wake <- struct{}{}
	if got := <-steps; got != 4 {
		t.Fatalf("step %d, want 4: the standby's step is skipped", got)
	}
	r.Stop(context.Background())
	if n.Load() != 4 {
		t.Fatalf("%d steps", n.Load())
	}
}

// TestTickJobs: the Tick jobs run in registration order on the caller's goroutine, an
// error skips those after it (the OnTick runs still start), and nothing runs on a
// node that may not write.
func TestTickJobs(t *testing.T) {
	r, standby, _ := testRunner(t)
	var order []string
	fail := errors.New("refused")
	r.Register(Spec{Name: "a", Trigger: Tick, Do: func(context.Context, logical.Storage) error { order = append(order, "a"); return nil }})
	r.Register(Spec{Name: "b", Trigger: Tick, Do: func(context.Context, logical.Storage) error { order = append(order, "b"); return fail }})
	r.Register(Spec{Name: "c", Trigger: Tick, Do: func(context.Context, logical.Storage) error { order = append(order, "c"); return nil }})
	ran := make(chan struct{}, 1)
	run := r.Register(Spec{Name: "run", Trigger: Run, Bound: 1, OnTick: true, Do: func(context.Context, logical.Storage) error { ran <- struct{}{}; return nil }})
	if err := r.Tick(context.Background(), nil); !errors.Is(err, fail) {
		t.Fatalf("tick: %v", err)
	}
	wait(t, ran, "the OnTick run")
	run.Wait()
	if got := strings.Join(order, ","); got != "a,b" {
		t.Fatalf("order %s", got)
	}
	standby.Store(true)
	if err := r.Tick(context.Background(), nil); err != nil || len(order) != 2 || run.Starts() != 1 {
		t.Fatalf("a standby's tick ran jobs: %v %v, %d runs", err, order, run.Starts())
	}
}

// TestDemandJob: Go runs up to the bound, and calls skipped when it cannot run: at the
// bound, on a node that may not write (asked in the background), after Stop.
func TestDemandJob(t *testing.T) {
	r, standby, _ := testRunner(t)
	h := r.Register(Spec{Name: "demand", Trigger: Demand, Bound: 1})
	release := make(chan struct{})
	started := make(chan struct{})
	var skipped atomic.Int64
	skip := func() { skipped.Add(1) }
	if !h.Go(func(context.Context) { close(started); <-release }, skip) {
		t.Fatal("not started")
	}
	wait(t, started, "the first run")
	if h.Go(func(context.Context) { t.Error("ran beyond the bound") }, skip) || skipped.Load() != 1 {
		t.Fatal("started beyond its bound")
	}
	close(release)
	h.Wait()
	standby.Store(true)
	h.Go(func(context.Context) { t.Error("ran on a standby") }, skip)
	h.Wait()
	if skipped.Load() != 2 {
		t.Fatalf("skipped %d, want 2", skipped.Load())
	}
	standby.Store(false)
	r.Stop(context.Background())
	if h.Go(func(context.Context) { t.Error("ran after Stop") }, skip) || skipped.Load() != 3 {
		t.Fatal("started after Stop")
	}
}

// TestStopOrder: Stop stops the jobs in registration order, each cancelled, its
// Stopping called, waited for, then its Final; a Final runs only where writes are safe.
func TestStopOrder(t *testing.T) {
	r, _, _ := testRunner(t)
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	for _, name := range []string{"first", "second"} {
		started := make(chan struct{})
		h := r.Register(Spec{Name: name, Trigger: Run, Bound: 1,
			Do: func(ctx context.Context, _ logical.Storage) error {
				close(started)
				<-ctx.Done()
				note(name + " ended")
				return nil
			},
			Stopping: func() { note(name + " stopping") },
			Final:    func(context.Context, logical.Storage) { note(name + " final") }})
		h.Start(nil)
		wait(t, started, name)
	}
	r.Stop(context.Background())
	want := "first stopping,first ended,first final,second stopping,second ended,second final"
	if got := strings.Join(order, ","); got != want {
		t.Fatalf("stop order:\n got %s\nwant %s", got, want)
	}

	r2, standby, _ := testRunner(t)
	r2.Register(Spec{Name: "final", Trigger: Tick, Do: func(context.Context, logical.Storage) error { return nil },
		Final: func(context.Context, logical.Storage) { t.Error("a Final ran on a node that may not write") }})
	standby.Store(true)
	r2.Stop(context.Background())
}

// TestRegisterRejects: a spec the runner cannot run is refused at registration.
func TestRegisterRejects(t *testing.T) {
	r, _, _ := testRunner(t)
	for _, s := range []Spec{
		{Name: "loop without wait", Trigger: Loop, Bound: 1, Do: func(context.Context, logical.Storage) error { return nil }},
		{Name: "run unbounded", Trigger: Run, Do: func(context.Context, logical.Storage) error { return nil }},
		{Name: "tick on tick", Trigger: Tick, OnTick: true, Do: func(context.Context, logical.Storage) error { return nil }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered", s.Name)
				}
			}()
			r.Register(s)
		}()
	}
}

// TestRunRestart: Restart does nothing before the first run; then it cancels the run
// going, waits for it and starts another; Start does not start a second beside it.
func TestRunRestart(t *testing.T) {
	r, _, _ := testRunner(t)
	started := make(chan int, 3)
	var runs atomic.Int64
	h := r.Register(Spec{Name: "scan", Trigger: Run, Bound: 1, Do: func(ctx context.Context, _ logical.Storage) error {
		started <- int(runs.Add(1))
		<-ctx.Done()
		return nil
	}})
	if h.Restart(nil) || h.Starts() != 0 {
		t.Fatal("Restart started a job never started")
	}
	if !h.Start(nil) {
		t.Fatal("not started")
	}
	<-started
	if h.Start(nil) {
		t.Fatal("a second run beside the first")
	}
	if !h.Restart(nil) {
		t.Fatal("not restarted")
	}
	if got := <-started; got != 2 || h.Starts() != 2 {
		t.Fatalf("run %d, %d starts", got, h.Starts())
	}
	r.Stop(context.Background())
	if h.Restart(nil) {
		t.Fatal("restarted after Stop")
	}
}
