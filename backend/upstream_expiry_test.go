package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// upstreamEvents returns the kind of each Vault event sent, in order.
func upstreamEvents(m *logical.MockEventSender) []string {
	var out []string
	for _, typ := range lcEventTypes(m) {
		out = append(out, strings.TrimPrefix(typ, "integrations/credential-"))
	}
	return out
}

// upstreamAlerts returns "name reason severity due" for each alert.
func upstreamAlerts(t *testing.T, b logical.Backend, s logical.Storage) []string {
	t.Helper()
	var out []string
	for _, a := range lcAlerts(t, b, s) {
		out = append(out, fmt.Sprintf("%s %s %s %s", a["name"], a["reason"], a["severity"], a["due"]))
	}
	return out
}

func sweepNow(t *testing.T, b *integrationsBackend, s logical.Storage) {
	t.Helper()
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
}

// createExpiringApp creates an OAuth credential whose client secret expires at end.
func createExpiringApp(t *testing.T, b logical.Backend, s logical.Storage, name string, end time.Time) {
	t.Helper()
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, map[string]any{
		"type": "oauth2_client_credentials", "token_url": "https://auth.example.com/oauth2/token",
		"client_id": "app", "client_secret": "cs-1", "client_secret_expires_at": end.Format(time.RFC3339),
	})
}

// TestUpstreamExpiryThroughTheSweep: a client secret expiring in 3 days and a
// certificate that expired yesterday alert at once (yellow and red), are warned about
// once each (log event, Vault event, outbox entry), the secret's expiry is announced
// when it comes, nothing is suspended, and a new date starts afresh.
func TestUpstreamExpiryThroughTheSweep(t *testing.T) {
	t.Parallel()
	r := newLCReceiver(t, func(notification, int) int { return http.StatusServiceUnavailable })
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{events: events, initialize: true})
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL + "/n"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	now := clock.Now()
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	createExpiringApp(t, b, s, "app", now.Add(3*day))
	certPEM, keyPEM := lcSelfSignedPEM(t, now.Add(-day))
	mustOK(t, b, s, logical.CreateOperation, "credentials/cert", map[string]any{"type": "certificate", "certificate": certPEM, "private_key": keyPEM})

	if got := lcRead(t, b, s, "app")["client_secret_expires_at"]; got != rfc(now.Add(3*day)) {
		t.Errorf("management read client_secret_expires_at = %v", got)
	}
	// Filed in both indexes by the write: due now (the 7-day warning is overdue).
	for _, name := range []string{"app", "cert"} {
		if !dueBy(b.activity.index, name, now) || !dueBy(b.activity.alerting, name, now) {
			t.Errorf("%s not filed as due in the sweep's and the alerts' indexes", name)
		}
	}
	want := []string{"cert certificate_expired red " + rfc(now.Add(-day)), "app client_secret_expiring yellow " + rfc(now.Add(3*day))}
	if got := upstreamAlerts(t, b, s); !slices.Equal(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
	for name, health := range map[string]string{"app": lifecycle.HealthYellow, "cert": lifecycle.HealthRed} {
		if got := lcRead(t, b, s, name)["health"]; got != health {
			t.Errorf("%s health %v, want %s", name, got, health)
		}
	}

	sweepNow(t, b, s)
	sweepNow(t, b, s) // a second pass at the same time announces nothing again
	clock.Advance(day)
	sweepNow(t, b, s)                                                       // nor does a later one inside the same threshold
	wantEvents := []string{"certificate-expired", "client-secret-expiring"} // earliest due first
	if got := upstreamEvents(events); !slices.Equal(got, wantEvents) {
		t.Fatalf("events %q, want %q", got, wantEvents)
	}
	if !lcSentEvent(events, "integrations/credential-certificate-expired", "cert") || !lcSentEvent(events, "integrations/credential-client-secret-expiring", "app") {
		t.Fatal("events not about the credentials they announce")
	}
	var queued []string
	for _, e := range outboxStored(t, s) {
		queued = append(queued, e.Notification.Credential+" "+e.Notification.Event+" "+e.Notification.Due+" "+e.Notification.Message)
	}
	slices.Sort(queued)
	wantQueued := []string{
		"app client-secret-expiring " + rfc(now.Add(3*day)) + " Client secret expires within 7 days, at " + rfc(now.Add(3*day)) + ".",
		"cert certificate-expired " + rfc(now.Add(-day)) + " Certificate expired at " + rfc(now.Add(-day)) + "; the credential is not suspended, but the provider may refuse it: replace it.",
	}
	if !slices.Equal(queued, wantQueued) {
		t.Errorf("outbox\n  %q\nwant\n  %q", queued, wantQueued)
	}
	logged := lcLogs(t, b, s, "app", map[string]any{"event": "warning"})
	if len(logged) != 1 || !strings.HasPrefix(fmt.Sprint(logged[0]["detail"]), "Client secret expires within 7 days") {
		t.Errorf("app's warning log events %v, want the one 7-day warning", logged)
	}

	// The secret's expiry is announced once; the credential stays active and red.
	clock.Advance(2 * day)
	sweepNow(t, b, s)
	sweepNow(t, b, s)
	if got := upstreamEvents(events); !slices.Equal(got, append(wantEvents, "client-secret-expired")) {
		t.Fatalf("events %q, want the expiry once more", got)
	}
	app := lcRead(t, b, s, "app")
	if app["status"] != string(lifecycle.StatusActive) || app["health"] != lifecycle.HealthRed {
		t.Errorf("expired secret: status %v health %v, want active and red", app["status"], app["health"])
	}
	if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertSecretExpired); len(got) != 1 || got[0]["name"] != "app" {
		t.Errorf("client_secret_expired alerts %v", got)
	}

	// A new secret, 100 days out: no alert until its first threshold, then its
	// warnings start afresh.
	end := clock.Now().Add(100 * day)
	mustOK(t, b, s, logical.PatchOperation, "credentials/app", map[string]any{"client_secret": "cs-2", "client_secret_expires_at": end.Format(time.RFC3339)})
	for _, reason := range []string{lifecycle.AlertSecretExpiring, lifecycle.AlertSecretExpired} {
		if got := alertsOf(lcAlerts(t, b, s), reason); len(got) != 0 {
			t.Errorf("%s alerts after the new secret: %v", reason, got)
		}
	}
	clock.Advance(10 * day)
	sweepNow(t, b, s)
	if got := upstreamEvents(events); len(got) != 4 || got[3] != "client-secret-expiring" {
		t.Fatalf("events %q, want a fresh 90-day warning", got)
	}
	if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertSecretExpiring); len(got) != 1 || got[0]["due"] != rfc(end) {
		t.Errorf("client_secret_expiring alerts %v, want one due %s", got, rfc(end))
	}
}

// TestUpstreamExpiryFiledByTheStartupScan: the scan at initialize files upstream
// due times in both indexes, including a certificate stored before the lifecycle
// state held its expiry.
func TestUpstreamExpiryFiledByTheStartupScan(t *testing.T) {
	t.Parallel()
	storage := logical.NewStorageView(&logical.InmemStorage{}, "")
	clock := newTestClock()
	b, s, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	now := clock.Now()
	createExpiringApp(t, b, s, "app", now.Add(3*day))
	certPEM, keyPEM := lcSelfSignedPEM(t, now.Add(-day))
	mustOK(t, b, s, logical.CreateOperation, "credentials/old-cert", map[string]any{"type": "certificate", "certificate": certPEM, "private_key": keyPEM})
	// As stored before upstream expiries: the state without them.
	e, err := s.Get(context.Background(), credentialPrefix+"old-cert")
	if err != nil || e == nil {
		t.Fatal(e, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(e.Value, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw["state"].(map[string]any), "upstream")
	delete(raw, "record_version")
	e.Value, _ = json.Marshal(raw)
	if err := s.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}

	events := logical.NewMockEventSender()
	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, events: events, initialize: true})
	for _, name := range []string{"app", "old-cert"} {
		if !dueBy(b2.activity.index, name, now) || !dueBy(b2.activity.alerting, name, now) {
			t.Errorf("%s not filed by the scan", name)
		}
	}
	want := []string{"old-cert certificate_expired red " + now.Add(-day).Format(time.RFC3339), "app client_secret_expiring yellow " + now.Add(3*day).Format(time.RFC3339)}
	if got := upstreamAlerts(t, b2, s); !slices.Equal(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
	sweepNow(t, b2, s)
	got := upstreamEvents(events)
	slices.Sort(got)
	if want := []string{"certificate-expired", "client-secret-expiring"}; !slices.Equal(got, want) || !lcSentEvent(events, "integrations/credential-certificate-expired", "old-cert") {
		t.Errorf("events %q, want %q (the certificate's about old-cert)", got, want)
	}
}

// TestShortInactivityWindowWarnsAtHalf: a 5-day suspend_after, which none of the
// default thresholds fits, is warned about once, at half the window.
func TestShortInactivityWindowWarnsAtHalf(t *testing.T) {
	t.Parallel()
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{events: events, initialize: true})
	lcCreateBasic(t, b, s, "svc", map[string]any{"suspend_after": "5d"})
	clock.Advance(60*time.Hour - time.Second)
	sweepNow(t, b, s)
	if got := lcEventTypes(events); len(got) != 0 {
		t.Fatalf("events before half the window: %v", got)
	}
	clock.Advance(time.Second)
	sweepNow(t, b, s)
	clock.Advance(time.Hour)
	sweepNow(t, b, s)
	if got := lcEventTypes(events); !slices.Equal(got, []string{"integrations/credential-suspension-warning"}) {
		t.Fatalf("events %v, want one suspension warning", got)
	}
	logged := lcLogs(t, b, s, "svc", map[string]any{"event": "warning"})
	if len(logged) != 1 || logged[0]["detail"] != "Credential will be suspended in 60 hours because it isn't being used." {
		t.Errorf("warning log events %v", logged)
	}
	if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertSuspensionPending); len(got) != 1 {
		t.Errorf("suspension_pending alerts %v, want one from half the window", got)
	}
}

// An OAuth client_certificate's not_after is an upstream expiry too: a certificate
// expiring in 3 days alerts certificate_expiring (yellow) from the write on, with the
// field it comes from, and is warned about once; the credential stays active.
func TestClientCertificateExpiryAlerts(t *testing.T) {
	t.Parallel()
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{events: events, initialize: true})
	now := clock.Now()
	certPEM, keyPEM := lcSelfSignedPEM(t, now.Add(3*day))
	mustOK(t, b, s, logical.CreateOperation, "credentials/mtls", map[string]any{
		"type": "oauth2_client_credentials", "token_url": "https://auth.example.com/oauth2/token",
		"client_id": "app", "auth_style": "tls_client_auth", "client_certificate": certPEM, "client_key": keyPEM,
	})
	alerts := alertsOf(lcAlerts(t, b, s), lifecycle.AlertCertificateExpiring)
	if len(alerts) != 1 || alerts[0]["name"] != "mtls" || alerts[0]["severity"] != lifecycle.HealthYellow || alerts[0]["detail"] != "client_certificate not_after" {
		t.Fatalf("certificate_expiring alerts %v, want one yellow for mtls from its client_certificate", alerts)
	}
	sweepNow(t, b, s)
	sweepNow(t, b, s)
	if got := upstreamEvents(events); !slices.Equal(got, []string{"certificate-expiring"}) {
		t.Errorf("events %q, want one certificate-expiring", got)
	}
	if st := lcRead(t, b, s, "mtls")["status"]; st != "active" {
		t.Errorf("status %v, want active: an upstream expiry never suspends", st)
	}
}
