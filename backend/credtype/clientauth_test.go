package credtype

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// jwtValues are an oauth2_client_credentials credential authenticating with
// private_key_jwt, with extra overriding them (nil removes a field).
func jwtValues(extra map[string]any) map[string]any {
	v := map[string]any{"token_url": "https://idp.example.com/token", "client_id": "c1", "auth_style": "private_key_jwt"}
	for k, x := range extra {
		if x == nil {
			delete(v, k)
			continue
		}
		v[k] = x
	}
	return v
}

// refusal validates values of typ at now and returns the refusal of field, failing
// the test when there is none; it also checks no refusal quotes secret.
func refusal(t *testing.T, typ string, values map[string]any, now time.Time, field, secret string) string {
	t.Helper()
	_, err := mustType(t, typ).ValidateAt(values, now)
	if err == nil {
		t.Fatalf("%s %v: accepted, want %s refused", typ, keys(values), field)
	}
	if s := strings.TrimSpace(secret); len(s) > 80 && strings.Contains(err.Error(), s[40:80]) {
		t.Errorf("refusal quotes the value: %v", err)
	}
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error %T is not FieldErrors", err)
	}
	for _, fe := range fes {
		if fe.Field == field {
			return fe.Rule
		}
	}
	t.Fatalf("%v: no refusal of %s", err, field)
	return ""
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestClientKeyRules(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rsa1024 := fixtures.KeyPEM(fixtures.NewKey("rsa1024"))
	p521 := fixtures.KeyPEM(fixtures.NewKey("p521"))
	for _, tc := range []struct {
		name, key, want string
	}{
		{"RSA 1024", rsa1024, "at least 2048 bits"},
		{"P-521", p521, "P-256 or P-384"},
		{"garbage", "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n", "PEM"},
		{"no PEM", "just some text", "PEM private key"},
		{"encrypted", pki().rsaPKCS8Encrypted, "must not be encrypted"},
		{"OpenSSH", pki().sshEd25519, "not OpenSSH"},
	} {
		rule := refusal(t, "oauth2_client_credentials", jwtValues(map[string]any{"client_key": tc.key}), now, "client_key", tc.key)
		if !strings.Contains(rule, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.name, rule, tc.want)
		}
	}
	// Every accepted kind is stored as PKCS#8.
	for _, k := range []string{pki().rsaPKCS1, pki().ecSEC1, pki().edPKCS8, fixtures.KeyPEM(fixtures.NewKey("p384"))} {
		v, err := mustType(t, "oauth2_client_credentials").ValidateAt(jwtValues(map[string]any{"client_key": k}), now)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode([]byte(v.Values["client_key"].(string))); b == nil || b.Type != "PRIVATE KEY" {
			t.Errorf("client_key stored as %v, want PKCS#8", b)
		}
	}
}

func TestClientAssertionAlgorithmFitsKey(t *testing.T) {
	t.Parallel()
	now := time.Now()
	typ := mustType(t, "oauth2_client_credentials")
	for _, tc := range []struct {
		key, alg string
		ok       bool
	}{
		{pki().rsaPKCS8, "RS256", true}, {pki().rsaPKCS8, "ps256", true}, {pki().rsaPKCS8, "ES256", false}, {pki().rsaPKCS8, "EdDSA", false},
		{pki().ecPKCS8, "ES256", true}, {pki().ecPKCS8, "ES384", false}, {pki().ecPKCS8, "PS256", false},
		{pki().edPKCS8, "EdDSA", true}, {pki().edPKCS8, "RS256", false},
	} {
		values := jwtValues(map[string]any{"client_key": tc.key, "client_assertion_algorithm": tc.alg})
		_, err := typ.ValidateAt(values, now)
		if tc.ok != (err == nil) {
			t.Errorf("%s with key %.30q: %v, want ok=%v", tc.alg, tc.key[28:], err, tc.ok)
		}
		if !tc.ok {
			if rule := refusal(t, typ.Name, values, now, "client_assertion_algorithm", ""); !strings.Contains(rule, "must fit client_key") {
				t.Errorf("%s: %q", tc.alg, rule)
			}
		}
	}
	if rule := refusal(t, typ.Name, jwtValues(map[string]any{"client_key": pki().rsaPKCS8, "client_assertion_algorithm": "HS256"}), now,
		"client_assertion_algorithm", ""); !strings.Contains(rule, `"RS256", "PS256", "ES256", "ES384" or "EdDSA"`) {
		t.Errorf("HS256: %q", rule)
	}
	for _, tc := range []struct{ key, want string }{
		{pki().rsaPKCS8, "RS256"}, {pki().ecPKCS8, "ES256"}, {fixtures.KeyPEM(fixtures.NewKey("p384")), "ES384"}, {pki().edPKCS8, "EdDSA"},
	} {
		key, err := ClientKey(mustNormalize(t, tc.key))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := AssertionAlgorithm(key.Public(), ""); err != nil || got != tc.want {
			t.Errorf("default algorithm %q, %v; want %s", got, err, tc.want)
		}
	}
}

func mustNormalize(t *testing.T, keyPEM string) string {
	t.Helper()
	s, err := checkClientKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientCertificateRules(t *testing.T) {
	t.Parallel()
	now := time.Now()
	typ := "oauth2_client_credentials"
	// Mismatch: the RSA test key with the EC key's certificate.
	rule := refusal(t, typ, jwtValues(map[string]any{"client_key": pki().rsaPKCS8, "client_certificate": pki().ecCert}), now, "client_key", pki().rsaPKCS8)
	if !strings.Contains(rule, "must match the public key of client_certificate") {
		t.Errorf("mismatch: %q", rule)
	}
	// Expired: refused when written, with the time it expired.
	rule = refusal(t, typ, jwtValues(map[string]any{"client_key": pki().rsaPKCS8, "client_certificate": pki().expiredRSACert}), now, "client_certificate", "")
	if !strings.Contains(rule, "must not be expired") {
		t.Errorf("expired: %q", rule)
	}
	// Garbage, and a key pasted into the (non-secret) certificate field.
	for _, bad := range []string{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", pki().ecCert + pki().ecPKCS8} {
		refusal(t, typ, jwtValues(map[string]any{"client_key": pki().ecPKCS8, "client_certificate": bad}), now, "client_certificate", "")
	}
	// A good pair: its expiry is recorded.
	v, err := mustType(t, typ).ValidateAt(jwtValues(map[string]any{"client_key": pki().rsaPKCS8, "client_certificate": pki().rsaCert}), now)
	if err != nil {
		t.Fatal(err)
	}
	if !v.ClientCertNotAfter.Equal(testNotAfter) || v.Derived["client_certificate_not_after"] != testNotAfter {
		t.Errorf("ClientCertNotAfter %v, derived %v; want %v", v.ClientCertNotAfter, v.Derived["client_certificate_not_after"], testNotAfter)
	}
}

func TestCACertificateRules(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, typ := range []string{"oauth2_client_credentials", "m365", "bearer", "webhook", "okta", "basic", "api_key"} {
		f, ok := mustType(t, typ).Field("ca_certificate")
		if !ok || f.Sensitive || !f.Destination {
			t.Errorf("%s.ca_certificate = %+v, %v: want a non-secret destination field", typ, f, ok)
		}
	}
	for _, typ := range []string{"slack", "pagerduty", "certificate", "sftp_password", "device_account"} {
		if _, ok := mustType(t, typ).Field("ca_certificate"); ok {
			t.Errorf("%s has ca_certificate but no https endpoint of its own", typ)
		}
	}
	good := jwtValues(map[string]any{"client_key": pki().ecPKCS8, "ca_certificate": pki().caCert + pki().rsaCert})
	if _, err := mustType(t, "oauth2_client_credentials").ValidateAt(good, now); err != nil {
		t.Errorf("a bundle of two certificates: %v", err)
	}
	for _, bad := range []string{"not pem", pki().caCert + pki().ecPKCS8} {
		refusal(t, "oauth2_client_credentials", jwtValues(map[string]any{"client_key": pki().ecPKCS8, "ca_certificate": bad}), now, "ca_certificate", "")
	}
}

// TestRequiredWhenShowsRefusals: for every field with a RequiredWhen and every
// auth_style, Validate refuses the field's absence exactly when the condition the rule
// (what types/ shows) states holds, and the refusal states that condition.
func TestRequiredWhenShowsRefusals(t *testing.T) {
	t.Parallel()
	now := time.Now()
	checked := 0
	for _, typ := range All() {
		if typ.OAuth == nil {
			continue
		}
		for _, f := range typ.Fields {
			w := f.RequiredWhen
			if w == nil {
				continue
			}
			if f.Required || !strings.Contains(f.Rule, w.Rule()) {
				t.Errorf("%s.%s: rule %q does not state %q (or the field is also Required)", typ.Name, f.Name, f.Rule, w.Rule())
			}
			if w.Unless != "" {
				values := validValues(t, typ.Name)
				delete(values, f.Name)
				values["client_key"], values["client_certificate"], values["client_key_id"] = nil, nil, nil
				values[w.Unless], values[FieldGenerateClientCertificate] = "rsa-2048", true
				if _, err := typ.ValidateAt(values, now); err != nil && strings.Contains(err.Error(), `"`+f.Name+`": is `) {
					t.Errorf("%s.%s unset with %s set: %v; want accepted", typ.Name, f.Name, w.Unless, err)
				}
			}
			if typ.OAuth.NoClientAuth {
				values := validValues(t, typ.Name)
				delete(values, f.Name)
				if _, err := typ.ValidateAt(values, now); err == nil || !strings.Contains(err.Error(), `"`+f.Name+`": is `+w.Rule()) {
					t.Errorf("%s.%s unset: %v; want refused with its rule", typ.Name, f.Name, err)
				}
				checked++
				continue
			}
			for _, style := range authStyles {
				values := validValues(t, typ.Name)
				values["auth_style"] = style
				delete(values, f.Name)
				_, err := typ.ValidateAt(values, now)
				refused := err != nil && strings.Contains(err.Error(), `"`+f.Name+`": is `+w.Rule())
				if want := w.Field == "" || slices.Contains(w.Values, style); refused != want {
					t.Errorf("%s.%s unset with auth_style %s: %v; want refused=%v", typ.Name, f.Name, style, err, want)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no RequiredWhen field found")
	}
	// The public-client allowance stays: an authorization-code client needs no secret.
	if f, _ := mustType(t, "oauth2_authorization_code").Field("client_secret"); f.Required || f.RequiredWhen != nil {
		t.Errorf("oauth2_authorization_code.client_secret = %+v: want optional", f)
	}
}

// validValues are values of typ that validate with any auth_style: a client secret,
// an Ed25519 client key and its certificate.
func validValues(t *testing.T, typ string) map[string]any {
	t.Helper()
	v := fixtures.Values(typ, "m1", "https://idp.example.com/token")
	if mustType(t, typ).OAuth.NoClientAuth {
		return v // salesforce_jwt: its own RSA client_key, no client authentication
	}
	v["client_key"], v["client_certificate"] = pki().edPKCS8, pki().edCert
	if _, err := mustType(t, typ).ValidateAt(v, time.Now()); err != nil {
		t.Fatalf("%s example: %v", typ, err)
	}
	return v
}

// TestClientCertificateChainParses: LeafCertificate is the first certificate.
func TestClientCertificateChainParses(t *testing.T) {
	t.Parallel()
	leaf, err := LeafCertificate(pki().rsaCert + pki().caCert)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(pki().rsaCert))
	want, _ := x509.ParseCertificate(b.Bytes)
	if !leaf.Equal(want) {
		t.Error("LeafCertificate is not the first certificate")
	}
}
