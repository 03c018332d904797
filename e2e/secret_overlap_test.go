//go:build e2e

package e2e

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/fositetest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// overlapCase is one way a client authenticates while its secret or key rotates: the
// credential's fields before and after the rotation, and what the server accepts at
// each step (only the old, both, only the new).
type overlapCase struct {
	create, rotate             map[string]any
	knowOld, knowBoth, knowNew func()
	secrets                    []string // what no read may show
	// refusal is the server's error for the new client before it knows it: fosite
	// answers invalid_request for an assertion whose key id it does not know.
	refusal string
}

// TestClientSecretOverlapFosite: client-secret rotation without an outage, through a
// real Vault against fosite, whose clients accept rotated secrets as a provider does
// while a new one replicates. The server first knows only the old secret; the engine
// is given the new one and keeps serving through the old; then the server accepts the
// new one and the engine forgets the old; then the server retires the old one. No
// read fails, the credential never leaves active, and every step's provider requests
// are counted. Both styles that send a client secret, header (client_secret_basic)
// and body (client_secret_post), and a pasted client_key (private_key_jwt, verified by
// fosite against the client's registered key) and a pasted client_key with its
// certificate over mutual TLS (tls_client_auth, the certificate bound to the client),
// which follow the same rule.
func TestClientSecretOverlapFosite(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	vc := noRetryClient(t, shared)
	for style, method := range map[string]string{"header": fositetest.ClientSecretBasic, "body": fositetest.ClientSecretPost} {
		t.Run(style, func(t *testing.T) {
			t.Parallel()
			p := fositetest.New(t, fositetest.Options{})
			id := "rotating-" + style
			oldSecret, newSecret := "old-secret-"+style+"-4f1c0d9e2b7a", "new-secret-"+style+"-9a8b7c6d5e4f"
			runSecretOverlap(t, vc, mount, "rot-"+style, p, overlapCase{
				create: map[string]any{"type": "oauth2_client_credentials", "token_url": p.TokenURL(), "ca_certificate": p.CACertificatePEM(),
					"client_id": id, "client_secret": oldSecret, "auth_style": style, "scopes": "read"},
				rotate:   map[string]any{"client_secret": newSecret},
				knowOld:  func() { p.RegisterRotatingClient(t, id, method, oldSecret) },
				knowBoth: func() { p.RegisterRotatingClient(t, id, method, newSecret, oldSecret) },
				knowNew:  func() { p.RegisterRotatingClient(t, id, method, newSecret) },
				secrets:  []string{oldSecret, newSecret},
				refusal:  "invalid_client",
			})
		})
	}
	t.Run("private_key_jwt", func(t *testing.T) {
		t.Parallel()
		p := fositetest.New(t, fositetest.Options{})
		id := "rotating-key"
		oldKey, newKey := fositetest.NewKey(fositetest.ES256), fositetest.NewKey(fositetest.ES256)
		register := func(kid string, key crypto.Signer) func() {
			return func() {
				p.Register(t, fositetest.Client{ID: id, Algorithm: fositetest.ES256, KeyID: kid, PublicKey: key.Public()})
			}
		}
		runSecretOverlap(t, vc, mount, "rot-key", p, overlapCase{
			create: map[string]any{"type": "oauth2_client_credentials", "token_url": p.TokenURL(), "ca_certificate": p.CACertificatePEM(),
				"client_id": id, "auth_style": "private_key_jwt", "client_key": fixtures.KeyPEM(oldKey), "client_key_id": "k1"},
			rotate:  map[string]any{"client_key": fixtures.KeyPEM(newKey), "client_key_id": "k2"},
			knowOld: register("k1", oldKey),
			// fositetest registers one key per client: "both" is the new one alone, which
			// the engine must then use, and forget the old.
			knowBoth: register("k2", newKey),
			knowNew:  register("k2", newKey),
			secrets:  pemSecrets(fixtures.KeyPEM(oldKey)), // plus the new key's body, below
			refusal:  "invalid_request",
		})
	})
	t.Run("tls_client_auth", func(t *testing.T) {
		t.Parallel()
		p := fositetest.New(t, fositetest.Options{})
		id := "rotating-cert"
		oldKey, newKey := fositetest.NewKey(fositetest.ES256), fositetest.NewKey(fositetest.ES256)
		oldCert, newCert := p.IssueClientCertificate(t, id, oldKey), p.IssueClientCertificate(t, id, newKey)
		bind := func(cert *x509.Certificate) func() {
			return func() { p.Register(t, fositetest.Client{ID: id, Method: fositetest.TLSClientAuth, Certificate: cert}) }
		}
		runSecretOverlap(t, vc, mount, "rot-cert", p, overlapCase{
			create: map[string]any{"type": "oauth2_client_credentials", "token_url": p.MTLSTokenURL(), "ca_certificate": p.CACertificatePEM(),
				"client_id": id, "auth_style": "tls_client_auth", "client_key": fixtures.KeyPEM(oldKey), "client_certificate": fositetest.CertificatePEM(oldCert)},
			rotate: map[string]any{"client_key": fixtures.KeyPEM(newKey), "client_certificate": fositetest.CertificatePEM(newCert)},
			// One certificate is bound to a client at a time: "both" is the new one.
			knowOld: bind(oldCert), knowBoth: bind(newCert), knowNew: bind(newCert),
			secrets: pemSecrets(fixtures.KeyPEM(oldKey), fositetest.CertificatePEM(oldCert), fositetest.CertificatePEM(newCert)),
			refusal: "invalid_client",
		})
	})
}

func runSecretOverlap(t *testing.T, vc *api.Client, mount, name string, p *fositetest.Provider, tc overlapCase) {
	began := time.Now()
	secrets := tc.secrets
	if k, ok := tc.rotate["client_key"].(string); ok {
		secrets = append(secrets, pemSecrets(k)...)
	}
	tc.knowOld()
	path := mount + "/credentials/" + name
	if _, err := vc.Logical().Write(path, tc.create); err != nil {
		t.Fatal(err)
	}
	view := func() map[string]any {
		t.Helper()
		s, err := vc.Logical().Read(path)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(s.Data)
		noSecretIn(t, "credentials/"+name, string(raw), secrets)
		return s.Data
	}
	// step reads access/ n times (every read must succeed), verifies when forced (a
	// mint whatever is cached), checks the credential stays active, and returns the
	// provider requests the step made and the credential's view.
	reads := 0
	step := func(what string, n int, verify bool) (int64, map[string]any) {
		t.Helper()
		before := p.Requests()
		for range n {
			s, err := vc.Logical().Read(mount + "/access/" + name)
			if err != nil || s == nil || s.Data["access_token"] == "" {
				t.Fatalf("%s: access/%s failed: %v", what, name, err)
			}
			reads++
		}
		if verify {
			s, err := vc.Logical().Write(path+"/verify", nil)
			if err != nil || s.Data["result"] != "ok" {
				t.Fatalf("%s: verify: %v %v", what, err, s)
			}
		}
		v := view()
		if v["status"] != "active" {
			t.Fatalf("%s: status %v (%v), want active", what, v["status"], v["status_reason"])
		}
		got := p.Requests() - before
		t.Logf("%s: %d provider requests, health %v", what, got, v["health"])
		return got, v
	}
	lastErrors := func(n int) []string {
		all := p.Received()
		var out []string
		for _, r := range all[len(all)-n:] {
			out = append(out, r.Error)
		}
		return out
	}
	alerted := func() bool {
		s, err := vc.Logical().Read(mount + "/alerts")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(s.Data)
		noSecretIn(t, "alerts", string(raw), secrets)
		for _, a := range s.Data["alerts"].([]any) {
			a := a.(map[string]any)
			if a["name"] == name && a["reason"] == "new_client_secret_refused" {
				return true
			}
		}
		return false
	}

	// 0. The old secret, which the server knows.
	if got, _ := step("old secret", 5, false); got != 1 {
		t.Fatalf("old secret: %d provider requests, want 1", got)
	}

	// 1. The engine is given the new secret before the server accepts it: the first
	// mint is refused (invalid_client) and served through the old one, once.
	if _, err := vc.Logical().JSONMergePatch(t.Context(), path, tc.rotate); err != nil {
		t.Fatal(err)
	}
	got, v := step("new secret, not yet accepted", 5, false)
	if got != 2 || fmt.Sprint(lastErrors(2)) != "["+tc.refusal+" ]" {
		t.Fatalf("after the rotation: %d requests, answers %q; want 2: %s, then a token", got, lastErrors(int(got)), tc.refusal)
	}
	if v["health"] != "yellow" || v["previous_client_secret_until"] == nil || !alerted() {
		t.Fatalf("after the refusal: health %v, previous kept until %v, alerted %v; want yellow, kept, alerted",
			v["health"], v["previous_client_secret_until"], alerted())
	}
	// A forced mint (verify) meets the same refusal and the same fallback.
	if got, _ := step("verify, still refused", 3, true); got != 2 {
		t.Fatalf("verify while refused: %d requests, want 2", got)
	}

	// 2. The server accepts the new secret (the old still works): the next mint uses
	// the new one, once, and the engine forgets the old.
	tc.knowBoth()
	got, v = step("new secret accepted", 3, true)
	if got != 1 || lastErrors(1)[0] != "" {
		t.Fatalf("new secret accepted: %d requests (%q), want 1 accepted", got, lastErrors(int(got)))
	}
	if v["previous_client_secret_until"] != nil || v["health"] != "green" || alerted() {
		t.Fatalf("after the new secret worked: previous kept until %v, health %v, alerted %v; want forgotten, green, none",
			v["previous_client_secret_until"], v["health"], alerted())
	}

	// 3. The server retires the old secret: nothing changes.
	tc.knowNew()
	if got, _ := step("old secret retired", 5, true); got != 1 {
		t.Fatalf("old secret retired: %d requests, want 1", got)
	}
	t.Logf("%s: %d reads, none failed; %d provider requests in all; %s", name, reads, p.Requests(), time.Since(began).Round(time.Millisecond))
}
