package credtype

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rfcSecret is RFC 6238's SHA1 test secret; at rfcTime its 6-digit code is 287082.
const rfcSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

var rfcTime = time.Unix(59, 0)

func TestAccessStaticTypes(t *testing.T) {
	t.Parallel()
	p := pki()
	tests := []struct {
		typ  string
		in   map[string]any // merged over the type's good example
		want map[string]any
	}{
		{"basic", map[string]any{"username": "Aladdin", "password": "open sesame"}, map[string]any{
			"username": "Aladdin", "password": "open sesame",
			"authorization": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", // RFC 7617 section 2
		}},
		{"basic", map[string]any{"username": "u", "password": "p", "totp_secret": rfcSecret}, map[string]any{
			"username": "u", "password": "p", "authorization": "Basic dTpw", "totp_code": "287082",
		}},
		{"bearer", map[string]any{"token": "t0k", "url": nil}, map[string]any{
			"token": "t0k", "authorization": "Bearer t0k",
		}},
		{"bearer", map[string]any{"token": "t0k", "header_prefix": "Token"}, map[string]any{
			"token": "t0k", "authorization": "Token t0k",
		}},
		{"api_key", map[string]any{"key": "k1"}, map[string]any{
			"key": "k1", "header_name": "X-API-Key",
		}},
		{"api_key", map[string]any{"key": "k1", "header_name": "Api-Key", "url": "https://api.example.com"}, map[string]any{
			"key": "k1", "header_name": "Api-Key",
		}},
		{"sftp_password", map[string]any{"totp_secret": rfcSecret}, map[string]any{
			"host": "sftp://files.example.com:2222/", "host_key_fingerprint": p.hostKeyFingerprint,
			"username": "upload", "password": "pw with spaces ", "totp_code": "287082",
		}},
		{"sftp_ssh_key", map[string]any{"private_key": p.sshEd25519Encrypted, "passphrase": testKeyPassword}, map[string]any{
			"host": "sftp://files.example.com:22/", "host_key_fingerprint": p.hostKeyFingerprint,
			"username": "upload", "private_key": p.sshEd25519Encrypted, "passphrase": testKeyPassword,
		}},
		{"webhook", nil, map[string]any{"url": "https://hooks.example.com/services/T000/B000/XXXX"}},
		{"device_account", map[string]any{"password": "pw", "domain": "CORP", "notes": "rack 4", "totp_secret": rfcSecret}, map[string]any{
			"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator",
			"password": "pw", "domain": "CORP", "notes": "rack 4", "totp_code": "287082",
		}},
		{"slack", nil, map[string]any{"token": "xoxb-1234-5678-abcdef", "authorization": "Bearer xoxb-1234-5678-abcdef"}},
		{"pagerduty", nil, map[string]any{"routing_key": "e93facc04764012d7bfb002500d5d1a6"}},
		{"okta", nil, map[string]any{
			"token":         "00abcdefghijklmnopqrstuvwxyz0123456789ABCD",
			"authorization": "SSWS 00abcdefghijklmnopqrstuvwxyz0123456789ABCD",
		}},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.typ] = true
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			typ := mustType(t, tc.typ)
			got := access(t, typ, tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Access =\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
	for _, typ := range All() {
		if typ.Kind == KindStatic && typ.Name != "certificate" && !covered[typ.Name] {
			t.Errorf("no Access case for %s", typ.Name)
		}
	}
}

// access validates the type's example with in merged over it, as the backend stores
// it, then reads its access material at rfcTime.
func access(t *testing.T, typ *Type, in map[string]any) map[string]any {
	t.Helper()
	values := goodValues(t, typ.Name)
	maps.Copy(values, in)
	for k, v := range values {
		if v == nil {
			delete(values, k)
		}
	}
	v, err := typ.Validate(values)
	if err != nil {
		t.Fatalf("Validate = %v", err)
	}
	got, err := typ.Access(FieldMap(v.Values), v.Secrets, rfcTime)
	if err != nil {
		t.Fatalf("Access = %v", err)
	}
	return got
}

func TestAccessCertificateReturnsDecryptedPKCS8(t *testing.T) {
	t.Parallel()
	p := pki()
	typ := mustType(t, "certificate")
	for _, tc := range []struct {
		name, cert, key, password string
	}{
		{"RSA PKCS#1", p.rsaCert, p.rsaPKCS1, ""},
		{"RSA legacy encrypted", p.rsaCert, p.rsaLegacyEncrypted, testKeyPassword},
		{"RSA PKCS#8 encrypted", p.rsaCert, p.rsaPKCS8Encrypted, testKeyPassword},
		{"EC PKCS#8 encrypted", p.ecCert, p.ecPKCS8Encrypted, testKeyPassword},
		{"EC legacy encrypted", p.ecCert, p.ecLegacyEncrypted, testKeyPassword},
		{"Ed25519", p.edCert, p.edPKCS8, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := access(t, typ, map[string]any{"certificate": tc.cert, "private_key": tc.key, "private_key_password": tc.password})
			if got["not_after"] != "2030-01-02T03:04:05Z" {
				t.Errorf("not_after = %v", got["not_after"])
			}
			if got["certificate"] != tc.cert {
				t.Errorf("certificate changed:\n%v", got["certificate"])
			}
			if _, ok := got["private_key_password"]; ok {
				t.Error("private_key_password handed out with a decrypted key")
			}
			b, rest := pem.Decode([]byte(got["private_key"].(string)))
			if b == nil || b.Type != "PRIVATE KEY" || len(b.Headers) != 0 || len(strings.TrimSpace(string(rest))) != 0 {
				t.Fatalf("private_key is not one unencrypted PKCS#8 block:\n%v", got["private_key"])
			}
			key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := leafCertificate(tc.cert)
			if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
				t.Error("handed-out key does not match the certificate")
			}
		})
	}
}

func TestAccessRefuses(t *testing.T) {
	t.Parallel()
	for _, typ := range All() {
		if typ.Kind != KindOAuth2 {
			continue
		}
		if _, err := typ.Access(FieldMap(goodValues(t, typ.Name)), nil, rfcTime); err == nil {
			t.Errorf("%s: Access succeeded for an oauth2 kind", typ.Name)
		}
	}
	if _, err := mustType(t, "basic").Access(FieldMap{"username": "u"}, nil, rfcTime); err == nil || !strings.Contains(err.Error(), `"password"`) {
		t.Errorf("Access without a required field = %v", err)
	}
	p := pki()
	_, err := mustType(t, "certificate").Access(FieldMap{
		"certificate": p.rsaCert, "private_key": p.rsaLegacyEncrypted, "private_key_password": "CANARY7Q",
	}, nil, rfcTime)
	if err == nil || strings.Contains(err.Error(), "CANARY7Q") {
		t.Errorf("Access with a wrong stored password = %v", err)
	}
}

// TestWithDefaults: values stored before a static type's field had a default get it
// (unset or empty), as Validate gives it; set values, and OAuth types, are left as
// they are, and values that lack nothing come back unchanged.
func TestWithDefaults(t *testing.T) {
	t.Parallel()
	bearer, apiKey, zoom := mustType(t, "bearer"), mustType(t, "api_key"), mustType(t, "zoom")
	for _, tc := range []struct {
		typ        *Type
		stored     map[string]any
		field, got string
	}{
		{bearer, map[string]any{"token": "t"}, "header_prefix", "Bearer"},
		{bearer, map[string]any{"token": "t", "header_prefix": ""}, "header_prefix", "Bearer"},
		{bearer, map[string]any{"token": "t", "header_prefix": "Token"}, "header_prefix", "Token"},
		{apiKey, map[string]any{"key": "k"}, "header_name", "X-API-Key"},
		{apiKey, map[string]any{"key": "k", "header_name": "X-Key"}, "header_name", "X-Key"},
		{zoom, map[string]any{"client_id": "c"}, "auth_style", ""},
	} {
		v := tc.typ.Compact(tc.stored)
		up := tc.typ.WithDefaults(v)
		if got := up.Str(tc.field); got != tc.got {
			t.Errorf("%s %v: %s = %q, want %q", tc.typ.Name, tc.stored, tc.field, got, tc.got)
		}
		if up.Str(tc.field) == tc.stored[tc.field] && !reflect.DeepEqual(up, v) {
			t.Errorf("%s %v: changed values that lacked nothing", tc.typ.Name, tc.stored)
		}
	}
}
