package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
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

// TestConcurrentRotateWriteAccess: rotate-client-key, access/, and reads of
// jwks/<name> and the credential at the same time (run under -race): none fails, so
// no read fails across a rotation; then the same with patches of the credential
// racing too, where only access/ may answer 409 (a settings write discards a racing
// mint, by design) and no write is lost. Afterwards the stored set holds the signing
// key and the last rotation's next key, and a mint after the overlap verifies against
// the published set with that key.
func TestConcurrentRotateWriteAccess(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	e := newJWKSEndpoint(t, b, s, "gen", "svc")
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", generatedCredential(e.srv.URL, "ec-p256"))
	ctx := context.Background()
	do := func(op logical.Operation, path string, data map[string]any) error {
		req := &logical.Request{Operation: op, Path: path, Data: data, Storage: s, Unauthenticated: strings.HasPrefix(path, "jwks/")}
		resp, err := b.HandleRequest(ctx, req)
		if err == nil && resp != nil && resp.IsError() {
			err = resp.Error()
		}
		return err
	}
	const rounds = 20
	run := func(writes bool) {
		type failure struct {
			access bool
			err    error
		}
		errs := make(chan failure, 5*rounds)
		workers := map[string]func(i int) error{
			"rotate": func(int) error { return do(logical.UpdateOperation, "credentials/gen/rotate-client-key", nil) },
			"access": func(int) error { return do(logical.ReadOperation, "access/gen", nil) },
			"jwks":   func(int) error { return do(logical.ReadOperation, "jwks/gen", nil) },
			"read":   func(int) error { return do(logical.ReadOperation, "credentials/gen", nil) },
		}
		if writes {
			workers["patch"] = func(i int) error {
				return do(logical.PatchOperation, "credentials/gen", map[string]any{"description": fmt.Sprintf("write %d", i)})
			}
		}
		var wg sync.WaitGroup
		for name, w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range rounds {
					if err := w(i); err != nil {
						errs <- failure{access: name == "access", err: err}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for f := range errs {
			if writes && f.access && strings.Contains(f.err.Error(), "changed while its token was requested") {
				continue
			}
			t.Errorf("writes %v: %v", writes, f.err)
		}
	}
	run(false)
	run(true)
	set := storedKeys(t, b, s, "gen")
	if set.Len() != 2 {
		t.Errorf("after rotations waiting for their overlap the set holds %d keys, want the signing one and the last next one", set.Len())
	}
	c, _ := b.credentials.get(ctx, s, "gen")
	if c.Description != fmt.Sprintf("write %d", rounds-1) {
		t.Errorf("description %q, want the last write's", c.Description)
	}
	clock.Advance(25 * time.Hour) // the last next key signs
	next, _ := set.Current()
	if tok := freshAccess(t, b, s, clock, "gen"); tok != "minted-by-"+next.ID {
		t.Errorf("mint after the overlap: %q, want signed by %s", tok, next.ID)
	}
	if _, refused := e.counts(); refused != 0 {
		t.Errorf("%d assertions refused", refused)
	}
}

// TestRotateClientKeyRefusesUnknownFields: a misspelt parameter (activte=true) is a
// 400 naming it and rotates nothing, as on every other write path; before, it was
// dropped and the rotation ran without activating: the old key kept signing for a
// whole overlap after an operator's emergency rotation.
func TestRotateClientKeyRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", generatedCredential("https://idp.example.com", "ec-p256"))
	before := storedKeys(t, b, s, "gen")
	r := call(t, b, s, logical.UpdateOperation, "credentials/gen/rotate-client-key", map[string]any{"activte": true})
	if r == nil || !r.IsError() || !strings.Contains(r.Error().Error(), "activte") {
		t.Errorf("rotate-client-key activte=true: %v, want a 400 naming activte", r)
	}
	if after := storedKeys(t, b, s, "gen"); after.Len() != before.Len() {
		t.Errorf("the refused request rotated: %d keys, was %d", after.Len(), before.Len())
	}
}
