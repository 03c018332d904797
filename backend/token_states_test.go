package backend

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// TestIdleTokenStatesDroppedOnTick: the Broker's per-credential state of every
// credential that minted (its newest token, beside the token store's copy) is dropped
// by the periodic tick once the token is oauth.StateIdle old, and the credentials are
// still served from the token store afterwards, without a provider request.
func TestIdleTokenStatesDroppedOnTick(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	const n = 20
	for i := range n {
		name := fmt.Sprint("cc-", i)
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, clientCredentials(p, "header"))
		accessOK(t, b, s, name, nil)
	}
	if got := b.tokens.brokerOf().States(); got != n {
		t.Fatalf("the Broker holds %d states after %d mints, want %d", got, n, n)
	}
	tick := func() {
		t.Helper()
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
	}
	tick()
	if got := b.tokens.brokerOf().States(); got != n {
		t.Fatalf("a tick right after the mints left %d states, want %d (too young to drop)", got, n)
	}
	clock.Advance(oauth.StateIdle + time.Second)
	tick()
	if got := b.tokens.brokerOf().States(); got != 0 {
		t.Fatalf("a tick %s after the mints left %d states, want 0", oauth.StateIdle, got)
	}
	before := p.requests.Load()
	for i := range n {
		accessOK(t, b, s, fmt.Sprint("cc-", i), nil)
	}
	if got := p.requests.Load(); got != before {
		t.Fatalf("%d provider requests reading tokens still valid in the token store, want 0", got-before)
	}
}
