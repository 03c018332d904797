package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// gateStorage holds one storage operation until the test releases it, so a test can
// stop the background index scan at a chosen point. A gate opens once: later calls
// with the same key pass. A held call gives up when its context ends, as Vault's
// storage does.
type gateStorage struct {
	logical.Storage
	mu    sync.Mutex
	gates map[string]*storageGate // "get:<key>" or "list:<prefix>"
}

type storageGate struct {
	entered, release chan struct{}
}

func newGateStorage(s logical.Storage) *gateStorage {
	return &gateStorage{Storage: s, gates: map[string]*storageGate{}}
}

// gate arms a gate on the next Get of key ("get:" + key) or List of a prefix.
func (g *gateStorage) gate(op string) *storageGate {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt := &storageGate{entered: make(chan struct{}), release: make(chan struct{})}
	g.gates[op] = gt
	return gt
}

func (g *gateStorage) hold(ctx context.Context, op string) error {
	g.mu.Lock()
	gt := g.gates[op]
	delete(g.gates, op)
	g.mu.Unlock()
	if gt == nil {
		return nil
	}
	close(gt.entered)
	select {
	case <-gt.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get reads first and holds the answer, so what a held reader returns may be stale.
func (g *gateStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := g.Storage.Get(ctx, key)
	if herr := g.hold(ctx, "get:"+key); herr != nil {
		return nil, herr
	}
	return e, err
}

func (g *gateStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := g.hold(ctx, "list:"+prefix); err != nil {
		return nil, err
	}
	return g.Storage.List(ctx, prefix)
}

// startWithScanHeld seeds storage, arms a gate, and runs Initialize, failing the test if
// Initialize waits for the scan. It returns once the scan is held at the gate.
func startWithScanHeld(t *testing.T, gs *gateStorage, clock *testClock, op string) (*integrationsBackend, *storageGate) {
	t.Helper()
	gt := gs.gate(op)
	b, _, _ := newBackendWith(t, backendOptions{storage: gs, clock: clock})
	initDone := make(chan error, 1)
	go func() { initDone <- b.Initialize(context.Background(), &logical.InitializationRequest{Storage: gs}) }()
	select {
	case err := <-initDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a failure detector, not synchronisation
		close(gt.release)
		t.Fatal("Initialize waits for the index scan")
	}
	<-gt.entered
	return b, gt
}

// TestInitializeServesBeforeTheScan: Initialize returns with the index scan held;
// access, reads and lists are exact meanwhile (from storage), and alerts says it may be
// incomplete until the scan ends.
func TestInitializeServesBeforeTheScan(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	idle := lcSeed(t, gs, clock, "idle-", 3, 0)
	due := lcSeed(t, gs, clock, "due-", 1, 95*day) // its suspension warning is open
	b, gt := startWithScanHeld(t, gs, clock, "list:"+credentialPrefix)

	lcAccess(t, b, gs, idle[1])
	if v := lcRead(t, b, gs, due[0]); v["health"] != lifecycle.HealthYellow {
		t.Fatalf("read during the scan: health %v", v["health"])
	}
	names, _ := listAllCredentials(t, b, gs, nil, 2)
	if want := append(slices.Clone(due), idle...); !slices.Equal(names, want) {
		t.Fatalf("list during the scan: %v, want %v", names, want)
	}
	resp := mustOK(t, b, gs, logical.ReadOperation, "alerts", nil)
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "incomplete") {
		t.Fatalf("alerts during the scan: warnings %q", resp.Warnings)
	}

	close(gt.release)
	waitIndexBuilt(t, b)
	resp = mustOK(t, b, gs, logical.ReadOperation, "alerts", nil)
	if len(resp.Warnings) != 0 {
		t.Fatalf("alerts after the scan: warnings %q", resp.Warnings)
	}
	if got := alertsOf(resp.Data["alerts"].([]map[string]any), lifecycle.AlertSuspensionPending); len(got) != 1 || got[0]["name"] != due[0] {
		t.Fatalf("alerts after the scan: %v", resp.Data["alerts"])
	}
}

// TestDeleteRacingTheScanStaysDeleted: the scan read a credential, then it was deleted
// before the scan filed it: it must not come back in the indexes or the cache.
func TestDeleteRacingTheScanStaysDeleted(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	victim := lcSeed(t, gs, clock, "victim-", 1, 95*day)[0]
	other := lcSeed(t, gs, clock, "zother-", 1, 0)[0]
	b, gt := startWithScanHeld(t, gs, clock, "get:"+credentialPrefix+victim)

	mustOK(t, b, gs, logical.DeleteOperation, "credentials/"+victim, nil)
	close(gt.release) // the scan goes on with what it read before the delete
	waitIndexBuilt(t, b)

	if dueBy(b.activity.index, victim, never) {
		t.Fatal("a credential deleted during the scan is back in the sweep's index")
	}
	if dueBy(b.activity.alerting, victim, never) {
		t.Fatal("a credential deleted during the scan is back in the alerting index")
	}
	if c, _, _ := b.credentials.cache.glance(victim); c != nil {
		t.Fatal("a credential deleted during the scan is back in the cache")
	}
	if !dueBy(b.activity.index, other, never) {
		t.Fatal("the scan did not index the other credential")
	}
	if got := lcAlerts(t, b, gs); len(got) != 0 {
		t.Fatalf("alerts: %v", got)
	}
	if names, _ := listAllCredentials(t, b, gs, nil, 10); !slices.Equal(names, []string{other}) {
		t.Fatalf("list: %v", names)
	}
}

// TestCleanStopsTheScan: unloading the mount cancels a scan held in storage and waits
// for it, instead of waiting for the whole mount to be read.
func TestCleanStopsTheScan(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	names := lcSeed(t, gs, clock, "idle-", 3, 0)
	b, gt := startWithScanHeld(t, gs, clock, "get:"+credentialPrefix+names[1])
	defer close(gt.release)
	cleaned := make(chan struct{})
	go func() {
		b.Cleanup(context.Background())
		close(cleaned)
	}()
	select {
	case <-cleaned:
	case <-time.After(30 * time.Second): // a failure detector, not synchronisation
		t.Fatal("Clean does not stop the index scan")
	}
	if b.indexComplete(b.config) || b.activity.scanned.Load() >= b.activity.total.Load() {
		t.Fatalf("the scan ran to the end (%d of %d)", b.activity.scanned.Load(), b.activity.total.Load())
	}
}

// TestSweepDuringTheScan: the sweep acts on what is indexed while the scan runs, does
// not start a second scan, and acts on the rest once the scan files it: each
// credential is warned exactly once.
func TestSweepDuringTheScan(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	due := lcSeed(t, gs, clock, "due-", 2, 95*day) // the 90-day warning is due
	b, gt := startWithScanHeld(t, gs, clock, "get:"+credentialPrefix+due[1])
	ctx := context.Background()
	warnings := func(name string) int {
		t.Helper()
		c, err := b.credentials.get(ctx, gs, name)
		if err != nil || c == nil {
			t.Fatalf("%s: %v", name, err)
		}
		return len(c.State.Warned)
	}
	for range 2 {
		if err := b.periodic(ctx, &logical.Request{Storage: gs}); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.indexScan.Starts(); got != 1 {
		t.Fatalf("%d scans started, want 1 (the sweep must not start another while one runs)", got)
	}
	if w0, w1 := warnings(due[0]), warnings(due[1]); w0 != 1 || w1 != 0 {
		t.Fatalf("during the scan: warnings %d and %d, want 1 (indexed) and 0 (not yet)", w0, w1)
	}
	close(gt.release)
	waitIndexBuilt(t, b)
	if err := b.periodic(ctx, &logical.Request{Storage: gs}); err != nil {
		t.Fatal(err)
	}
	if w0, w1 := warnings(due[0]), warnings(due[1]); w0 != 1 || w1 != 1 {
		t.Fatalf("after the scan: warnings %d and %d, want 1 each", w0, w1)
	}
}

// referenceAlerts is alerts as it was computed before the alerting index: every stored
// credential judged at now.
func referenceAlerts(t *testing.T, b *integrationsBackend, s logical.Storage) []string {
	t.Helper()
	ctx := context.Background()
	names, err := s.List(ctx, credentialPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	now := b.now().UTC()
	var alerts []lifecycle.Alert
	for _, name := range names {
		c, err := b.credentials.get(ctx, s, name)
		if err != nil || c == nil {
			t.Fatalf("%s: %v", name, err)
		}
		sum, err := b.usage.summary(ctx, s, name)
		if err != nil {
			t.Fatal(err)
		}
		alerts = append(alerts, b.policyFor(cfg, c).Alerts(name, b.healthInput(c, sum), now)...)
	}
	slices.SortStableFunc(alerts, func(a, b lifecycle.Alert) int {
		if a.Severity != b.Severity {
			return strings.Compare(a.Severity, b.Severity)
		}
		return a.Due.Compare(b.Due)
	})
	out := make([]string, 0, len(alerts))
	for _, a := range alerts {
		out = append(out, fmt.Sprintf("%s %s %s %s %s", a.Name, a.Reason, a.Severity, rfc3339(a.Due), a.Detail))
	}
	return out
}

func servedAlerts(t *testing.T, b *integrationsBackend, s logical.Storage) []string {
	t.Helper()
	out := []string{}
	for _, a := range lcAlerts(t, b, s) {
		out = append(out, fmt.Sprintf("%s %s %s %s %s", a["name"], a["reason"], a["severity"], a["due"], a["detail"]))
	}
	return out
}

// TestAlertsMatchAFullScan: alerts served from the indexes are exactly what judging
// every credential gives, week by week over two years, across sweeps, flushes, repeated
// failures (pending and stored), expiries, certificates, own windows and restarts.
func TestAlertsMatchAFullScan(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	s := logical.NewStorageView(&logical.InmemStorage{}, "")
	b, _, _ := newBackendWith(t, backendOptions{storage: s, clock: clock, initialize: true})
	start := clock.Now()
	lcCreateBasic(t, b, s, "idle", nil)
	lcCreateBasic(t, b, s, "used", nil)
	lcCreateBasic(t, b, s, "short", map[string]any{"suspend_after": "20d", "purge_after": "60d"})
	lcCreateBasic(t, b, s, "expiring", map[string]any{"expires_at": start.Add(50 * day).Format(time.RFC3339)})
	certPEM, keyPEM := lcSelfSignedPEM(t, start.Add(70*day))
	mustOK(t, b, s, logical.CreateOperation, "credentials/cert", map[string]any{"type": "certificate", "certificate": certPEM, "private_key": keyPEM})
	lcCreateBasic(t, b, s, "failing", nil)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/failing/suspend", nil)
	for range 3 {
		if resp, err := lcDo(b, s, logical.ReadOperation, "access/failing", "", nil); err == nil && (resp == nil || !resp.IsError()) {
			t.Fatalf("access of a suspended credential: %v", resp)
		}
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/failing/unsuspend", nil)

	compare := func(step string) {
		t.Helper()
		if got, want := servedAlerts(t, b, s), referenceAlerts(t, b, s); !slices.Equal(got, want) {
			t.Fatalf("%s: alerts\n got %q\nwant %q", step, got, want)
		}
	}
	compare("start, failures pending")
	sawFailing := false
	for week := 1; week <= 104; week++ {
		clock.Advance(7 * day)
		if week%4 == 0 {
			lcAccess(t, b, s, "used")
		}
		switch week % 3 {
		case 0:
			if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
				t.Fatal(err)
			}
		case 1:
			lcFlush(t, b, s)
		}
		if week == 30 {
			// A restart: the new backend learns the stored failures from the scan.
			lcFlush(t, b, s)
			b.Cleanup(context.Background())
			b, _, _ = newBackendWith(t, backendOptions{storage: s, clock: clock, initialize: true})
		}
		compare(fmt.Sprintf("week %d", week))
		for _, a := range servedAlerts(t, b, s) {
			sawFailing = sawFailing || strings.HasPrefix(a, "failing failing")
		}
	}
	if !sawFailing {
		t.Fatal("the failing alert never showed: the test does not exercise it")
	}
}

// TestListThatStopsAtItsLimitSaysSo: a page that stops at its limit with names after it
// warns with the after value to continue from; following it lists every name once; a
// page with nothing after it, or short of its limit, carries no warning. Also with a
// filter, and at the default limit.
func TestListThatStopsAtItsLimitSaysSo(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	s := logical.NewStorageView(&logical.InmemStorage{}, "")
	names := lcSeed(t, s, clock, "c-", defaultListLimit+1, 0)
	b, _, _ := newBackendWith(t, backendOptions{storage: s, clock: clock, initialize: true})
	list := func(q map[string]any) *logical.Response {
		t.Helper()
		return mustOK(t, b, s, logical.ListOperation, "credentials/", q)
	}
	afterIn := func(resp *logical.Response) string {
		t.Helper()
		if len(resp.Warnings) != 1 {
			t.Fatalf("warnings %q, want one naming after", resp.Warnings)
		}
		var after string
		if i := strings.Index(resp.Warnings[0], `after="`); i >= 0 {
			after = resp.Warnings[0][i+len(`after="`):]
			after = after[:strings.IndexByte(after, '"')]
		}
		return after
	}

	// No limit given: the default page, and the warning says where to go on.
	resp := list(nil)
	keys := resp.Data["keys"].([]string)
	if len(keys) != defaultListLimit || afterIn(resp) != keys[len(keys)-1] {
		t.Fatalf("default page: %d keys, warnings %q", len(keys), resp.Warnings)
	}
	resp = list(map[string]any{"after": afterIn(resp)})
	if keys := resp.Data["keys"].([]string); !slices.Equal(keys, names[defaultListLimit:]) || len(resp.Warnings) != 0 {
		t.Fatalf("second page: %v, warnings %q", keys, resp.Warnings)
	}

	// Following the warnings pages through everything, once.
	var all []string
	q := map[string]any{"limit": 300}
	for {
		resp := list(q)
		all = append(all, resp.Data["keys"].([]string)...)
		if len(resp.Warnings) == 0 {
			break
		}
		q["after"] = afterIn(resp)
	}
	if !slices.Equal(all, names) {
		t.Fatalf("paging by the warnings listed %d names, want %d", len(all), len(names))
	}

	// A page that ends exactly at the last name: nothing more, no warning.
	if resp := list(map[string]any{"limit": 1, "after": names[len(names)-2]}); len(resp.Warnings) != 0 {
		t.Fatalf("last page warns: %q", resp.Warnings)
	}
	// A filter: the page fills, more names follow, the warning names the last match.
	resp = list(map[string]any{"filter": "c-000", "limit": 5})
	keys = resp.Data["keys"].([]string)
	if len(keys) != 5 || afterIn(resp) != keys[4] {
		t.Fatalf("filtered page: %v, warnings %q", keys, resp.Warnings)
	}
}

// TestScanReadsInParallel: the index scan reads several credentials at once (two
// reads are held at the same time; a scan reading one at a time never enters the
// second gate), and what those held workers read before a delete and a retag does not
// land after them: the deleted credential stays out of every index, the retagged one
// is filed under its new tag only, and the rest of the mount is indexed.
func TestScanReadsInParallel(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	names := lcSeed(t, gs, clock, "cred-", 40, 95*day)
	deleted, retagged := names[10], names[30]
	second := gs.gate("get:" + credentialPrefix + retagged)
	b, first := startWithScanHeld(t, gs, clock, "get:"+credentialPrefix+deleted)
	select {
	case <-second.entered:
	case <-time.After(30 * time.Second): // a failure detector, not synchronisation
		close(first.release)
		close(second.release)
		t.Fatal("the scan does not read a second credential while one read is held")
	}
	mustOK(t, b, gs, logical.DeleteOperation, "credentials/"+deleted, nil)
	mustOK(t, b, gs, logical.PatchOperation, "credentials/"+retagged, map[string]any{"tags": "moved"})
	close(first.release)
	close(second.release)
	waitIndexBuilt(t, b)

	if !b.indexComplete(b.config) {
		t.Fatal("the scan did not complete")
	}
	for _, n := range names {
		want := n != deleted
		if got := dueBy(b.activity.index, n, never); got != want {
			t.Fatalf("%s in the sweep's index: %v, want %v", n, got, want)
		}
		if got := dueBy(b.activity.alerting, n, never); got != want {
			t.Fatalf("%s in the alerting index: %v, want %v", n, got, want)
		}
	}
	if got, _ := listAllCredentials(t, b, gs, map[string]any{"tag": "moved"}, 100); !slices.Equal(got, []string{retagged}) {
		t.Fatalf("tag moved: %v", got)
	}
	if got, _ := listAllCredentials(t, b, gs, map[string]any{"type": "basic"}, 100); len(got) != len(names)-1 || slices.Contains(got, deleted) {
		t.Fatalf("type basic: %d names (deleted one listed: %v)", len(got), slices.Contains(got, deleted))
	}
}

// TestListReadsUsageTogether: after a reload no usage summary is filed, and a list
// page reads those of the credentials it shows together, not one storage round trip
// after another (which cost a million-credential mount on integrated storage over a
// second a page of 1,000).
func TestListReadsUsageTogether(t *testing.T) {
	t.Parallel()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	a, _, clock := newBackendWith(t, backendOptions{storage: gs})
	for _, name := range []string{"u1", "u2", "u3"} {
		lcCreateBasic(t, a, gs, name, nil)
	}
	lcAccess(t, a, gs, "u1")
	if err := a.flushUsage(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	b, _, _ := newBackendWith(t, backendOptions{storage: gs, clock: clock, initialize: true}) // the reload
	gates := []*storageGate{gs.gate("get:" + usagePrefix + "u1"), gs.gate("get:" + usagePrefix + "u2")}
	released := false
	release := func() {
		if !released {
			released = true
			for _, g := range gates {
				close(g.release)
			}
		}
	}
	defer release()
	done := make(chan *logical.Response, 1)
	go func() {
		resp, _ := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ListOperation, Path: "credentials/", Storage: gs})
		done <- resp
	}()
	for i, g := range gates {
		select {
		case <-g.entered:
		case <-time.After(30 * time.Second): // a failure detector, not synchronisation
			t.Fatalf("usage read %d of the page never started while the other was held: the page reads usage one credential at a time", i+1)
		}
	}
	release()
	resp := <-done
	if resp == nil || resp.IsError() {
		t.Fatalf("list: %v", resp)
	}
	if keys, _ := resp.Data["keys"].([]string); !slices.Equal(keys, []string{"u1", "u2", "u3"}) {
		t.Fatalf("keys %v", resp.Data["keys"])
	}
	info, _ := resp.Data["key_info"].(map[string]any)
	u1, _ := info["u1"].(map[string]any)
	if u1 == nil || u1["last_accessed"] == "" {
		t.Fatalf("u1's key_info %v: its stored usage was not read", u1)
	}
}
