package backend

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// TestAccessWarnsOfACappedLifetime: a form-encoded answer whose expires_in overflows
// (2^63−1 seconds, which once gave a token that expired in 1736 and was minted again
// on every read) gives a token valid for oauth.MaxLifetime; every access/ answer
// serving it says so, and the cached token is served without another request.
func TestAccessWarnsOfACappedLifetime(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = w.Write([]byte("access_token=at-forever&token_type=bearer&expires_in=9223372036854775807"))
	}))
	t.Cleanup(provider.Close)
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", map[string]any{
		"type": "oauth2_client_credentials", "token_url": provider.URL + "/token", "client_id": "id", "client_secret": "secret",
	})
	issued := clock.Now()
	for i := range 2 {
		resp := mustOK(t, b, s, logical.ReadOperation, "access/cc", nil)
		if resp.Data["access_token"] != "at-forever" || resp.Data["expires_at"] != rfc3339(issued.Add(oauth.MaxLifetime)) ||
			resp.Data["rotation_period"] != int64(oauth.MaxLifetime/time.Second) {
			t.Fatalf("read %d: not the token and its capped expiry (%s)", i, outcome(resp, nil))
		}
		if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "longer than the 365 days") {
			t.Fatalf("read %d: warnings %q", i, resp.Warnings)
		}
		clock.Advance(time.Hour)
	}
	if got := requests.Load(); got != 1 {
		t.Fatalf("%d token requests for two reads of a token good for a year", got)
	}
}
