//go:build e2e

package e2e

import (
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// TestUpstreamExpiryAlerts: through a real Vault server, alerts lists an OAuth
// credential whose client secret expires in 3 days (client_secret_expiring, health
// yellow) and a certificate credential whose certificate expired yesterday
// (certificate_expired, health red); neither is suspended.
func TestUpstreamExpiryAlerts(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	now := time.Now().UTC().Truncate(time.Second)
	secretEnd := now.Add(3 * 24 * time.Hour)
	if _, err := shared.client.Logical().Write(mount+"/credentials/crm", map[string]any{
		"type": "oauth2_client_credentials", "token_url": "https://auth.example.com/oauth2/token",
		"client_id": "crm", "client_secret": "cs-1", "client_secret_expires_at": secretEnd.Format(time.RFC3339),
	}); err != nil {
		t.Fatalf("writing the OAuth credential: %v", err)
	}
	certEnd := now.Add(-24 * time.Hour)
	certPEM, keyPEM := fixtures.Certificate(certEnd)
	if _, err := shared.client.Logical().Write(mount+"/credentials/mtls", map[string]any{
		"type": "certificate", "certificate": certPEM, "private_key": keyPEM,
	}); err != nil {
		t.Fatalf("writing the certificate credential: %v", err)
	}

	alerts := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/alerts")).Data["alerts"].([]any)
	type alert struct{ name, reason, severity, due string }
	var got []alert
	for _, a := range alerts {
		m := a.(map[string]any)
		got = append(got, alert{m["name"].(string), m["reason"].(string), m["severity"].(string), m["due"].(string)})
	}
	want := []alert{
		{"mtls", "certificate_expired", "red", certEnd.Format(time.RFC3339)},
		{"crm", "client_secret_expiring", "yellow", secretEnd.Format(time.RFC3339)},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("alerts = %+v, want %+v", got, want)
	}
	for name, health := range map[string]string{"crm": "yellow", "mtls": "red"} {
		d := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name)).Data
		if d["health"] != health || d["status"] != "active" {
			t.Errorf("%s: health %v status %v, want %s and active", name, d["health"], d["status"], health)
		}
	}
}
