package backend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
)

// outboxStored reads the notifications waiting in storage, as stored, oldest first.
func outboxStored(t testing.TB, s logical.Storage) []notify.Entry {
	t.Helper()
	ctx := context.Background()
	ids, err := s.List(ctx, notify.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []notify.Entry
	for _, id := range ids {
		raw, err := s.Get(ctx, notify.Prefix+id)
		if err != nil {
			t.Fatal(err)
		}
		if raw == nil {
			continue
		}
		var e notify.Entry
		if err := raw.DecodeJSON(&e); err != nil || e.ID != id {
			continue // not the outbox's: it leaves it alone
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b notify.Entry) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// lcAlerts reads the alerts path.
func lcAlerts(t testing.TB, b logical.Backend, s logical.Storage) []map[string]any {
	t.Helper()
	return mustOK(t, b, s, logical.ReadOperation, "alerts", nil).Data["alerts"].([]map[string]any)
}

func alertsOf(alerts []map[string]any, reason string) []map[string]any {
	var out []map[string]any
	for _, a := range alerts {
		if a["reason"] == reason {
			out = append(out, a)
		}
	}
	return out
}

// TestOutboxKeepsWarningsThroughFailuresAndRestart: with the receiver down, the sweep
// still warns, suspends and purges on time; every notification waits in the outbox,
// alerts show each undelivered one (credential, event, attempts, queued time; no URL),
// and after an unload and a new backend on the same storage, the recovered receiver
// gets all of them, in order, once.
func TestOutboxKeepsWarningsThroughFailuresAndRestart(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	r := newLCReceiver(t, func(notify.Notification, int) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	storage := &logical.InmemStorage{}
	clock := newTestClock()
	b, s, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, config: map[string]any{
		"suspend_after": "10d", "purge_after": "20d", "warn_before": "5d",
	}})
	hookURL := r.URL + "/secret-path-T0KEN"
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": hookURL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	lcCreateBasic(t, b, s, "svc", nil)
	// Keep the receiver's own credential alive throughout.
	keepHook := func() { mustOK(t, b, s, logical.UpdateOperation, "credentials/hook/reset-inactivity", nil) }

	want := []string{"suspension-warning", "suspended", "purge-warning", "purged"}
	for i := range want {
		clock.Advance(5 * day)
		keepHook()
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		b.outbox.Deliver(context.Background()) // the receiver answers 503
		if got := len(outboxStored(t, s)); got != i+1 {
			t.Fatalf("step %d: %d notifications waiting, want %d", i, got, i+1)
		}
	}
	if lcRead(t, b, s, "svc") != nil {
		t.Fatal("a dead notification target held up the purge")
	}
	undelivered := alertsOf(lcAlerts(t, b, s), notify.AlertUndelivered)
	var events []string
	for _, a := range undelivered {
		if a["name"] != "svc" || a["queued_at"] == "" {
			t.Errorf("alert %v", a)
		}
		// The receiver is down: each pass tries the oldest and stops there.
		if wantTried := a["event"] == "suspension-warning"; (a["attempts"].(int) == len(want)) != wantTried {
			t.Errorf("alert %v: attempts", a)
		}
		if text := fmt.Sprint(a); strings.Contains(text, "secret-path") || strings.Contains(text, "127.0.0.1") {
			t.Errorf("alert shows the target URL: %v", a)
		}
		events = append(events, a["event"].(string))
	}
	slices.Sort(events)
	if sorted := slices.Sorted(slices.Values(want)); !slices.Equal(events, sorted) {
		t.Fatalf("undelivered alerts for %v, want %v", events, sorted)
	}
	for _, a := range undelivered {
		if wantRed := a["event"] == "purge-warning" || a["event"] == "purged"; (a["severity"] == "red") != wantRed {
			t.Errorf("alert %v: severity", a)
		}
	}

	// Unload, then start again on the same storage with the receiver back.
	b.Cleanup(context.Background())
	if got := len(outboxStored(t, storage)); got != len(want) {
		t.Fatalf("after unload %d notifications stored, want %d", got, len(want))
	}
	for len(r.got) > 0 {
		<-r.got // the attempts answered 503
	}
	before := r.count("svc")
	up.Store(true)
	clock.Advance(notify.MaxBackoff)
	b2, s2, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	var got []string
	for range want {
		got = append(got, r.next(t).body.Event)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v in order", got, want)
	}
	// A pass of our own waits for the notifier's (one pass at a time) and finds
	// nothing left to post.
	b2.outbox.Deliver(context.Background())
	if left := outboxStored(t, storage); len(left) != 0 {
		t.Fatalf("delivered notifications left in the outbox: %+v", left)
	}
	if n := len(alertsOf(lcAlerts(t, b2, s2), notify.AlertUndelivered)); n != 0 {
		t.Fatalf("%d undelivered alerts after delivery", n)
	}
	if extra := r.count("svc") - before; extra != len(want) {
		t.Fatalf("%d posts after the restart, want %d (each once)", extra, len(want))
	}
}

// TestOutboxFullNeverDropsAPurgeWarningSilently: a full outbox makes room for a purge
// warning by dropping the oldest notification of another kind; when only purge
// notifications wait, the new one is refused. Each drop is logged and shown in alerts.
func TestOutboxFullNeverDropsAPurgeWarningSilently(t *testing.T) {
	t.Parallel()
	logs := &lcLogBuffer{}
	b, s, _ := newBackendWith(t, backendOptions{logs: logs})
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": "http://127.0.0.1:1/"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	ctx := context.Background()
	for i := range notify.MaxOutbox {
		b.outbox.Enqueue(ctx, notify.Notification{Event: "suspension-warning", Credential: fmt.Sprintf("c%04d", i)})
	}
	b.outbox.Enqueue(ctx, notify.Notification{Event: "purge-warning", Credential: "doomed"})
	stored := outboxStored(t, s)
	if len(stored) != notify.MaxOutbox || stored[len(stored)-1].Notification.Credential != "doomed" || stored[0].Notification.Credential != "c0001" {
		t.Fatalf("outbox of %d, first %s, last %s", len(stored), stored[0].Notification.Credential, stored[len(stored)-1].Notification.Credential)
	}
	dropped := alertsOf(lcAlerts(t, b, s), notify.AlertDropped)
	if len(dropped) != 1 || dropped[0]["name"] != "c0000" || dropped[0]["severity"] != "red" || !strings.Contains(dropped[0]["detail"].(string), "1 notifications dropped") {
		t.Fatalf("dropped alerts %v", dropped)
	}
	// A suspension warning finds no room.
	b.outbox.Enqueue(ctx, notify.Notification{Event: "suspension-warning", Credential: "late"})
	if got := len(outboxStored(t, s)); got != notify.MaxOutbox {
		t.Fatalf("outbox of %d", got)
	}
	// Purge notifications push out the 999 suspension warnings left, the last of them
	// finds no room; then only purge notifications wait, and the newest purge warning
	// is refused too. Every one of these is counted: 1 + 1 + 999 + 1 + 1.
	for i := range notify.MaxOutbox {
		b.outbox.Enqueue(ctx, notify.Notification{Event: "purged", Credential: fmt.Sprintf("p%04d", i)})
	}
	b.outbox.Enqueue(ctx, notify.Notification{Event: "purge-warning", Credential: "refused"})
	dropped = alertsOf(lcAlerts(t, b, s), notify.AlertDropped)
	if len(dropped) != 1 || dropped[0]["name"] != "refused" || !strings.Contains(dropped[0]["detail"].(string), fmt.Sprintf("%d notifications dropped", notify.MaxOutbox+3)) {
		t.Fatalf("dropped alerts %v", dropped)
	}
	if !strings.Contains(logs.String(), "credential=refused") || !strings.Contains(logs.String(), "outbox full") {
		t.Fatal("the refused purge warning was not logged")
	}
	for _, e := range outboxStored(t, s) {
		if !notify.PurgeRelated(e.Notification.Event) {
			t.Fatalf("a %s outlived the purge notifications", e.Notification.Event)
		}
	}
}

// TestOutboxOnlyWhereWritesAreSafe: a performance standby neither writes the outbox nor
// posts from it.
func TestOutboxOnlyWhereWritesAreSafe(t *testing.T) {
	t.Parallel()
	r := newLCReceiver(t, nil)
	cs := newCountingStorage()
	active, s, _ := newBackendWith(t, backendOptions{storage: cs})
	mustOK(t, active, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
	mustOK(t, active, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	active.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: "svc"})
	standby := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	b, _, clock := newBackendWith(t, backendOptions{storage: cs, system: standby})
	cs.reset()
	b.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: "other"})
	b.outbox.Deliver(context.Background())
	if cs.writes() != 0 || r.count("svc")+r.count("other") != 0 {
		t.Fatalf("a standby wrote %d times and posted %d times", cs.writes(), r.count("svc")+r.count("other"))
	}
	// The standby's alerts show what has waited too long on the active node.
	if got := alertsOf(lcAlerts(t, b, cs), notify.AlertUndelivered); len(got) != 0 {
		t.Fatalf("a fresh, untried notification is already an alert: %v", got)
	}
	clock.Advance(notify.StaleAfter)
	if got := alertsOf(lcAlerts(t, b, cs), notify.AlertUndelivered); len(got) != 1 || got[0]["name"] != "svc" {
		t.Fatalf("standby alerts %v, want the notification waiting for svc", got)
	}
}

// TestOutboxPassDoesNotHoldUpTheSweep: while a pass waits on a receiver that hangs,
// the sweep and new notifications go ahead.
func TestOutboxPassDoesNotHoldUpTheSweep(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	r := newLCReceiver(t, func(notify.Notification, int) int {
		<-release
		return http.StatusOK
	})
	b, s, clock := newBackendWith(t, backendOptions{})
	t.Cleanup(func() { close(release) })
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	lcCreateBasic(t, b, s, "svc", nil)
	b.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: "first"})
	passDone := make(chan struct{})
	go func() {
		defer close(passDone)
		b.outbox.Deliver(context.Background())
	}()
	r.next(t) // the pass is in its POST
	clock.Advance(90 * day)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/hook/reset-inactivity", nil)
	if err := b.sweep(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if c := lcRead(t, b, s, "svc"); c == nil {
		t.Fatal("svc gone")
	}
	found := false
	for _, e := range outboxStored(t, s) {
		found = found || e.Notification.Credential == "svc"
	}
	if !found {
		t.Fatal("the sweep's warning is not in the outbox")
	}
	select {
	case <-passDone:
		t.Fatal("the pass ended before the receiver answered")
	default:
	}
}
