package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

// TestRepeatedActivatedRotationsNeverBrick: rotate-client-key activate=true, called
// again and again within client_key_overlap, keeps every key that signed published
// (each is needed for its overlap) until the set is full; the rotation after that is a
// 400 that names when the oldest key retires, and changes nothing. The credential
// still reads, publishes and signs, and rotates again once a key retired. Before the
// fix the 16th rotation stored a set of 17 keys, which no read could decode again: the
// credential's reads, jwks/<name> and every mint failed for good.
func TestRepeatedActivatedRotationsNeverBrick(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", generatedCredential("https://idp.example.com", "ec-p256"))
	refused := 0
	for i := range ownedkeys.MaxKeys + 4 {
		r := call(t, b, s, logical.UpdateOperation, "credentials/gen/rotate-client-key", map[string]any{"activate": true})
		if r != nil && r.IsError() {
			if !strings.Contains(r.Error().Error(), "retires") {
				t.Fatalf("rotation %d refused with %v, want when the oldest key retires", i, r.Error())
			}
			refused++
		}
		clock.Advance(time.Second)
	}
	if refused == 0 {
		t.Error("no rotation was refused with the set full")
	}
	r := call(t, b, s, logical.PatchOperation, "credentials/gen", map[string]any{"generate_client_key": "ec-p384"})
	if r == nil || !r.IsError() || !strings.Contains(r.Error().Error(), "generate_client_key") || !strings.Contains(r.Error().Error(), "retires") {
		t.Errorf("an algorithm change with the set full: %v, want a 400 naming generate_client_key and when the oldest key retires", r)
	}
	mustOK(t, b, s, logical.ReadOperation, "credentials/gen", nil)
	if _, err := readJWKS(b, s, "gen"); err != nil {
		t.Fatalf("jwks/gen after the rotations: %v", err)
	}
	if set := storedKeys(t, b, s, "gen"); set.Len() > ownedkeys.MaxKeys {
		t.Fatalf("the set holds %d keys", set.Len())
	}
	clock.Advance(25 * time.Hour) // past the default overlap: the older keys retire
	mustOK(t, b, s, logical.UpdateOperation, "credentials/gen/rotate-client-key", map[string]any{"activate": true})
}

// TestRepeatedIssuerRotationsNeverBrick: oidc/rotate called again and again within
// the keep of the replaced keys is refused once the set is full (a 400 naming when the
// oldest key retires); the issuer keys still decode, sign and publish. Before the fix
// the 16th rotation stored 17 keys: the keys document, every federated mint and the
// rotation job failed for good.
func TestRepeatedIssuerRotationsNeverBrick(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer})
	refused := 0
	for i := range ownedkeys.MaxKeys + 4 {
		r := call(t, b, s, logical.UpdateOperation, "oidc/rotate", nil)
		if r != nil && r.IsError() {
			if !strings.Contains(r.Error().Error(), "retires") {
				t.Fatalf("rotation %d refused with %v, want when the oldest key retires", i, r.Error())
			}
			refused++
		}
		clock.Advance(time.Second)
	}
	if refused == 0 {
		t.Error("no rotation was refused with the set full")
	}
	ctx := context.Background()
	if _, err := loadIssuerKeys(ctx, s); err != nil {
		t.Fatalf("the issuer keys no longer decode: %v", err)
	}
	b.issuer.drop()
	if _, err := b.issuerSigningKey(ctx, clock.Now()); err != nil {
		t.Fatalf("no issuer key signs: %v", err)
	}
	clock.Advance(issuerKeyKeep)
	mustOK(t, b, s, logical.UpdateOperation, "oidc/rotate", nil)
}
