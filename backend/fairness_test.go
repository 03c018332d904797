package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// fairnessCycles and fairnessStep are the noisy caller of TestOneCredentialCannotStarveTheOthers:
// 1,000 patch-and-verify cycles, the injected clock moving 100 ms a cycle (100 s in all).
const (
	fairnessCycles = 1000
	fairnessStep   = 100 * time.Millisecond
)

// maxRequestsIn is the most token requests one credential's bucket lets through in
// elapsed: the burst, and one per interval after it.
func maxRequestsIn(elapsed time.Duration) int64 {
	return int64(oauth.RequestBurst) + int64(elapsed/(time.Minute/oauth.RequestsPerMinute))
}

// TestOneCredentialCannotStarveTheOthers: a caller looping patch refresh_token=<bogus>
// and verify on one credential, against a real provider answering invalid_grant,
// makes at most the bucket's burst plus its sustained rate of provider requests; the
// rest are answered 429 with a time to retry and reach no provider. Its needs_reauth
// notifications are coalesced within its share of the outbox, so another
// credential's suspension warning queued before the loop and one queued after it are
// both waiting for delivery.
func TestOneCredentialCannotStarveTheOthers(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := newBackendWith(t, backendOptions{config: map[string]any{
		"suspend_after": "10d", "purge_after": "20d", "warn_before": "5d", "callback_base_url": tpCallbackBase,
	}})
	// The receiver is never reached: nothing here runs the notifier.
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": "http://127.0.0.1:1/"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	lcCreateBasic(t, b, s, "quiet", nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/noisy", importedFields(p, "bogus-0"))

	// quiet's suspension warning is queued before the loop.
	clock.Advance(5 * day)
	for _, keep := range []string{"hook", "noisy"} {
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+keep+"/reset-inactivity", nil)
	}
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	if n := outboxCount(t, s, "quiet", "suspension-warning"); n != 1 {
		t.Fatalf("%d suspension warnings for quiet queued, want 1", n)
	}
	lcCreateBasic(t, b, s, "late", nil)

	before := p.requests.Load()
	start := clock.Now()
	var verdicts, throttled int
	for i := range fairnessCycles {
		mustOK(t, b, s, logical.PatchOperation, "credentials/noisy", map[string]any{"refresh_token": fmt.Sprintf("bogus-%d", i+1)})
		resp, err := request(b, s, logical.UpdateOperation, "credentials/noisy/verify", nil)
		var coded logical.HTTPCodedError
		switch {
		case err == nil && resp != nil && resp.Data["result"] == "failed":
			verdicts++
		case errors.As(err, &coded) && coded.Code() == http.StatusTooManyRequests:
			throttled++
		default:
			t.Fatalf("cycle %d: verify answered %v, %v", i, resp, err)
		}
		clock.Advance(fairnessStep)
	}
	elapsed := clock.Now().Sub(start)
	sent := p.requests.Load() - before
	t.Logf("%d cycles in %s of the injected clock: %d provider requests (bound %d), %d verdicts, %d answered 429",
		fairnessCycles, elapsed, sent, maxRequestsIn(elapsed), verdicts, throttled)
	if sent > maxRequestsIn(elapsed) {
		t.Errorf("%d provider requests in %s, want at most %d", sent, elapsed, maxRequestsIn(elapsed))
	}
	if int64(verdicts) != sent {
		t.Errorf("%d verdicts for %d provider requests: a verify without a request gave a verdict", verdicts, sent)
	}
	families, _ := scrape(t, b, s)
	if got := metricValue(families, "integrations_token_requests_throttled_total", nil); got != float64(throttled) {
		t.Errorf("integrations_token_requests_throttled_total %v, want the %d requests held back", got, throttled)
	}

	// late's suspension warning, queued after the loop, still finds room.
	clock.Advance(5 * day)
	for _, keep := range []string{"hook", "noisy", "quiet"} {
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+keep+"/reset-inactivity", nil)
	}
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"quiet", "late"} {
		if n := outboxCount(t, s, name, "suspension-warning"); n != 1 {
			t.Errorf("%d suspension warnings for %s waiting, want 1", n, name)
		}
	}
	noisy := outboxCount(t, s, "noisy", "")
	if noisy == 0 || noisy > notify.MaxPerCredential {
		t.Errorf("noisy holds %d outbox entries, want 1 to %d", noisy, notify.MaxPerCredential)
	}
	refusals, coalesced := 0, 0
	for _, e := range outboxStored(t, s) {
		if e.Notification.Credential == "noisy" && e.Notification.Event == "needs_reauth" {
			refusals++
			coalesced += e.Notification.Count
		}
	}
	// Each refusal after a patch (which makes the credential active again) is one.
	if refusals != 1 || int64(coalesced) != sent {
		t.Errorf("noisy's needs_reauth notifications: %d entries counting %d, want 1 counting %d", refusals, coalesced, sent)
	}
	if dropped := alertsOf(lcAlerts(t, b, s), notify.AlertDropped); len(dropped) != 0 {
		t.Errorf("notifications dropped: %v", dropped)
	}
}

// outboxCount counts the stored outbox entries for credential (of event, when set).
func outboxCount(t testing.TB, s logical.Storage, credential, event string) int {
	t.Helper()
	n := 0
	for _, e := range outboxStored(t, s) {
		if e.Notification.Credential == credential && (event == "" || e.Notification.Event == event) {
			n++
		}
	}
	return n
}
