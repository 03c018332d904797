package backend

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
)

// eventTypes lists the Vault events sent so far, in order.
func lcEventTypes(m *logical.MockEventSender) []string {
	m.Lock()
	defer m.Unlock()
	var out []string
	for _, ev := range m.Events {
		out = append(out, string(ev.Type))
	}
	return out
}

// sentEvent reports whether an event of the type was sent about the credential.
func lcSentEvent(m *logical.MockEventSender, eventType, credential string) bool {
	m.Lock()
	defer m.Unlock()
	for _, ev := range m.Events {
		if string(ev.Type) == eventType && ev.Event.Metadata.Fields["credential"].GetStringValue() == credential {
			return true
		}
	}
	return false
}

// lcReceived is one request the notification receiver got.
type lcReceived struct {
	method, contentType, authorization, path string
	body                                     notify.Notification
}

// lcReceiver is a loopback HTTP server standing in for a webhook. status decides the
// answer to each request (nil: 200); every request is also sent on got.
type lcReceiver struct {
	*httptest.Server
	got chan lcReceived

	mu     sync.Mutex
	status func(n notify.Notification, attempt int) int
	counts map[string]int
}

func newLCReceiver(t *testing.T, status func(n notify.Notification, attempt int) int) *lcReceiver {
	t.Helper()
	r := &lcReceiver{got: make(chan lcReceived, 1024), status: status, counts: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var n notify.Notification
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("notification body %q: %v", body, err)
		}
		r.mu.Lock()
		r.counts[n.Credential]++
		attempt := r.counts[n.Credential]
		r.mu.Unlock()
		r.got <- lcReceived{method: req.Method, contentType: req.Header.Get("Content-Type"),
			authorization: req.Header.Get("Authorization"), path: req.URL.Path, body: n}
		code := http.StatusOK
		if r.status != nil {
			code = r.status(n, attempt)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *lcReceiver) count(credential string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[credential]
}

// next waits for the next request, failing the test after a generous bound.
func (r *lcReceiver) next(t *testing.T) lcReceived {
	t.Helper()
	select {
	case got := <-r.got:
		return got
	case <-time.After(20 * time.Second):
		t.Fatal("no notification arrived")
	}
	return lcReceived{}
}

func TestNotifyLogsAndSendsVaultEvents(t *testing.T) {
	t.Parallel()
	events := logical.NewMockEventSender()
	logs := &lcLogBuffer{}
	b, s, clock := newBackendWith(t, backendOptions{events: events, logs: logs})
	lcCreateBasic(t, b, s, "svc", nil)
	created := clock.Now()
	steps := []struct {
		advance   time.Duration
		eventType string
		message   string
		due       time.Time // when the announced step takes effect
	}{
		{90 * day, "integrations/credential-suspension-warning", "Credential will be suspended in 90 days because it isn't being used.", created.Add(180 * day)},
		{90 * day, "integrations/credential-suspended", "Credential suspended because it isn't being used.", created.Add(180 * day)},
		{95 * day, "integrations/credential-purge-warning", "Credential will be purged in 90 days because it isn't being used.", created.Add(365 * day)},
		{90 * day, "integrations/credential-purged", "Credential purged because it isn't being used.", created.Add(365 * day)},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		events.Lock()
		if len(events.Events) != i+1 {
			events.Unlock()
			t.Fatalf("step %d: %d events", i, len(events.Events))
		}
		ev := events.Events[i]
		events.Unlock()
		md := ev.Event.Metadata.Fields
		if string(ev.Type) != st.eventType || md["credential"].GetStringValue() != "svc" || md["type"].GetStringValue() != "basic" ||
			md["message"].GetStringValue() != st.message || md["due"].GetStringValue() != st.due.Format(time.RFC3339) {
			t.Errorf("step %d: event %s %v, want %s %q due %s", i, ev.Type, md, st.eventType, st.message, st.due.Format(time.RFC3339))
		}
		if out := logs.String(); !strings.Contains(out, st.message) || !strings.Contains(out, "credential=svc") {
			t.Errorf("step %d: %q not logged:\n%s", i, st.message, out)
		}
	}
}

func TestNotifyPostsToNotifyCredential(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		fields   func(url string) map[string]any
		wantAuth string
	}{
		{"webhook", func(url string) map[string]any { return map[string]any{"type": "webhook", "url": url} }, ""},
		{"bearer", func(url string) map[string]any {
			return map[string]any{"type": "bearer", "url": url, "token": "s3cret"}
		}, "Bearer s3cret"},
		{"bearer with prefix", func(url string) map[string]any {
			return map[string]any{"type": "bearer", "url": url, "token": "s3cret", "header_prefix": "Token"}
		}, "Token s3cret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newLCReceiver(t, nil)
			b, s, clock := newBackendWith(t, backendOptions{initialize: true})
			lcCreateBasic(t, b, s, "svc", nil)
			created := clock.Now()
			clock.Advance(90 * day)
			mustOK(t, b, s, logical.CreateOperation, "credentials/hook", tc.fields(r.URL+"/notify"))
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
			if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
				t.Fatal(err)
			}
			got := r.next(t)
			want := notify.Notification{
				Event: "suspension-warning", Credential: "svc", Type: "basic",
				Message: "Credential will be suspended in 90 days because it isn't being used.",
				Due:     created.Add(180 * day).Format(time.RFC3339), Mount: "integrations/",
				Time: clock.Now().Format(time.RFC3339),
				// One occurrence: nothing was coalesced into it.
				Count: 1, FirstTime: clock.Now().Format(time.RFC3339), LastTime: clock.Now().Format(time.RFC3339),
			}
			if got.method != http.MethodPost || got.path != "/notify" || got.contentType != "application/json" {
				t.Errorf("request %s %s %q", got.method, got.path, got.contentType)
			}
			if got.authorization != tc.wantAuth {
				t.Errorf("Authorization %q, want %q", got.authorization, tc.wantAuth)
			}
			if got.body != want {
				t.Errorf("body\n got %+v\nwant %+v", got.body, want)
			}
		})
	}
}

// TestNotifyRetriesUntilDelivered: each pass makes one attempt at a notification that
// is due; a failure backs it off (no attempt before the backoff has passed), and it is
// tried again until it is delivered, however often the receiver fails.
func TestNotifyRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		statuses []int // answers in turn; the last repeats
		passes   int
		attempts int
		kept     bool
	}{
		{"delivered", []int{200}, 3, 1, false},
		{"transient then delivered", []int{503, 204}, 3, 2, false},
		{"rate limited then delivered", []int{429, 200}, 3, 2, false},
		{"refused, still kept", []int{400}, 5, 5, true},
		{"never delivered, still kept", []int{500}, 8, 8, true},
		{"down for a while, then delivered", []int{500, 502, 503, 500, 500, 200}, 8, 6, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newLCReceiver(t, func(_ notify.Notification, attempt int) int {
				return tc.statuses[min(attempt, len(tc.statuses))-1]
			})
			b, s, clock := newBackendWith(t, backendOptions{})
			mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
			b.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: "svc"})
			for pass := range tc.passes {
				before := r.count("svc")
				b.outbox.Deliver(context.Background())
				// Not due again until its backoff has passed.
				b.outbox.Deliver(context.Background())
				if got := r.count("svc") - before; got > 1 {
					t.Fatalf("pass %d: %d attempts at one notification", pass, got)
				}
				clock.Advance(notify.MaxBackoff)
			}
			if got := r.count("svc"); got != tc.attempts {
				t.Fatalf("%d attempts, want %d", got, tc.attempts)
			}
			if stored := outboxStored(t, s); (len(stored) == 1) != tc.kept {
				t.Fatalf("outbox holds %v, want kept=%v", stored, tc.kept)
			}
		})
	}
}

// TestNotifyWithoutUsableTarget: a notify_credential deleted or unusable since config
// was written keeps the notification in the outbox (and alerts show it), to be
// delivered once the target works again.
func TestNotifyWithoutUsableTarget(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"nope", "plain"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			b, s, clock := newBackendWith(t, backendOptions{})
			lcCreateBasic(t, b, s, "plain", nil)
			// config refuses such a target now; a config stored earlier, or a target
			// deleted since, still gets here.
			cfg, err := b.loadConfig(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			next := *cfg
			next.NotifyCredential = target
			if err := b.storeConfig(context.Background(), s, &next); err != nil {
				t.Fatal(err)
			}
			b.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: "svc"})
			b.outbox.Deliver(context.Background())
			stored := outboxStored(t, s)
			if len(stored) != 1 || stored[0].Attempts != 1 || stored[0].LastFailure != "no_target" {
				t.Fatalf("outbox %+v", stored)
			}
			r := newLCReceiver(t, nil)
			mustOK(t, b, s, logical.DeleteOperation, "credentials/plain", nil)
			mustOK(t, b, s, logical.CreateOperation, "credentials/"+target, map[string]any{"type": "webhook", "url": r.URL})
			clock.Advance(notify.MaxBackoff)
			b.outbox.Deliver(context.Background())
			if r.count("svc") != 1 || len(outboxStored(t, s)) != 0 {
				t.Fatalf("after the target was fixed: %d deliveries, outbox %v", r.count("svc"), outboxStored(t, s))
			}
		})
	}
}

// TestNotifyNeverBlocks: a receiver that hangs neither holds up the sweep (even with
// more notifications than the old in-memory queue held) nor the access path, and
// every warning the sweep counted is waiting in the outbox or delivered.
func TestNotifyNeverBlocks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	r := newLCReceiver(t, func(notify.Notification, int) int {
		<-release
		return http.StatusOK
	})

	cs := newCountingStorage()
	clock := newTestClock()
	const n = 256 + 50
	idle := lcSeed(t, cs, clock, "idle-", n, 95*day)
	logs := &lcLogBuffer{}
	b, s, _ := newBackendWith(t, backendOptions{storage: cs, clock: clock, initialize: true, logs: logs})
	t.Cleanup(unblock) // runs before the backend cleans up and the receiver closes
	lcCreateBasic(t, b, s, "live", nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})

	done := make(chan error, 1)
	go func() { done <- b.periodic(context.Background(), &logical.Request{Storage: s}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sweep blocked on a hanging notification receiver")
	}
	r.next(t) // the notifier is stuck in the first POST
	lcAccess(t, b, s, "live")
	if strings.Contains(logs.String(), "dropped") {
		t.Fatalf("a notification was dropped:\n%s", logs.String())
	}
	warned := 0
	for _, name := range idle {
		if c, _ := b.credentials.get(context.Background(), s, name); len(c.State.Warned) == 1 {
			warned++
		}
	}
	if warned != n {
		t.Fatalf("%d of %d credentials warned", warned, n)
	}
	queued := map[string]bool{}
	for _, e := range outboxStored(t, s) {
		queued[e.Notification.Credential] = true
	}
	for _, name := range idle {
		if !queued[name] {
			t.Fatalf("the warning of %s is not in the outbox (only the first one is in flight, undelivered)", name)
		}
	}
}

// TestCleanupDoesNotWaitForSlowReceiver: unmounting (Clean) while a POST hangs returns
// promptly instead of waiting out request_timeout.
func TestCleanupDoesNotWaitForSlowReceiver(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	r := newLCReceiver(t, func(notify.Notification, int) int {
		<-release
		return http.StatusOK
	})
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	t.Cleanup(unblock)
	lcCreateBasic(t, b, s, "svc", nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook", "request_timeout": 120})
	clock.Advance(90 * day)
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	r.next(t)
	done := make(chan struct{})
	go func() {
		b.Cleanup(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		unblock()
		<-done
		t.Fatal("Cleanup waited for a hanging notification receiver")
	}
}

// TestNotifyDoesNotFollowRedirects: a receiver that answers with a redirect is asked
// once, its target never, and the notification stays queued as a failed attempt.
func TestNotifyDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	elsewhere := newLCReceiver(t, func(notify.Notification, int) int { return 200 })
	var redirected atomic.Int64
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	b, s, _ := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": redirector.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	b.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: "svc"})
	b.outbox.Deliver(context.Background())
	if got := redirected.Load(); got != 1 {
		t.Fatalf("the redirector was asked %d times, want 1", got)
	}
	if got := elsewhere.count("svc"); got != 0 {
		t.Fatalf("the redirect target received %d notifications, want 0", got)
	}
	queued := outboxStored(t, s)
	if len(queued) != 1 || queued[0].Notification.Credential != "svc" || queued[0].Attempts != 1 || queued[0].LastFailure != "http_307" {
		t.Fatalf("outbox = %+v, want the svc notification still queued after one failed attempt (http_307)", queued)
	}
}

// TestNotifySlack: a slack credential posts a message to notify_channel through
// chat.postMessage with its bot token, and Slack's {"ok": false} answers count as
// failures, tried again later.
func TestNotifySlack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		answers  []string // in turn; the last repeats
		attempts int
	}{
		{"delivered", []string{`{"ok":true}`}, 1},
		{"rate limited, then delivered", []string{`{"ok":false,"error":"ratelimited"}`, `{"ok":true}`}, 2},
		{"channel not found, then found", []string{`{"ok":false,"error":"channel_not_found"}`, `{"ok":true}`}, 2},
		{"not JSON, then JSON", []string{`<html>`, `{"ok":true}`}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got []map[string]string
			var auth []string
			slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var msg map[string]string
				_ = json.NewDecoder(r.Body).Decode(&msg)
				mu.Lock()
				got = append(got, msg)
				auth = append(auth, r.Header.Get("Authorization"))
				answer := tc.answers[min(len(got), len(tc.answers))-1]
				mu.Unlock()
				_, _ = io.WriteString(w, answer)
			}))
			t.Cleanup(slack.Close)
			b, s, clock := newBackendWith(t, backendOptions{})
			b.slackPostURL = slack.URL
			mustOK(t, b, s, logical.CreateOperation, "credentials/chat", map[string]any{"type": "slack", "token": "xoxb-123-456-abc"})
			wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "chat"}), "notify_channel")
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "chat", "notify_channel": "C0123ABCD"})
			lcCreateBasic(t, b, s, "svc", nil)
			c, err := b.credentials.get(context.Background(), s, "svc")
			if err != nil {
				t.Fatal(err)
			}
			b.notifyState(context.Background(), c, "suspended", "Credential suspended because it isn't being used.")
			for range tc.attempts + 1 { // one pass more than needed: a delivered one is not posted again
				b.outbox.Deliver(context.Background())
				clock.Advance(notify.MaxBackoff)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != tc.attempts {
				t.Fatalf("%d posts, want %d", len(got), tc.attempts)
			}
			want := map[string]string{"channel": "C0123ABCD", "text": "[integrations] svc: Credential suspended because it isn't being used."}
			if !maps.Equal(got[0], want) || auth[0] != "Bearer xoxb-123-456-abc" {
				t.Fatalf("posted %v with %q, want %v with the bot token", got[0], auth[0], want)
			}
		})
	}
}

// TestSlackRefusalLogsNoProviderText: of Slack's error field only a short code reaches
// the log (the codes themselves: notify's TestSlackRefusalEchoesNoProviderText); no log
// line of a delivery carries provider text or a line break of its own.
func TestSlackRefusalLogsNoProviderText(t *testing.T) {
	t.Parallel()
	hostile := "PROVIDERTEXT <!channel>\ncall +1 555 0100"
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": hostile})
	}))
	t.Cleanup(slack.Close)
	logs := &lcLogBuffer{}
	b, s, _ := newBackendWith(t, backendOptions{logs: logs})
	b.slackPostURL = slack.URL
	mustOK(t, b, s, logical.CreateOperation, "credentials/chat", map[string]any{"type": "slack", "token": "xoxb-123-456-abc"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "chat", "notify_channel": "C0123ABCD"})
	lcCreateBasic(t, b, s, "svc", nil)
	c, err := b.credentials.get(context.Background(), s, "svc")
	if err != nil {
		t.Fatal(err)
	}
	// A message carrying a line break of its own (part of one can come from a provider).
	b.notifyState(context.Background(), c, "needs_reauth", "The provider refused the grant\nINJECTED line.")
	b.outbox.Deliver(context.Background())
	out := logs.String()
	for _, leak := range []string{"PROVIDERTEXT", "555", "<!channel>", "xoxb-123"} {
		if strings.Contains(out, leak) {
			t.Errorf("log carries %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "unknown") {
		t.Errorf("log does not say the refusal was unknown:\n%s", out)
	}
	lineStart := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !lineStart.MatchString(line) {
			t.Errorf("a log line does not start with a timestamp (a line break got in): %q", line)
		}
	}
}

// TestNotifyOnFreshConnection: each notification opens a connection of its own, so a
// keep-alive connection the receiver (or a load balancer) closed meanwhile never
// turns a delivery into a failure.
func TestNotifyOnFreshConnection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var from []string
	receiver := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		from = append(from, r.RemoteAddr)
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)
	b, s, _ := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": receiver.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	// One at a time: two deliveries in flight at once would take two connections
	// whatever the client does.
	for _, name := range []string{"svc1", "svc2", "svc3"} {
		b.outbox.Enqueue(context.Background(), notify.Notification{Event: "suspended", Credential: name})
		b.outbox.Deliver(context.Background())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(from) != 3 {
		t.Fatalf("the receiver got %d notifications, want 3", len(from))
	}
	if seen := map[string]bool{from[0]: true, from[1]: true, from[2]: true}; len(seen) != 3 {
		t.Fatalf("notifications came from %v: a connection was reused", from)
	}
}
