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
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
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
	body                                     notification
}

// lcReceiver is a loopback HTTP server standing in for a webhook. status decides the
// answer to each request (nil: 200); every request is also sent on got.
type lcReceiver struct {
	*httptest.Server
	got chan lcReceived

	mu     sync.Mutex
	status func(n notification, attempt int) int
	counts map[string]int
}

func newLCReceiver(t *testing.T, status func(n notification, attempt int) int) *lcReceiver {
	t.Helper()
	r := &lcReceiver{got: make(chan lcReceived, 1024), status: status, counts: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var n notification
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
			want := notification{
				Event: "suspension-warning", Credential: "svc", Type: "basic",
				Message: "Credential will be suspended in 90 days because it isn't being used.",
				Due:     created.Add(180 * day).Format(time.RFC3339), Mount: "integrations/",
				Time: clock.Now().Format(time.RFC3339),
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

func TestNotifyRetriesAreBounded(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		statuses []int // answers in turn; the last repeats
		attempts int
	}{
		{"delivered", []int{200}, 1},
		{"transient then delivered", []int{503, 204}, 2},
		{"rate limited then delivered", []int{429, 200}, 2},
		{"permanent refusal", []int{400}, 1},
		{"never delivered", []int{500}, notifyAttempts},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newLCReceiver(t, func(_ notification, attempt int) int {
				return tc.statuses[min(attempt, len(tc.statuses))-1]
			})
			b, s, _ := newBackendWith(t, backendOptions{})
			var waits []int
			b.notifyBackoff = func(attempt int) time.Duration { waits = append(waits, attempt); return 0 }
			mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
			b.post(make(chan struct{}), notification{Event: "suspended", Credential: "svc"}) // synchronous
			if got := r.count("svc"); got != tc.attempts {
				t.Fatalf("%d attempts, want %d", got, tc.attempts)
			}
			if len(waits) != tc.attempts-1 {
				t.Fatalf("backed off %d times, want %d", len(waits), tc.attempts-1)
			}
		})
	}
}

func TestNotifyWithoutUsableTarget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, target string
		wantLog      string
	}{
		{"missing", "nope", "notify credential not found"},
		{"no url", "plain", "notify credential has no URL to post to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &lcLogBuffer{}
			b, s, _ := newBackendWith(t, backendOptions{logs: logs})
			lcCreateBasic(t, b, s, "plain", nil)
			// config refuses such a target now; a config stored earlier, or a target
			// deleted since, still gets here.
			cfg, err := b.loadConfig(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			next := *cfg
			next.NotifyCredential = tc.target
			if err := b.storeConfig(context.Background(), s, &next); err != nil {
				t.Fatal(err)
			}
			b.post(make(chan struct{}), notification{Event: "suspended", Credential: "svc"})
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Fatalf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// TestNotifyNeverBlocks: a receiver that hangs neither holds up the sweep (even with
// more notifications than the queue holds) nor the access path.
func TestNotifyNeverBlocks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	r := newLCReceiver(t, func(notification, int) int {
		<-release
		return http.StatusOK
	})

	cs := newCountingStorage()
	clock := newTestClock()
	const n = notifyQueueSize + 50
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
	if !strings.Contains(logs.String(), "notification queue full") {
		t.Fatalf("%d notifications for a queue of %d, but no drop was logged", n, notifyQueueSize)
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
}

// TestCleanupDoesNotWaitForSlowReceiver: unmounting (Clean) while a POST hangs returns
// promptly instead of waiting out request_timeout.
func TestCleanupDoesNotWaitForSlowReceiver(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	r := newLCReceiver(t, func(notification, int) int {
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

func TestNotifyBackoffIsJitteredAndGrows(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt <= notifyAttempts; attempt++ {
		ceiling := time.Second << attempt
		for range 200 {
			if w := jitteredBackoff(attempt); w < 0 || w >= ceiling {
				t.Fatalf("attempt %d waited %v, want [0, %v)", attempt, w, ceiling)
			}
		}
	}
}

func TestNotifyDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	elsewhere := newLCReceiver(t, func(notification, int) int { return 200 })
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	b, s, _ := newBackendWith(t, backendOptions{})
	b.notifyBackoff = func(int) time.Duration { return 0 }
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": redirector.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	b.post(make(chan struct{}), notification{Event: "suspended", Credential: "svc"})
	if got := elsewhere.count("svc"); got != 0 {
		t.Fatalf("the redirect target received %d notifications, want 0", got)
	}
}

// TestNotifySlack: a slack credential posts a message to notify_channel through
// chat.postMessage with its bot token, and Slack's {"ok": false} answers count as
// failures (ratelimited is retried, anything else is not).
func TestNotifySlack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		answers  []string // in turn; the last repeats
		attempts int
	}{
		{"delivered", []string{`{"ok":true}`}, 1},
		{"rate limited, then delivered", []string{`{"ok":false,"error":"ratelimited"}`, `{"ok":true}`}, 2},
		{"channel not found", []string{`{"ok":false,"error":"channel_not_found"}`}, 1},
		{"not JSON", []string{`<html>`}, 1},
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
			b, s, _ := newBackendWith(t, backendOptions{})
			b.slackPostURL = slack.URL
			b.notifyBackoff = func(int) time.Duration { return 0 }
			mustOK(t, b, s, logical.CreateOperation, "credentials/chat", map[string]any{"type": "slack", "token": "xoxb-123-456-abc"})
			wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "chat"}), "notify_channel")
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "chat", "notify_channel": "C0123ABCD"})
			b.post(make(chan struct{}), notification{Event: "suspended", Credential: "svc", Message: "Credential suspended because it isn't being used.", Mount: "integrations/"})
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

// TestSlackTextIsEscaped: nothing in a Slack message can mention anyone or become a
// link: &, < and > are escaped in every part of the text.
func TestSlackTextIsEscaped(t *testing.T) {
	t.Parallel()
	d := notifyDestination{slack: true}
	n := notification{
		Credential: "svc&co",
		Message:    "<!channel> see <https://evil.example/|the fix> & <@U0123>",
		Mount:      "team<b>/",
	}
	var msg map[string]string
	if err := json.Unmarshal(d.body(n, "C0123ABCD"), &msg); err != nil {
		t.Fatal(err)
	}
	want := "[team&lt;b&gt;] svc&amp;co: &lt;!channel&gt; see &lt;https://evil.example/|the fix&gt; &amp; &lt;@U0123&gt;"
	if msg["text"] != want {
		t.Fatalf("text %q\nwant %q", msg["text"], want)
	}
}

// TestSlackRefusalEchoesNoProviderText: of Slack's error field only a short code of
// [a-z0-9_] reaches the error and the log; anything else is "unknown". No log line of
// a delivery carries provider text or a line break of its own.
func TestSlackRefusalEchoesNoProviderText(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]string{
		"channel_not_found":              "channel_not_found",
		"not_authed":                     "not_authed",
		"":                               "unknown",
		"Bad Thing":                      "unknown",
		"x\ny":                           "unknown",
		"<!channel>":                     "unknown",
		strings.Repeat("a", 65):          "unknown",
		"invalid_auth; call +1 555 0100": "unknown",
	} {
		body, _ := json.Marshal(map[string]any{"ok": false, "error": code})
		err := notifyDestination{slack: true}.check(body)
		if err == nil || err.Error() != "slack refused the message: "+want {
			t.Errorf("error %q: got %v, want the code %q", code, err, want)
		}
	}

	hostile := "PROVIDERTEXT <!channel>\ncall +1 555 0100"
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": hostile})
	}))
	t.Cleanup(slack.Close)
	logs := &lcLogBuffer{}
	b, s, _ := newBackendWith(t, backendOptions{logs: logs})
	b.slackPostURL = slack.URL
	b.notifyBackoff = func(int) time.Duration { return 0 }
	mustOK(t, b, s, logical.CreateOperation, "credentials/chat", map[string]any{"type": "slack", "token": "xoxb-123-456-abc"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "chat", "notify_channel": "C0123ABCD"})
	lcCreateBasic(t, b, s, "svc", nil)
	c, err := b.credentials.get(context.Background(), s, "svc")
	if err != nil {
		t.Fatal(err)
	}
	// A message carrying a line break of its own (part of one can come from a provider).
	b.notifyState(context.Background(), c, "needs_reauth", "The provider refused the grant\nINJECTED line.")
	b.post(make(chan struct{}), notification{Event: "suspended", Credential: "svc", Message: "m"})
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
