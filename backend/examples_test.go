package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// This file holds what several test files share: a valid example of every credential
// type whose secrets carry a recognisable marker, and small request helpers.

// exampleNotAfter is the expiry of every example certificate.
var exampleNotAfter = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// markerRe is what a marker must look like so that it survives every secret field's
// rule unchanged: base32 (totp_secret, stored upper-case), base64 (embedded in a key's
// DER), letters and digits (routing_key), printable ASCII (tokens).
var markerRe = regexp.MustCompile(`^[A-Z2-7]{8,24}$`)

// exampleHostKeyFingerprint is the SHA256 fingerprint of an SSH host key made once.
var exampleHostKeyFingerprint = sync.OnceValue(func() string {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		panic(err)
	}
	return ssh.FingerprintSHA256(pub)
})

// markedKey is an Ed25519 key whose PKCS#8 PEM contains the marker, and a certificate
// for it.
type markedKey struct {
	keyPEM, certPEM string
}

var markedKeys sync.Map // marker -> *markedKey

// markedEd25519 returns an Ed25519 key whose PKCS#8 PEM shows marker literally: the
// seed is free, so bytes decoding from the marker are placed where their base64 falls
// on a character boundary. Its certificate is self-signed and expires exampleNotAfter.
func markedEd25519(t testing.TB, marker string) *markedKey {
	t.Helper()
	if k, ok := markedKeys.Load(marker); ok {
		return k.(*markedKey)
	}
	chunk := marker
	for len(chunk)%4 != 0 {
		chunk += "A"
	}
	raw, err := base64.StdEncoding.DecodeString(chunk)
	if err != nil || len(raw) > 30 {
		t.Fatalf("marker %q cannot be embedded in a key", marker)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	// PKCS#8 Ed25519 is a 16-byte header then the seed; DER offset 18 starts a base64
	// group, i.e. seed[2:].
	copy(seed[2:], raw)
	key := ed25519.NewKeyFromSeed(seed)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if !strings.Contains(keyPEM, marker) {
		t.Fatalf("marker %q did not land in the key PEM:\n%s", marker, keyPEM)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x5eed),
		Subject:      pkix.Name{CommonName: "integration-client", Organization: []string{"Example"}},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     exampleNotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	k := &markedKey{keyPEM: keyPEM, certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))}
	actual, _ := markedKeys.LoadOrStore(marker, k)
	return actual.(*markedKey)
}

// markedTOTPSecret is a valid base32 TOTP secret (in its canonical stored spelling)
// beginning with marker.
func markedTOTPSecret(marker string) string {
	s := marker
	for len(s) < 16 || len(s)%8 != 0 {
		s += "A"
	}
	return s
}

// exampleValues returns a valid field set for the credential type typeName (canonical
// name) in which every sensitive field that is set contains marker, which must be 8-24
// characters of A-Z and 2-7. Optional secrets are set wherever they can carry the
// marker, so a leak test covers them: totp_secret on every password-bearing type, the
// optional passwords and client secrets. The passphrase and private_key_password of
// encrypted keys cannot coexist with a key that shows the marker; encryptedKeyValues
// covers those. Values are in normalized form, so what is stored equals what is sent.
func exampleValues(t testing.TB, typeName string, marker string) map[string]any {
	t.Helper()
	if !markerRe.MatchString(marker) {
		t.Fatalf("marker %q must match %s", marker, markerRe)
	}
	totp := markedTOTPSecret(marker)
	routingKey := marker + strings.Repeat("0", 32-len(marker))
	var examples map[string]any
	switch typeName {
	case "basic":
		examples = map[string]any{"username": "svc-integration", "password": "pw " + marker + " !", "totp_secret": totp}
	case "bearer":
		examples = map[string]any{"token": "tok." + marker, "header_prefix": "Token", "url": "https://api.example.com/v1"}
	case "api_key":
		examples = map[string]any{"key": "key-" + marker, "header_name": "X-Api-Token", "url": "https://api.example.com/v2"}
	case "certificate":
		k := markedEd25519(t, marker)
		examples = map[string]any{"certificate": k.certPEM, "private_key": k.keyPEM}
	case "sftp_password":
		examples = map[string]any{
			"host": "sftp://files.example.com:2222/", "host_key_fingerprint": exampleHostKeyFingerprint(),
			"username": "upload", "password": "pw-" + marker, "totp_secret": totp,
		}
	case "sftp_ssh_key":
		examples = map[string]any{
			"host": "sftp://files.example.com:22/", "host_key_fingerprint": exampleHostKeyFingerprint(),
			"username": "upload", "private_key": markedEd25519(t, marker).keyPEM,
		}
	case "webhook":
		examples = map[string]any{"url": "https://hooks.example.com/services/T000/B000/" + marker}
	case "device_account":
		examples = map[string]any{
			"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator",
			"password": "pw-" + marker, "domain": "CORP", "additional": "jump host first",
			"notes": "rotated quarterly", "totp_secret": totp,
		}
	case "oauth2_client_credentials":
		examples = map[string]any{
			"token_url": "https://auth.example.com/oauth2/token", "client_id": "client-1", "client_secret": "cs-" + marker,
			"scopes": []string{"read", "write"}, "audience": "https://api.example.com", "auth_style": "body",
		}
	case "oauth2_password":
		examples = map[string]any{
			"token_url": "https://auth.example.com/oauth2/token", "client_id": "client-1", "client_secret": "cs-" + marker,
			"auth_style": "header", "username": "robot", "password": "pw-" + marker, "totp_secret": totp,
		}
	case "oauth2_authorization_code":
		examples = map[string]any{
			"auth_url": "https://auth.example.com/authorize", "token_url": "https://auth.example.com/token",
			"client_id": "client-1", "client_secret": "cs-" + marker, "scopes": []string{"offline_access"},
			"redirect_url":  "https://vault.example.com/v1/integrations/oauth/callback",
			"refresh_token": "rt-" + marker,
		}
	case "oauth2_device_code":
		examples = map[string]any{
			"device_authorization_url": "https://auth.example.com/device", "token_url": "https://auth.example.com/token",
			"client_id": "client-1", "client_secret": "cs-" + marker, "scopes": []string{"offline_access"}, "auth_style": "body",
		}
	case "m365":
		examples = map[string]any{
			"tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "00000000-0000-0000-0000-000000000001",
			"client_secret": "cs~" + marker, "scopes": []string{"https://graph.microsoft.com/.default"},
		}
	case "zoom":
		examples = map[string]any{"account_id": "lAAAAAAAAAAAAAAAAAAAAA", "client_id": "zc1", "client_secret": "zs-" + marker}
	case "servicenow_oauth":
		examples = map[string]any{
			"instance": "dev12345", "client_id": "sn1", "client_secret": "ss-" + marker,
			"username": "integration.user", "password": "pw-" + marker, "totp_secret": totp,
		}
	case "cisco_client_credentials":
		examples = map[string]any{
			"auth_url": "https://visibility.amp.cisco.com/iroh/oauth2/token", "client_id": "cc1", "client_secret": "cs-" + marker,
		}
	case "oauth2_jwt_bearer":
		examples = map[string]any{
			"token_url": "https://auth.example.com/oauth2/token", "issuer": "svc-issuer", "subject": "svc-user",
			"client_key": markedEd25519(t, marker).keyPEM, "client_key_id": "key-1", "scopes": []string{"read"},
			"client_id": "client-1", "client_secret": "cs-" + marker, "auth_style": "body",
		}
	case "google_service_account":
		// The key file is kept as written: the marker rides in its client_id, which
		// the engine does not read.
		file := fixtures.ServiceAccountKey(fixtures.RSAKey(), "sa@project-1.iam.gserviceaccount.com", "kid-1", "https://oauth2.googleapis.com/token")
		examples = map[string]any{
			"service_account_key": strings.Replace(file, `"100000000000000000001"`, `"`+marker+`"`, 1),
			"scopes":              []string{"https://www.googleapis.com/auth/admin.directory.user.readonly"}, "subject": "admin@example.com",
		}
	case "salesforce_jwt":
		// An RSA key cannot carry the marker (client_key is stored re-encoded): the
		// leak checks of this type look for the key's own lines.
		examples = map[string]any{
			"consumer_key": "3MVG9-consumer", "username": "integration@example.com", "client_key": fixtures.KeyPEM(fixtures.RSAKey()),
		}
	case "slack":
		examples = map[string]any{"token": "xoxb-1234-" + marker}
	case "pagerduty":
		examples = map[string]any{"routing_key": routingKey}
	case "okta":
		examples = map[string]any{"url": "https://example.okta.com", "token": "00" + marker}
	case "github_app":
		// An RSA key has no free bytes: the marker rides in a PEM header, which the
		// engine keeps with the key as written.
		examples = map[string]any{
			"app_id": "123456", "installation_id": "7890123", "private_key": markedRSA(marker),
			"repositories": []string{"octo-repo"}, "permissions": map[string]string{"contents": "read"},
			"base_url": "https://api.github.com",
		}
	default:
		t.Fatalf("no example for credential type %q: add one to exampleValues", typeName)
	}
	return maps.Clone(examples)
}

// markedRSA is the fixtures' GitHub App key (PKCS#1, as GitHub issues it) with the
// marker in a PEM header.
func markedRSA(marker string) string {
	block, _ := pem.Decode([]byte(fixtures.GitHubAppKeyPEM()))
	block.Headers = map[string]string{"Comment": marker}
	return string(pem.EncodeToMemory(block))
}

// markerlessKey reports the sensitive fields that cannot carry the marker: an RSA
// client_key (salesforce_jwt takes RSA only), which the engine stores re-encoded.
// The leak searches look for the key's own body lines instead (pemBodyLines).
func markerlessKey(typeName, field string) bool {
	return typeName == "salesforce_jwt" && field == "client_key"
}

// clientKeyValues is an OAuth type's example authenticating with private_key_jwt: no
// client secret, a client_key (which carries the marker) and its certificate.
func clientKeyValues(t testing.TB, typeName, marker string) map[string]any {
	t.Helper()
	v := exampleValues(t, typeName, marker)
	k := markedEd25519(t, marker)
	delete(v, "client_secret")
	v["auth_style"], v["client_key"], v["client_certificate"], v["client_key_id"] = "private_key_jwt", k.keyPEM, k.certPEM, "key-1"
	return v
}

// encryptedKeyValues returns the key types with an encrypted private key, whose
// password or passphrase contains marker (the key itself is ciphertext and cannot).
func encryptedKeyValues(t testing.TB, typeName, marker string) map[string]any {
	t.Helper()
	k := encryptedECKey(t, "pw-"+marker)
	switch typeName {
	case "certificate":
		return map[string]any{"certificate": k.certPEM, "private_key": k.keyPEM, "private_key_password": "pw-" + marker}
	case "sftp_ssh_key":
		return map[string]any{
			"host": "sftp://files.example.com:22/", "host_key_fingerprint": exampleHostKeyFingerprint(),
			"username": "upload", "private_key": k.keyPEM, "passphrase": "pw-" + marker,
		}
	}
	t.Fatalf("no encrypted-key example for %q", typeName)
	return nil
}

// encryptedKey is an EC key in legacy encrypted PEM, its certificate and the
// unencrypted PKCS#8 PEM access is expected to hand out.
type encryptedKey struct {
	keyPEM, certPEM, pkcs8PEM string
}

func encryptedECKey(t testing.TB, password string) *encryptedKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 legacy PEM encryption is what the engine accepts
	block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", sec1, []byte(password), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(77),
		Subject:      pkix.Name{CommonName: "encrypted-client"},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     exampleNotAfter,
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &encryptedKey{
		keyPEM:   string(pem.EncodeToMemory(block)),
		certPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})),
		pkcs8PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})),
	}
}

// credTypesOfKind returns the catalog's type names of one kind.
func credTypesOfKind(kind credtype.Kind) []string {
	var names []string
	for _, typ := range credtype.All() {
		if typ.Kind == kind {
			names = append(names, typ.Name)
		}
	}
	return names
}

// credWithType returns values plus "type".
func credWithType(typeName string, values map[string]any) map[string]any {
	out := maps.Clone(values)
	out["type"] = typeName
	return out
}

// credReq sends one request and returns the response and the HTTP status Vault would
// answer with (0 for a plain success). An internal error fails the test.
func credReq(t testing.TB, b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any) (*logical.Response, int) {
	t.Helper()
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: s}
	resp, err := b.HandleRequest(context.Background(), req)
	code, _ := logical.RespondErrorCommon(req, resp, err)
	if code != 0 {
		logical.AdjustErrorStatusCode(&code, err) // as Vault's HTTP layer does: coded errors keep their code
	}
	if code == http.StatusInternalServerError {
		t.Fatalf("%s %s: internal error: %v (resp %v)", op, path, err, resp)
	}
	return resp, code
}

// credWantStatus asserts the HTTP status of a request and returns its response.
func credWantStatus(t testing.TB, b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any, want int) *logical.Response {
	t.Helper()
	resp, code := credReq(t, b, s, op, path, data)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d (resp %#v)", op, path, code, want, resp)
	}
	return resp
}

// credWant400 asserts a 400 whose message names field and contains every fragment.
func credWant400(t testing.TB, b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any, field string, fragments ...string) {
	t.Helper()
	resp := credWantStatus(t, b, s, op, path, data, http.StatusBadRequest)
	msg := resp.Error().Error()
	if !strings.Contains(msg, `"`+field+`"`) {
		t.Fatalf("%s %s: error %q does not name field %q", op, path, msg, field)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Fatalf("%s %s: error %q lacks %q", op, path, msg, f)
		}
	}
}

// credStorageSnapshot is every key and value in storage.
func credStorageSnapshot(t testing.TB, s logical.Storage) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := s.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
				continue
			}
			e, err := s.Get(context.Background(), prefix+k)
			if err != nil {
				t.Fatal(err)
			}
			if e != nil {
				out[prefix+k] = string(e.Value)
			}
		}
	}
	walk("")
	return out
}

// storedCredentialNames lists the stored credential names.
func storedCredentialNames(t testing.TB, s logical.Storage) []string {
	t.Helper()
	keys, err := s.List(context.Background(), credentialPrefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// credJSON marshals v the way Vault would put it on the wire.
func credJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExampleValuesAreValidAndMarkEverySecret(t *testing.T) {
	t.Parallel()
	const marker = "QZXMARKQZX"
	for _, typ := range credtype.All() {
		t.Run(typ.Name, func(t *testing.T) {
			t.Parallel()
			variants := []map[string]any{exampleValues(t, typ.Name, marker)}
			if typ.Name == "certificate" || typ.Name == "sftp_ssh_key" {
				variants = append(variants, encryptedKeyValues(t, typ.Name, marker))
			}
			if _, ok := typ.Field("auth_style"); ok && typ.Kind == credtype.KindOAuth2 {
				variants = append(variants, clientKeyValues(t, typ.Name, marker))
			}
			covered := map[string]bool{}
			for i, values := range variants {
				got, err := typ.Validate(values)
				if err != nil {
					t.Fatalf("example does not validate: %v", err)
				}
				for _, f := range typ.Fields {
					v, set := got.Values[f.Name]
					if f.TokenState { // kept as token state, not among the values
						v, set = got.RefreshToken, got.RefreshToken != ""
					}
					if !f.Sensitive || !set {
						continue
					}
					covered[f.Name] = true
					if i > 0 && f.Name == "private_key" {
						continue // ciphertext: its password carries the marker
					}
					if markerlessKey(typ.Name, f.Name) {
						continue
					}
					if s, _ := v.(string); !strings.Contains(s, marker) {
						t.Errorf("stored %s does not contain the marker: %q", f.Name, s)
					}
				}
				for k, v := range got.Values {
					if f, _ := typ.Field(k); !f.Sensitive && strings.Contains(credJSON(t, v), marker) {
						t.Errorf("non-sensitive %s contains the marker", k)
					}
				}
			}
			for _, name := range typ.SensitiveFields() {
				if !covered[name] {
					t.Errorf("no example sets sensitive field %s", name)
				}
			}
		})
	}
}
