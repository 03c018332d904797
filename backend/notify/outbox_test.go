package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// mount is a fake of what Deps reads: storage, a clock the test moves, a node whose
// write safety the test switches, the settings, one target, and the metrics counted.
type mount struct {
	s       *logical.InmemStorage
	standby atomic.Bool

	mu        sync.Mutex
	now       time.Time
	target    Target
	attempted []string
	dropped   int

	panicOnAttempt atomic.Bool // Attempted panics, as a bug in a metric would
}

func (m *mount) clock() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *mount) advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.mu.Unlock()
}

func newTestOutbox(t *testing.T) (*Outbox, *mount) {
	t.Helper()
	m := &mount{s: &logical.InmemStorage{}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), target: Target{URL: "http://127.0.0.1:1/"}}
	logger := hclog.NewNullLogger()
	o := New(Deps{
		Storage:   func() logical.Storage { return m.s },
		Now:       m.clock,
		Logger:    func() hclog.Logger { return logger },
		WriteSafe: func() bool { return !m.standby.Load() },
		Settings: func(context.Context, logical.Storage) (Settings, error) {
			return Settings{Credential: "hook", Timeout: 10 * time.Second}, nil
		},
		Target: func(context.Context, logical.Storage, string) (Target, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.target, nil
		},
		Transport: func(string) (http.RoundTripper, error) { return http.DefaultTransport, nil },
		Attempted: func(failure string) {
			if m.panicOnAttempt.Load() {
				panic("a bug while counting an attempt")
			}
			m.mu.Lock()
			m.attempted = append(m.attempted, failure)
			m.mu.Unlock()
		},
		Dropped: func() { m.mu.Lock(); m.dropped++; m.mu.Unlock() },
		Backoff: func(int) time.Duration { return time.Minute },
	})
	return o, m
}

// stored reads the outbox's entries as stored, oldest first.
func stored(t *testing.T, s logical.Storage) []Entry {
	t.Helper()
	ctx := context.Background()
	ids, err := s.List(ctx, Prefix)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	var out []Entry
	for _, id := range ids {
		raw, err := s.Get(ctx, Prefix+id)
		if err != nil {
			t.Fatal(err)
		}
		var e Entry
		if err := raw.DecodeJSON(&e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestEnqueueCoalescesPerCredentialAndKind: a notification joins the waiting one of its
// credential and kind (the later message and time, one count more), and another kind
// waits on its own.
func TestEnqueueCoalescesPerCredentialAndKind(t *testing.T) {
	t.Parallel()
	o, m := newTestOutbox(t)
	ctx := context.Background()
	first := RFC3339(m.clock())
	o.Enqueue(ctx, Notification{Event: "suspended", Credential: "svc", Message: "one", Time: first})
	m.advance(time.Minute)
	last := RFC3339(m.clock())
	o.Enqueue(ctx, Notification{Event: "suspended", Credential: "svc", Message: "two", Time: last})
	o.Enqueue(ctx, Notification{Event: "suspension-warning", Credential: "svc", Message: "w", Time: last})
	got := stored(t, m.s)
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2: %+v", len(got), got)
	}
	n := got[0].Notification
	if n.Count != 2 || n.Message != "two" || n.FirstTime != first || n.LastTime != last || got[1].Notification.Count != 1 {
		t.Fatalf("coalesced %+v, other %+v", n, got[1].Notification)
	}
}

// TestEnqueueKeepsEachCredentialsShare: beyond MaxPerCredential entries a credential's
// new notification takes the place of its own oldest; the drop is counted, stored and
// shown in the alerts. A full outbox gives way to a purge warning only.
func TestEnqueueKeepsEachCredentialsShare(t *testing.T) {
	t.Parallel()
	o, m := newTestOutbox(t)
	ctx := context.Background()
	for i := range MaxPerCredential + 1 {
		o.Enqueue(ctx, Notification{Event: fmt.Sprintf("kind-%d", i), Credential: "noisy"})
	}
	got := stored(t, m.s)
	if len(got) != MaxPerCredential || got[0].Notification.Event != "kind-1" || m.dropped != 1 {
		t.Fatalf("%d entries from %s, %d dropped", len(got), got[0].Notification.Event, m.dropped)
	}
	alerts, err := o.Alerts(ctx, m.s, m.clock())
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Reason != AlertDropped || alerts[0].Name != "noisy" {
		t.Fatalf("alerts %+v, want the drop", alerts)
	}

	for i := len(got); i < MaxOutbox; i++ {
		o.Enqueue(ctx, Notification{Event: "suspended", Credential: fmt.Sprintf("c%04d", i)})
	}
	o.Enqueue(ctx, Notification{Event: "suspended", Credential: "newcomer"})
	o.Enqueue(ctx, Notification{Event: "purge-warning", Credential: "doomed"})
	names := map[string]bool{}
	for _, e := range stored(t, m.s) {
		names[e.Notification.Credential] = true
	}
	if len(stored(t, m.s)) != MaxOutbox || names["newcomer"] || !names["doomed"] {
		t.Fatalf("a full outbox: newcomer queued %v, doomed queued %v", names["newcomer"], names["doomed"])
	}
}

// TestUpgradeOfAnOlderVersionsEntries: entries stored before coalescing (no count,
// first_time, last_time; two of one credential and kind) load as one entry counting
// both, in the older one's place, and one alone counts once at its own time. The
// duplicate leaves storage.
func TestUpgradeOfAnOlderVersionsEntries(t *testing.T) {
	t.Parallel()
	o, m := newTestOutbox(t)
	ctx := context.Background()
	for i, c := range []string{"svc", "svc", "other"} {
		at := fmt.Sprintf("2025-12-31T1%d:00:00Z", i)
		id := fmt.Sprintf("%020d-%020d-aaaaaaaaaaaa", i+1, i+1)
		raw := `{"id":"` + id + `","notification":{"event":"suspended","credential":"` + c + `","message":"m","mount":"integrations/","time":"` + at + `"},` +
			`"queued_at":"` + at + `","attempts":2,"next_attempt":"` + at + `"}`
		if err := m.s.Put(ctx, &logical.StorageEntry{Key: Prefix + id, Value: []byte(raw)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := o.Load(ctx, m.s)
	if err != nil || n != 2 {
		t.Fatalf("loaded %d (%v), want 2", n, err)
	}
	got := stored(t, m.s)
	if len(got) != 2 || got[0].Notification.Count != 2 || got[0].Notification.FirstTime != "2025-12-31T10:00:00Z" ||
		got[0].Notification.LastTime != "2025-12-31T11:00:00Z" || got[0].Attempts != 2 {
		t.Fatalf("stored after load: %+v", got)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.entries {
		if e.Notification.Credential == "other" && (e.Notification.Count != 1 || e.Notification.FirstTime != "2025-12-31T12:00:00Z") {
			t.Fatalf("a lone entry of the older version: %+v, want one occurrence at its time", e.Notification)
		}
	}
}

// TestDeliverBacksOffAndRemovesWhatItDelivered: a failed post is tried again after the
// backoff, not before, and the outbox waits it out when the receiver itself failed; a
// delivered notification leaves storage. Each attempt is counted.
func TestDeliverBacksOffAndRemovesWhatItDelivered(t *testing.T) {
	t.Parallel()
	o, m := newTestOutbox(t)
	var posts atomic.Int64
	var got Notification
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if posts.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
	}))
	t.Cleanup(srv.Close)
	m.target = Target{URL: srv.URL}
	ctx := context.Background()
	o.Enqueue(ctx, Notification{Event: "suspended", Credential: "svc", Message: "m"})
	o.Deliver(ctx)
	e := stored(t, m.s)
	if len(e) != 1 || e[0].Attempts != 1 || e[0].LastFailure != "http_503" || !e[0].NextAttempt.Equal(m.clock().Add(time.Minute)) {
		t.Fatalf("after a failed attempt: %+v", e)
	}
	o.Deliver(ctx) // within the backoff: nothing
	if posts.Load() != 1 {
		t.Fatalf("%d posts within the backoff", posts.Load())
	}
	m.advance(time.Minute)
	o.Deliver(ctx)
	if posts.Load() != 2 || got.Credential != "svc" || got.Count != 1 || len(stored(t, m.s)) != 0 {
		t.Fatalf("%d posts, delivered %+v, %d left", posts.Load(), got, len(stored(t, m.s)))
	}
	if fmt.Sprint(m.attempted) != "[http_503 ]" {
		t.Fatalf("attempts counted %q", m.attempted)
	}
}

// TestNothingWhereWritesAreNotSafe: a node that may not write neither queues nor
// delivers.
func TestNothingWhereWritesAreNotSafe(t *testing.T) {
	t.Parallel()
	o, m := newTestOutbox(t)
	ctx := context.Background()
	o.Enqueue(ctx, Notification{Event: "suspended", Credential: "svc"})
	m.standby.Store(true)
	o.Enqueue(ctx, Notification{Event: "purged", Credential: "other"})
	o.Deliver(ctx)
	if got := stored(t, m.s); len(got) != 1 || got[0].Attempts != 0 || len(m.attempted) != 0 {
		t.Fatalf("a standby queued or delivered: %+v, attempts %v", got, m.attempted)
	}
}
