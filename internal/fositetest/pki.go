package fositetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint (RFC 7515 §4.1.7)
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"
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

// NewKey generates a private key for alg: RSA 2048 for RS256 and PS256, EC P-256 for
// ES256, P-384 for ES384, Ed25519 for EdDSA. It panics on an unknown alg.
func NewKey(alg string) crypto.Signer {
	var (
		key crypto.Signer
		err error
	)
	switch alg {
	case RS256, PS256:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ES384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		panic("fositetest: no key for algorithm " + alg)
	}
	if err != nil {
		panic(err)
	}
	return key
}

// KeyPEM is key as a PKCS#8 "PRIVATE KEY" PEM block, the form a credential's client_key
// takes.
func KeyPEM(key crypto.Signer) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
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

// authority is a private certificate authority that lives as long as its provider.
type authority struct {
	cert   *x509.Certificate
	key    crypto.Signer
	serial atomic.Int64
}

func newAuthority(name string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"fositetest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(2, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	a := &authority{cert: cert, key: key}
	a.serial.Store(1)
	return a, nil
}

// issue signs a leaf certificate for pub, valid from an hour ago for a year: far
// enough from expiry that no upstream-expiry warning fires in a test.
func (a *authority) issue(cn string, pub crypto.PublicKey, usage x509.ExtKeyUsage, ips ...net.IP) (*x509.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(a.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
	}
	if _, ok := pub.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("issuing %q: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

// pool is a certificate pool holding only a's certificate.
func (a *authority) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.cert)
	return p
}

// serverCertificate is a TLS certificate for 127.0.0.1 issued by a.
func (a *authority) serverCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := a.issue("127.0.0.1", key.Public(), x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
