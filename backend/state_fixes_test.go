package backend

import (
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// TestFailingReadCountsOnce: five reads that each fail (the provider answers 500)
// make "5 failures in a row" in alerts: the read's failed token request and its
// failed access are one failure, not two. The clock moves between reads so each one
// reaches the provider past the backoff.
func TestFailingReadCountsOnce(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(oauthtest.Fail(http.StatusInternalServerError))
	const reads = 5
	for i := range reads {
		if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
			t.Fatalf("read %d: %d, want 502", i, code)
		}
		clock.Advance(backoffCeiling)
	}
	check := func(when string) {
		t.Helper()
		failing := alertsOf(lcAlerts(t, b, s), lifecycle.AlertFailing)
		if len(failing) != 1 {
			t.Fatalf("%s: failing alerts %v, want one", when, failing)
		}
		if got, want := failing[0]["detail"], "5 failures in a row"; got != want {
			t.Fatalf("%s: detail %q, want %q", when, got, want)
		}
	}
	check("before the flush")
	if err := b.flushUsage(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	check("after the flush")
}

// refusedClient is a client_credentials credential whose secret the provider does
// not know, refused by a read (invalid_client, 403, needs_reauth).
func refusedClient(t *testing.T, p *testProvider, b *integrationsBackend, s logical.Storage, name string) {
	t.Helper()
	data := clientCredentials(p, "header")
	data["client_secret"] = "not-the-secret"
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, data)
	if code, _ := accessErr(t, b, s, name); code != http.StatusForbidden {
		t.Fatalf("a secret the provider does not know: %d, want 403", code)
	}
	wantStatus(t, b, s, name, "needs_reauth", "invalid_client", "after the refusal")
}

// TestPatchedSecretWorksAgain: a credential the provider refused (invalid_client) is
// usable again once its client_secret is patched; a patch of a field the refusal
// cannot be about (description) gives it no new attempt.
func TestPatchedSecretWorksAgain(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	refusedClient(t, p, b, s, "cc")
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"description": "still wrong"})
	wantStatus(t, b, s, "cc", "needs_reauth", "invalid_client", "after a patch of description")
	clock.Advance(backoffCeiling)
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": oauthtest.ClientSecret})
	wantStatus(t, b, s, "cc", "active", "", "after a patch of client_secret")
	accessOK(t, b, s, "cc", nil)
}

// TestVerifiedCredentialWorksAgain: a credential the provider refused is usable again
// after a verification that minted a token (the provider took the client back); a
// verification that fails leaves it refused.
func TestVerifiedCredentialWorksAgain(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, http.StatusUnauthorized, `{"error":"invalid_client"}`)
		return true
	})
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusForbidden {
		t.Fatalf("refused client: %d, want 403", code)
	}
	clock.Advance(backoffCeiling)
	if got := mustOK(t, b, s, logical.UpdateOperation, "credentials/cc/verify", nil).Data["result"]; got != lifecycle.VerifyFailed {
		t.Fatalf("verify while refused: %v, want failed", got)
	}
	wantStatus(t, b, s, "cc", "needs_reauth", "invalid_client", "after a failed verification")
	p.SetFault(nil)
	clock.Advance(backoffCeiling)
	if got := mustOK(t, b, s, logical.UpdateOperation, "credentials/cc/verify", nil).Data["result"]; got != lifecycle.VerifyOK {
		t.Fatalf("verify once the provider takes the client: %v, want ok", got)
	}
	wantStatus(t, b, s, "cc", "active", "", "after a verification that minted")
	accessOK(t, b, s, "cc", nil)
}

// TestNewSecretClearsFailedVerification: a failed verification is about the settings
// it checked: a patch of the secret, or an update changing the token_url, drops it
// (the read shows no verify_result, health is no longer red), while a patch of the
// description keeps it.
func TestNewSecretClearsFailedVerification(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	failVerify := func(name string) {
		t.Helper()
		clock.Advance(backoffCeiling)
		if got := mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name+"/verify", nil).Data["result"]; got != lifecycle.VerifyFailed {
			t.Fatalf("verify %s: %v, want failed", name, got)
		}
	}
	verifyResult := func(name string) any {
		t.Helper()
		return mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data["verify_result"]
	}
	refusedClient(t, p, b, s, "cc")
	failVerify("cc")
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"description": "unrelated"})
	if got := verifyResult("cc"); got != lifecycle.VerifyFailed {
		t.Fatalf("after a patch of description: verify_result %v, want failed", got)
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": "another-wrong-one"})
	if got := verifyResult("cc"); got != "" {
		t.Fatalf("after a new client_secret: verify_result %v, want none", got)
	}
	if h := mustOK(t, b, s, logical.ReadOperation, "credentials/cc", nil).Data["health"]; h == "red" {
		t.Fatalf("after a new client_secret: health red")
	}

	// A destination: an update moving token_url (with the secret sent again).
	failVerify("cc")
	data := clientCredentials(p, "header")
	data["client_secret"] = "another-wrong-one"
	data["token_url"] = p.tokenURL() + "?v=2"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", data)
	if got := verifyResult("cc"); got != "" {
		t.Fatalf("after a new token_url: verify_result %v, want none", got)
	}
}
