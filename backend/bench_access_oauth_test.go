package backend

import (
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
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", credWithType("oauth2_client_credentials", map[string]any{
		"token_url": p.tokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret,
	}))
	mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil) // the one mint
	mints := p.Requests()
	benchCachedAccess(b, be, cs, "access_token")
	if extra := p.Requests() - mints; extra != 0 {
		b.Fatalf("%d provider requests for a cached token", extra)
	}
}
