package backend

import (
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/githubtest"
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

// BenchmarkAccessGitHubAppCached measures access/<name> for a github_app credential
// whose installation token is cached (internal/githubtest's GitHub), from every P at
// once: no storage operation, no request to GitHub after the first mint.
func BenchmarkAccessGitHubAppCached(b *testing.B) {
	gh := githubtest.New(123456, "Iv23liBench", &fixtures.GitHubAppKey().PublicKey,
		&githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: []string{"octo-repo"}, Permissions: map[string]string{"contents": "read"}})
	srv := httptest.NewServer(gh.Handler())
	b.Cleanup(srv.Close)
	gh.SetBaseURL(srv.URL)
	cs := newCountingStorage()
	be, clock := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
	gh.Now = clock.Now // GitHub checks the App JWT's iat and exp on the engine's clock
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", credWithType("github_app", map[string]any{
		"app_id": "123456", "private_key": fixtures.GitHubAppKeyPEM(), "installation_id": "7890",
		"repositories": []string{"octo-repo"}, "base_url": srv.URL,
	}))
	mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil) // the one mint
	benchCachedAccess(b, be, cs, "token")
	if n := gh.TokenRequests(); n != 1 {
		b.Fatalf("%d token requests to GitHub, want 1", n)
	}
}
