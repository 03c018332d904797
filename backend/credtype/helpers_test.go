package credtype

import (
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"

	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"github.com/youmark/pkcs8"
	"maps"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const testKeyPassword = "correct horse battery staple"

// testNotAfter is the expiry of every test certificate.
var testNotAfter = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// testPKI holds keys and certificates generated once per test binary: RSA key
// generation is slow, the more so under -race.
type testPKI struct {
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
	edKey  ed25519.PrivateKey

	rsaCert, ecCert, edCert, caCert string
	// expiredRSACert is rsaKey's certificate, expired since 2021.
	expiredRSACert string

	rsaPKCS1, rsaPKCS8, ecSEC1, ecPKCS8, edPKCS8 string
	// Legacy (Proc-Type: 4,ENCRYPTED) PEM encrypted with testKeyPassword.
	rsaLegacyEncrypted, ecLegacyEncrypted string
	// rsaPKCS8Encrypted and ecPKCS8Encrypted are PBES2 keys as `openssl pkcs8 -topk8` writes them.
	rsaPKCS8Encrypted, ecPKCS8Encrypted string

	// SSH keys.
	sshEd25519, sshEd25519Encrypted, sshECDSA, sshRSA, sshRSALegacyEncrypted string
	sshEd25519Pub                                                            ssh.PublicKey
	// hostKeyFingerprint is the SHA256 fingerprint of a generated host key.
	hostKeyFingerprint string
}

var pki = sync.OnceValue(func() *testPKI {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	p := &testPKI{}
	var err error
	p.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	p.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, p.edKey, err = ed25519.GenerateKey(rand.Reader)
	must(err)

	caKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test CA"},
		NotBefore:             time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              testNotAfter.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	must(err)
	p.caCert = pemString("CERTIFICATE", caDER)
	ca, err = x509.ParseCertificate(caDER)
	must(err)

	leaf := func(cn string, pub crypto.PublicKey, notAfter time.Time) string {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(0x1234abcd),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"Integrations"}},
			NotBefore:    notAfter.AddDate(-5, 0, 0),
			NotAfter:     notAfter,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			KeyUsage:     x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		must(err)
		return pemString("CERTIFICATE", der)
	}
	p.rsaCert = leaf("rsa-client", p.rsaKey.Public(), testNotAfter)
	p.ecCert = leaf("ec-client", p.ecKey.Public(), testNotAfter)
	p.edCert = leaf("ed-client", p.edKey.Public(), testNotAfter)
	p.expiredRSACert = leaf("rsa-client", p.rsaKey.Public(), time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC))

	p.rsaPKCS1 = pemString("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(p.rsaKey))
	p.rsaPKCS8 = pkcs8String(p.rsaKey)
	ecDER, err := x509.MarshalECPrivateKey(p.ecKey)
	must(err)
	p.ecSEC1 = pemString("EC PRIVATE KEY", ecDER)
	p.ecPKCS8 = pkcs8String(p.ecKey)
	p.edPKCS8 = pkcs8String(p.edKey)

	b, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(p.rsaKey), []byte(testKeyPassword), x509.PEMCipherAES256) //nolint:staticcheck // SA1019: legacy PEM encryption is what is being tested
	must(err)
	p.rsaLegacyEncrypted = string(pem.EncodeToMemory(b))
	b, err = x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", ecDER, []byte(testKeyPassword), x509.PEMCipher3DES) //nolint:staticcheck // SA1019: legacy PEM encryption is what is being tested
	must(err)
	p.ecLegacyEncrypted = string(pem.EncodeToMemory(b))
	der, err := pkcs8.MarshalPrivateKey(p.rsaKey, []byte(testKeyPassword), nil) // AES-256-CBC, PBKDF2
	must(err)
	p.rsaPKCS8Encrypted = pemString("ENCRYPTED PRIVATE KEY", der)
	der, err = pkcs8.MarshalPrivateKey(p.ecKey, []byte(testKeyPassword), &pkcs8.Opts{
		Cipher: pkcs8.AES128CBC, KDFOpts: pkcs8.ScryptOpts{CostParameter: 1 << 10, BlockSize: 8, ParallelizationParameter: 1, SaltSize: 16},
	})
	must(err)
	p.ecPKCS8Encrypted = pemString("ENCRYPTED PRIVATE KEY", der)

	b, err = ssh.MarshalPrivateKey(p.edKey, "upload@example")
	must(err)
	p.sshEd25519 = string(pem.EncodeToMemory(b))
	b, err = ssh.MarshalPrivateKeyWithPassphrase(p.edKey, "upload@example", []byte(testKeyPassword))
	must(err)
	p.sshEd25519Encrypted = string(pem.EncodeToMemory(b))
	p.sshEd25519Pub, err = ssh.NewPublicKey(p.edKey.Public())
	must(err)
	p.sshECDSA = p.ecSEC1
	p.sshRSA = p.rsaPKCS1
	p.sshRSALegacyEncrypted = p.rsaLegacyEncrypted

	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	hostPub, err := ssh.NewPublicKey(hostKey.Public())
	must(err)
	p.hostKeyFingerprint = ssh.FingerprintSHA256(hostPub)
	return p
})

func pemString(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8String(key any) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pemString("PRIVATE KEY", der)
}

// goodValues is a valid example of every type; tests start from it and break one thing.
func goodValues(t testing.TB, typ string) map[string]any {
	t.Helper()
	p := pki()
	examples := map[string]map[string]any{
		"basic":   {"username": "svc-integration", "password": "s3cret pass"},
		"bearer":  {"token": "abc.DEF-123_~+/=", "url": "https://api.example.com/v1"},
		"api_key": {"key": "k-1234567890"},
		"certificate": {
			"certificate": p.ecCert,
			"private_key": p.ecSEC1,
		},
		"sftp_password": {
			"host": "sftp://files.example.com:2222/", "host_key_fingerprint": p.hostKeyFingerprint,
			"username": "upload", "password": "pw with spaces ",
		},
		"sftp_ssh_key": {
			"host": "sftp://files.example.com:22/", "host_key_fingerprint": p.hostKeyFingerprint,
			"username": "upload", "private_key": p.sshEd25519,
		},
		"webhook":        {"url": "https://hooks.example.com/services/T000/B000/XXXX"},
		"device_account": {"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator"},
		"oauth2_client_credentials": {
			"token_url": "https://auth.example.com/oauth2/token", "client_id": "client-1", "client_secret": "cs-1",
		},
		"oauth2_password": {
			"token_url": "https://auth.example.com/oauth2/token", "client_id": "client-1", "client_secret": "cs-1",
			"username": "robot", "password": "pw",
		},
		"oauth2_authorization_code": {
			"auth_url": "https://auth.example.com/authorize", "token_url": "https://auth.example.com/token", "client_id": "client-1",
		},
		"oauth2_device_code": {
			"device_authorization_url": "https://auth.example.com/device", "token_url": "https://auth.example.com/token", "client_id": "client-1",
		},
		"m365": {
			"tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "00000000-0000-0000-0000-000000000001", "client_secret": "cs~1",
		},
		"zoom":                     {"account_id": "lAAAAAAAAAAAAAAAAAAAAA", "client_id": "zc1", "client_secret": "zs1"},
		"servicenow_oauth":         {"instance": "dev12345", "client_id": "sn1", "client_secret": "ss1"},
		"cisco_client_credentials": {"auth_url": "https://visibility.amp.cisco.com/iroh/oauth2/token", "client_id": "cc1", "client_secret": "cs1"},
		"slack":                    {"token": "xoxb-1234-5678-abcdef"},
		"oauth2_jwt_bearer": {
			"token_url": "https://auth.example.com/oauth2/token", "issuer": "svc-1", "client_key": p.rsaPKCS8,
		},
		"google_service_account": {
			"service_account_key": fixtures.ServiceAccountKey(p.rsaKey, "sa@project-1.iam.gserviceaccount.com", "0123abcd", "https://oauth2.googleapis.com/token"),
			"scopes":              []string{"https://www.googleapis.com/auth/cloud-platform"},
		},
		"salesforce_jwt": {"consumer_key": "3MVG9abc", "username": "api@example.com", "client_key": p.rsaPKCS1},
		"pagerduty":      {"routing_key": "e93facc04764012d7bfb002500d5d1a6"},
		"okta":           {"url": "https://example.okta.com", "token": "00abcdefghijklmnopqrstuvwxyz0123456789ABCD"},
		"github_app":     {"app_id": "123456", "private_key": p.rsaPKCS1, "installation_id": "7890123"},
	}
	v, ok := examples[typ]
	if !ok {
		t.Fatalf("no example for type %q: add one to goodValues", typ)
	}
	return maps.Clone(v)
}

func mustType(t testing.TB, name string) *Type {
	t.Helper()
	typ, ok := Lookup(name)
	if !ok {
		t.Fatalf("type %q not in catalog", name)
	}
	return typ
}

// fieldErrorFor returns the FieldError err holds for field, if any.
func fieldErrorFor(err error, field string) (*FieldError, bool) {
	var fes FieldErrors
	if !errors.As(err, &fes) {
		return nil, false
	}
	for _, fe := range fes {
		if fe.Field == field {
			return fe, true
		}
	}
	return nil, false
}

// wantFieldError fails unless err holds a FieldError for field whose rule contains
// every fragment.
func wantFieldError(t testing.TB, err error, field string, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one on field %q", field)
	}
	fe, ok := fieldErrorFor(err, field)
	if !ok {
		t.Fatalf("got %v, want an error on field %q", err, field)
	}
	for _, f := range fragments {
		if !strings.Contains(fe.Rule, f) {
			t.Errorf("error on %q = %q, want it to contain %q", field, fe.Rule, f)
		}
	}
	if want := `field "` + field + `": `; !strings.Contains(err.Error(), want) {
		t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
	}
}
