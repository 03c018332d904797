package backend

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// TestSalesforceInstanceURLKeptAndRefusalNeedsReauth: a salesforce_jwt token's
// instance_url is served with it from the cache, from storage after a restart (a new
// backend over the same storage asks the provider nothing), and by verify's mint;
// a patch of the user forgets the cached token (it was the previous user's), and the
// provider's refusal of the grant (invalid_grant) makes the credential needs_reauth; the
// credential's read shows neither the key nor the token.
func TestSalesforceInstanceURLKeptAndRefusalNeedsReauth(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	var refuse atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if refuse.Load() || r.URL.Path != "/services/oauth2/token" || r.FormValue("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"user hasn't approved this consumer"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "00Dtok!secret-token", "token_type": "Bearer",
			"instance_url": "https://acme.my.salesforce.com", "id": "https://login.salesforce.com/id/00D/005"})
	}))
	t.Cleanup(srv.Close)
	s := &logical.InmemStorage{}
	b, _ := newBackendOver(t, s, nil)
	keyPEM := fixtures.KeyPEM(fixtures.RSAKey())
	mustOK(t, b, s, logical.CreateOperation, "credentials/sf", credWithType("salesforce_jwt", map[string]any{
		"login_url": srv.URL, "consumer_key": "3MVG9", "username": "u@example.com", "client_key": keyPEM}))
	for range 2 {
		a := mustOK(t, b, s, logical.ReadOperation, "access/sf", nil).Data
		if a["instance_url"] != "https://acme.my.salesforce.com" || a["access_token"] != "00Dtok!secret-token" {
			t.Fatalf("access: instance_url %v", a["instance_url"])
		}
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d token requests for two reads, want 1", n)
	}
	b2, _ := newBackendOver(t, s, nil)
	if a := mustOK(t, b2, s, logical.ReadOperation, "access/sf", nil).Data; a["instance_url"] != "https://acme.my.salesforce.com" || requests.Load() != 1 {
		t.Fatalf("after a restart: instance_url %v, %d requests (want the stored token)", a["instance_url"], requests.Load())
	}
	if v := mustOK(t, b2, s, logical.UpdateOperation, "credentials/sf/verify", nil).Data; v["result"] != "ok" || requests.Load() != 2 {
		t.Fatalf("verify: %v after %d requests", v["result"], requests.Load())
	}
	refuse.Store(true)
	mustOK(t, b2, s, logical.PatchOperation, "credentials/sf", map[string]any{"username": "other@example.com"})
	if resp, err := request(b2, s, logical.ReadOperation, "access/sf", nil); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("access after the provider refused: no error (%d requests, %v)", requests.Load(), resp.Warnings)
	}
	read := mustOK(t, b2, s, logical.ReadOperation, "credentials/sf", nil).Data
	if read["status"] != "needs_reauth" || read["status_reason"] != "invalid_grant" {
		t.Fatalf("after invalid_grant: status %v (%v)", read["status"], read["status_reason"])
	}
	out, _ := json.Marshal(read)
	for _, secret := range append(pemBodyLines(keyPEM), "secret-token") {
		if strings.Contains(string(out), secret) {
			t.Errorf("the credential's read shows secret material")
		}
	}
}
