package backend

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// lcLogBuffer is a log sink safe for the background jobs and the test to share.
type lcLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *lcLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *lcLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// do sends a request as a named caller and returns the response and error as they are,
// for the refusals (403, 404) that call treats as failures.
func lcDo(b logical.Backend, s logical.Storage, op logical.Operation, path, displayName string, data map[string]any) (*logical.Response, error) {
	return b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data, Storage: s, DisplayName: displayName,
	})
}

// createBasic creates a basic credential with optional extra fields.
func lcCreateBasic(t testing.TB, b logical.Backend, s logical.Storage, name string, extra map[string]any) {
	t.Helper()
	data := map[string]any{"type": "basic", "username": "u", "password": "p"}
	for k, v := range extra {
		data[k] = v
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, data)
}

// access reads access/<name> and fails the test unless it is handed out.
func lcAccess(t testing.TB, b logical.Backend, s logical.Storage, name string) *logical.Response {
	t.Helper()
	resp, err := lcDo(b, s, logical.ReadOperation, "access/"+name, "", nil)
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("access/%s: %s", name, outcome(resp, err))
	}
	return resp
}

// readCredential returns the management view of a credential (nil when it is gone).
func lcRead(t testing.TB, b logical.Backend, s logical.Storage, name string) map[string]any {
	t.Helper()
	resp := call(t, b, s, logical.ReadOperation, "credentials/"+name, nil)
	if resp == nil {
		return nil
	}
	if resp.IsError() {
		t.Fatalf("read credentials/%s: %v", name, resp.Error())
	}
	return resp.Data
}

// logEvents reads credentials/<name>/logs with the given filters.
func lcLogs(t testing.TB, b logical.Backend, s logical.Storage, name string, query map[string]any) []map[string]any {
	t.Helper()
	resp := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name+"/logs", query)
	if resp == nil {
		t.Fatalf("logs of %s: no response", name)
	}
	return resp.Data["events"].([]map[string]any)
}

func lcStoredUsage(t testing.TB, s logical.Storage, name string) *usage.Usage {
	t.Helper()
	u, err := new(usageStore).load(context.Background(), s, name) // load reads storage only
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func lcFlush(t testing.TB, b *integrationsBackend, s logical.Storage) {
	t.Helper()
	if err := b.flushUsage(context.Background(), s); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestAccessRecordsUsageInMemory(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	lcCreateBasic(t, b, s, "svc", nil)
	if got := lcRead(t, b, s, "svc"); got["access_count"] != int64(0) || got["last_accessed"] != "" || got["health"] != lifecycle.HealthAwaitingUsage {
		t.Fatalf("new credential: count %v last %v health %v", got["access_count"], got["last_accessed"], got["health"])
	}

	clock.Advance(time.Hour)
	first := clock.Now()
	cases := []struct {
		display, param, want string
	}{
		{"token-ci", "jira-sync", "jira-sync"}, // the parameter wins
		{"token-ci", "", "token-ci"},           // else the caller's display name
		{"", "servicenow", "servicenow"},
	}
	for _, c := range cases {
		clock.Advance(time.Minute)
		data := map[string]any{}
		if c.param != "" {
			data["integration"] = c.param
		}
		resp, err := lcDo(b, s, logical.ReadOperation, "access/svc", c.display, data)
		if err != nil || resp.IsError() {
			t.Fatalf("access: %s", outcome(resp, err))
		}
		if resp.Data["username"] != "u" || resp.Data["password"] != "p" {
			t.Fatalf("access returned %s", outcome(resp, nil))
		}
	}
	last := clock.Now()

	// Before any flush the management view already counts the reads.
	got := lcRead(t, b, s, "svc")
	if got["access_count"] != int64(len(cases)) {
		t.Fatalf("access_count = %v, want %d", got["access_count"], len(cases))
	}
	if got["last_accessed"] != last.Format(time.RFC3339) {
		t.Fatalf("last_accessed = %v, want %v", got["last_accessed"], last.Format(time.RFC3339))
	}
	if got["health"] != lifecycle.HealthGreen {
		t.Fatalf("health after use = %v", got["health"])
	}
	if got["suspend_at"] != last.Add(180*day).Format(time.RFC3339) || got["purge_at"] != last.Add(365*day).Format(time.RFC3339) {
		t.Fatalf("window not renewed by unflushed access: suspend_at %v purge_at %v", got["suspend_at"], got["purge_at"])
	}
	if _, err := s.Get(context.Background(), usagePrefix+"svc"); err != nil {
		t.Fatal(err)
	}

	events := lcLogs(t, b, s, "svc", map[string]any{"event": usage.EventAccess})
	if len(events) != len(cases) {
		t.Fatalf("want %d access events, got %v", len(cases), events)
	}
	for i, c := range cases {
		ev := events[len(cases)-1-i] // newest first
		if ev["integration"] != c.want || ev["status"] != usage.StatusSuccess {
			t.Errorf("event %d: %v, want integration %q", i, ev, c.want)
		}
		wantTime := first.Add(time.Duration(i+1) * time.Minute).Format(time.RFC3339Nano)
		if ev["time"] != wantTime {
			t.Errorf("event %d time %v, want %v", i, ev["time"], wantTime)
		}
	}

	// The flush writes usage/<name>, apart from the credential.
	lcFlush(t, b, s)
	u := lcStoredUsage(t, s, "svc")
	if u.Count != int64(len(cases)) || !u.LastAccessed.Equal(last) {
		t.Fatalf("stored usage: count %d last %v", u.Count, u.LastAccessed)
	}
	entry, err := s.Get(context.Background(), credentialPrefix+"svc")
	if err != nil || entry == nil {
		t.Fatalf("credential entry: %v %v", entry, err)
	}
	if strings.Contains(string(entry.Value), "jira-sync") {
		t.Fatal("usage events were written into the credential entry")
	}
	if got := lcRead(t, b, s, "svc"); got["access_count"] != int64(len(cases)) {
		t.Fatalf("after flush access_count = %v (counted twice or lost)", got["access_count"])
	}
}

func TestAccessPathWritesNothing(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	b, s, clock := newBackendWith(t, backendOptions{storage: cs})
	lcCreateBasic(t, b, s, "hot", nil)
	lcCreateBasic(t, b, s, "other", nil)
	lcFlush(t, b, s)
	lcAccess(t, b, s, "hot") // warm: config and credential decoded once
	lcAccess(t, b, s, "other")

	const n = 500
	cs.reset()
	for i := 0; i < n; i++ {
		clock.Advance(time.Second)
		name := "hot"
		if i%5 == 0 {
			name = "other"
		}
		lcAccess(t, b, s, name)
	}
	if cs.writes() != 0 {
		t.Fatalf("%d access reads wrote storage: %d puts, %d deletes", n, cs.puts.Load(), cs.deletes.Load())
	}
	if cs.reads() != 0 {
		t.Fatalf("%d warm access reads read storage %d times", n, cs.reads())
	}

	lcFlush(t, b, s)
	if cs.puts.Load() == 0 {
		t.Fatal("the flush wrote nothing")
	}
	// Two usage entries, and each credential's window renewed once: batched, not per read.
	if p := cs.puts.Load(); p > 4 {
		t.Fatalf("the flush of two credentials made %d puts", p)
	}
	if got := lcStoredUsage(t, s, "hot").Count + lcStoredUsage(t, s, "other").Count; got != n+2 {
		t.Fatalf("stored counts add up to %d, want %d", got, n+2)
	}
	c, _ := b.credentials.get(context.Background(), s, "hot")
	if !c.State.ActivityAt.Equal(clock.Now().Add(-time.Second)) && !c.State.ActivityAt.Equal(clock.Now()) {
		t.Fatalf("flush did not renew the window: activity_at %v, now %v", c.State.ActivityAt, clock.Now())
	}
}

func TestFlushFailureLosesNothing(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	b, s, clock := newBackendWith(t, backendOptions{storage: cs})
	lcCreateBasic(t, b, s, "svc", nil)
	lcFlush(t, b, s)
	for i := 0; i < 3; i++ {
		clock.Advance(time.Minute)
		lcAccess(t, b, s, "svc")
	}
	cs.failPuts.Store(true)
	if err := b.flushUsage(context.Background(), s); err == nil {
		t.Fatal("flush over failing storage reported no error")
	}
	clock.Advance(time.Minute)
	lcAccess(t, b, s, "svc")
	if got := lcRead(t, b, s, "svc")["access_count"]; got != int64(4) {
		t.Fatalf("after a failed flush access_count = %v, want 4", got)
	}
	cs.failPuts.Store(false)
	lcFlush(t, b, s)
	u := lcStoredUsage(t, s, "svc")
	if u.Count != 4 || !u.LastAccessed.Equal(clock.Now()) {
		t.Fatalf("after retry stored count %d last %v", u.Count, u.LastAccessed)
	}
	if n := len(u.Filter(usage.Filter{Event: usage.EventAccess})); n != 4 {
		t.Fatalf("stored %d access events, want 4", n)
	}
}

// TestFlushRetriesOnlyWhatWasNotStored: when the usage is stored but renewing the
// credential's window fails, the retry renews the window without counting twice.
func TestFlushRetriesOnlyWhatWasNotStored(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	b, s, clock := newBackendWith(t, backendOptions{storage: cs})
	lcCreateBasic(t, b, s, "svc", nil)
	lcFlush(t, b, s)
	for i := 0; i < 3; i++ {
		clock.Advance(time.Hour)
		lcAccess(t, b, s, "svc")
	}
	cs.failPutsUnder.Store(credentialPrefix)
	if err := b.flushUsage(context.Background(), s); err == nil {
		t.Fatal("flush reported no error")
	}
	if got := lcRead(t, b, s, "svc")["access_count"]; got != int64(3) {
		t.Fatalf("between flushes access_count = %v, want 3", got)
	}
	cs.failPutsUnder.Store("")
	lcFlush(t, b, s)
	if u := lcStoredUsage(t, s, "svc"); u.Count != 3 || len(u.Filter(usage.Filter{Event: usage.EventAccess})) != 3 {
		t.Fatalf("after the retry stored count %d, events %v: counted twice", u.Count, u.Events)
	}
	stored, err := s.Get(context.Background(), credentialPrefix+"svc")
	if err != nil {
		t.Fatal(err)
	}
	var c credential
	if err := stored.DecodeJSON(&c); err != nil {
		t.Fatal(err)
	}
	if !c.State.ActivityAt.Equal(clock.Now()) {
		t.Fatalf("stored window starts %v, want the last access %v", c.State.ActivityAt, clock.Now())
	}
	if got := lcRead(t, b, s, "svc")["access_count"]; got != int64(3) {
		t.Fatalf("after the retry access_count = %v, want 3", got)
	}
}

func TestCleanupFlushesUsage(t *testing.T) {
	t.Parallel()
	storage := &logical.InmemStorage{}
	clock := newTestClock()
	b, s, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	lcCreateBasic(t, b, s, "svc", nil)
	const n = 7
	for i := 0; i < n; i++ {
		clock.Advance(time.Hour)
		if _, err := lcDo(b, s, logical.ReadOperation, "access/svc", "etl", nil); err != nil {
			t.Fatal(err)
		}
	}
	last := clock.Now()
	b.Cleanup(context.Background())

	// A new backend over the same storage, as after a restart or a leader change.
	b2, s2, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	got := lcRead(t, b2, s2, "svc")
	if got["access_count"] != int64(n) || got["last_accessed"] != last.Format(time.RFC3339) {
		t.Fatalf("after restart: access_count %v last_accessed %v", got["access_count"], got["last_accessed"])
	}
	if got["suspend_at"] != last.Add(180*day).Format(time.RFC3339) {
		t.Fatalf("after restart suspend_at %v: the renewed window was lost", got["suspend_at"])
	}
	events := lcLogs(t, b2, s2, "svc", map[string]any{"integration": "etl"})
	if len(events) != n {
		t.Fatalf("after restart %d events of etl, want %d", len(events), n)
	}
}

func TestEventsLoggedForChangesAndTokens(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if fail.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"at-1","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(provider.Close)
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{events: events})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", map[string]any{
		"type": "oauth2_client_credentials", "token_url": provider.URL + "/token", "client_id": "id", "client_secret": "secret",
	})
	clock.Advance(time.Minute)
	resp := lcAccess(t, b, s, "cc")
	if resp.Data["access_token"] != "at-1" {
		t.Fatalf("access: not the minted token (%s)", outcome(resp, nil))
	}
	clock.Advance(time.Minute)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", map[string]any{
		"token_url": provider.URL + "/token2", "client_id": "id2", "client_secret": "secret",
	})
	fail.Store(true)
	clock.Advance(2 * time.Hour) // the cached token is gone with the update anyway
	if _, err := lcDo(b, s, logical.ReadOperation, "access/cc", "", nil); err == nil {
		t.Fatal("access with a refused grant succeeded")
	}

	got := lcLogs(t, b, s, "cc", nil)
	var kinds []string
	for i := len(got) - 1; i >= 0; i-- {
		kinds = append(kinds, got[i]["event"].(string)+"/"+got[i]["status"].(string))
	}
	want := []string{
		"created/success", "token_minted/success", "access/success", "updated/success",
		"refresh_failed/failure", "access/failure",
	}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Fatalf("log:\n got %v\nwant %v", kinds, want)
	}
	if st := lcRead(t, b, s, "cc"); st["status"] != string(lifecycle.StatusNeedsReauth) || st["health"] != lifecycle.HealthRed {
		t.Fatalf("after invalid_client: status %v health %v", st["status"], st["health"])
	}
	if !lcSentEvent(events, "integrations/credential-needs_reauth", "cc") {
		t.Fatalf("no needs_reauth Vault event: %v", lcEventTypes(events))
	}
}

func TestBackgroundWorkOnlyWhereWritesAreSafe(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	standby := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	b, s, clock := newBackendWith(t, backendOptions{storage: cs, system: standby})
	// Seed a credential long overdue, as the active node would have written it.
	c := &credential{Name: "old", Type: "basic", Values: catalogType(t, "basic").Compact(map[string]any{"username": "u", "password": "p"}),
		CreatedAt: clock.Now(), UpdatedAt: clock.Now(), State: lifecycle.NewState(clock.Now())}
	entry, _ := logical.StorageEntryJSON(credentialPrefix+"old", c)
	if err := s.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	clock.Advance(200 * day)
	b.activity.recorder.Access("old", clock.Now(), "x", true, "")
	cs.reset()
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	if err := b.flushUsage(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if cs.writes() != 0 || cs.reads() != 0 {
		t.Fatalf("on a performance standby the sweep and flush touched storage: %d reads, %d writes", cs.reads(), cs.writes())
	}
}

// TestConcurrentAccessFlushSweep runs readers against flushes and sweeps; under -race it
// checks the locking, and at the end that no access was lost or refused.
func TestConcurrentAccessFlushSweep(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	const creds, readers, reads = 8, 8, 150
	for i := 0; i < creds; i++ {
		lcCreateBasic(t, b, s, fmt.Sprintf("c%d", i), nil)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bgErr atomic.Value
	background := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(); err != nil {
					bgErr.Store(err)
				}
			}
		}()
	}
	background(func() error { return b.flushUsage(ctx, s) })
	background(func() error { return b.periodic(ctx, &logical.Request{Storage: s}) })
	background(func() error {
		clock.Advance(time.Minute) // time passes, but never a whole window
		_, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "alerts", Storage: s})
		return err
	})

	// A watcher: the count a management read shows never goes backwards, flush or not.
	var went atomic.Value
	background(func() error {
		var last int64
		for i := 0; i < 50; i++ {
			resp, err := lcDo(b, s, logical.ReadOperation, "credentials/c0", "", nil)
			if err != nil {
				return err
			}
			n := resp.Data["access_count"].(int64)
			if n < last {
				went.Store(fmt.Sprintf("access_count went from %d to %d", last, n))
			}
			last = n
		}
		return nil
	})

	var readersWG sync.WaitGroup
	var refused atomic.Int64
	for r := 0; r < readers; r++ {
		readersWG.Add(1)
		go func(r int) {
			defer readersWG.Done()
			for i := 0; i < reads; i++ {
				name := fmt.Sprintf("c%d", (r+i)%creds)
				resp, err := lcDo(b, s, logical.ReadOperation, "access/"+name, fmt.Sprintf("reader-%d", r), nil)
				if err != nil || resp == nil || resp.IsError() {
					refused.Add(1)
				}
				if i%25 == 0 {
					_, _ = lcDo(b, s, logical.ReadOperation, "credentials/"+name, "", nil)
				}
			}
		}(r)
	}
	readersWG.Wait()
	close(stop)
	wg.Wait()
	if err := bgErr.Load(); err != nil {
		t.Fatalf("background work failed: %v", err)
	}
	if msg := went.Load(); msg != nil {
		t.Fatal(msg)
	}
	if refused.Load() != 0 {
		t.Fatalf("%d reads refused", refused.Load())
	}
	lcFlush(t, b, s)
	var total int64
	for i := 0; i < creds; i++ {
		name := fmt.Sprintf("c%d", i)
		u := lcStoredUsage(t, s, name)
		total += u.Count
		if got := lcRead(t, b, s, name)["access_count"]; got != u.Count {
			t.Fatalf("%s: view count %v, stored %d", name, got, u.Count)
		}
		if st := lcRead(t, b, s, name)["status"]; st != string(lifecycle.StatusActive) {
			t.Fatalf("%s: status %v after constant use", name, st)
		}
	}
	if total != readers*reads {
		t.Fatalf("stored %d accesses, want %d", total, readers*reads)
	}
}

// seedCredentials stores n copies of a credential made through the API, named
// <prefix>00000…, created age ago; it writes storage directly so that 10,000 take
// a moment. It returns the names.
func lcSeed(t testing.TB, s logical.Storage, clock *testClock, prefix string, n int, age time.Duration) []string {
	t.Helper()
	tmplB, tmplS, _ := newBackendWith(t, backendOptions{clock: clock})
	lcCreateBasic(t, tmplB, tmplS, "template", nil)
	tmpl, err := tmplB.credentials.get(context.Background(), tmplS, "template")
	if err != nil || tmpl == nil {
		t.Fatalf("template: %v", err)
	}
	names := make([]string, n)
	at := clock.Now().Add(-age)
	for i := range names {
		c := tmpl.clone()
		c.Name = fmt.Sprintf("%s%05d", prefix, i)
		c.CreatedAt, c.UpdatedAt, c.State = at, at, lifecycle.NewState(at)
		entry, err := logical.StorageEntryJSON(credentialPrefix+c.Name, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(context.Background(), entry); err != nil {
			t.Fatal(err)
		}
		names[i] = c.Name
	}
	return names
}

func TestSweepCostFollowsDueCredentials(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	clock := newTestClock()
	lcSeed(t, cs, clock, "idle-", 10000, 0)
	due := lcSeed(t, cs, clock, "due-", 5, 95*day) // the 90-day warning is due
	b, s, _ := newBackendWith(t, backendOptions{storage: cs, clock: clock, initialize: true})
	if got := len(b.activity.index.Due(never, 0)); got != 10005 {
		t.Fatalf("index holds %d credentials, want 10005", got)
	}
	ctx := context.Background()

	cs.reset()
	if err := b.periodic(ctx, &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	if r, w := cs.reads(), cs.writes(); r >= 50 || w != int64(len(due)) {
		t.Fatalf("sweep with %d due of 10,005: %d reads, %d writes", len(due), r, w)
	}
	for _, name := range due {
		if st := lcRead(t, b, s, name); st["health"] != lifecycle.HealthYellow {
			t.Fatalf("%s not warned: %v", name, st["health"])
		}
	}
	lcFlush(t, b, s) // the warnings' log events

	// Nothing due: the sweep costs the same however many credentials are idle.
	for run := 0; run < 3; run++ {
		clock.Advance(time.Hour)
		cs.reset()
		if err := b.periodic(ctx, &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		if r, w := cs.reads(), cs.writes(); r >= 50 || w != 0 {
			t.Fatalf("idle sweep %d: %d reads, %d writes", run, r, w)
		}
	}
}

// TestRenewalDoesNotDependOnTheUsageLog: an access that was served renews the
// inactivity window even while its log entry cannot be stored; the log entry is kept
// for the next flush.
func TestRenewalDoesNotDependOnTheUsageLog(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	clock := newTestClock()
	b, s, _ := newBackendWith(t, backendOptions{storage: cs, clock: clock})
	lcCreateBasic(t, b, s, "svc", nil)
	lcFlush(t, b, s)
	clock.Advance(100 * day)
	lcAccess(t, b, s, "svc")
	served := clock.Now()
	cs.failPutsUnder.Store(usagePrefix)
	if err := b.flushUsage(context.Background(), s); err == nil {
		t.Fatal("flush with the usage log unwritable reported no error")
	}
	stored, err := s.Get(context.Background(), credentialPrefix+"svc")
	if err != nil {
		t.Fatal(err)
	}
	var c credential
	if err := stored.DecodeJSON(&c); err != nil {
		t.Fatal(err)
	}
	if !c.State.ActivityAt.Equal(served) {
		t.Fatalf("stored window starts %v, want the served access %v", c.State.ActivityAt, served)
	}
	// Unloaded while the log is still unwritable: the access is lost from the log,
	// not from the window.
	b.Cleanup(context.Background())
	b2, s2, _ := newBackendWith(t, backendOptions{storage: cs, clock: clock})
	if got := lcRead(t, b2, s2, "svc")["suspend_at"]; got != served.Add(180*day).Format(time.RFC3339) {
		t.Fatalf("after restart suspend_at %v, want %v", got, served.Add(180*day).Format(time.RFC3339))
	}
}

// TestUsageLogRetriedAfterRenewal: once the usage log is writable again, the access
// whose log entry failed is stored exactly once.
func TestUsageLogRetriedAfterRenewal(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	b, s, clock := newBackendWith(t, backendOptions{storage: cs})
	lcCreateBasic(t, b, s, "svc", nil)
	lcFlush(t, b, s)
	clock.Advance(time.Hour)
	lcAccess(t, b, s, "svc")
	cs.failPutsUnder.Store(usagePrefix)
	if err := b.flushUsage(context.Background(), s); err == nil {
		t.Fatal("flush reported no error")
	}
	cs.failPutsUnder.Store("")
	lcFlush(t, b, s)
	if u := lcStoredUsage(t, s, "svc"); u.Count != 1 || len(u.Filter(usage.Filter{Event: usage.EventAccess})) != 1 {
		t.Fatalf("stored count %d, events %v", u.Count, u.Events)
	}
}

// TestUsageLogStaysUnderEntryLimit: at the largest log_size config allows, a log full
// of the largest events a caller can cause stays under maxUsageEntry (512 KiB, half of
// Vault's 1 MiB raft entry limit); one more is refused by name.
func TestUsageLogStaysUnderEntryLimit(t *testing.T) {
	t.Parallel()
	if maxLogSize < defaultLogSize {
		t.Fatalf("maxLogSize %d is below the default log_size %d", maxLogSize, defaultLogSize)
	}
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": maxLogSize})
	resp := call(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": maxLogSize + 1})
	wantFieldError(t, resp, "log_size")
	if msg := resp.Error().Error(); !strings.Contains(msg, fmt.Sprint(maxLogSize)) {
		t.Fatalf("refusal %q does not state the cap %d", msg, maxLogSize)
	}
	lcCreateBasic(t, b, s, "svc", nil)
	hostile := strings.Repeat("<\x00", 300) // each character JSON-escapes to 6 bytes
	// Rounds of as many events as the recorder holds between flushes.
	for round := 0; round*usage.DefaultMaxPending < maxLogSize+50; round++ {
		for range usage.DefaultMaxPending / 2 {
			clock.Advance(time.Second)
			b.activity.recorder.Access("svc", clock.Now(), hostile, true, hostile)
			b.recordEvent("svc", hostile, false, hostile, hostile)
		}
		lcFlush(t, b, s)
	}
	entry, err := s.Get(context.Background(), usagePrefix+"svc")
	if err != nil || entry == nil {
		t.Fatalf("stored usage: %v %v", entry, err)
	}
	if len(entry.Value) > maxUsageEntry {
		t.Fatalf("stored usage takes %d bytes, over %d", len(entry.Value), maxUsageEntry)
	}
	if u := lcStoredUsage(t, s, "svc"); len(u.Events) != maxLogSize {
		t.Fatalf("stored %d events, want log_size %d", len(u.Events), maxLogSize)
	}
	t.Logf("log of %d maximal events: %d bytes (cap %d)", maxLogSize, len(entry.Value), maxUsageEntry)
}

// TestStoredLogSizeAboveTheCapIsHeldToIt: a log_size stored before the cap existed is
// held to it.
func TestStoredLogSizeAboveTheCapIsHeldToIt(t *testing.T) {
	t.Parallel()
	s := &logical.InmemStorage{}
	entry, err := logical.StorageEntryJSON(configPath, map[string]any{"log_size": 10000})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	b, _, _ := newBackendWith(t, backendOptions{storage: s})
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["log_size"]; got != maxLogSize {
		t.Fatalf("log_size in force %v, want the cap %d", got, maxLogSize)
	}
}

// reversedListStorage lists keys in reverse order: storage's List promises no order.
type reversedListStorage struct{ logical.Storage }

func (r reversedListStorage) List(ctx context.Context, prefix string) ([]string, error) {
	keys, err := r.Storage.List(ctx, prefix)
	slices.Reverse(keys)
	return keys, err
}

// TestUsageStoredLooksUpAnyOrder: the scan's set of names with stored usage answers
// for every one of them, and for no other, whatever order storage lists them in.
func TestUsageStoredLooksUpAnyOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := reversedListStorage{&logical.InmemStorage{}}
	us := newUsageStore(usage.NewRecorder(), names.NewTable())
	stored := []string{"a", "b-c", "m", "z-1", "z-10", "z-2"}
	for _, name := range stored {
		if err := us.put(ctx, s, name, &usage.Usage{Count: 1}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := us.stored(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range stored {
		if !keys.has(name) {
			t.Errorf("%s has stored usage, not found", name)
		}
	}
	for _, name := range []string{"", "b", "n", "z-3", "zz"} {
		if keys.has(name) {
			t.Errorf("%s has no stored usage, found", name)
		}
	}
}
