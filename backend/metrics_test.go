package backend

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
)

// scrape reads metrics as a Prometheus scrape asks for them (format=prometheus) and
// parses the exposition.
func scrape(t *testing.T, b *integrationsBackend, s logical.Storage) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp := mustOK(t, b, s, logical.ReadOperation, "metrics", map[string]any{"format": "prometheus"})
	if ct := resp.Data[logical.HTTPContentType]; ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("content type %v", ct)
	}
	if code := resp.Data[logical.HTTPStatusCode]; code != http.StatusOK {
		t.Fatalf("status %v", code)
	}
	body := resp.Data[logical.HTTPRawBody].([]byte)
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	return families, string(body)
}

// metricValue is the value of the series of family name with exactly labels; -1 when
// there is no such series.
func metricValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// vault read integrations/metrics answers JSON, as Vault's sys/metrics does: a key per
// series, named as the exposition names it, with the same value; format=prometheus
// is the exposition; any other format is a 400 naming the field.
func TestMetricsReadIsJSONByDefault(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/db", basicCredential())
	mustOK(t, b, s, logical.ReadOperation, "access/db", nil)
	for _, format := range []any{nil, "json"} {
		var data map[string]any
		if format != nil {
			data = map[string]any{"format": format}
		}
		resp := mustOK(t, b, s, logical.ReadOperation, "metrics", data)
		if _, raw := resp.Data[logical.HTTPRawBody]; raw {
			t.Fatalf("format %v: a raw answer, want JSON data", format)
		}
		if v := resp.Data[`integrations_access_reads_total{kind="static",result="ok"}`]; v != float64(1) {
			t.Fatalf("format %v: access reads %v in %v", format, v, resp.Data)
		}
		if v := resp.Data[`integrations_credentials{status="active"}`]; v != float64(1) {
			t.Fatalf("format %v: active credentials %v", format, v)
		}
		if _, err := json.Marshal(resp.Data); err != nil {
			t.Fatalf("format %v: not JSON: %v", format, err)
		}
	}
	// The same series as the exposition, value for value.
	_, text := scrape(t, b, s)
	js := mustOK(t, b, s, logical.ReadOperation, "metrics", nil).Data
	lines := 0
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines++
		i := strings.LastIndexByte(line, ' ')
		want, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := js[line[:i]].(float64); !ok || got != want {
			t.Errorf("series %s: JSON %v, exposition %v", line[:i], js[line[:i]], want)
		}
	}
	if lines != len(js) {
		t.Errorf("exposition %d series, JSON %d", lines, len(js))
	}
	credWant400(t, b, s, logical.ReadOperation, "metrics", map[string]any{"format": "xml"}, "format", `must be "json" (the default) or "prometheus"`)
}

func basicCredential() map[string]any {
	return map[string]any{"type": "basic", "username": "svc", "password": "s3cret-value"}
}

// Access reads are counted by kind and result, without credential names unless the
// config switch is on; turning it off drops the named series.
func TestMetricsCountAccessReads(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/billing-db", basicCredential())
	for range 2 {
		mustOK(t, b, s, logical.ReadOperation, "access/billing-db", nil)
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/billing-db/suspend", nil)
	if _, err := request(b, s, logical.ReadOperation, "access/billing-db", nil); err == nil {
		t.Fatal("a suspended credential was served")
	}
	families, body := scrape(t, b, s)
	if got := metricValue(families, "integrations_access_reads_total", map[string]string{"kind": "static", "result": "ok"}); got != 2 {
		t.Errorf("ok reads = %v, want 2", got)
	}
	if got := metricValue(families, "integrations_access_reads_total", map[string]string{"kind": "static", "result": "refused"}); got != 1 {
		t.Errorf("refused reads = %v, want 1", got)
	}
	if strings.Contains(body, "billing-db") || strings.Contains(body, "s3cret") {
		t.Fatalf("the exposition names the credential or its secret by default:\n%s", body)
	}

	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"metrics_credential_label": true})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/billing-db/unsuspend", nil)
	mustOK(t, b, s, logical.ReadOperation, "access/billing-db", nil)
	families, _ = scrape(t, b, s)
	if got := metricValue(families, "integrations_credential_access_reads_total", map[string]string{"credential": "billing-db", "result": "ok"}); got != 1 {
		t.Errorf("named ok reads = %v, want 1", got)
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"metrics_credential_label": false})
	if _, body = scrape(t, b, s); strings.Contains(body, "billing-db") {
		t.Fatalf("the switch is off and the exposition still names the credential:\n%s", body)
	}
	resp, _ := request(b, s, logical.UpdateOperation, "config", map[string]any{"metrics_credential_label": "maybe"})
	wantFieldError(t, resp, "metrics_credential_label")
}

// The gauges follow every state change, and a scrape costs no storage access: the
// counts are kept in step, nothing is scanned.
func TestMetricsCredentialGaugesKeptInStep(t *testing.T) {
	t.Parallel()
	b, inner, _ := newTestBackend(t)
	s := &countingStorage{Storage: inner}
	for _, name := range []string{"a", "b", "c"} {
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, basicCredential())
	}
	gauge := func(f map[string]*dto.MetricFamily, name, label, value string) float64 {
		return metricValue(f, name, map[string]string{label: value})
	}
	f, _ := scrape(t, b, s)
	if got := gauge(f, "integrations_credentials", "status", "active"); got != 3 {
		t.Fatalf("active = %v, want 3", got)
	}
	if got := gauge(f, "integrations_credentials_by_health", "health", "awaiting_usage"); got != 3 {
		t.Fatalf("awaiting_usage = %v, want 3", got)
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/b/suspend", nil)
	mustOK(t, b, s, logical.DeleteOperation, "credentials/c", nil)
	s.reset()
	f, _ = scrape(t, b, s)
	if n := s.total(); n != 0 {
		t.Errorf("a scrape made %d storage calls (%s), want none", n, s)
	}
	for status, want := range map[string]float64{"active": 1, "suspended": 1, "needs_reauth": 0} {
		if got := gauge(f, "integrations_credentials", "status", status); got != want {
			t.Errorf("%s = %v, want %v", status, got, want)
		}
	}
	if got := gauge(f, "integrations_credentials_by_health", "health", "red"); got != 1 {
		t.Errorf("red = %v, want 1 (the suspended one)", got)
	}
	if got := gauge(f, "integrations_credentials_by_health", "health", "awaiting_usage"); got != 1 {
		t.Errorf("awaiting_usage = %v, want 1", got)
	}
}

// OAuth reads: one token request (by grant and result, timed), then the cache.
func TestMetricsTokenRequests(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	for range 3 {
		accessOK(t, b, s, "cc", nil)
	}
	f, _ := scrape(t, b, s)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"integrations_provider_token_requests_total", map[string]string{"grant": "client_credentials", "result": "ok"}, 1},
		{"integrations_provider_token_request_duration_seconds", map[string]string{"grant": "client_credentials"}, 1},
		{"integrations_token_reads_total", map[string]string{"source": "provider"}, 1},
		{"integrations_token_reads_total", map[string]string{"source": "cache"}, 2},
		{"integrations_access_reads_total", map[string]string{"kind": "oauth2", "result": "ok"}, 3},
	}
	for _, c := range checks {
		if got := metricValue(f, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// The sweep is counted and timed.
func TestMetricsSweepRuns(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for range 2 {
		if err := b.sweep(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := scrape(t, b, s)
	if got := metricValue(f, "integrations_sweep_runs_total", map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("sweep runs = %v, want 2", got)
	}
	if got := metricValue(f, "integrations_sweep_duration_seconds", map[string]string{}); got != 2 {
		t.Errorf("sweep durations observed = %v, want 2", got)
	}
}

// Notifications are counted per attempt: a failed one, then the delivered retry.
func TestMetricsCountNotifications(t *testing.T) {
	t.Parallel()
	r := newLCReceiver(t, func(_ notify.Notification, attempt int) int {
		if attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": r.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	b.outbox.Enqueue(t.Context(), notify.Notification{Event: "suspended", Credential: "svc"})
	b.outbox.Deliver(t.Context())
	clock.Advance(notify.MaxBackoff)
	b.outbox.Deliver(t.Context())
	f, _ := scrape(t, b, s)
	for result, want := range map[string]float64{"failed": 1, "sent": 1} {
		if got := metricValue(f, "integrations_notifications_total", map[string]string{"result": result}); got != want {
			t.Errorf("notifications %s = %v, want %v", result, got, want)
		}
	}
}

// Verifications are counted by result, once each, when recorded.
func TestMetricsCountVerifications(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	srv, _ := authServer(t, "Authorization", "Basic dXNlcjpwYXNz") // user:pass
	mustOK(t, b, s, logical.UpdateOperation, "credentials/good", map[string]any{"type": "basic", "username": "user", "password": "pass", "verify_url": srv.URL})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/bad", map[string]any{"type": "basic", "username": "user", "password": "nope", "verify_url": srv.URL})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": srv.URL})
	for _, name := range []string{"good", "good", "bad", "hook"} {
		verifyResult(t, b, s, name)
	}
	f, _ := scrape(t, b, s)
	for result, want := range map[string]float64{"ok": 2, "failed": 1, "unsupported": 1} {
		if got := metricValue(f, "integrations_verifications_total", map[string]string{"result": result}); got != want {
			t.Errorf("verifications %s = %v, want %v", result, got, want)
		}
	}
}
