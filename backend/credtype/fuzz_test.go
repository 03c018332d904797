package credtype

import (
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for every validator. Each asserts that the validator does not panic,
// that a refusal is a rule (never a library message, which might quote the input),
// and that whatever it accepts is a fixed point: validated again, the normalized value
// is accepted and unchanged — the backend re-validates stored values on every update.
// Seeds live here rather than in testdata; `go test` runs them without fuzzing.

// fuzzField runs one value through the whole validation path of f.
func fuzzField(t *testing.T, f Field, s string) {
	v, set, err := f.normalize(s)
	if err != nil {
		var re ruleError
		if !errors.As(err, &re) {
			t.Fatalf("refusal is not a rule: %T %v", err, err)
		}
		return
	}
	if !set {
		return
	}
	again, set, err := f.normalize(v)
	if err != nil || !set {
		t.Fatalf("accepted %q as %q, which is then refused: %v", s, v, err)
	}
	if !reflect.DeepEqual(again, v) {
		t.Fatalf("not a fixed point: %q -> %q -> %q", s, v, again)
	}
}

// fuzzType runs values through t.Validate and checks the normalized values are a
// fixed point.
func fuzzType(t *testing.T, typ *Type, values map[string]any) *Validated {
	got, err := typ.Validate(values)
	if err != nil {
		var fes FieldErrors
		if !errors.As(err, &fes) {
			t.Fatalf("error is not FieldErrors: %T %v", err, err)
		}
		return nil
	}
	again, err := typ.Validate(got.Values)
	if err != nil {
		t.Fatalf("normalized values refused: %v", err)
	}
	if !reflect.DeepEqual(again.Values, got.Values) {
		t.Fatalf("not a fixed point:\n%q\n%q", got.Values, again.Values)
	}
	return got
}

func FuzzHTTPSURL(f *testing.F) {
	for _, s := range []string{
		"https://auth.example.com/oauth2/token",
		"HTTPS://Auth.Example.COM:8443/a/b?c=d&e=%20f",
		"http://localhost:8080/token",
		"http://127.0.0.1/x",
		"http://[::1]:9/",
		"https://[2001:db8::1]/",
		"https://user:pass@example.com/",
		"https://example.com/#frag",
		"https://example.com:99999/",
		"https://exa mple.com/",
		"https:opaque",
		"//example.com/",
		"https://%65xample.com/",
		"https://example.com/%zz",
		"https://example.com/a%2Fb",
		"https://example.com?",
		"http://[::ffff:127.0.0.1]/",
		"https://[fe80::1%25eth0]/",
	} {
		f.Add(s)
	}
	field := schemaFields["token_url"]
	f.Fuzz(func(t *testing.T, s string) {
		fuzzField(t, field, s)
		if v, set, err := field.normalize(s); err == nil && set {
			// An accepted URL uses TLS unless it stays on this machine.
			u := v.(string)
			if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
				t.Fatalf("accepted %q with another scheme", u)
			}
			if strings.HasPrefix(u, "http://") && !isLoopback(hostPart(t, u)) {
				t.Fatalf("accepted plain http to a non-loopback host: %q", u)
			}
		}
	})
}

func hostPart(t *testing.T, u string) string {
	t.Helper()
	rest := strings.TrimPrefix(u, "http://")
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	if strings.HasPrefix(rest, "[") {
		return rest[1:strings.Index(rest, "]")]
	}
	host, _, _ := strings.Cut(rest, ":")
	return host
}

func FuzzSFTPHost(f *testing.F) {
	for _, s := range []string{
		"sftp://files.example.com:22/",
		"SFTP://Files.Example.com:022",
		"sftp://[2001:db8::1]:2222/",
		"sftp://192.0.2.1:65535/",
		"sftp://files.example.com/",
		"sftp://files.example.com:0/",
		"sftp://u@files.example.com:22/",
		"sftp://files.example.com:22/path",
		"sftp://:22/",
		"files.example.com:22",
	} {
		f.Add(s)
	}
	field := schemaFields["host"]
	f.Fuzz(func(t *testing.T, s string) {
		fuzzField(t, field, s)
	})
}

func FuzzHostKeyFingerprint(f *testing.F) {
	for _, s := range []string{
		pki().hostKeyFingerprint,
		"sha256:" + strings.Repeat("A", 43),
		"SHA256:" + strings.Repeat("A", 43) + "=",
		"SHA256:" + strings.Repeat("A", 42) + "B",
		"da:47:93:b4:3a:90:5b:50:1f:20:a8:f9:b7:a1:d0:e1",
		"MD5:da:47:93:b4:3a:90:5b:50:1f:20:a8:f9:b7:a1:d0:e1",
		"SHA1:2jmj7l5rSw0yVb/vlWAYkK/YBwk",
	} {
		f.Add(s)
	}
	field := schemaFields["host_key_fingerprint"]
	f.Fuzz(func(t *testing.T, s string) {
		fuzzField(t, field, s)
	})
}

func FuzzTOTPSecret(f *testing.F) {
	for _, s := range []string{
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
		"gezd gnbv gy3t qojq",
		"JBSWY3DPEHPK3PXP====",
		"JBSWY3DPEHPK3PXPA",
		"JBSWY3DP",
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP",
		"0189",
		strings.Repeat("A", 257),
	} {
		f.Add(s)
	}
	field := schemaFields[fieldTOTPSecret]
	at := time.Unix(1111111109, 0)
	f.Fuzz(func(t *testing.T, s string) {
		fuzzField(t, field, s)
		v, set, err := field.normalize(s)
		if err != nil || !set {
			return
		}
		// Whatever is stored must produce codes, from both spellings alike.
		a, err := TOTPCode(v.(string), at)
		if err != nil || len(a) != 6 {
			t.Fatalf("TOTPCode(normalized %q) = %q, %v", v, a, err)
		}
		if b, err := TOTPCode(s, at); err != nil || a != b {
			t.Fatalf("TOTPCode(%q) = %q, %v; normalized gives %q", s, b, err, a)
		}
	})
}

func FuzzCertificatePEM(f *testing.F) {
	p := pki()
	for _, s := range []string{
		p.rsaCert,
		p.ecCert + p.caCert,
		"text\n" + p.edCert + "more text",
		p.ecCert + p.ecSEC1,
		p.ecCert[:len(p.ecCert)/2],
		pemString("CERTIFICATE", []byte{0x30, 0x03, 0x02, 0x01, 0x01}),
	} {
		f.Add(s)
	}
	field := schemaFields["certificate"]
	f.Fuzz(func(t *testing.T, s string) {
		fuzzField(t, field, s)
	})
}

// FuzzCertificateCredential fuzzes the certificate, its key and the key's password
// together, through Validate and Access: an accepted credential must hand out a key.
func FuzzCertificateCredential(f *testing.F) {
	p := pki()
	for _, s := range [][3]string{
		{p.rsaCert, p.rsaPKCS1, ""},
		{p.ecCert, "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + p.ecSEC1, ""},
		{p.edCert, p.edPKCS8, ""},
		{p.rsaCert, p.rsaLegacyEncrypted, testKeyPassword},
		{p.ecCert, p.ecLegacyEncrypted, "wrong"},
		{p.rsaCert, p.ecSEC1, ""},
		{p.ecCert, pemString("ENCRYPTED PRIVATE KEY", []byte{1}), "x"},
		{p.ecCert, pemString("PRIVATE KEY", []byte{0x30, 0x00}), ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	typ := mustType(f, "certificate")
	f.Fuzz(func(t *testing.T, cert, key, password string) {
		got := fuzzType(t, typ, map[string]any{"certificate": cert, "private_key": key, "private_key_password": password})
		if got == nil {
			return
		}
		if got.NotAfter.IsZero() {
			t.Fatal("accepted without NotAfter")
		}
		out, err := typ.Access(FieldMap(got.Values), got.Secrets, time.Now())
		if err != nil {
			t.Fatalf("accepted but Access fails: %v", err)
		}
		if b, _ := pem.Decode([]byte(out["private_key"].(string))); b == nil || b.Type != "PRIVATE KEY" {
			t.Fatal("Access did not hand out a PKCS#8 key")
		}
	})
}

func FuzzSSHPrivateKey(f *testing.F) {
	p := pki()
	for _, s := range [][2]string{
		{p.sshEd25519, ""},
		{p.sshEd25519Encrypted, testKeyPassword},
		{p.sshEd25519Encrypted, ""},
		{p.sshECDSA, ""},
		{p.sshRSA, "unneeded"},
		{p.sshRSALegacyEncrypted, "wrong"},
		{pemString("OPENSSH PRIVATE KEY", []byte("openssh-key-v1\x00")), ""},
		{pemString("DSA PRIVATE KEY", []byte{1}), ""},
	} {
		f.Add(s[0], s[1])
	}
	typ := mustType(f, "sftp_ssh_key")
	base := goodValues(f, "sftp_ssh_key")
	f.Fuzz(func(t *testing.T, key, passphrase string) {
		in := map[string]any{"private_key": key, "passphrase": passphrase}
		for _, k := range []string{"host", "host_key_fingerprint", "username"} {
			in[k] = base[k]
		}
		got := fuzzType(t, typ, in)
		if got != nil && got.Derived["public_key"] == "" {
			t.Fatal("accepted without a public key")
		}
	})
}
