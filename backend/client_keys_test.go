package backend

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

// jwksEndpoint is a token endpoint that verifies each client assertion against the key
// set the engine publishes at jwks/<name> (read through the backend at the time of
// the request, as a provider fetching the client's jwks_uri would), and counts what it
// accepted and refused, by kid.
type jwksEndpoint struct {
	srv *httptest.Server

	mu       sync.Mutex
	accepted map[string]int // kid -> assertions accepted
	refused  int
	kids     []string // the kid of every assertion, in order
	raw      []string // every assertion received
}

func newJWKSEndpoint(t *testing.T, b logical.Backend, s logical.Storage, name, clientID string) *jwksEndpoint {
	e := &jwksEndpoint{accepted: map[string]int{}}
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		assertion := r.Form.Get("client_assertion")
		kid, ok := e.verify(b, s, name, clientID, assertion, algs, r.Form.Get("client_assertion_type"))
		e.mu.Lock()
		e.kids, e.raw = append(e.kids, kid), append(e.raw, assertion)
		if ok {
			e.accepted[kid]++
		} else {
			e.refused++
		}
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = fmt.Fprintf(w, `{"access_token":"minted-by-%s","token_type":"Bearer","expires_in":60}`, kid) //nolint:gosec // G705: a test server's JSON answer, kid from a verified assertion
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *jwksEndpoint) verify(b logical.Backend, s logical.Storage, name, clientID, assertion string, algs []jose.SignatureAlgorithm, typ string) (string, bool) {
	tok, err := jwt.ParseSigned(assertion, algs)
	if err != nil || len(tok.Headers) != 1 || typ != oauth.ClientAssertionType {
		return "", false
	}
	kid := tok.Headers[0].KeyID
	set, err := readJWKS(b, s, name)
	if err != nil {
		return kid, false
	}
	keys := set.Key(kid)
	if len(keys) != 1 || keys[0].Use != "sig" || keys[0].Algorithm != tok.Headers[0].Algorithm {
		return kid, false
	}
	var c jwt.Claims
	if err := tok.Claims(keys[0].Key, &c); err != nil || c.Subject != clientID || c.Issuer != clientID {
		return kid, false
	}
	return kid, true
}

func (e *jwksEndpoint) counts() (map[string]int, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.accepted))
	for k, v := range e.accepted {
		out[k] = v
	}
	return out, e.refused
}

// readJWKS reads jwks/<name> as an unauthenticated caller (no client token).
func readJWKS(b logical.Backend, s logical.Storage, name string) (jose.JSONWebKeySet, error) {
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks/" + name, Storage: s, Unauthenticated: true})
	var set jose.JSONWebKeySet
	if err != nil {
		return set, err
	}
	if resp == nil || resp.Data[logical.HTTPStatusCode] != http.StatusOK {
		return set, fmt.Errorf("jwks/%s answered %v", name, resp)
	}
	return set, json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &set)
}

// storedKeys decodes the credential's stored key set (the test's view of the private
// halves, which no response may hold).
func storedKeys(t *testing.T, b *integrationsBackend, s logical.Storage, name string) ownedkeys.Set {
	t.Helper()
	c, err := b.credentials.get(context.Background(), s, name)
	if err != nil || c == nil {
		t.Fatalf("credential %s: %v", name, err)
	}
	set, err := c.keySet()
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// freshAccess reads access/<name> after the cached token has expired, so the read
// mints.
func freshAccess(t *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock, name string) string {
	t.Helper()
	clock.Advance(2 * time.Minute) // past the 60 s token
	resp := mustOK(t, b, s, logical.ReadOperation, "access/"+name, nil)
	tok, _ := resp.Data["access_token"].(string)
	return tok
}

func generatedCredential(endpoint, alg string) map[string]any {
	return map[string]any{
		"type": "oauth2_client_credentials", "token_url": endpoint + "/token", "client_id": "svc",
		"auth_style": "private_key_jwt", "generate_client_key": alg, "publish_jwks": true,
	}
}

// TestGenerateClientKeyEveryAlgorithm: every generate_client_key algorithm makes a key
// that signs the client assertion inside the engine, published at jwks/<name> with
// kid = its RFC 7638 thumbprint, use sig and the alg it signs with; reads show its
// public halves (client_public_key, client_jwk, client_keys) and secret_fields is
// empty: there is no client_key.
func TestGenerateClientKeyEveryAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range credtype.KeyAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			b, s, clock := newTestBackend(t)
			e := newJWKSEndpoint(t, b, s, "gen", "svc")
			mustOK(t, b, s, logical.CreateOperation, "credentials/gen", generatedCredential(e.srv.URL, alg))
			set := storedKeys(t, b, s, "gen")
			k, ok := set.Signing(clock.Now())
			if !ok || set.Len() != 1 || k.Algorithm != alg {
				t.Fatalf("stored keys %v: want one %s key signing", set, alg)
			}
			if tok := freshAccess(t, b, s, clock, "gen"); tok != "minted-by-"+k.ID {
				t.Fatalf("access/ = %q, want a token minted with kid %s", tok, k.ID)
			}
			read := mustOK(t, b, s, logical.ReadOperation, "credentials/gen", nil).Data
			jwk, _ := read["client_jwk"].(map[string]any)
			if jwk["kid"] != k.ID || jwk["use"] != "sig" || jwk["d"] != nil {
				t.Errorf("client_jwk = %v, want the public JWK with kid %s", jwk, k.ID)
			}
			if read["client_public_key"] != k.PublicPEM() {
				t.Errorf("client_public_key = %v", read["client_public_key"])
			}
			if sf, _ := read["secret_fields"].([]string); len(sf) != 0 {
				t.Errorf("secret_fields = %v, want none", sf)
			}
			if keys, _ := read["client_keys"].([]map[string]any); len(keys) != 1 || keys[0]["kid"] != k.ID || keys[0]["signing"] != true {
				t.Errorf("client_keys = %v", read["client_keys"])
			}
		})
	}
}

// TestGenerateClientKeyRules: each rule is a 400 naming the field and the rule, and
// nothing is changed.
func TestGenerateClientKeyRules(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	base := generatedCredential("https://idp.example.com", "ec-p256")
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", base)
	before := mustOK(t, b, s, logical.ReadOperation, "credentials/gen", nil).Data
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t)}))
	for _, tc := range []struct {
		name  string
		op    logical.Operation
		patch map[string]any
		field string
		rule  string
	}{
		{"pasted and generated in one write", logical.PatchOperation, map[string]any{"client_key": keyPEM, "generate_client_key": "ec-p256"}, "generate_client_key", "must not be set together with client_key"},
		{"unknown algorithm", logical.PatchOperation, map[string]any{"generate_client_key": "rsa-1024"}, "generate_client_key", "must be one of"},
		{"client_key_id with a generated key", logical.PatchOperation, map[string]any{"client_key_id": "k1"}, "client_key_id", "RFC 7638 thumbprint"},
		{"tls_client_auth without a certificate", logical.PatchOperation, map[string]any{"auth_style": "tls_client_auth"}, "generate_client_certificate", "must be true when auth_style is \"tls_client_auth\""},
		{"overlap under a minute", logical.PatchOperation, map[string]any{"client_key_overlap": "30s"}, "client_key_overlap", "from 1 minute to 30 days"},
		{"rotation period within the overlap", logical.PatchOperation, map[string]any{"client_key_overlap": "2h", "client_key_rotation_period": "1h"}, "client_key_rotation_period", "longer than client_key_overlap"},
		{"certificate TTL too long", logical.PatchOperation, map[string]any{"client_certificate_ttl": "100000h"}, "client_certificate_ttl", "from 1 hour to 10 years"},
		{"algorithm that does not fit", logical.PatchOperation, map[string]any{"client_assertion_algorithm": "RS256"}, "client_assertion_algorithm", "must fit generate_client_key"},
	} {
		resp := call(t, b, s, tc.op, "credentials/gen", tc.patch)
		if resp == nil || !resp.IsError() {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if msg := resp.Error().Error(); !strings.Contains(msg, `"`+tc.field+`"`) || !strings.Contains(msg, tc.rule) {
			t.Errorf("%s: %q, want field %s and rule %q", tc.name, msg, tc.field, tc.rule)
		}
	}
	after := mustOK(t, b, s, logical.ReadOperation, "credentials/gen", nil).Data
	if before["version"] != after["version"] || !reflect.DeepEqual(before["client_jwk"], after["client_jwk"]) {
		t.Errorf("a refused write changed the credential: version %v -> %v", before["version"], after["version"])
	}
	// Without generate_client_key, generate_client_certificate is refused; salesforce_jwt
	// signs RS256 only.
	for _, tc := range []struct {
		data  map[string]any
		field string
	}{
		{map[string]any{"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/t", "client_id": "c", "client_secret": "x", "generate_client_certificate": true}, "generate_client_certificate"},
		{map[string]any{"type": "salesforce_jwt", "consumer_key": "ck", "username": "u@example.com", "generate_client_key": "ec-p256"}, "generate_client_key"},
	} {
		resp := call(t, b, s, logical.CreateOperation, "credentials/other", tc.data)
		if resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), `"`+tc.field+`"`) {
			t.Errorf("%v: %v, want a refusal naming %s", tc.data, resp, tc.field)
		}
	}
	// salesforce_jwt and oauth2_jwt_bearer need no pasted client_key with a generated one.
	mustOK(t, b, s, logical.CreateOperation, "credentials/sf", map[string]any{"type": "salesforce_jwt", "consumer_key": "ck", "username": "u@example.com", "generate_client_key": "rsa-2048"})
	mustOK(t, b, s, logical.CreateOperation, "credentials/jb", map[string]any{"type": "oauth2_jwt_bearer", "token_url": "https://idp.example.com/t", "issuer": "i", "generate_client_key": "ed25519"})
}

func mustPKCS8(t *testing.T) []byte {
	t.Helper()
	k, err := ownedkeys.Generate(context.Background(), ownedkeys.ECP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestGenerateClientKeyIdempotentAndRotatingWrites: Terraform re-applies the same
// fields: the same generate_client_key keeps the key (update and patch, and an update
// that omits it); another algorithm is a rotation (published now, signing after
// client_key_overlap); a pasted client_key replaces (destroys) the generated keys.
func TestGenerateClientKeyIdempotentAndRotatingWrites(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	e := newJWKSEndpoint(t, b, s, "gen", "svc")
	data := generatedCredential(e.srv.URL, "ec-p256")
	data["client_key_overlap"] = "10m"
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", data)
	first, _ := storedKeys(t, b, s, "gen").Current()
	delete(data, "type")
	mustOK(t, b, s, logical.UpdateOperation, "credentials/gen", data)
	mustOK(t, b, s, logical.PatchOperation, "credentials/gen", map[string]any{"generate_client_key": "ec-p256"})
	omitted := map[string]any{}
	for k, v := range data {
		if k != "generate_client_key" {
			omitted[k] = v
		}
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/gen", omitted)
	if set := storedKeys(t, b, s, "gen"); set.Len() != 1 {
		t.Fatalf("re-applied writes made keys: %v", set)
	} else if k, _ := set.Current(); k.ID != first.ID {
		t.Fatalf("re-applied writes replaced the key: %s, want %s", k.ID, first.ID)
	}

	data["generate_client_key"] = "rsa-2048"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/gen", data)
	set := storedKeys(t, b, s, "gen")
	next, _ := set.Current()
	if set.Len() != 2 || next.Algorithm != "rsa-2048" {
		t.Fatalf("another algorithm: keys %v, want the old and a new rsa-2048", set)
	}
	if jwks, _ := readJWKS(b, s, "gen"); len(jwks.Keys) != 2 {
		t.Errorf("jwks during the overlap has %d keys, want 2", len(jwks.Keys))
	}
	if tok := freshAccess(t, b, s, clock, "gen"); tok != "minted-by-"+first.ID {
		t.Errorf("during the overlap the old key signs: %q", tok)
	}
	clock.Advance(10 * time.Minute)
	if tok := freshAccess(t, b, s, clock, "gen"); tok != "minted-by-"+next.ID {
		t.Errorf("after the overlap the new key signs: %q", tok)
	}

	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t)}))
	mustOK(t, b, s, logical.PatchOperation, "credentials/gen", map[string]any{"client_key": keyPEM})
	c, _ := b.credentials.get(context.Background(), s, "gen")
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/gen", nil).Data
	if c.generatedKeys() || read["generate_client_key"] != nil || read["client_jwk"] != nil {
		t.Errorf("a pasted client_key left generated keys: stored %d bytes, read %v", len(c.ClientKeys), read["client_jwk"])
	}
	if jwks, err := readJWKS(b, s, "gen"); err != nil || len(jwks.Keys) != 0 {
		t.Errorf("jwks after a pasted key: %v, %v: want an empty set", jwks.Keys, err)
	}
}

// TestRotateClientKey: the next key is published at once and signs after
// client_key_overlap (at once with activate=true); the previous key stays published
// for another overlap and is then destroyed by the client-key job; no mint fails
// across it, and an assertion of the destroyed key is refused by the published set.
func TestRotateClientKey(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	e := newJWKSEndpoint(t, b, s, "gen", "svc")
	data := generatedCredential(e.srv.URL, "ec-p384")
	data["client_key_overlap"] = "5m"
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", data)
	old, _ := storedKeys(t, b, s, "gen").Current()
	mints := 0
	mint := func(want string) {
		t.Helper()
		mints++
		if tok := freshAccess(t, b, s, clock, "gen"); tok != "minted-by-"+want {
			t.Errorf("mint %d: %q, want signed by %s", mints, tok, want)
		}
	}
	mint(old.ID)
	e.mu.Lock()
	oldAssertion := e.raw[len(e.raw)-1]
	e.mu.Unlock()

	resp := mustOK(t, b, s, logical.UpdateOperation, "credentials/gen/rotate-client-key", nil)
	next, _ := storedKeys(t, b, s, "gen").Current()
	if keys, _ := resp.Data["client_keys"].([]map[string]any); len(keys) != 2 {
		t.Fatalf("rotate-client-key answered client_keys %v, want the two published", resp.Data["client_keys"])
	}
	mint(old.ID) // the next key waits for the overlap
	clock.Advance(3 * time.Minute)
	mint(next.ID) // 2 + 3 minutes: past the overlap
	if jwks, _ := readJWKS(b, s, "gen"); len(jwks.Keys) != 2 {
		t.Errorf("the previous key is published through its overlap: %d keys", len(jwks.Keys))
	}
	clock.Advance(5 * time.Minute)
	if err := b.runClientKeys(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if set := storedKeys(t, b, s, "gen"); set.Len() != 1 {
		t.Errorf("after the second overlap the previous key is destroyed: %v", set)
	}
	mint(next.ID)
	accepted, refused := e.counts()
	if refused != 0 || accepted[old.ID]+accepted[next.ID] != mints {
		t.Errorf("assertions accepted %v, refused %d across the rotation; want %d accepted, none refused", accepted, refused, mints)
	}
	// The retired key's assertion (replayed; this endpoint keeps no jti) is refused
	// by the published set: the key is gone.
	if _, ok := e.verify(b, s, "gen", "svc", oldAssertion, []jose.SignatureAlgorithm{jose.ES384}, oauth.ClientAssertionType); ok {
		t.Error("an assertion of the destroyed key still verifies against jwks/gen")
	}

	// activate=true: the next key signs at once, the previous stays published for the overlap.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/gen/rotate-client-key", map[string]any{"activate": true})
	third, _ := storedKeys(t, b, s, "gen").Current()
	mint(third.ID)
	if jwks, _ := readJWKS(b, s, "gen"); len(jwks.Keys) != 2 {
		t.Errorf("activate=true keeps the previous key published: %d keys", len(jwks.Keys))
	}

	// Only generated keys rotate.
	mustOK(t, b, s, logical.CreateOperation, "credentials/plain", map[string]any{"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/t", "client_id": "c", "client_secret": "x"})
	if r := call(t, b, s, logical.UpdateOperation, "credentials/plain/rotate-client-key", nil); r == nil || !r.IsError() || !strings.Contains(r.Error().Error(), "no generated client key") {
		t.Errorf("rotate-client-key without generated keys: %v", r)
	}
}

// TestClientKeyRotationPeriod: the client-key job rotates a key
// client_key_rotation_period after it was generated (injected clock), logs it, and
// files the credential under the next event.
func TestClientKeyRotationPeriod(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	data := generatedCredential("https://idp.example.com", "ed25519")
	data["client_key_overlap"], data["client_key_rotation_period"] = "1h", "24h"
	mustOK(t, b, s, logical.CreateOperation, "credentials/gen", data)
	first, _ := storedKeys(t, b, s, "gen").Current()
	clock.Advance(23 * time.Hour)
	if err := b.runClientKeys(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if set := storedKeys(t, b, s, "gen"); set.Len() != 1 {
		t.Fatalf("rotated before the period: %v", set)
	}
	clock.Advance(time.Hour)
	if err := b.runClientKeys(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	set := storedKeys(t, b, s, "gen")
	next, _ := set.Current()
	if set.Len() != 2 || next.ID == first.ID || !next.Activates.Equal(clock.Now().UTC().Add(time.Hour)) {
		t.Fatalf("after the period: %v, want a new key activating in an hour", set)
	}
	if logged := lcLogs(t, b, s, "gen", map[string]any{"event": eventClientKeyRotated}); len(logged) != 1 {
		t.Errorf("rotation log events %v, want one", logged)
	}
	clock.Advance(2 * time.Hour) // activation + overlap
	if err := b.runClientKeys(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if set := storedKeys(t, b, s, "gen"); set.Len() != 1 {
		t.Errorf("the previous key outlived its overlap: %v", set)
	}
}

// TestGeneratedCertificate: generate_client_certificate makes a self-signed
// certificate of the key (CN = the name, client_certificate_ttl), shown in reads,
// presented by tls_client_auth, followed by rotations, and its expiry is an upstream
// expiry (certificate_expiring).
func TestGeneratedCertificate(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/mtls", map[string]any{
		"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/t", "client_id": "c",
		"auth_style": "tls_client_auth", "generate_client_key": "rsa-2048", "generate_client_certificate": true,
		"client_certificate_ttl": "72h",
	})
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/mtls", nil).Data
	certPEM, _ := read["client_certificate"].(string)
	leaf, err := credtype.LeafCertificate(certPEM)
	if err != nil {
		t.Fatalf("client_certificate: %v", err)
	}
	k, _ := storedKeys(t, b, s, "mtls").Current()
	if leaf.Subject.CommonName != "mtls" || !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
		t.Errorf("certificate CN %q of another key", leaf.Subject.CommonName)
	}
	if got := leaf.NotAfter.Sub(clock.Now()); got < 71*time.Hour || got > 73*time.Hour {
		t.Errorf("certificate valid for %v, want client_certificate_ttl 72h", got)
	}
	if alerts := alertsOf(lcAlerts(t, b, s), lifecycle.AlertCertificateExpiring); len(alerts) != 1 || alerts[0]["name"] != "mtls" {
		t.Errorf("certificate_expiring alerts %v, want one for the generated certificate", alerts)
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/mtls/rotate-client-key", map[string]any{"activate": true})
	after := mustOK(t, b, s, logical.ReadOperation, "credentials/mtls", nil).Data
	if after["client_certificate"] == certPEM || after["client_certificate"] == nil {
		t.Error("the certificate did not follow the new key")
	}
	c, _ := b.credentials.get(context.Background(), s, "mtls")
	if len(c.ClientCertificates) != 2 {
		t.Errorf("certificates kept: %d, want one per published key", len(c.ClientCertificates))
	}
}

// TestJWKSAnswersAsMissing: a credential without publish_jwks, a missing name and a
// name breaking the rule all get the same answer (status, body, headers) through the
// backend Vault is served; a published set is a raw JWKS with Cache-Control.
func TestJWKSAnswersAsMissing(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	served := &codedErrorAnswers{b}
	mustOK(t, b, s, logical.CreateOperation, "credentials/hidden", map[string]any{
		"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/t", "client_id": "c",
		"auth_style": "private_key_jwt", "generate_client_key": "ec-p256",
	})
	mustOK(t, b, s, logical.CreateOperation, "credentials/plain", map[string]any{"type": "basic", "username": "u", "password": "p"})
	mustOK(t, b, s, logical.CreateOperation, "credentials/published", generatedCredential("https://idp.example.com", "ec-p256"))
	answer := func(name string) string {
		resp, err := served.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks/" + name, Storage: s, Unauthenticated: true})
		js, _ := json.Marshal(resp)
		return fmt.Sprintf("%s|%v", js, err)
	}
	missing := answer("nobody")
	if !strings.Contains(missing, "404") {
		t.Fatalf("missing name: %s, want a 404", missing)
	}
	for _, name := range []string{"hidden", "plain", "a..b", "_x_"} {
		if got := answer(name); got != missing {
			t.Errorf("jwks/%s = %s, want exactly the missing one's %s", name, got, missing)
		}
	}
	resp, err := served.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks/published", Storage: s, Unauthenticated: true})
	if err != nil || resp.Data[logical.HTTPContentType] != "application/jwk-set+json" || !strings.HasPrefix(resp.Headers["Cache-Control"][0], "public, max-age=") {
		t.Fatalf("jwks/published = %v, %v", resp, err)
	}
	if !slices.Contains(b.PathsSpecial.Unauthenticated, jwksPrefix+"*") {
		t.Error("jwks/* is not among the unauthenticated paths")
	}
}

// TestGeneratedKeyNeverInResponses: the key material (its PKCS#8 PEM body and every
// private JWK parameter) never enters any response of a full sequence — create,
// reads, list, access, rotations, refusals, logs, alerts, types — nor the logs or
// events.
func TestGeneratedKeyNeverInResponses(t *testing.T) {
	t.Parallel()
	logs := &lcLogBuffer{}
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{initialize: true, logs: logs, events: events})
	e := newJWKSEndpoint(t, b, s, "gen", "svc")
	var answers []string
	record := func(resp *logical.Response, err error) {
		js, _ := json.Marshal(resp)
		answers = append(answers, string(js), fmt.Sprint(err))
		if resp != nil {
			if raw, ok := resp.Data[logical.HTTPRawBody].([]byte); ok {
				answers = append(answers, string(raw))
			}
		}
	}
	var secrets []string
	capture := func() { // every key held at any step, retired ones included
		if c, _ := b.credentials.get(context.Background(), s, "gen"); c != nil && c.generatedKeys() {
			secrets = append(secrets, privateMaterial(t, storedKeys(t, b, s, "gen"))...)
		}
	}
	do := func(op logical.Operation, path string, data map[string]any) {
		record(b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: s}))
		capture()
	}
	data := generatedCredential(e.srv.URL, "rsa-2048")
	data["generate_client_certificate"], data["client_key_overlap"] = true, "1m"
	do(logical.CreateOperation, "credentials/gen", data)
	do(logical.ReadOperation, "credentials/gen", nil)
	do(logical.ListOperation, "credentials/", nil)
	clock.Advance(time.Minute)
	do(logical.ReadOperation, "access/gen", nil)
	do(logical.PatchOperation, "credentials/gen", map[string]any{"client_key_id": "refused"})
	do(logical.PatchOperation, "credentials/gen", map[string]any{"generate_client_key": "ec-p256"})
	do(logical.UpdateOperation, "credentials/gen/rotate-client-key", map[string]any{"activate": true})
	do(logical.ReadOperation, "jwks/gen", nil)
	do(logical.ReadOperation, "credentials/gen/logs", nil)
	do(logical.ReadOperation, "alerts", nil)
	do(logical.UpdateOperation, "credentials/gen/verify", nil)
	do(logical.ReadOperation, "types/oauth2_client_credentials", nil)
	clock.Advance(3 * time.Minute)
	do(logical.ReadOperation, "access/gen", nil)
	if err := b.runClientKeys(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	do(logical.ReadOperation, "credentials/gen", nil)

	capture()
	events.Lock()
	evs, _ := json.Marshal(events.Events)
	events.Unlock()
	haystack := strings.Join(answers, "\n") + logs.String() + string(evs)
	if len(secrets) == 0 {
		t.Fatal("no key material to look for")
	}
	for _, sec := range secrets {
		if strings.Contains(haystack, sec) {
			t.Errorf("private key material (%d bytes) appears in a response, log or event", len(sec))
		}
	}
	if strings.Contains(haystack, "PRIVATE KEY") {
		t.Error("a PRIVATE KEY block appears in a response, log or event")
	}
	if accepted, refused := e.counts(); refused != 0 || len(accepted) == 0 {
		t.Errorf("mints in the sequence: accepted %v, refused %d", accepted, refused)
	}
}

// privateMaterial is what must never be shown of set's keys: each PKCS#8 PEM's body
// lines and every private JWK parameter's value.
func privateMaterial(t *testing.T, set ownedkeys.Set) []string {
	t.Helper()
	var out []string
	for _, k := range set.Keys() {
		p, err := k.SigningPEM()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(p), "\n")[1:] {
			if !strings.HasPrefix(line, "-----") && len(line) > 16 {
				out = append(out, line)
			}
		}
		js, err := (&jose.JSONWebKey{Key: k.Signer()}).MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(js, &m)
		for _, param := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if v, ok := m[param].(string); ok && v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// TestGeneratedKeySignsJWTBearerAndTLS: a generated key signs the JWT-bearer grant's
// assertion (oauth2_jwt_bearer, verified against jwks/<name>, kid = thumbprint), and a
// generated certificate and key make the tls_client_auth handshake (the server sees
// the generated certificate).
func TestGeneratedKeySignsJWTBearerAndTLS(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	var grantKid string
	grant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		tok, err := jwt.ParseSigned(r.Form.Get("assertion"), []jose.SignatureAlgorithm{jose.EdDSA})
		ok := err == nil && len(tok.Headers) == 1
		if ok {
			set, err := readJWKS(b, s, "bearer")
			keys := set.Key(tok.Headers[0].KeyID)
			var c jwt.Claims
			ok = err == nil && len(keys) == 1 && tok.Claims(keys[0].Key, &c) == nil && c.Issuer == "svc-issuer"
			grantKid = tok.Headers[0].KeyID
		}
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"bearer-minted","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(grant.Close)
	mustOK(t, b, s, logical.CreateOperation, "credentials/bearer", map[string]any{
		"type": "oauth2_jwt_bearer", "token_url": grant.URL + "/token", "issuer": "svc-issuer",
		"generate_client_key": "ed25519", "publish_jwks": true,
	})
	if got := mustOK(t, b, s, logical.ReadOperation, "access/bearer", nil).Data["access_token"]; got != "bearer-minted" {
		t.Fatalf("JWT-bearer with a generated key: %v", got)
	}
	if k, _ := storedKeys(t, b, s, "bearer").Current(); grantKid != k.ID {
		t.Errorf("the grant assertion's kid %q, want the thumbprint %s", grantKid, k.ID)
	}

	var presented []byte
	var mu sync.Mutex
	mtls := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.TLS != nil && len(r.TLS.PeerCertificates) == 1 {
			presented = r.TLS.PeerCertificates[0].Raw
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"mtls-minted","token_type":"Bearer","expires_in":3600}`))
	}))
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
	mtls.StartTLS()
	t.Cleanup(mtls.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mtls.Certificate().Raw}))
	mustOK(t, b, s, logical.CreateOperation, "credentials/mtls", map[string]any{
		"type": "oauth2_client_credentials", "token_url": mtls.URL + "/token", "client_id": "c", "ca_certificate": ca,
		"auth_style": "tls_client_auth", "generate_client_key": "ec-p256", "generate_client_certificate": true,
	})
	if got := mustOK(t, b, s, logical.ReadOperation, "access/mtls", nil).Data["access_token"]; got != "mtls-minted" {
		t.Fatalf("tls_client_auth with a generated certificate: %v", got)
	}
	certPEM, _ := mustOK(t, b, s, logical.ReadOperation, "credentials/mtls", nil).Data["client_certificate"].(string)
	block, _ := pem.Decode([]byte(certPEM))
	mu.Lock()
	defer mu.Unlock()
	if block == nil || string(presented) != string(block.Bytes) {
		t.Error("the TLS handshake did not present the generated certificate")
	}
}
