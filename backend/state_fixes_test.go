package backend

import (
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
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
