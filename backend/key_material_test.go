package backend

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// keyBody is the base64 body of a PEM block, the part that would show however the PEM
// were re-wrapped or JSON-escaped.
func keyBody(t testing.TB, pemText string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(pemText))
	if b == nil {
		t.Fatal("not PEM")
	}
	lines := strings.Split(strings.TrimSpace(pemText), "\n")
	return lines[1] // the first line of base64: enough to recognise the key
}

// TestAccessDoesNotRunKDF: an encrypted certificate key is decrypted once, when it is
// written; access/ reads hand out the decrypted key without running the KDF again;
// management reads and lists never show the decrypted key. Not parallel: it reads the
// process-wide KDF counter.
func TestAccessDoesNotRunKDF(t *testing.T) {
	b, s, _ := newTestBackend(t)
	k := encryptedECKey(t, "pw-kdf-once")
	before := credtype.KDFRuns()
	mustOK(t, b, s, logical.CreateOperation, "credentials/enc", map[string]any{
		"type": "certificate", "certificate": k.certPEM, "private_key": k.keyPEM, "private_key_password": "pw-kdf-once",
	})
	if n := credtype.KDFRuns() - before; n != 1 {
		t.Fatalf("write ran the KDF %d times, want 1", n)
	}
	before = credtype.KDFRuns()
	for range 20 {
		resp := mustOK(t, b, s, logical.ReadOperation, "access/enc", nil)
		if resp.Data["private_key"] != k.pkcs8PEM {
			t.Fatalf("access/ private_key is not the decrypted PKCS#8 key")
		}
	}
	if n := credtype.KDFRuns() - before; n != 0 {
		t.Fatalf("20 access/ reads ran the KDF %d times, want 0", n)
	}

	// Stored in the barrier (the seal-wrapped entry), shown nowhere else.
	entry, err := s.Get(context.Background(), credentialPrefix+"enc")
	if err != nil || entry == nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(entry.Value), keyBody(t, k.pkcs8PEM)) {
		t.Error("decrypted key is not kept in the stored entry")
	}
	secret := keyBody(t, k.pkcs8PEM)
	for _, path := range []string{"credentials/enc"} {
		resp := mustOK(t, b, s, logical.ReadOperation, path, nil)
		if got := credJSON(t, resp.Data); strings.Contains(got, secret) || strings.Contains(got, "secrets") {
			t.Errorf("read %s shows the decrypted key: %s", path, got)
		}
	}
	list := mustOK(t, b, s, logical.ListOperation, "credentials/", nil)
	if got := credJSON(t, list.Data); strings.Contains(got, secret) {
		t.Errorf("list shows the decrypted key: %s", got)
	}
	upd := mustOK(t, b, s, logical.PatchOperation, "credentials/enc", map[string]any{"description": "patched"})
	if got := credJSON(t, upd.Data); strings.Contains(got, secret) {
		t.Errorf("write response shows the decrypted key: %s", got)
	}
}

// TestAccessV01EntryDerivesOnce: an entry written by v0.1 (no stored secrets) still
// works; its key is decrypted once, on the first access/, and kept in memory — not once
// per read, and a read does not write storage.
func TestAccessV01EntryDerivesOnce(t *testing.T) {
	s := &logical.InmemStorage{}
	b, _ := newBackendOver(t, s, nil)
	k := encryptedECKey(t, "pw-v01")
	mustOK(t, b, s, logical.CreateOperation, "credentials/old", map[string]any{
		"type": "certificate", "certificate": k.certPEM, "private_key": k.keyPEM, "private_key_password": "pw-v01",
	})
	// Rewrite the entry as v0.1 stored it: no secrets slot.
	ctx := context.Background()
	entry, err := s.Get(ctx, credentialPrefix+"old")
	if err != nil || entry == nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(entry.Value, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["secrets"]; !ok {
		t.Fatal("no secrets slot in the stored entry")
	}
	delete(raw, "secrets")
	old, _ := json.Marshal(raw)
	if err := s.Put(ctx, &logical.StorageEntry{Key: credentialPrefix + "old", Value: old}); err != nil {
		t.Fatal(err)
	}

	b2, _ := newBackendOver(t, s, nil) // a fresh node: nothing cached
	before := credtype.KDFRuns()
	for range 10 {
		resp := mustOK(t, b2, s, logical.ReadOperation, "access/old", nil)
		if resp.Data["private_key"] != k.pkcs8PEM {
			t.Fatal("access/ of a v0.1 entry did not hand out the decrypted key")
		}
	}
	if n := credtype.KDFRuns() - before; n != 1 {
		t.Fatalf("10 access/ reads of a v0.1 entry ran the KDF %d times, want 1", n)
	}
	after, _ := s.Get(ctx, credentialPrefix+"old")
	if string(after.Value) != string(old) {
		t.Error("access/ rewrote the stored entry")
	}
}
