package fositetest

import (
	"crypto"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint (RFC 7515 §4.1.7)
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// Signature algorithms of client assertions (RFC 7518 §3.1; EdDSA from RFC 8037).
const (
	RS256 = "RS256"
	PS256 = "PS256"
	ES256 = "ES256"
	ES384 = "ES384"
	EdDSA = "EdDSA"
)

// Algorithms lists every assertion algorithm the provider verifies.
var Algorithms = []string{RS256, PS256, ES256, ES384, EdDSA}

// keyKinds are the fixtures key kinds that sign each algorithm.
var keyKinds = map[string]string{RS256: "rsa2048", PS256: "rsa2048", ES256: "p256", ES384: "p384", EdDSA: "ed25519"}

// NewKey generates a private key for alg: RSA 2048 for RS256 and PS256, EC P-256 for
// ES256, P-384 for ES384, Ed25519 for EdDSA (fixtures.KeyPEM gives its client_key).
// It panics on an unknown alg.
func NewKey(alg string) crypto.Signer {
	kind, ok := keyKinds[alg]
	if !ok {
		panic("fositetest: no key for algorithm " + alg)
	}
	return fixtures.NewKey(kind)
}

// CertificatePEM is cert as a "CERTIFICATE" PEM block.
func CertificatePEM(cert *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

// Thumbprints are cert's x5t and x5t#S256 header values: the base64url (unpadded)
// SHA-1 and SHA-256 digests of its DER encoding (RFC 7515 §4.1.7, §4.1.8).
func Thumbprints(cert *x509.Certificate) (x5t, x5tS256 string) {
	s1 := sha1.Sum(cert.Raw) //nolint:gosec // see the import
	s256 := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(s1[:]), base64.RawURLEncoding.EncodeToString(s256[:])
}

// issue is a client certificate for key from ca with common name cn, valid for a
// year: far enough from expiry that no upstream-expiry warning fires in a test.
func issue(t testing.TB, ca *fixtures.CA, cn string, key crypto.Signer) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(ca.Issue(key, cn, time.Now().AddDate(1, 0, 0))))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
