package backend

// The gating of every background job on WriteSafeReplicationState, asked at the time
// each job runs (not once at start-up), and Clean, which is how a community-edition
// node that loses leadership stops: Vault tears the mount down before it gives up the
// HA lock, so nothing of the old leader's background work may outlive Clean.

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
)

// switchableView is a system view whose node can lose (and regain) the right to
// write while the backend runs, as a performance standby's would.
type switchableView struct {
	logical.StaticSystemView
	standby atomic.Bool
}

func (v *switchableView) ReplicationState() consts.ReplicationState {
	if v.standby.Load() {
		return consts.ReplicationPerformanceStandby
	}
	return 0
}

func newSwitchableView() *switchableView {
	return &switchableView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
}

// TestBackgroundWorkFollowsWriteSafety: each background job — flush, sweep, outbox
// delivery, refresh ahead, keep-alive, index scan — does nothing while the node may not write,
// and resumes when it may again.
func TestBackgroundWorkFollowsWriteSafety(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("flush", func(t *testing.T) {
		t.Parallel()
		view, cs := newSwitchableView(), newCountingStorage()
		b, s, clock := newBackendWith(t, backendOptions{storage: cs, system: view})
		lcCreateBasic(t, b, s, "svc", nil)
		b.activity.recorder.Access("svc", clock.Now(), "x", true, "")
		view.standby.Store(true)
		cs.reset()
		if err := b.flushUsage(ctx, s); err != nil || cs.total() != 0 {
			t.Fatalf("flush on a node that may not write: %v, storage %s", err, cs)
		}
		view.standby.Store(false)
		if err := b.flushUsage(ctx, s); err != nil || !putKey(cs, usagePrefix+"svc") {
			t.Fatalf("flush once writable again: %v, storage %s (want usage/svc written)", err, cs)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		t.Parallel()
		view, cs := newSwitchableView(), newCountingStorage()
		b, s, clock := newBackendWith(t, backendOptions{storage: cs, system: view, initialize: true})
		lcCreateBasic(t, b, s, "old", nil)
		clock.Advance(200 * day)
		view.standby.Store(true)
		cs.reset()
		if err := b.periodic(ctx, &logical.Request{Storage: s}); err != nil || cs.total() != 0 {
			t.Fatalf("sweep on a node that may not write: %v, storage %s", err, cs)
		}
		view.standby.Store(false)
		if err := b.periodic(ctx, &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		if !putKey(cs, credentialPrefix+"old") {
			t.Fatalf("the sweep once writable again did not act on a credential 200 days unused: storage %s", cs)
		}
		if st := lcRead(t, b, s, "old")["status"]; st == string(lifecycle.StatusActive) {
			t.Fatalf("status %v after 200 days unused", st)
		}
	})

	t.Run("outbox delivery", func(t *testing.T) {
		t.Parallel()
		r := newLCReceiver(t, nil)
		view, cs := newSwitchableView(), newCountingStorage()
		b, s, _ := newBackendWith(t, backendOptions{storage: cs, system: view})
		mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
		mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
		b.outbox.Enqueue(ctx, notify.Notification{Event: "suspended", Credential: "queued"})
		view.standby.Store(true)
		cs.reset()
		b.outbox.Enqueue(ctx, notify.Notification{Event: "suspended", Credential: "refused"})
		b.outbox.Deliver(ctx)
		if cs.total() != 0 || r.count("queued")+r.count("refused") != 0 {
			t.Fatalf("a node that may not write: storage %s, %d posts", cs, r.count("queued")+r.count("refused"))
		}
		view.standby.Store(false)
		b.outbox.Deliver(ctx)
		if r.count("queued") != 1 || r.count("refused") != 0 {
			t.Fatalf("once writable again: %d posts of the queued notification (want 1), %d of the refused one (want 0)",
				r.count("queued"), r.count("refused"))
		}
	})

	t.Run("refresh ahead", func(t *testing.T) {
		t.Parallel()
		view := newSwitchableView()
		b, s, clock, p, first := refreshAheadBackend(t, backendOptions{system: view})
		clock.Advance(inWindow)
		view.standby.Store(true)
		if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != first {
			t.Fatalf("read in the window: %v", got)
		}
		settle(b)
		if n := p.requests.Load(); n != 1 {
			t.Fatalf("%d provider requests from refresh ahead on a node that may not write, want none", n-1)
		}
	})

	// Keep-alive asks before each refresh, not once per run: a node that loses the
	// right to write mid-run stops at its next credential. The run's first
	// refreshes (one per slot) are held at the provider while the node turns
	// standby; the one waiting for a slot must then not start: not sent, and not
	// counted as a failure (the mint's own guard would refuse it as read-only).
	t.Run("keep-alive mid-run", func(t *testing.T) {
		t.Parallel()
		view := newSwitchableView()
		p := newTestProvider(t, providerConfig{})
		b, s, clock := newBackendWith(t, backendOptions{system: view, initialize: true})
		mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
		for i := range maxKeepAliveInFlight + 1 {
			importCredential(t, b, s, p, fmt.Sprintf("idle%d", i))
		}
		n := p.requests.Load()
		clock.Advance(week)
		arrived, release := blockTokens(t, p)
		b.keepalives.Start(s)
		for i := range maxKeepAliveInFlight {
			waitArrived(t, arrived, fmt.Sprintf("keep-alive refresh %d of the run", i+1))
		}
		view.standby.Store(true)
		release()
		b.keepalives.Wait()
		if got := p.requests.Load() - n; got != maxKeepAliveInFlight {
			t.Fatalf("%d keep-alive refreshes, want %d: the one after the node turned standby was sent", got, maxKeepAliveInFlight)
		}
		// Not started at all: no outcome but the held ones (a keep-alive that went on
		// would fail on the read-only node and count, log and retry a failure).
		view.standby.Store(false) // the metrics read is not what is under test
		ok := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": keepAliveOK})
		failed := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": keepAliveTransient})
		if ok != maxKeepAliveInFlight || failed > 0 {
			t.Fatalf("keep-alive outcomes: %v ok (want %d), %v transient (want none): the node kept going after it turned standby",
				ok, maxKeepAliveInFlight, failed)
		}
	})

	t.Run("index scan", func(t *testing.T) {
		t.Parallel()
		view, cs := newSwitchableView(), newCountingStorage()
		seed, s, _ := newBackendWith(t, backendOptions{storage: cs})
		lcCreateBasic(t, seed, s, "svc", nil)
		view.standby.Store(true)
		cs.reset()
		b, _, _ := newBackendWith(t, backendOptions{storage: cs, system: view, initialize: true})
		if n := b.indexScan.Starts(); n != 0 || cs.lists.Load() != 0 {
			t.Fatalf("initialize on a node that may not write: %d scans, storage %s", n, cs)
		}
		view.standby.Store(false)
		if err := b.periodic(ctx, &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		waitIndexBuilt(t, b)
		if n := b.indexScan.Starts(); n != 1 {
			t.Fatalf("%d scans once writable again, want the sweep to start one", n)
		}
	})
}

// TestCleanStopsBackgroundWork: when the mount is torn down — a leader stepping down,
// a seal, a plugin reload — Clean returns only once every background job has ended.
// With a flush due, a notification held at the receiver, a refresh held at the
// provider and an index scan started, nothing of the backend writes storage or runs
// after Clean returns, so the next leader's jobs never overlap the old one's.
func TestCleanStopsBackgroundWork(t *testing.T) {
	// Not parallel: it looks at every goroutine of the process.
	ctx := context.Background()
	hold := make(chan struct{})
	r := newLCReceiver(t, func(notify.Notification, int) int {
		<-hold
		return http.StatusOK
	})
	t.Cleanup(func() { close(hold) }) // before the receiver closes: registered later
	fenced := &fencedStorage{countingStorage: newCountingStorage()}
	b, s, clock, p, _ := refreshAheadBackend(t, backendOptions{storage: fenced})
	arrived, _ := blockTokens(t, p)
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	b.outbox.Enqueue(ctx, notify.Notification{Event: "suspended", Credential: "held"})
	select {
	case <-r.got: // the notifier's post is held at the receiver
	case <-time.After(30 * time.Second):
		t.Fatal("the notification never reached the receiver")
	}
	clock.Advance(inWindow)
	accessOK(t, b, s, "cc", nil)
	waitArrived(t, arrived, "refresh ahead")
	b.indexScan.Start(s)
	b.activity.recorder.Access("cc", clock.Now(), "x", true, "")

	b.Cleanup(ctx)
	fenced.fence.Store(true)
	if !putKey(fenced.countingStorage, usagePrefix+"cc") {
		t.Fatal("Clean did not flush the usage counted before it")
	}
	if left := backendGoroutinesAfterExit(); len(left) > 0 {
		t.Fatalf("%d goroutines of the backend still run after Clean:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	if n := fenced.late.Load(); n != 0 {
		t.Fatalf("%d storage writes after Clean returned", n)
	}
}

// fencedStorage counts the writes made once fence is set.
type fencedStorage struct {
	*countingStorage
	fence atomic.Bool
	late  atomic.Int64
}

func (f *fencedStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if f.fence.Load() {
		f.late.Add(1)
	}
	return f.countingStorage.Put(ctx, e)
}

func (f *fencedStorage) Delete(ctx context.Context, key string) error {
	if f.fence.Load() {
		f.late.Add(1)
	}
	return f.countingStorage.Delete(ctx, key)
}

// backendGoroutinesAfterExit is backendGoroutines once those that have done their
// work have also exited: a goroutine whose caller was released (a WaitGroup's Done, a
// closed channel) can still be on its way out, runnable in its last frame, when the
// caller looks. It yields (no sleep) until none is left or five seconds have passed,
// and returns what is left: goroutines that still run.
func backendGoroutinesAfterExit() []string {
	left := backendGoroutines()
	for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = backendGoroutines() {
		runtime.Gosched()
	}
	return left
}

// backendGoroutines lists the stacks of goroutines other than the caller's that run
// code of this package outside its tests' helpers.
func backendGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	const pkg = "vault-plugin-secrets-integrations/backend."
	const jobsPkg = "vault-plugin-secrets-integrations/backend/jobs."
	const notifyPkg = "vault-plugin-secrets-integrations/backend/notify."
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller's own goroutine comes first
			continue
		}
		// A frame is a function line followed by its file line.
		lines := strings.Split(g, "\n")
		for j := 1; j+1 < len(lines); j++ {
			if (strings.Contains(lines[j], pkg) || strings.Contains(lines[j], jobsPkg) || strings.Contains(lines[j], notifyPkg)) && !strings.HasPrefix(lines[j], "created by") &&
				!strings.Contains(strings.Fields(lines[j+1])[0], "_test.go") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
