//go:build e2e

package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// Vault Secrets Operator reads access/ through Vault's API client, as here, and takes
// a VaultDynamicSecret with allowStaticCreds as rotating only when the answer has no
// renewable lease and carries last_vault_rotation (a string parsed as RFC 3339 with
// nanoseconds), rotation_period and ttl (json.Number integers, rotation_period >= 1).
// Through the real server: those types, last_vault_rotation the issue time (expiry -
// rotation_period), and ttl counted from the read — the hand-over point (47 minutes
// into an hour-long token) minus ttl is when the engine answered, between the request
// and its answer.
func TestVSOReadsAccessAsStaticCreds(t *testing.T) {
	t.Parallel()
	p := newIDP(t, oauthtest.Options{AccessTTL: time.Hour})
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/credentials/crm-api", "type=oauth2_client_credentials",
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)

	before := time.Now().Truncate(time.Second)
	secret, err := shared.client.Logical().Read(mount + "/access/crm-api")
	after := time.Now()
	if err != nil || secret == nil {
		t.Fatalf("read: %v", err)
	}
	if secret.LeaseID != "" || secret.Renewable {
		t.Fatalf("lease %q renewable %v: VSO would renew a lease instead", secret.LeaseID, secret.Renewable)
	}
	last, ok := secret.Data["last_vault_rotation"].(string)
	if !ok {
		t.Fatalf("last_vault_rotation is %T, want a string", secret.Data["last_vault_rotation"])
	}
	issued, err := time.Parse(time.RFC3339Nano, last)
	if err != nil {
		t.Fatalf("last_vault_rotation %q: %v", last, err)
	}
	ints := map[string]int64{}
	for _, key := range []string{"rotation_period", "ttl"} {
		n, ok := secret.Data[key].(json.Number)
		if !ok {
			t.Fatalf("%s is %T, want a JSON number", key, secret.Data[key])
		}
		v, err := n.Int64()
		if err != nil || v < 1 {
			t.Fatalf("%s %q: want an integer >= 1 (%v)", key, n, err)
		}
		ints[key] = v
	}
	if ints["rotation_period"] != 3600 {
		t.Fatalf("rotation_period %d, want 3600", ints["rotation_period"])
	}
	expiry := mustTime(t, secret.Data["expires_at"].(string))
	if got := expiry.Sub(issued.Truncate(time.Second)); got != time.Hour {
		t.Fatalf("expires_at - last_vault_rotation = %s, want the token's lifetime", got)
	}
	if issued.Before(before) || issued.After(after) {
		t.Fatalf("last_vault_rotation %s is not when this read minted the token (%s .. %s)", last, before, after)
	}
	// The window opens 47 minutes after issue, earlier by the token's own spread (less
	// than a quarter of the 12-minute lead: backend/token_timing.go, refreshSpread).
	answered := issued.Add(47 * time.Minute).Add(-time.Duration(ints["ttl"]) * time.Second)
	if answered.Before(before.Add(-time.Second)) || answered.After(after.Add(3*time.Minute+time.Second)) {
		t.Fatalf("ttl %d does not count from the read: it points at %s, the read was %s .. %s", ints["ttl"], answered, before, after)
	}
}
