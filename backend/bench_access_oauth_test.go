package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// BenchmarkAccessOAuthCached measures access/<name> for an OAuth client-credentials
// credential whose token is cached (a real oauthtest provider, two-hour tokens), from
// every P at once. storage-ops/op counts what a cached read costs in storage; provider
// requests after the first mint must be none.
func BenchmarkAccessOAuthCached(b *testing.B) {
	p := newTestProvider(b, providerConfig{})
	cs := newCountingStorage()
	be, _ := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
	ctx := context.Background()
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", credWithType("oauth2_client_credentials", map[string]any{
		"token_url": p.tokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret,
	}))
	mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil) // the one mint
	mints := p.Requests()
	start := cs.total()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := be.HandleRequest(ctx, &logical.Request{
				Operation: logical.ReadOperation, Path: "access/bench", Storage: cs, DisplayName: "bench",
			})
			if err != nil || resp == nil || resp.Data["access_token"] == nil {
				b.Errorf("access: %v %v", resp, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cs.total()-start)/float64(b.N), "storage-ops/op")
	if extra := p.Requests() - mints; extra != 0 {
		b.Fatalf("%d provider requests for a cached token", extra)
	}
}
