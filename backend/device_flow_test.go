package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// deviceMarker is in every device code the test provider issues, so any output can be
// searched for one.
const deviceMarker = "DEVICE-CODE-SECRET"

// deviceProvider is an RFC 8628 provider for unit tests: a device authorization
// endpoint, and a token endpoint whose device-code answers follow a script
// ("pending", "slow_down", "denied", "expired", "ok"; "ok" once the script is spent)
// and which refreshes with rotation. hold, when set, blocks the next poll until it is
// closed.
type deviceProvider struct {
	*httptest.Server
	mu       sync.Mutex
	issued   int
	script   []string
	polls    []string // the device code of each poll, in order
	refresh  string   // the refresh token it holds
	minted   int
	hold     chan struct{}
	arrived  chan struct{}
	interval int
}

func newDeviceProvider(t *testing.T, script ...string) *deviceProvider {
	t.Helper()
	p := &deviceProvider{script: script, interval: 5}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *deviceProvider) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	w.Header().Set("Content-Type", "application/json")
	p.mu.Lock()
	switch {
	case r.URL.Path == "/device":
		p.issued++
		n := p.issued
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{
			"device_code": fmt.Sprintf("dc-%d-%s", n, deviceMarker), "user_code": fmt.Sprintf("USER-%d", n),
			"verification_uri": p.URL + "/activate", "verification_uri_complete": p.URL + fmt.Sprintf("/activate?user_code=USER-%d", n),
			"expires_in": 600, "interval": p.interval,
		})
		return
	case form.Get("grant_type") == "refresh_token":
		if form.Get("refresh_token") != p.refresh {
			p.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		p.minted++
		p.refresh = fmt.Sprintf("rt-%d", p.minted+1)
		at := fmt.Sprintf("at-%d", p.minted+1)
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": at, "refresh_token": p.refresh, "token_type": "Bearer", "expires_in": 300})
		return
	}
	p.polls = append(p.polls, form.Get("device_code"))
	answer := "ok"
	if len(p.script) > 0 {
		answer, p.script = p.script[0], p.script[1:]
	}
	hold, arrived := p.hold, p.arrived
	p.hold = nil
	p.mu.Unlock()
	if hold != nil {
		close(arrived)
		<-hold
	}
	switch answer {
	case "ok":
		p.mu.Lock()
		p.refresh = "rt-1"
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-1", "refresh_token": "rt-1", "token_type": "Bearer", "expires_in": 300})
	case "slow_down_20":
		// GitHub's answer: HTTP 200, naming the interval to keep to.
		_, _ = io.WriteString(w, `{"error":"slow_down","interval":20}`)
	default:
		code := map[string]string{"pending": "authorization_pending", "slow_down": "slow_down", "denied": "access_denied", "expired": "expired_token"}[answer]
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"error":%q}`, code)
	}
}

func (p *deviceProvider) pollCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.polls)
}

func (p *deviceProvider) lastPoll() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls[len(p.polls)-1]
}

func deviceFields(p *deviceProvider) map[string]any {
	return map[string]any{"type": "oauth2_device_code", "device_authorization_url": p.URL + "/device", "token_url": p.URL + "/token",
		"client_id": "device-client", "scopes": "offline_access,read"}
}

// deviceBackend is a backend whose jobs do not run: the test makes each poll step.
func deviceBackend(t *testing.T, logs *lcLogBuffer) (*integrationsBackend, logical.Storage, *testClock, *logical.MockEventSender) {
	t.Helper()
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{logs: logs, events: events})
	return b, s, clock, events
}

// pollStep runs the device polling job's step, as its loop would.
func pollStep(t *testing.T, b *integrationsBackend, s logical.Storage) {
	t.Helper()
	if err := b.pollDevices(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func deviceStatus(t *testing.T, b *integrationsBackend, s logical.Storage, name string) (string, string) {
	t.Helper()
	d := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data
	r, _ := d["status_reason"].(string)
	return d["status"].(string), r
}

func TestDeviceFlowConsentStoresTokensAsAConsent(t *testing.T) {
	t.Parallel()
	logs := &lcLogBuffer{}
	b, s, clock, events := deviceBackend(t, logs)
	p := newDeviceProvider(t, "pending", "pending")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	if st, _ := deviceStatus(t, b, s, "dev"); st != string(lifecycle.StatusAwaitingConsent) {
		t.Fatalf("status %s before consent", st)
	}
	got := mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil).Data
	if got["user_code"] != "USER-1" || got["verification_uri"] != p.URL+"/activate" || got["verification_uri_complete"] != p.URL+"/activate?user_code=USER-1" ||
		got["interval"] != int64(5) || got["expires_at"] != rfc3339(clock.Now().Add(10*time.Minute)) {
		t.Fatalf("authorize answered %v", got)
	}
	view := mustOK(t, b, s, logical.ReadOperation, "credentials/dev", nil).Data
	pending, _ := view["device_authorization"].(map[string]any)
	if pending["user_code"] != "USER-1" || pending["verification_uri"] != p.URL+"/activate" {
		t.Fatalf("credentials/dev shows %v while pending", view["device_authorization"])
	}
	// No poll before the interval (RFC 8628 section 3.5).
	clock.Advance(4 * time.Second)
	pollStep(t, b, s)
	if n := p.pollCount(); n != 0 {
		t.Fatalf("%d polls before the interval", n)
	}
	for i := 1; i <= 3; i++ {
		clock.Advance(5 * time.Second)
		pollStep(t, b, s)
		if n := p.pollCount(); n != i {
			t.Fatalf("after %d intervals: %d polls", i, n)
		}
	}
	if st, _ := deviceStatus(t, b, s, "dev"); st != string(lifecycle.StatusActive) {
		t.Fatalf("status %s after consent", st)
	}
	if _, ok := b.deviceFlow.pending("dev"); ok {
		t.Fatal("still polling after consent")
	}
	// The consent's tokens are served, then refreshed through its refresh token.
	if tok := accessOK(t, b, s, "dev", nil).Data["access_token"]; tok != "at-1" {
		t.Fatalf("access_token %v, want the consent's", tok)
	}
	clock.Advance(10 * time.Minute)
	if tok := accessOK(t, b, s, "dev", nil).Data["access_token"]; tok != "at-2" {
		t.Fatalf("access_token %v, want one refreshed from the consent's refresh token", tok)
	}
	// The attempt is spent, the person's view no longer shows it, and nothing polls.
	if _, ok := mustOK(t, b, s, logical.ReadOperation, "credentials/dev", nil).Data["device_authorization"]; ok {
		t.Fatal("a completed device authorization is still shown")
	}
	clock.Advance(time.Minute)
	pollStep(t, b, s)
	if n := p.pollCount(); n != 3 {
		t.Fatalf("%d polls after consent", n)
	}
	// Event and notification that consent completed.
	events.Lock()
	var consented bool
	for _, ev := range events.Events {
		consented = consented || ev.Type == "integrations/credential-consent-completed"
	}
	events.Unlock()
	if !consented {
		t.Fatal("no consent-completed Vault event")
	}
	found := false
	for _, e := range lcLogs(t, b, s, "dev", nil) {
		found = found || (e["event"] == "authorized" && e["status"] == "success" && strings.Contains(fmt.Sprint(e["detail"]), "device authorization completed"))
	}
	if !found {
		t.Fatalf("no authorized event in the credential's log: %v", lcLogs(t, b, s, "dev", nil))
	}
	if strings.Contains(logs.String(), deviceMarker) {
		t.Fatal("the device code is in the log")
	}
}

func TestDeviceFlowSlowDownAddsFiveSecondsForGood(t *testing.T) {
	t.Parallel()
	b, s, clock, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t, "slow_down", "slow_down", "pending", "pending", "pending", "pending")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	// Poll times the engine must keep: 5 s, then +10 (slow_down), then +15, +15, ...
	var at []time.Duration
	var elapsed time.Duration
	for second := 1; second <= 70; second++ {
		clock.Advance(time.Second)
		elapsed += time.Second
		before := p.pollCount()
		pollStep(t, b, s)
		if p.pollCount() > before {
			at = append(at, elapsed)
		}
	}
	want := []time.Duration{5 * time.Second, 15 * time.Second, 30 * time.Second, 45 * time.Second, 60 * time.Second}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Fatalf("polls at %v, want %v", at, want)
	}
	// The slower interval is stored: a new active node keeps to it.
	a, err := b.authorizations.load(context.Background(), s, "dev")
	if err != nil || a == nil || a.Interval != 15*time.Second {
		t.Fatalf("stored attempt %v %v", a, err)
	}
}

// A slow_down naming a longer interval (GitHub's) is kept to; a shorter one is not.
func TestDeviceFlowSlowDownKeepsToTheNamedInterval(t *testing.T) {
	t.Parallel()
	b, s, clock, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t, "slow_down_20", "pending", "pending")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	var at []time.Duration
	var elapsed time.Duration
	for range 50 {
		clock.Advance(time.Second)
		elapsed += time.Second
		before := p.pollCount()
		pollStep(t, b, s)
		if p.pollCount() > before {
			at = append(at, elapsed)
		}
	}
	want := []time.Duration{5 * time.Second, 25 * time.Second, 45 * time.Second}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Fatalf("polls at %v, want %v (20 s named by slow_down)", at, want)
	}
}

func TestDeviceFlowAccessDeniedNeedsReauth(t *testing.T) {
	t.Parallel()
	logs := &lcLogBuffer{}
	b, s, clock, events := deviceBackend(t, logs)
	p := newDeviceProvider(t, "pending", "denied")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	for range 3 {
		clock.Advance(5 * time.Second)
		pollStep(t, b, s)
	}
	if n := p.pollCount(); n != 2 {
		t.Fatalf("%d polls: the denial must end the attempt", n)
	}
	st, reason := deviceStatus(t, b, s, "dev")
	if st != string(lifecycle.StatusNeedsReauth) || reason != "access_denied" {
		t.Fatalf("status %s/%s, want needs_reauth/access_denied", st, reason)
	}
	resp, err := request(b, s, logical.ReadOperation, "access/dev", nil)
	if err == nil || !strings.Contains(err.Error(), "user_code") {
		t.Fatalf("access after a denial: %v %v (the refusal should say how to authorize)", resp, err)
	}
	events.Lock()
	n := len(events.Events)
	events.Unlock()
	if n == 0 || !strings.Contains(logs.String(), "access_denied") {
		t.Fatal("no event or log line for the denial")
	}
	// Authorizing again starts a new attempt, and its consent makes it active.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if st, _ := deviceStatus(t, b, s, "dev"); st != string(lifecycle.StatusActive) || !strings.HasPrefix(p.lastPoll(), "dc-2-") {
		t.Fatalf("status %s after a second authorize (poll of %s)", st, p.lastPoll())
	}
}

func TestDeviceFlowExpiry(t *testing.T) {
	t.Parallel()
	b, s, clock, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t, "expired")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if a, _ := b.authorizations.load(context.Background(), s, "dev"); a != nil {
		t.Fatal("expired_token left the attempt pending")
	}
	if st, _ := deviceStatus(t, b, s, "dev"); st != string(lifecycle.StatusAwaitingConsent) {
		t.Fatalf("status %s after expired_token, want awaiting_consent (authorize again)", st)
	}
	// Its own expiry ends an attempt without a poll.
	p.mu.Lock()
	p.script = []string{"pending"}
	p.mu.Unlock()
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	polls := p.pollCount()
	clock.Advance(11 * time.Minute)
	pollStep(t, b, s)
	if p.pollCount() != polls {
		t.Fatal("an expired attempt was polled")
	}
	if a, _ := b.authorizations.load(context.Background(), s, "dev"); a != nil {
		t.Fatal("an expired attempt stays pending")
	}
}

func TestDeviceFlowOneAttemptPerCredential(t *testing.T) {
	t.Parallel()
	b, s, clock, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t, "pending", "pending", "pending", "pending")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	// A new authorize replaces the attempt: only the new device code is polled.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if p.pollCount() != 1 || !strings.HasPrefix(p.lastPoll(), "dc-2-") {
		t.Fatalf("polls %v, want one of the second attempt", p.polls)
	}
	// A repoint drops it.
	fields := deviceFields(p)
	fields["token_url"] = p.URL + "/token?moved=1"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev", fields)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if p.pollCount() != 1 {
		t.Fatal("a repointed credential's attempt was polled")
	}
	// So does a delete.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	mustOK(t, b, s, logical.DeleteOperation, "credentials/dev", nil)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if p.pollCount() != 1 {
		t.Fatal("a deleted credential's attempt was polled")
	}
	// A routine edit does not.
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	mustOK(t, b, s, logical.PatchOperation, "credentials/dev", map[string]any{"description": "edited"})
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if p.pollCount() != 2 {
		t.Fatal("a description edit cancelled the attempt")
	}
}

// A poll answered after a new authorize replaced its attempt: its tokens are not
// stored, and the new attempt goes on.
func TestDeviceFlowAnswerToAReplacedAttemptIsDiscarded(t *testing.T) {
	t.Parallel()
	b, s, clock, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t, "ok", "pending")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	hold, arrived := make(chan struct{}), make(chan struct{})
	p.mu.Lock()
	p.hold, p.arrived = hold, arrived
	p.mu.Unlock()
	clock.Advance(5 * time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.pollDevices(context.Background(), s)
	}()
	<-arrived
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	close(hold)
	<-done
	if st, _ := deviceStatus(t, b, s, "dev"); st != string(lifecycle.StatusAwaitingConsent) {
		t.Fatalf("status %s: the replaced attempt's tokens were stored", st)
	}
	if tok, _ := b.tokens.cached(context.Background(), s, "dev"); tok != nil {
		t.Fatalf("a token was stored: %v", tok)
	}
	a, _ := b.authorizations.load(context.Background(), s, "dev")
	if a == nil || a.UserCode != "USER-2" {
		t.Fatalf("the new attempt is gone: %v", a)
	}
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)
	if !strings.HasPrefix(p.lastPoll(), "dc-2-") {
		t.Fatalf("last poll of %s, want the new attempt", p.lastPoll())
	}
}

// A new active node resumes polling the attempt its predecessor started: the device
// code is in (seal-wrapped) storage.
func TestDeviceFlowResumesOnANewActiveNode(t *testing.T) {
	t.Parallel()
	b, s, clock, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t, "pending")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil)
	clock.Advance(5 * time.Second)
	pollStep(t, b, s)

	next, _, _ := newBackendWith(t, backendOptions{storage: s, clock: clock})
	pollStep(t, next, s) // reads the attempt; its first poll is an interval on
	if p.pollCount() != 1 {
		t.Fatal("the new node polled at once")
	}
	clock.Advance(5 * time.Second)
	pollStep(t, next, s)
	if p.pollCount() != 2 || !strings.HasPrefix(p.lastPoll(), "dc-1-") {
		t.Fatalf("polls %v: the new node did not resume the attempt", p.polls)
	}
	if st, _ := deviceStatus(t, next, s, "dev"); st != string(lifecycle.StatusActive) {
		t.Fatalf("status %s after the new node's poll", st)
	}
}

func TestDeviceFlowNeverShowsTheDeviceCode(t *testing.T) {
	t.Parallel()
	logs := &lcLogBuffer{}
	b, s, clock, events := deviceBackend(t, logs)
	p := newDeviceProvider(t, "pending", "slow_down", "denied")
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	var out strings.Builder
	show := func(v any) { fmt.Fprintf(&out, "%v\n", v) }
	show(mustOK(t, b, s, logical.UpdateOperation, "credentials/dev/authorize", nil).Data)
	for range 4 {
		clock.Advance(10 * time.Second)
		pollStep(t, b, s)
		show(mustOK(t, b, s, logical.ReadOperation, "credentials/dev", nil).Data)
		show(mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data)
		show(mustOK(t, b, s, logical.ReadOperation, "alerts", nil).Data)
		show(lcLogs(t, b, s, "dev", nil))
		r, err := request(b, s, logical.ReadOperation, "access/dev", nil)
		show(r)
		show(err)
	}
	events.Lock()
	for _, ev := range events.Events {
		show(ev.Event.Metadata)
	}
	events.Unlock()
	if p.pollCount() < 3 {
		t.Fatalf("%d polls", p.pollCount())
	}
	if strings.Contains(out.String(), deviceMarker) || strings.Contains(logs.String(), deviceMarker) {
		t.Fatal("the device code was shown")
	}
}

func TestDeviceAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	b, s, _, _ := deviceBackend(t, nil)
	p := newDeviceProvider(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/dev", deviceFields(p))
	resp, _ := request(b, s, logical.UpdateOperation, "credentials/dev/authorize", map[string]any{"code": "abc"})
	if resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "code") {
		t.Fatalf("a code on a device credential: %v", resp)
	}
	// A provider refusing the device authorization: 400 naming its code.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"error":"device_flow_disabled","error_description":"not echoed"}`)
	}))
	defer refusing.Close()
	f := deviceFields(p)
	f["device_authorization_url"] = refusing.URL + "/device"
	mustOK(t, b, s, logical.CreateOperation, "credentials/off", f)
	resp, err := request(b, s, logical.UpdateOperation, "credentials/off/authorize", nil)
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "device_flow_disabled") || strings.Contains(resp.Error().Error(), "not echoed") {
		t.Fatalf("refused device authorization: %v %v", resp, err)
	}
	if _, ok := b.deviceFlow.pending("off"); ok {
		t.Fatal("a refused device authorization is polled")
	}
	_ = oauth.DefaultDeviceInterval
}
