package backend

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// BenchmarkAccessJWTBearerCached is BenchmarkAccessOAuthCached for each JWT-bearer
// type: access/<name> of a credential whose token is cached (two-hour tokens from a
// loopback token endpoint; Salesforce's answer carries instance_url and no
// expires_in, so its token lives default_token_lifetime), from every P at once. No
// storage operation and, after the first mint, no provider request.
func BenchmarkAccessJWTBearerCached(b *testing.B) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		answer := map[string]any{"access_token": "at-bench-0123456789abcdef", "token_type": "Bearer", "expires_in": 7200}
		if r.URL.Path == "/services/oauth2/token" {
			answer = map[string]any{"access_token": "00Dbench!0123456789", "token_type": "Bearer", "instance_url": "https://acme.my.salesforce.com"}
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	b.Cleanup(srv.Close)
	key := fixtures.RSAKey()
	for _, tc := range []struct {
		typ    string
		values map[string]any
		key    string
	}{
		{"oauth2_jwt_bearer", map[string]any{"token_url": srv.URL + "/token", "issuer": "svc", "subject": "user",
			"client_key": fixtures.KeyPEM(fixtures.NewKey("p256")), "scopes": []string{"read"}}, "access_token"},
		{"google_service_account", map[string]any{"service_account_key": fixtures.ServiceAccountKey(key, "sa@p.iam.gserviceaccount.com", "kid-1", srv.URL+"/token"),
			"scopes": []string{"https://www.googleapis.com/auth/cloud-platform"}}, "access_token"},
		{"salesforce_jwt", map[string]any{"login_url": srv.URL, "consumer_key": "3MVG9", "username": "u@example.com",
			"client_key": fixtures.KeyPEM(key)}, "instance_url"},
	} {
		b.Run(tc.typ, func(b *testing.B) {
			cs := newCountingStorage()
			be, _ := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
			mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", credWithType(tc.typ, tc.values))
			mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil) // the one mint
			mints := requests.Load()
			benchCachedAccess(b, be, cs, tc.key)
			if extra := requests.Load() - mints; extra != 0 {
				b.Fatalf("%d provider requests for a cached token", extra)
			}
		})
	}
}
