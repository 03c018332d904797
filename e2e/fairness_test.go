//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// TestPatchVerifyLoopIsRateLimited: through a real Vault, 1,000 cycles of
// `patch refresh_token=<bogus>` and `verify` on one credential, against a real provider
// answering invalid_grant, reach the provider at most 10 times plus once per 3 s of
// the loop (the credential's token-request bucket); every other verify is a 429
// naming when to retry, and no verify without a provider request gives a verdict.
func TestPatchVerifyLoopIsRateLimited(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	client := noRetryClient(t, shared)
	p := newIDP(t, oauthtest.Options{})
	shared.mustCLI(t, "write", mount+"/credentials/noisy", "type=oauth2_authorization_code",
		"auth_url="+p.AuthURL(), "token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID,
		"client_secret="+oauthtest.ClientSecret, "scopes=offline_access", "refresh_token=bogus-0")
	ctx := context.Background()
	const cycles = 1000
	before := p.Requests()
	start := time.Now()
	verdicts, limited := 0, 0
	for i := range cycles {
		if _, err := client.Logical().JSONMergePatch(ctx, mount+"/credentials/noisy", map[string]any{"refresh_token": fmt.Sprintf("bogus-%d", i+1)}); err != nil {
			t.Fatalf("cycle %d: patch: %v", i, err)
		}
		s, err := client.Logical().Write(mount+"/credentials/noisy/verify", nil)
		switch {
		case err == nil && s != nil && s.Data["result"] == "failed":
			verdicts++
		case statusCode(err) == http.StatusTooManyRequests && strings.Contains(err.Error(), "retry after"):
			limited++
		default:
			t.Fatalf("cycle %d: verify answered %v, %v", i, s, err)
		}
	}
	elapsed := time.Since(start)
	sent := p.Requests() - before
	// The bucket's clock started at or after start; +1 for a refill falling between.
	bound := int64(10 + elapsed/(3*time.Second) + 1)
	t.Logf("%d patch-and-verify cycles in %s: %d provider requests (bound %d), %d verdicts, %d answered 429",
		cycles, elapsed.Round(time.Millisecond), sent, bound, verdicts, limited)
	if sent > bound {
		t.Fatalf("%d provider requests in %s, want at most %d", sent, elapsed, bound)
	}
	if int64(verdicts) != sent {
		t.Fatalf("%d verdicts for %d provider requests", verdicts, sent)
	}
}
