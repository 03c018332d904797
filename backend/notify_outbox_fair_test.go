package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
)

// notifyTo makes the webhook at url the notify credential of b.
func notifyTo(t *testing.T, b *integrationsBackend, s logical.Storage, url string) {
	t.Helper()
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": url})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
}

// TestOutboxCoalescesPerCredentialAndKind: 2,000 notifications of one credential wait
// as one entry per event kind, carrying how many they were and the first and last
// time, which the delivered body says; the credential never holds more than its share,
// a purge warning still finds room in it, and another credential's notification is
// queued whatever the first one did.
func TestOutboxCoalescesPerCredentialAndKind(t *testing.T) {
	t.Parallel()
	r := newLCReceiver(t, nil)
	logs := &lcLogBuffer{}
	b, s, clock := newBackendWith(t, backendOptions{logs: logs})
	notifyTo(t, b, s, r.URL)
	ctx := context.Background()

	first := clock.Now()
	for i := range 2000 {
		b.deliver(ctx, notify.Notification{Event: "needs_reauth", Credential: "noisy", Message: fmt.Sprintf("refusal %d", i)})
		clock.Advance(time.Second)
	}
	last := clock.Now().Add(-time.Second)
	stored := outboxStored(t, s)
	if len(stored) != 1 {
		t.Fatalf("%d entries for 2000 notifications of one kind, want 1", len(stored))
	}
	n := stored[0].Notification
	if n.Count != 2000 || n.FirstTime != rfc3339(first) || n.LastTime != rfc3339(last) || n.Time != rfc3339(last) || n.Message != "refusal 1999" {
		t.Fatalf("coalesced entry %+v", n)
	}

	// Eleven other kinds: the credential's share holds eight entries; each new kind
	// beyond it takes the place of the credential's oldest, and the drop is recorded.
	for i := range 11 {
		b.deliver(ctx, notify.Notification{Event: fmt.Sprintf("kind-%02d", i), Credential: "noisy", Message: "m"})
	}
	if got := outboxCount(t, s, "noisy", ""); got != notify.MaxPerCredential {
		t.Fatalf("noisy holds %d entries, want its share of %d", got, notify.MaxPerCredential)
	}
	if got := outboxCount(t, s, "noisy", "needs_reauth"); got != 0 {
		t.Fatal("the oldest entry of the credential was not the one to go")
	}
	if !strings.Contains(logs.String(), "per_credential=8") {
		t.Error("a drop from the credential's share was not logged")
	}
	// A purge warning takes the place of the credential's oldest entry, and a second
	// one is coalesced with it.
	b.deliver(ctx, notify.Notification{Event: "purge-warning", Credential: "noisy", Message: "purge soon"})
	b.deliver(ctx, notify.Notification{Event: "purge-warning", Credential: "noisy", Message: "purge sooner"})
	if got := outboxCount(t, s, "noisy", "purge-warning"); got != 1 || outboxCount(t, s, "noisy", "") != notify.MaxPerCredential {
		t.Fatalf("%d purge warnings among %d entries of noisy", got, outboxCount(t, s, "noisy", ""))
	}
	// Another credential's warning is queued.
	b.deliver(ctx, notify.Notification{Event: "suspension-warning", Credential: "quiet", Message: "q"})
	if outboxCount(t, s, "quiet", "suspension-warning") != 1 {
		t.Fatal("another credential's warning was not queued")
	}

	// Delivered, the coalesced purge warning says how many it stands for.
	b.outbox.Deliver(ctx)
	var purge *notify.Notification
	for range notify.MaxPerCredential + 1 {
		got := r.next(t).body
		if got.Event == "purge-warning" {
			purge = &got
		}
		if got.Count < 1 || got.FirstTime == "" || got.LastTime == "" {
			t.Errorf("delivered %+v without its tally", got)
		}
	}
	if purge == nil || purge.Count != 2 || purge.Message != "purge sooner" {
		t.Fatalf("delivered purge warning %+v, want the later message counting 2", purge)
	}
}

// TestOutboxFullOfCredentialsSharesStillPrefersPurges: with many credentials each
// inside its share, a full outbox still gives way to a purge warning, as before.
func TestOutboxFullOfCredentialsSharesStillPrefersPurges(t *testing.T) {
	t.Parallel()
	b, s, _ := newBackendWith(t, backendOptions{})
	notifyTo(t, b, s, "http://127.0.0.1:1/")
	ctx := context.Background()
	for i := range notify.MaxOutbox {
		b.deliver(ctx, notify.Notification{Event: fmt.Sprintf("kind-%d", i%notify.MaxPerCredential), Credential: fmt.Sprintf("c%04d", i/notify.MaxPerCredential)})
	}
	if got := len(outboxStored(t, s)); got != notify.MaxOutbox {
		t.Fatalf("outbox of %d", got)
	}
	b.deliver(ctx, notify.Notification{Event: "suspended", Credential: "newcomer"})
	b.deliver(ctx, notify.Notification{Event: "purge-warning", Credential: "doomed"})
	if outboxCount(t, s, "newcomer", "") != 0 || outboxCount(t, s, "doomed", "purge-warning") != 1 || len(outboxStored(t, s)) != notify.MaxOutbox {
		t.Fatal("a full outbox did not refuse the suspension and make room for the purge warning")
	}
}

// TestOutboxEntriesOfThePreviousVersionDeliver: entries stored before coalescing (no
// count, first_time, last_time; two of one credential and kind) load, are folded into
// the older one (its place and attempts kept), and a new notification of that kind
// joins them: one delivery counting three, from the first's time to the last's.
func TestOutboxEntriesOfThePreviousVersionDeliver(t *testing.T) {
	t.Parallel()
	r := newLCReceiver(t, nil)
	storage := &logical.InmemStorage{}
	b, s, clock := newBackendWith(t, backendOptions{storage: storage})
	notifyTo(t, b, s, r.URL)
	ctx := context.Background()
	old := []struct{ id, time string }{
		{"00000000000000000001-00000000000000000001-aaaaaaaaaaaa", "2025-12-31T10:00:00Z"},
		{"00000000000000000002-00000000000000000002-bbbbbbbbbbbb", "2025-12-31T11:00:00Z"},
	}
	for _, o := range old {
		raw := `{"id":"` + o.id + `","notification":{"event":"suspended","credential":"svc","type":"basic",` +
			`"message":"Credential suspended.","mount":"integrations/","time":"` + o.time + `"},` +
			`"queued_at":"` + o.time + `","attempts":2,"next_attempt":"` + o.time + `","last_failure":"http_503"}`
		if err := storage.Put(ctx, &logical.StorageEntry{Key: notify.Prefix + o.id, Value: []byte(raw)}); err != nil {
			t.Fatal(err)
		}
	}
	b.deliver(ctx, notify.Notification{Event: "suspended", Credential: "svc", Type: "basic", Message: "Credential suspended again."})
	stored := outboxStored(t, s)
	if len(stored) != 1 || stored[0].ID != old[0].id || stored[0].Attempts != 2 || stored[0].Notification.Count != 3 ||
		stored[0].Notification.FirstTime != old[0].time || stored[0].Notification.LastTime != rfc3339(clock.Now()) {
		t.Fatalf("after a new notification the outbox holds %+v", stored)
	}
	b.outbox.Deliver(ctx)
	want := notify.Notification{Event: "suspended", Credential: "svc", Type: "basic", Message: "Credential suspended again.", Mount: "integrations/",
		Time: rfc3339(clock.Now()), Count: 3, FirstTime: old[0].time, LastTime: rfc3339(clock.Now())}
	if got := r.next(t).body; got != want {
		t.Errorf("delivered\n got %+v\nwant %+v", got, want)
	}
	if left := outboxStored(t, s); len(left) != 0 {
		t.Fatalf("%d entries left after delivery", len(left))
	}
	if n := r.count("svc"); n != 1 {
		t.Fatalf("%d posts, want 1", n)
	}
}

// TestOutboxFilledByThePreviousVersionMakesRoom: an outbox an older version filled
// with one credential's needs_reauth notifications loads as one entry counting them
// all, and another credential's warning is queued beside it.
func TestOutboxFilledByThePreviousVersionMakesRoom(t *testing.T) {
	t.Parallel()
	storage := &logical.InmemStorage{}
	ctx := context.Background()
	for i := range notify.MaxOutbox {
		id := fmt.Sprintf("%020d-%020d-%012x", i+1, i+1, i)
		at := time.Date(2025, 12, 31, 0, 0, i, 0, time.UTC).Format(time.RFC3339)
		raw := `{"id":"` + id + `","notification":{"event":"needs_reauth","credential":"noisy","type":"oauth2_authorization_code",` +
			`"message":"refused","mount":"integrations/","time":"` + at + `"},"queued_at":"` + at + `","attempts":0,"next_attempt":"` + at + `"}`
		if err := storage.Put(ctx, &logical.StorageEntry{Key: notify.Prefix + id, Value: []byte(raw)}); err != nil {
			t.Fatal(err)
		}
	}
	b, s, _ := newBackendWith(t, backendOptions{storage: storage})
	notifyTo(t, b, s, "http://127.0.0.1:1/")
	b.deliver(ctx, notify.Notification{Event: "suspension-warning", Credential: "quiet"})
	stored := outboxStored(t, s)
	if len(stored) != 2 || stored[0].Notification.Credential != "noisy" || stored[0].Notification.Count != notify.MaxOutbox ||
		stored[1].Notification.Credential != "quiet" {
		t.Fatalf("the outbox holds %d entries, the first %+v", len(stored), stored[0].Notification)
	}
}

// TestOutboxDoesNotCoalesceIntoAPostInFlight: a notification arriving while the
// entry of its kind is being posted waits in an entry of its own and is delivered
// after, instead of being folded into a post that has already left.
func TestOutboxDoesNotCoalesceIntoAPostInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	r := newLCReceiver(t, func(n notify.Notification, _ int) int {
		if n.Message == "first" {
			<-release
		}
		return http.StatusOK
	})
	b, s, _ := newBackendWith(t, backendOptions{})
	notifyTo(t, b, s, r.URL)
	ctx := context.Background()
	b.deliver(ctx, notify.Notification{Event: "needs_reauth", Credential: "svc", Message: "first"})
	passDone := make(chan struct{})
	go func() {
		defer close(passDone)
		b.outbox.Deliver(ctx)
	}()
	if got := r.next(t).body; got.Message != "first" || got.Count != 1 {
		t.Fatalf("first post %+v", got)
	}
	b.deliver(ctx, notify.Notification{Event: "needs_reauth", Credential: "svc", Message: "second"})
	close(release)
	<-passDone
	stored := outboxStored(t, s)
	if len(stored) != 1 || stored[0].Notification.Message != "second" || stored[0].Notification.Count != 1 {
		t.Fatalf("after the post the outbox holds %+v, want the second notification alone", stored)
	}
	b.outbox.Deliver(ctx)
	if got := r.next(t).body; got.Message != "second" || got.Count != 1 {
		t.Fatalf("second post %+v", got)
	}
}
