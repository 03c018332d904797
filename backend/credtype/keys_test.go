package credtype

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestCertificateAcceptsKeyFormats(t *testing.T) {
	t.Parallel()
	p := pki()
	ecParams := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	tests := []struct {
		name, cert, key, password, algorithm string
		storedEncrypted                      bool
	}{
		{"RSA PKCS#1", p.rsaCert, p.rsaPKCS1, "", "RSA 2048", false},
		{"RSA PKCS#8", p.rsaCert, p.rsaPKCS8, "", "RSA 2048", false},
		{"EC SEC1", p.ecCert, p.ecSEC1, "", "ECDSA P-256", false},
		{"EC SEC1 after EC PARAMETERS", p.ecCert, ecParams + p.ecSEC1, "", "ECDSA P-256", false},
		{"EC PKCS#8", p.ecCert, p.ecPKCS8, "", "ECDSA P-256", false},
		{"Ed25519 PKCS#8", p.edCert, p.edPKCS8, "", "Ed25519", false},
		{"RSA legacy encrypted AES-256", p.rsaCert, p.rsaLegacyEncrypted, testKeyPassword, "RSA 2048", true},
		{"EC legacy encrypted 3DES", p.ecCert, p.ecLegacyEncrypted, testKeyPassword, "ECDSA P-256", true},
		{"RSA PKCS#8 encrypted PBKDF2", p.rsaCert, p.rsaPKCS8Encrypted, testKeyPassword, "RSA 2048", true},
		{"EC PKCS#8 encrypted scrypt", p.ecCert, p.ecPKCS8Encrypted, testKeyPassword, "ECDSA P-256", true},
		{"chain with text around it", "subject=CN=ec-client\n" + p.ecCert + "\n" + p.caCert + "\ntrailing", p.ecSEC1, "", "ECDSA P-256", false},
		{"CRLF line endings", strings.ReplaceAll(p.rsaCert, "\n", "\r\n"), strings.ReplaceAll(p.rsaPKCS1, "\n", "\r\n"), "", "RSA 2048", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := map[string]any{"certificate": tc.cert, "private_key": tc.key}
			if tc.password != "" {
				in["private_key_password"] = tc.password
			}
			got, err := mustType(t, "certificate").Validate(in)
			if err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if !got.NotAfter.Equal(testNotAfter) || got.Derived["not_after"] != testNotAfter {
				t.Errorf("NotAfter = %v, Derived not_after = %v; want %v", got.NotAfter, got.Derived["not_after"], testNotAfter)
			}
			if got.Derived["key_algorithm"] != tc.algorithm {
				t.Errorf("key_algorithm = %v, want %s", got.Derived["key_algorithm"], tc.algorithm)
			}
			if got.Derived["serial"] != "12:34:ab:cd" || got.Derived["issuer"] != "CN=Test CA" ||
				!strings.HasPrefix(got.Derived["subject"].(string), "CN=") {
				t.Errorf("Derived = %v", got.Derived)
			}
			key := got.Values["private_key"].(string)
			if tc.storedEncrypted != strings.Contains(key, "ENCRYPTED") {
				t.Errorf("stored key encrypted = %v, want %v", !tc.storedEncrypted, tc.storedEncrypted)
			}
			if !tc.storedEncrypted && !strings.HasPrefix(key, "-----BEGIN PRIVATE KEY-----\n") {
				t.Errorf("unencrypted key not stored as PKCS#8:\n%s", key)
			}
			cert := got.Values["certificate"].(string)
			if !strings.HasPrefix(cert, "-----BEGIN CERTIFICATE-----\n") || !strings.HasSuffix(cert, "-----END CERTIFICATE-----\n") {
				t.Errorf("certificate not stored as bare PEM blocks:\n%s", cert)
			}
		})
	}
}

func TestCertificateRefuses(t *testing.T) {
	t.Parallel()
	p := pki()
	pkcs8Garbage := pemString("ENCRYPTED PRIVATE KEY", []byte("not really an encrypted key"))
	unknownCipher := strings.Replace(p.rsaLegacyEncrypted, "AES-256-CBC", "BF-CBC", 1)
	badIV := strings.Replace(p.rsaLegacyEncrypted, "AES-256-CBC,", "AES-256-CBC,00", 1)
	tests := []struct {
		name               string
		cert, key, pass    string
		field, wantFragmen string
	}{
		{"mismatched key", p.rsaCert, p.ecSEC1, "", "private_key", "must match the public key of the certificate"},
		{"chain in wrong order", p.caCert + p.ecCert, p.ecSEC1, "", "private_key", "leaf"},
		{"wrong password", p.rsaCert, p.rsaLegacyEncrypted, "wrong", "private_key_password", "does not decrypt private_key"},
		{"wrong password 3DES", p.ecCert, p.ecLegacyEncrypted, "wrong", "private_key_password", "does not decrypt private_key"},
		{"encrypted without password", p.rsaCert, p.rsaLegacyEncrypted, "", "private_key_password", "is required: private_key is encrypted"},
		{"password for unencrypted key", p.rsaCert, p.rsaPKCS1, "pw", "private_key_password", "must be empty"},
		{"PKCS#8 encrypted, wrong password", p.rsaCert, p.rsaPKCS8Encrypted, "wrong", "private_key_password", "does not decrypt private_key"},
		{"PKCS#8 encrypted without password", p.ecCert, p.ecPKCS8Encrypted, "", "private_key_password", "is required: private_key is encrypted"},
		{"PKCS#8 encrypted garbage", p.rsaCert, pkcs8Garbage, "pw", "private_key", "well-formed encrypted PKCS#8 key"},
		{"PKCS#8 encrypted, other key", p.ecCert, p.rsaPKCS8Encrypted, testKeyPassword, "private_key", "must match the public key of the certificate"},
		{"unknown legacy cipher", p.rsaCert, unknownCipher, testKeyPassword, "private_key", "DEK-Info"},
		{"bad legacy IV", p.rsaCert, badIV, testKeyPassword, "private_key", "DEK-Info"},
		{"OpenSSH key", p.edCert, p.sshEd25519, "", "private_key", "sftp_ssh_key"},
		{"X25519 key", p.ecCert, x25519PKCS8(t), "", "private_key", "signing key"},
		{"two keys", p.ecCert, p.ecSEC1 + p.ecPKCS8, "", "private_key", "exactly one private key"},
		{"certificate in key field", p.ecCert, p.ecSEC1 + p.ecCert, "", "private_key", "only the private key"},
		{"key garbage", p.ecCert, pemString("PRIVATE KEY", []byte("garbage")), "", "private_key", "must be a PEM private key that parses"},
		{"no PEM key", p.ecCert, "just text", "", "private_key", "must contain a PEM private key"},
		{"unknown key block", p.ecCert, pemString("FOO PRIVATE KEY", []byte{1}), "", "private_key", "PKCS#1 RSA, PKCS#8 or SEC1"},
		{"key in certificate field", p.ecCert + p.ecSEC1, p.ecSEC1, "", "certificate", "must not contain a private key"},
		{"other block in certificate field", p.ecCert + pemString("X509 CRL", []byte{1}), p.ecSEC1, "", "certificate", "only CERTIFICATE"},
		{"certificate garbage", pemString("CERTIFICATE", []byte("garbage")), p.ecSEC1, "", "certificate", "certificate 1 does not"},
		{"second certificate garbage", p.ecCert + pemString("CERTIFICATE", []byte("garbage")), p.ecSEC1, "", "certificate", "certificate 2 does not"},
		{"no PEM certificate", "MIIB...", p.ecSEC1, "", "certificate", "must contain a PEM certificate"},
		{"truncated PEM", p.ecCert[:len(p.ecCert)-20], p.ecSEC1, "", "certificate", "well-formed PEM"},
		{"malformed block before a good one", "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n" + p.ecCert, p.ecSEC1, "", "certificate", "well-formed PEM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := map[string]any{"certificate": tc.cert, "private_key": tc.key, "private_key_password": tc.pass}
			_, err := mustType(t, "certificate").Validate(in)
			wantFieldError(t, err, tc.field, tc.wantFragmen)
		})
	}
}

func TestSSHKeyAcceptsKeyFormats(t *testing.T) {
	t.Parallel()
	p := pki()
	tests := []struct {
		name, key, passphrase, algorithm string
	}{
		{"OpenSSH ed25519", p.sshEd25519, "", "ssh-ed25519"},
		{"OpenSSH ed25519 encrypted", p.sshEd25519Encrypted, testKeyPassword, "ssh-ed25519"},
		{"PEM EC SEC1", p.sshECDSA, "", "ecdsa-sha2-nistp256"},
		{"PEM RSA PKCS#1", p.sshRSA, "", "ssh-rsa"},
		{"PEM RSA PKCS#8", p.rsaPKCS8, "", "ssh-rsa"},
		{"PEM RSA legacy encrypted", p.sshRSALegacyEncrypted, testKeyPassword, "ssh-rsa"},
		{"surrounding text", "key:\n" + p.sshEd25519 + "\n", "", "ssh-ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := goodValues(t, "sftp_ssh_key")
			in["private_key"] = tc.key
			in["passphrase"] = tc.passphrase
			got, err := mustType(t, "sftp_ssh_key").Validate(in)
			if err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if got.Derived["key_algorithm"] != tc.algorithm {
				t.Errorf("key_algorithm = %v, want %s", got.Derived["key_algorithm"], tc.algorithm)
			}
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(got.Derived["public_key"].(string)))
			if err != nil {
				t.Fatalf("public_key does not parse: %v", err)
			}
			if got.Derived["public_key_fingerprint"] != ssh.FingerprintSHA256(pub) {
				t.Errorf("fingerprint %v does not match public key", got.Derived["public_key_fingerprint"])
			}
			if tc.passphrase != "" && got.Values["passphrase"] != tc.passphrase {
				t.Error("passphrase not kept")
			}
			if strings.Contains(got.Values["private_key"].(string), "key:") {
				t.Error("text around the key was stored")
			}
		})
	}
	got, err := mustType(t, "sftp_ssh_key").Validate(goodValues(t, "sftp_ssh_key"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.sshEd25519Pub))); got.Derived["public_key"] != want {
		t.Errorf("public_key = %v, want %v", got.Derived["public_key"], want)
	}
}

func TestSSHKeyRefuses(t *testing.T) {
	t.Parallel()
	p := pki()
	tests := []struct {
		name, key, passphrase, field, want string
	}{
		{"wrong passphrase", p.sshEd25519Encrypted, "wrong", "passphrase", "does not decrypt private_key"},
		{"wrong legacy passphrase", p.sshRSALegacyEncrypted, "wrong", "passphrase", "does not decrypt private_key"},
		{"encrypted without passphrase", p.sshEd25519Encrypted, "", "passphrase", "is required: private_key is encrypted"},
		{"legacy encrypted without passphrase", p.sshRSALegacyEncrypted, "", "passphrase", "is required: private_key is encrypted"},
		{"passphrase for unencrypted key", p.sshEd25519, "pw", "passphrase", "must be empty"},
		{"too many KDF rounds", withKDFRounds(t, p.sshEd25519Encrypted, maxKDFRounds+1), testKeyPassword, "private_key", "at most 256 bcrypt KDF rounds"},
		{"DSA", pemString("DSA PRIVATE KEY", []byte{1, 2, 3}), "", "private_key", "DSA"},
		{"X25519", x25519PKCS8(t), "", "private_key", "signing key"},
		{"ECDSA P-224", p224SEC1(t), "", "private_key", "signing key"},
		{"PKCS#8 encrypted", p.ecPKCS8Encrypted, testKeyPassword, "private_key", "ssh-keygen -p"},
		{"garbage OpenSSH", pemString("OPENSSH PRIVATE KEY", []byte("openssh-key-v1\x00garbage")), "", "private_key", "must be an SSH private key"},
		{"public key", string(ssh.MarshalAuthorizedKey(p.sshEd25519Pub)), "", "private_key", "must contain a PEM private key"},
		{"certificate", p.ecCert, "", "private_key", "only the private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := goodValues(t, "sftp_ssh_key")
			in["private_key"] = tc.key
			in["passphrase"] = tc.passphrase
			_, err := mustType(t, "sftp_ssh_key").Validate(in)
			wantFieldError(t, err, tc.field, tc.want)
		})
	}
}

func x25519PKCS8(t testing.TB) string {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pkcs8String(k)
}

// p224SEC1 is an ECDSA key on a curve SSH does not define.
func p224SEC1(t testing.TB) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemString("EC PRIVATE KEY", der)
}

// withKDFRounds rewrites the bcrypt rounds of an encrypted OpenSSH key.
func withKDFRounds(t testing.TB, keyPEM string, rounds uint32) string {
	t.Helper()
	b, _ := pem.Decode([]byte(keyPEM))
	const magic = "openssh-key-v1\x00"
	var w struct {
		CipherName   string
		KdfName      string
		KdfOpts      string
		NumKeys      uint32
		PubKey       []byte
		PrivKeyBlock []byte
	}
	if err := ssh.Unmarshal(b.Bytes[len(magic):], &w); err != nil {
		t.Fatal(err)
	}
	var opts struct {
		Salt   string
		Rounds uint32
	}
	if err := ssh.Unmarshal([]byte(w.KdfOpts), &opts); err != nil {
		t.Fatal(err)
	}
	opts.Rounds = rounds
	w.KdfOpts = string(ssh.Marshal(&opts))
	return pemString(b.Type, append([]byte(magic), ssh.Marshal(&w)...))
}

func TestOpenSSHKDFRounds(t *testing.T) {
	t.Parallel()
	b, _ := pem.Decode([]byte(pki().sshEd25519Encrypted))
	if r, ok := openSSHKDFRounds(b.Bytes); !ok || r != 16 {
		t.Errorf("rounds = %d, %v; want ssh-keygen's default 16", r, ok)
	}
	b, _ = pem.Decode([]byte(pki().sshEd25519))
	if _, ok := openSSHKDFRounds(b.Bytes); ok {
		t.Error("unencrypted key reported KDF rounds")
	}
}

func TestCertificateExpiredIsAccepted(t *testing.T) {
	t.Parallel()
	// Validate never looks at the clock: the backend decides what expiry means, and
	// needs NotAfter to warn or suspend.
	p := pki()
	got, err := mustType(t, "certificate").Validate(map[string]any{"certificate": p.expiredRSACert, "private_key": p.rsaPKCS1})
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)
	if !got.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got.NotAfter, want)
	}
	if nb := got.Derived["not_before"].(time.Time); !nb.Equal(want.AddDate(-5, 0, 0)) {
		t.Errorf("not_before = %v", nb)
	}
}
