package backend

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/jobs"
)

// TestAddingAJob registers a new job on a mount with one line, as the next one (a
// device-code poller, an issuer-key rotation) would be, and shows what the runner
// gives it without a line of its own: it runs on its trigger (the tick), not on a node
// that may not write, one run at a time, a panic is logged without its value and the
// run started again, Clean waits for it, and nothing starts after Clean.
func TestAddingAJob(t *testing.T) {
	t.Parallel()
	view, logs := newSwitchableView(), &lcLogBuffer{}
	b, s, _ := newBackendWith(t, backendOptions{system: view, logs: logs, initialize: true})
	fired := make(chan time.Time)
	close(fired)
	b.jobs.PauseWith(func(time.Duration) <-chan time.Time { return fired }) // the restart pause, on the test's clock

	var attempts atomic.Int64
	running := make(chan struct{})
	var ended atomic.Bool
	body := func(ctx context.Context, _ logical.Storage) error {
		if attempts.Add(1) == 1 {
			panic("a value holding " + secretMarker)
		}
		close(running)
		<-ctx.Done() // until Clean
		ended.Store(true)
		return nil
	}
	// The whole registration of the job:
	example := b.jobs.Register(jobs.Spec{Name: "example", Trigger: jobs.Run, Bound: 1, OnTick: true, Do: body})

	ctx, tick := context.Background(), func() {
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
	}
	view.standby.Store(true)
	tick()
	if example.Starts() != 0 || attempts.Load() != 0 {
		t.Fatal("the job started on a node that may not write")
	}
	view.standby.Store(false)
	tick()
	select {
	case <-running: // the first attempt panicked; the second runs
	case <-time.After(30 * time.Second):
		t.Fatal("the job was not started again after its panic")
	}
	if l := logs.String(); !strings.Contains(l, "background job panicked; restarted") || !strings.Contains(l, "job=example") || strings.Contains(l, secretMarker) {
		t.Fatalf("want the panic logged by job name, without its value:\n%s", l)
	}
	tick() // still running: bound 1
	if n := example.Starts(); n != 1 {
		t.Fatalf("%d runs started, want 1 (its bound)", n)
	}
	b.Cleanup(ctx)
	if !ended.Load() {
		t.Fatal("Clean returned before the job ended")
	}
	tick()
	if example.Start(s) || example.Starts() != 1 || attempts.Load() != 2 {
		t.Fatalf("a run started after Clean: %d runs, %d attempts", example.Starts(), attempts.Load())
	}
}

// secretMarker stands for a secret a panic's value could carry.
const secretMarker = "s3cr3t-token-value"

// TestJobTable: docs/ARCHITECTURE.md's job table lists every registered job, in the
// registration order (the tick and stop order it explains), and nothing else.
func TestJobTable(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimSpace(cells[1])); err == nil {
			documented = append(documented, strings.TrimSpace(cells[2]))
		}
	}
	var registered []string
	for _, j := range newBackend(time.Now).jobs.Jobs() {
		registered = append(registered, j.Name)
	}
	if !slices.Equal(documented, registered) {
		t.Fatalf("the job table in docs/ARCHITECTURE.md:\n got %q\nwant %q (registerJobs, in order)", documented, registered)
	}
}
