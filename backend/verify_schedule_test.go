package backend

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// countingVerifyServer answers 200 and counts requests per credential (the bearer
// token names it). hold, when set, blocks each request until it returns.
type countingVerifyServer struct {
	*httptest.Server
	mu     sync.Mutex
	hits   map[string]int
	active atomic.Int64
	max    atomic.Int64
	hold   func()
}

func newCountingVerifyServer(t *testing.T) *countingVerifyServer {
	cs := &countingVerifyServer{hits: map[string]int{}}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		n := cs.active.Add(1)
		defer cs.active.Add(-1)
		for m := cs.max.Load(); n > m && !cs.max.CompareAndSwap(m, n); m = cs.max.Load() { //nolint:revive // empty-block: a compare-and-swap loop; the loop header is the work
		}
		cs.mu.Lock()
		cs.hits[r.Header.Get("Authorization")]++
		hold := cs.hold
		cs.mu.Unlock()
		if hold != nil {
			hold()
		}
	}))
	t.Cleanup(cs.Close)
	return cs
}

func (cs *countingVerifyServer) count(name string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.hits["Bearer "+name]
}

func tick(t *testing.T, b *integrationsBackend, s logical.Storage) {
	t.Helper()
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	b.verifier.Wait()
}

func TestVerifyScheduleVerifiesEachDueCredentialOnce(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	srv := newCountingVerifyServer(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"verify_interval": "1h"})
	const n = 40
	for i := range n {
		name := fmt.Sprintf("c%02d", i)
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name, map[string]any{"type": "bearer", "token": name, "verify_url": srv.URL})
	}
	// Never scheduled: a type with no check, and a suspended credential.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": srv.URL + "/hook"})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/off", map[string]any{"type": "bearer", "token": "off", "verify_url": srv.URL})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/off/suspend", nil)

	tick(t, b, s)
	if got := srv.count("c00") + srv.count("c01"); got != 0 {
		t.Fatalf("verified at once on enabling: %d; the first slot is half an interval away at least", got)
	}
	clock.Advance(90 * time.Minute)
	tick(t, b, s)
	for i := range n {
		if got := srv.count(fmt.Sprintf("c%02d", i)); got != 1 {
			t.Errorf("c%02d verified %d times after 90 minutes, want 1", i, got)
		}
	}
	tick(t, b, s) // nothing newly due: a verified credential waits for its next slot
	clock.Advance(90 * time.Minute)
	tick(t, b, s)
	for i := range n {
		if got := srv.count(fmt.Sprintf("c%02d", i)); got != 2 {
			t.Errorf("c%02d verified %d times after 3 hours, want 2", i, got)
		}
	}
	srv.mu.Lock()
	hook, off := srv.hits[""], srv.hits["Bearer off"]
	srv.mu.Unlock()
	if hook != 0 || off != 0 {
		t.Errorf("webhook posted %d, suspended verified %d; want neither", hook, off)
	}
	view := mustOK(t, b, s, logical.ReadOperation, "credentials/c00", nil).Data
	if view["verify_result"] != "ok" || view["access_count"] != int64(0) {
		t.Errorf("c00 after the schedule: %v", view)
	}
}

func TestVerifyScheduleBoundsInFlight(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	srv := newCountingVerifyServer(t)
	const n = 60
	// Requests are held until the run has had to wait for a free slot, and then until
	// every request it started is in: the server then sees all that were in flight at
	// once, and no more can come while the run waits.
	// (An unbounded run gets all n in at once, and they are released then.)
	var started atomic.Int64
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	var releaseOnce sync.Once
	srv.hold = func() {
		if started.Add(1) == n {
			releaseOnce.Do(func() { close(release) })
		}
		arrived <- struct{}{}
		<-release
	}
	var waited atomic.Int64
	b.verifyFull = func() {
		if waited.Add(1) == 1 {
			for range maxVerifyInFlight {
				<-arrived
			}
			releaseOnce.Do(func() { close(release) })
		}
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"verify_interval": "1h"})
	for i := range n {
		name := fmt.Sprintf("c%02d", i)
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name, map[string]any{"type": "bearer", "token": name, "verify_url": srv.URL})
	}
	clock.Advance(2 * time.Hour)
	tick(t, b, s)
	if got := started.Load(); got != n {
		t.Fatalf("%d verifications ran, want %d", got, n)
	}
	if waited.Load() == 0 {
		t.Error("the run never waited for a free slot: verifications in flight are not bounded")
	}
	if m := srv.max.Load(); m != maxVerifyInFlight {
		t.Errorf("%d verifications in flight at most, want %d", m, maxVerifyInFlight)
	}
}

func TestVerifyScheduleOwnIntervalAndActiveNodeOnly(t *testing.T) {
	t.Parallel()
	srv := newCountingVerifyServer(t)
	own := map[string]any{"type": "bearer", "token": "own", "verify_url": srv.URL, "verify_interval": "2h"}
	plain := map[string]any{"type": "bearer", "token": "plain", "verify_url": srv.URL}

	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/own", own)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/plain", plain)
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/own", nil).Data["verify_interval"]; got != int64(7200) {
		t.Errorf("verify_interval shown as %v", got)
	}
	clock.Advance(3 * time.Hour)
	tick(t, b, s)
	if srv.count("own") != 1 || srv.count("plain") != 0 {
		t.Errorf("config off, own interval 2h: own %d, plain %d; want 1 and 0", srv.count("own"), srv.count("plain"))
	}

	standby := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	sb, ss, sclock := newBackendWith(t, backendOptions{system: standby})
	bearer, _ := credtype.Lookup("bearer")
	c := &credential{Name: "own2", Type: "bearer", Values: bearer.Compact(map[string]any{"token": "own2", "verify_url": srv.URL})}
	c.CreatedAt, c.UpdatedAt = sclock.Now(), sclock.Now()
	c.State.Status, c.State.VerifyInterval = "active", 2*time.Hour
	entry, _ := logical.StorageEntryJSON(credentialPrefix+c.Name, c)
	if err := ss.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	sb.reindex(defaultConfig(), c, c.State)
	sclock.Advance(3 * time.Hour)
	tick(t, sb, ss)
	if got := srv.count("own2"); got != 0 {
		t.Errorf("a performance standby verified %d times; background work is the active node's", got)
	}
}

func TestVerifyIntervalRule(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, bad := range []string{"10m", "400d"} {
		resp, _ := request(b, s, logical.UpdateOperation, "config", map[string]any{"verify_interval": bad})
		if resp == nil || !resp.IsError() {
			t.Errorf("config verify_interval %s accepted", bad)
		}
		resp, _ = request(b, s, logical.UpdateOperation, "credentials/x", map[string]any{"type": "bearer", "token": "t", "verify_interval": bad})
		if resp == nil || !resp.IsError() {
			t.Errorf("credential verify_interval %s accepted", bad)
		}
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"verify_interval": "0"})
}
