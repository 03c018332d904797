package backend

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// TestFailingReadCountsOnce: five reads that each fail (the provider answers 500)
// make "5 failures in a row" in alerts: the read's failed token request and its
// failed access are one failure, not two. The clock moves between reads so each one
// reaches the provider past the backoff.
func TestFailingReadCountsOnce(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(oauthtest.Fail(http.StatusInternalServerError))
	const reads = 5
	for i := range reads {
		if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
			t.Fatalf("read %d: %d, want 502", i, code)
		}
		clock.Advance(backoffCeiling)
	}
	check := func(when string) {
		t.Helper()
		failing := alertsOf(lcAlerts(t, b, s), lifecycle.AlertFailing)
		if len(failing) != 1 {
			t.Fatalf("%s: failing alerts %v, want one", when, failing)
		}
		if got, want := failing[0]["detail"], "5 failures in a row"; got != want {
			t.Fatalf("%s: detail %q, want %q", when, got, want)
		}
	}
	check("before the flush")
	if err := b.flushUsage(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	check("after the flush")
}

// refusedClient is a client_credentials credential whose secret the provider does
// not know, refused by a read (invalid_client, 403, needs_reauth).
func refusedClient(t *testing.T, p *testProvider, b *integrationsBackend, s logical.Storage, name string) {
	t.Helper()
	data := clientCredentials(p, "header")
	data["client_secret"] = "not-the-secret"
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, data)
	// Told to update its secret, never to authorize (it has no authorize).
	code, msg := accessErr(t, b, s, name)
	if code != http.StatusForbidden || !strings.Contains(msg, "vault patch integrations/credentials/"+name+" client_secret=") || strings.Contains(msg, "authorize") {
		t.Fatalf("a secret the provider does not know: %d %q, want 403 saying to patch client_secret", code, msg)
	}
	wantStatus(t, b, s, name, "needs_reauth", "invalid_client", "after the refusal")
}

// TestPatchedSecretWorksAgain: a credential the provider refused (invalid_client) is
// usable again once its client_secret is patched; a patch of a field the refusal
// cannot be about (description) gives it no new attempt.
func TestPatchedSecretWorksAgain(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	refusedClient(t, p, b, s, "cc")
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"description": "still wrong"})
	wantStatus(t, b, s, "cc", "needs_reauth", "invalid_client", "after a patch of description")
	clock.Advance(backoffCeiling)
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": oauthtest.ClientSecret})
	wantStatus(t, b, s, "cc", "active", "", "after a patch of client_secret")
	accessOK(t, b, s, "cc", nil)
}

// TestVerifiedCredentialWorksAgain: a credential the provider refused is usable again
// after a verification that minted a token (the provider took the client back); a
// verification that fails leaves it refused.
func TestVerifiedCredentialWorksAgain(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, http.StatusUnauthorized, `{"error":"invalid_client"}`)
		return true
	})
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusForbidden {
		t.Fatalf("refused client: %d, want 403", code)
	}
	clock.Advance(backoffCeiling)
	if got := mustOK(t, b, s, logical.UpdateOperation, "credentials/cc/verify", nil).Data["result"]; got != lifecycle.VerifyFailed {
		t.Fatalf("verify while refused: %v, want failed", got)
	}
	wantStatus(t, b, s, "cc", "needs_reauth", "invalid_client", "after a failed verification")
	p.SetFault(nil)
	clock.Advance(backoffCeiling)
	if got := mustOK(t, b, s, logical.UpdateOperation, "credentials/cc/verify", nil).Data["result"]; got != lifecycle.VerifyOK {
		t.Fatalf("verify once the provider takes the client: %v, want ok", got)
	}
	wantStatus(t, b, s, "cc", "active", "", "after a verification that minted")
	accessOK(t, b, s, "cc", nil)
}

// TestNewSecretClearsFailedVerification: a failed verification is about the settings
// it checked: a patch of the secret, or an update changing the token_url, drops it
// (the read shows no verify_result, health is no longer red), while a patch of the
// description keeps it.
func TestNewSecretClearsFailedVerification(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	failVerify := func(name string) {
		t.Helper()
		clock.Advance(backoffCeiling)
		if got := mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name+"/verify", nil).Data["result"]; got != lifecycle.VerifyFailed {
			t.Fatalf("verify %s: %v, want failed", name, got)
		}
	}
	verifyResult := func(name string) any {
		t.Helper()
		return mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data["verify_result"]
	}
	refusedClient(t, p, b, s, "cc")
	failVerify("cc")
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"description": "unrelated"})
	if got := verifyResult("cc"); got != lifecycle.VerifyFailed {
		t.Fatalf("after a patch of description: verify_result %v, want failed", got)
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": "another-wrong-one"})
	if got := verifyResult("cc"); got != "" {
		t.Fatalf("after a new client_secret: verify_result %v, want none", got)
	}
	if h := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data["health"]; h == "red" {
		t.Fatalf("after a new client_secret: health red")
	}

	// A destination: an update moving token_url (with the secret sent again).
	failVerify("cc")
	data := clientCredentials(p, "header")
	data["client_secret"] = "another-wrong-one"
	data["token_url"] = p.tokenURL() + "?v=2"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", data)
	if got := verifyResult("cc"); got != "" {
		t.Fatalf("after a new token_url: verify_result %v, want none", got)
	}
}

// TestNeverAuthorizedAwaitsConsent: an authorization-code credential nobody consented
// for is awaiting_consent from its creation: health yellow, a yellow awaiting_consent
// alert (not a red needs_reauth), the list filter finds it, and access/ answers 403
// with the command to authorize it, asking the provider nothing. A consent makes it
// active. One stored before the status existed (active, no token) turns
// awaiting_consent at its first read, not needs_reauth (no_refresh_token).
func TestNeverAuthorizedAwaitsConsent(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/ac", nil).Data
	if read["status"] != "awaiting_consent" || read["health"] != lifecycle.HealthYellow {
		t.Fatalf("never authorized: status %v, health %v; want awaiting_consent, yellow", read["status"], read["health"])
	}
	alerts := lcAlerts(t, b, s)
	if got := alertsOf(alerts, lifecycle.AlertAwaitingConsent); len(got) != 1 || got[0]["severity"] != lifecycle.HealthYellow {
		t.Fatalf("alerts %v, want one yellow awaiting_consent", alerts)
	}
	if got := alertsOf(alerts, lifecycle.AlertNeedsReauth); len(got) != 0 {
		t.Fatalf("alerts %v list needs_reauth", alerts)
	}
	list := mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"status": "awaiting_consent"})
	if keys, _ := list.Data["keys"].([]string); len(keys) != 1 || keys[0] != "ac" {
		t.Fatalf("list status=awaiting_consent: %v", list.Data)
	}
	code, msg := accessErr(t, b, s, "ac")
	if code != http.StatusForbidden || !strings.Contains(msg, "awaiting consent") ||
		!strings.Contains(msg, "vault write -f integrations/credentials/ac/authorize") || p.requests.Load() != 0 {
		t.Fatalf("access before consent: %d %q (%d provider requests)", code, msg, p.requests.Load())
	}
	start := startAuthorization(t, b, s, "ac")
	if status, page := callback(t, b, s, p.consent(t, start["auth_url"].(string)).Query()); status != http.StatusOK {
		t.Fatalf("callback: %d %s", status, page)
	}
	wantStatus(t, b, s, "ac", "active", "", "after the consent")
	accessOK(t, b, s, "ac", nil)

	// As stored before awaiting_consent existed: active, never authorized.
	mustOK(t, b, s, logical.CreateOperation, "credentials/old", authCodeFields(p))
	held, unlock := b.credentials.lock("old")
	c, err := b.credentials.get(t.Context(), s, "old")
	if err != nil {
		t.Fatal(err)
	}
	n := c.clone()
	n.State.Status, n.State.AwaitingConsentAt = lifecycle.StatusActive, time.Time{}
	if err := b.credentials.put(t.Context(), s, held, n); err != nil {
		t.Fatal(err)
	}
	unlock()
	code, msg = accessErr(t, b, s, "old")
	if code != http.StatusForbidden || !strings.Contains(msg, "vault write -f integrations/credentials/old/authorize") {
		t.Fatalf("first read of a stored never-authorized credential: %d %q", code, msg)
	}
	wantStatus(t, b, s, "old", "awaiting_consent", "", "after its first read")
}

// Concurrent failing reads interleave their events (two token requests fail, then
// both accesses are recorded) and still count once each; a refresh that fails with
// no read counts on its own.
func TestInterleavedFailingReadsCountOnceEach(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ev := func(kind string, when time.Time) usage.Event {
		return usage.Event{Time: when, Event: kind, Status: usage.StatusFailure}
	}
	events := []usage.Event{
		ev(usage.EventRefreshFailed, at(1)), ev(usage.EventRefreshFailed, at(2)),
		ev(usage.EventAccess, at(1)), ev(usage.EventAccess, at(2)),
		ev(usage.EventRefreshFailed, at(3)), // refresh ahead, no read
		// two reads at the same instant (second precision after a reload)
		ev(usage.EventRefreshFailed, at(4)), ev(usage.EventRefreshFailed, at(4)),
		ev(usage.EventAccess, at(4)), ev(usage.EventAccess, at(4)),
	}
	if run, pending := trailingFailures(events, 0, nil); run != 5 || len(pending) != 1 {
		t.Fatalf("run %d, %d unpaired; want 5 failures (4 reads, 1 refresh) and the refresh unpaired", run, len(pending))
	}
	// Split across batches at every point, the run is the same.
	for cut := range events {
		run, pending := trailingFailures(events[:cut], 0, nil)
		if run, _ = trailingFailures(events[cut:], run, pending); run != 5 {
			t.Fatalf("split at %d: run %d, want 5", cut, run)
		}
	}
}

// A verification that minted does not undo a refusal recorded while it ran: the
// refusal is newer than what the verification found, so the result is not recorded
// and the credential stays needs_reauth.
func TestVerifyDoesNotUndoANewerRefusal(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	lcCreateBasic(t, b, s, "svc", nil)
	was, err := b.credentials.get(t.Context(), s, "svc")
	if err != nil || was == nil {
		t.Fatalf("get: %v %v", was, err)
	}
	// A refusal recorded meanwhile (as markNeedsReauth stores it: UpdatedAt unchanged).
	refused := was.clone()
	refused.State = lifecycle.NeedsReauth(refused.State, "invalid_client", clock.Now())
	held, unlock := b.credentials.lock("svc")
	err = b.credentials.put(t.Context(), s, held, refused)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := b.recordVerification(t.Context(), s, was, lifecycle.Verification{Result: lifecycle.VerifyOK, CheckedAt: clock.Now(), Detail: "token minted"})
	if err != nil || stored {
		t.Fatalf("recordVerification: stored %v, %v; want not stored", stored, err)
	}
	if c, _ := b.credentials.get(t.Context(), s, "svc"); c.State.Status != lifecycle.StatusNeedsReauth {
		t.Fatalf("status %s after the older verification, want needs_reauth", c.State.Status)
	}
}
