package backend

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// Key work is bounded for the whole plugin process (credtype.KeyWorkLimits): these
// tests fill or count the process-wide gate, so none is parallel.

// fillKeyWork takes every turn of the process-wide key-work gate, as two of the
// largest scrypt derivations would, until the returned function gives them back.
func fillKeyWork(t *testing.T) (release func()) {
	t.Helper()
	g := credtype.KeyWork()
	var releases []func()
	for range credtype.KeyWorkLimits.Concurrent {
		r, err := g.Acquire(context.Background(), credtype.KeyWorkLimits.Memory/int64(credtype.KeyWorkLimits.Concurrent))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		for _, r := range releases {
			r()
		}
	}
	t.Cleanup(release)
	return release
}

// requestBy sends one request under ctx and returns the answer, whatever it is.
func requestBy(t *testing.T, ctx context.Context, b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any) *logical.Response { //nolint:revive // context-as-argument: *testing.T first, as every test helper here
	t.Helper()
	resp, err := b.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Data: data, Storage: s})
	if err != nil {
		t.Fatalf("%s %s: error %v, want a 503 answer (a bare error is a 500)", op, path, err)
	}
	return resp
}

// pastDeadline is a request context whose deadline leaves less than the time the
// gate keeps in reserve for the derivation itself: a caller queued behind the work
// running is refused at once, as one whose deadline passed while it waited.
func pastDeadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), credtype.KeyWorkLimits.Reserve/2)
	t.Cleanup(cancel)
	return ctx
}

// want503 asserts the busy answer: status 503, a JSON body with Vault's "errors" and
// retry_after in whole seconds (at least 1), and the same in a Retry-After header.
func want503(t *testing.T, resp *logical.Response) {
	t.Helper()
	if resp == nil {
		t.Fatal("no answer, want status 503")
	}
	if resp.Data[logical.HTTPStatusCode] != http.StatusServiceUnavailable {
		t.Fatalf("answer with status %v (error %v), want status 503", resp.Data[logical.HTTPStatusCode], resp.Error())
	}
	var body struct {
		Errors     []string `json:"errors"`
		RetryAfter *int     `json:"retry_after"`
	}
	raw, _ := resp.Data[logical.HTTPRawBody].(string)
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	if body.RetryAfter == nil || *body.RetryAfter < 1 {
		t.Fatalf("body %s: want retry_after of at least 1 s", raw)
	}
	if len(body.Errors) != 1 || !strings.Contains(body.Errors[0], "busy with other key derivations") {
		t.Fatalf("body %s: want an error saying the engine is busy", raw)
	}
	if h := resp.Headers["Retry-After"]; len(h) != 1 || h[0] != strconv.Itoa(*body.RetryAfter) {
		t.Fatalf("Retry-After header %v, want %d", h, *body.RetryAfter)
	}
}

// storedEntry returns the stored bytes of credential name (nil when absent).
func storedEntry(t *testing.T, s logical.Storage, name string) []byte {
	t.Helper()
	e, err := s.Get(context.Background(), credentialPrefix+name)
	if err != nil {
		t.Fatal(err)
	}
	if e == nil {
		return nil
	}
	return e.Value
}

// dropStoredSecrets rewrites credential name as an engine that kept no derived secrets
// stored it (no "secrets" in the entry).
func dropStoredSecrets(t *testing.T, s logical.Storage, name string) {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(storedEntry(t, s, name), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["secrets"]; !ok {
		t.Fatalf("%s: no secrets in the stored entry", name)
	}
	delete(raw, "secrets")
	old, _ := json.Marshal(raw)
	if err := s.Put(context.Background(), &logical.StorageEntry{Key: credentialPrefix + name, Value: old}); err != nil {
		t.Fatal(err)
	}
}

// TestKeyWorkBusyIs503: a request whose key derivation gets no turn of the
// process-wide gate before its deadline is answered 503 with retry_after, never a
// 500, and changes nothing — on a create, an update, an access/ of an entry stored
// without its decrypted key, and a verify of an SSH key stored without one. Once the
// turns are free, the same requests succeed.
func TestKeyWorkBusyIs503(t *testing.T) {
	s := &logical.InmemStorage{}
	b, _ := newBackendOver(t, s, nil)
	cert := encryptedECKey(t, "pw-busy")
	certValues := map[string]any{"type": "certificate", "certificate": cert.certPEM, "private_key": cert.keyPEM, "private_key_password": "pw-busy"}
	mustOK(t, b, s, logical.CreateOperation, "credentials/old-cert", certValues)
	dropStoredSecrets(t, s, "old-cert")
	sftp := newSSHKeyServer(t, "pass-busy", false)
	mustOK(t, b, s, logical.CreateOperation, "credentials/old-ssh", sftp.values())
	dropStoredSecrets(t, s, "old-ssh")
	b, _ = newBackendOver(t, s, nil) // a fresh node: nothing derived in memory
	before := map[string][]byte{"old-cert": storedEntry(t, s, "old-cert"), "old-ssh": storedEntry(t, s, "old-ssh")}
	runs := credtype.KDFRuns()

	release := fillKeyWork(t)
	want503(t, requestBy(t, pastDeadline(t), b, s, logical.CreateOperation, "credentials/new-cert", certValues))
	other := encryptedECKey(t, "pw-other")
	want503(t, requestBy(t, pastDeadline(t), b, s, logical.UpdateOperation, "credentials/old-cert", map[string]any{
		"certificate": other.certPEM, "private_key": other.keyPEM, "private_key_password": "pw-other"}))
	want503(t, requestBy(t, pastDeadline(t), b, s, logical.ReadOperation, "access/old-cert", nil))
	want503(t, requestBy(t, pastDeadline(t), b, s, logical.UpdateOperation, "credentials/old-ssh/verify", nil))

	if n := credtype.KDFRuns() - runs; n != 0 {
		t.Errorf("%d derivations ran without a turn", n)
	}
	if storedEntry(t, s, "new-cert") != nil {
		t.Error("the refused create stored the credential")
	}
	for name, was := range before {
		if !bytes.Equal(storedEntry(t, s, name), was) {
			t.Errorf("the refused requests changed the stored %s", name)
		}
	}
	if got := credtype.KeyWork().Stats(); got.Waiting != 0 {
		t.Errorf("refused callers are still queued: %+v", got)
	}

	release()
	mustOK(t, b, s, logical.CreateOperation, "credentials/new-cert", certValues)
	if resp := mustOK(t, b, s, logical.ReadOperation, "access/old-cert", nil); resp.Data["private_key"] != cert.pkcs8PEM {
		t.Error("access/ after the turns were freed did not hand out the decrypted key")
	}
	wantVerify(t, verifyResult(t, b, s, "old-ssh"), "ok")
}

// TestVerifyEncryptedSSHKeyRunsNoKDF: an sftp_ssh_key's passphrase is checked once,
// when it is written; the decrypted copy kept with it (seal-wrapped, in the stored
// entry's secrets) is what verify signs with, so verify never runs bcrypt. access/
// returns private_key and passphrase exactly as written; management reads show
// neither the passphrase nor the decrypted copy.
func TestVerifyEncryptedSSHKeyRunsNoKDF(t *testing.T) {
	b, s, _ := newTestBackend(t)
	srv := newSSHKeyServer(t, "pass-once", true)
	before := credtype.KDFRuns()
	mustOK(t, b, s, logical.CreateOperation, "credentials/files", srv.values())
	if n := credtype.KDFRuns() - before; n != 1 {
		t.Fatalf("the write ran the KDF %d times, want 1", n)
	}
	before = credtype.KDFRuns()
	for range 5 {
		wantVerify(t, verifyResult(t, b, s, "files"), "ok")
	}
	if n := credtype.KDFRuns() - before; n != 0 {
		t.Fatalf("5 verifications ran the KDF %d times, want 0", n)
	}
	for range 5 {
		<-srv.signIns // each verification signed in with the key
	}
	resp := mustOK(t, b, s, logical.ReadOperation, "access/files", nil)
	if resp.Data["private_key"] != srv.keyPEM || resp.Data["passphrase"] != srv.passphrase {
		t.Fatal("access/ does not return private_key and passphrase as written")
	}
	if n := credtype.KDFRuns() - before; n != 0 {
		t.Fatalf("access/ ran the KDF %d times", n)
	}
	decrypted := keyBody(t, srv.plainPEM(t, storedEntry(t, s, "files")))
	read := credJSON(t, mustOK(t, b, s, logical.ReadOperation, "credentials/files", nil).Data)
	if strings.Contains(read, decrypted) || strings.Contains(read, srv.passphrase) {
		t.Errorf("the management read shows the passphrase or the decrypted key: %s", read)
	}
}

// TestVerifySSHKeyStoredWithoutDecryptedCopy: an sftp_ssh_key stored before the engine
// kept the decrypted copy is read through access/ without deriving anything, and still
// verifies: the first verification decrypts it once,
// under the key-work limits, and stores the copy with its result, so no later
// verification — on this node or a fresh one — runs bcrypt.
func TestVerifySSHKeyStoredWithoutDecryptedCopy(t *testing.T) {
	s := &logical.InmemStorage{}
	b, _ := newBackendOver(t, s, nil)
	srv := newSSHKeyServer(t, "pass-old", false)
	mustOK(t, b, s, logical.CreateOperation, "credentials/old-files", srv.values())
	dropStoredSecrets(t, s, "old-files")

	b, _ = newBackendOver(t, s, nil)
	before := credtype.KDFRuns()
	// access/ hands out the key as written: it never waits for, or runs, a derivation.
	if resp := mustOK(t, b, s, logical.ReadOperation, "access/old-files", nil); resp.Data["private_key"] != srv.keyPEM || resp.Data["passphrase"] != srv.passphrase {
		t.Fatal("access/ does not return private_key and passphrase as written")
	}
	if n := credtype.KDFRuns() - before; n != 0 {
		t.Fatalf("access/ of the old entry ran the KDF %d times, want 0", n)
	}
	wantVerify(t, verifyResult(t, b, s, "old-files"), "ok")
	if n := credtype.KDFRuns() - before; n != 1 {
		t.Fatalf("the first verification of the old entry ran the KDF %d times, want 1", n)
	}
	srv.plainPEM(t, storedEntry(t, s, "old-files")) // kept by the verification's write
	before = credtype.KDFRuns()
	wantVerify(t, verifyResult(t, b, s, "old-files"), "ok")
	b, _ = newBackendOver(t, s, nil)
	wantVerify(t, verifyResult(t, b, s, "old-files"), "ok")
	if n := credtype.KDFRuns() - before; n != 0 {
		t.Fatalf("later verifications ran the KDF %d times, want 0", n)
	}
	if resp := mustOK(t, b, s, logical.ReadOperation, "access/old-files", nil); resp.Data["private_key"] != srv.keyPEM || resp.Data["passphrase"] != srv.passphrase {
		t.Fatal("access/ does not return private_key and passphrase as written")
	}
}

// sshKeyServer is an in-process SSH server on loopback that lets "transfer" sign in
// with one encrypted key, and counts the sign-ins.
type sshKeyServer struct {
	addr, fingerprint  string
	keyPEM, passphrase string
	pub                ssh.PublicKey
	signIns            chan struct{}
}

// newSSHKeyServer serves a key encrypted with passphrase: in OpenSSH format with
// bcrypt (as ssh-keygen writes it) when bcrypt is set, else with legacy PEM encryption,
// whose one-round MD5 KDF keeps the tests that do not measure bcrypt quick under -race.
func newSSHKeyServer(t *testing.T, passphrase string, bcrypt bool) *sshKeyServer {
	t.Helper()
	var keyPEM string
	var userKey ssh.Signer
	if bcrypt {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		block, err := ssh.MarshalPrivateKeyWithPassphrase(key, "", []byte(passphrase))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM = string(pem.EncodeToMemory(block))
		if userKey, err = ssh.NewSignerFromKey(key); err != nil {
			t.Fatal(err)
		}
	} else {
		key := fixtures.NewKey("p256")
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 legacy PEM encryption is what the engine accepts
		block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", der, []byte(passphrase), x509.PEMCipherAES256) //nolint:staticcheck
		if err != nil {
			t.Fatal(err)
		}
		keyPEM = string(pem.EncodeToMemory(block))
		if userKey, err = ssh.NewSignerFromKey(key); err != nil {
			t.Fatal(err)
		}
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	srv := &sshKeyServer{fingerprint: ssh.FingerprintSHA256(hostKey.PublicKey()), keyPEM: keyPEM, passphrase: passphrase,
		pub: userKey.PublicKey(), signIns: make(chan struct{}, 64)}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if c.User() == "transfer" && bytes.Equal(k.Marshal(), srv.pub.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv.addr = l.Addr().String()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return
				}
				srv.signIns <- struct{}{}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					_ = ch.Reject(ssh.Prohibited, "test")
				}
			}()
		}
	}()
	return srv
}

func (srv *sshKeyServer) values() map[string]any {
	return map[string]any{"type": "sftp_ssh_key", "host": "sftp://" + srv.addr + "/", "host_key_fingerprint": srv.fingerprint,
		"username": "transfer", "private_key": srv.keyPEM, "passphrase": srv.passphrase}
}

// plainPEM finds the decrypted copy of the server's key in a stored entry: an
// unencrypted key with the same public half. It fails the test when there is none.
func (srv *sshKeyServer) plainPEM(t *testing.T, entry []byte) string {
	t.Helper()
	var stored struct {
		Secrets map[string]string `json:"secrets"`
	}
	if err := json.Unmarshal(entry, &stored); err != nil {
		t.Fatal(err)
	}
	plain := stored.Secrets["private_key"]
	key, err := ssh.ParsePrivateKey([]byte(plain))
	if err != nil {
		t.Fatalf("the stored entry holds no unencrypted copy of the key: %v", err)
	}
	if !bytes.Equal(key.PublicKey().Marshal(), srv.pub.Marshal()) {
		t.Fatal("the stored decrypted copy is not the written key")
	}
	return plain
}

// TestTypesStateKeyWorkLimits: types/ states the engine-wide limits on key work and
// what a request beyond them gets, from credtype.KeyWorkLimits; so does types/<type>
// for the types whose keys are derived, and no other.
func TestTypesStateKeyWorkLimits(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	check := func(where string, data map[string]any) {
		t.Helper()
		limits, _ := data["limits"].(map[string]any)
		kdf, _ := limits["key_derivation"].(map[string]any)
		if kdf == nil {
			t.Fatalf("%s: no limits.key_derivation in %v", where, data)
		}
		if kdf["concurrent_derivations"] != 2 || kdf["kdf_memory_mib"] != int64(256) {
			t.Errorf("%s: limits %v, want 2 derivations and 256 MiB", where, kdf)
		}
		for _, want := range []string{"503", "retry_after", "Retry-After", "allowed_response_headers"} {
			if !strings.Contains(kdf["when_busy"].(string), want) {
				t.Errorf("%s: when_busy does not say %q: %v", where, want, kdf["when_busy"])
			}
		}
		if !strings.Contains(kdf["scope"].(string), "whole plugin process") {
			t.Errorf("%s: scope %v", where, kdf["scope"])
		}
	}
	check("types/", mustOK(t, b, s, logical.ListOperation, "types/", nil).Data)
	for _, typ := range []string{"certificate", "sftp_ssh_key"} {
		check("types/"+typ, mustOK(t, b, s, logical.ReadOperation, "types/"+typ, nil).Data)
	}
	if l, ok := mustOK(t, b, s, logical.ReadOperation, "types/basic", nil).Data["limits"]; ok {
		t.Errorf("types/basic states key-work limits: %v", l)
	}
}

// TestEditDoesNotDeriveAgain: a write that leaves an encrypted key and its password as
// they were (a patch of the description, an update that omits the secrets) takes the
// decrypted key kept from the write that set them: it runs no KDF, so it is not refused
// while the key-work limits are full. A write that changes the password derives again
// and is checked again.
func TestEditDoesNotDeriveAgain(t *testing.T) {
	b, s, _ := newTestBackend(t)
	cert := encryptedECKey(t, "pw-edit")
	mustOK(t, b, s, logical.CreateOperation, "credentials/cert", map[string]any{
		"type": "certificate", "certificate": cert.certPEM, "private_key": cert.keyPEM, "private_key_password": "pw-edit"})
	sftp := newSSHKeyServer(t, "pass-edit", false)
	mustOK(t, b, s, logical.CreateOperation, "credentials/files", sftp.values())

	runs := credtype.KDFRuns()
	release := fillKeyWork(t)
	for _, name := range []string{"cert", "files"} {
		resp := requestBy(t, pastDeadline(t), b, s, logical.PatchOperation, "credentials/"+name, map[string]any{"description": "edited while busy"})
		if resp.IsError() || resp.Data[logical.HTTPStatusCode] != nil {
			t.Fatalf("patch of %s while the key-work limits are full: %v", name, resp.Data)
		}
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cert", map[string]any{"certificate": cert.certPEM, "description": "an update keeping the secrets"})
	if n := credtype.KDFRuns() - runs; n != 0 {
		t.Fatalf("edits that kept the keys ran the KDF %d times, want 0", n)
	}
	release()

	if resp := mustOK(t, b, s, logical.ReadOperation, "access/cert", nil); resp.Data["private_key"] != cert.pkcs8PEM {
		t.Error("access/ after the edits does not hand out the decrypted key")
	}
	wantVerify(t, verifyResult(t, b, s, "files"), "ok")

	before := storedEntry(t, s, "cert")
	resp := call(t, b, s, logical.PatchOperation, "credentials/cert", map[string]any{"private_key_password": "not-pw-edit"})
	wantFieldError(t, resp, "private_key_password")
	resp = call(t, b, s, logical.PatchOperation, "credentials/files", map[string]any{"passphrase": "not-pass-edit"})
	wantFieldError(t, resp, "passphrase")
	if n := credtype.KDFRuns() - runs; n != 2 {
		t.Fatalf("two writes of a new password ran the KDF %d times, want 2", n)
	}
	if !bytes.Equal(storedEntry(t, s, "cert"), before) {
		t.Error("the refused patch changed the stored credential")
	}
}
