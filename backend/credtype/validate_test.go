package credtype

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestValidateAcceptsEveryTypesExample(t *testing.T) {
	t.Parallel()
	for _, typ := range All() {
		t.Run(typ.Name, func(t *testing.T) {
			t.Parallel()
			in := goodValues(t, typ.Name)
			got, err := typ.Validate(in)
			if err != nil {
				t.Fatalf("Validate(example) = %v", err)
			}
			for k := range got.Values {
				if _, ok := typ.Field(k); !ok {
					t.Errorf("Values has %q, not a field of the type", k)
				}
			}
			// Normalized values are a fixed point: the backend stores them and
			// validates them again on every update.
			again, err := typ.Validate(got.Values)
			if err != nil {
				t.Fatalf("Validate(normalized) = %v", err)
			}
			if !reflect.DeepEqual(again.Values, got.Values) {
				t.Errorf("normalizing twice changed values:\n%v\n%v", got.Values, again.Values)
			}
		})
	}
}

func TestValidateRequiresRequiredFields(t *testing.T) {
	t.Parallel()
	for _, typ := range All() {
		for _, f := range typ.Fields {
			if !f.Required {
				continue
			}
			t.Run(typ.Name+"/"+f.Name, func(t *testing.T) {
				t.Parallel()
				for _, empty := range []any{nil, "", "   "} {
					in := goodValues(t, typ.Name)
					switch {
					case empty == nil:
						delete(in, f.Name)
					case f.Type == FieldList:
						in[f.Name] = []string{empty.(string)} // a list arrives as a list
					default:
						in[f.Name] = empty
					}
					if f.verbatim && empty == "   " {
						continue // a password of spaces is a password
					}
					_, err := typ.Validate(in)
					wantFieldError(t, err, f.Name, "is required")
				}
			})
		}
	}
}

func TestValidateDefaultsAndLifecycleFields(t *testing.T) {
	t.Parallel()
	got, err := mustType(t, "bearer").Validate(map[string]any{
		"token":       "t0k",
		"description": "ignored here",
		"tags":        []string{"a"},
		"expires_at":  "2030-01-01T00:00:00Z",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"token": "t0k", "header_prefix": "Bearer"}
	if !maps.Equal(got.Values, want) {
		t.Errorf("Values = %v, want %v", got.Values, want)
	}

	m365 := mustType(t, "microsoft_graph")
	got, err = m365.Validate(goodValues(t, "m365"))
	if err != nil {
		t.Fatal(err)
	}
	scopes := got.Values["scopes"].([]string)
	if !slices.Equal(scopes, []string{"https://graph.microsoft.com/.default"}) {
		t.Errorf("default scopes = %v", scopes)
	}
	scopes[0] = "mutated"
	if f, _ := m365.Field("scopes"); f.Default.([]string)[0] != "https://graph.microsoft.com/.default" {
		t.Error("mutating Values changed the catalog default")
	}
}

func TestValidateNormalizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, field string
		in         any
		want       any
	}{
		{"bearer", "url", " HTTPS://API.Example.COM/V1/Path?x=1 ", "https://api.example.com/V1/Path?x=1"},
		{"bearer", "url", "http://localhost:8080/hook", "http://localhost:8080/hook"},
		{"bearer", "url", "http://127.0.0.2/token", "http://127.0.0.2/token"},
		{"bearer", "url", "http://[::1]:9000/t", "http://[::1]:9000/t"},
		{"bearer", "url", "https://[2001:DB8::1]:8443/", "https://[2001:db8::1]:8443/"},
		{"webhook", "url", "https://hooks.example.com", "https://hooks.example.com"},
		{"sftp_password", "host", "SFTP://Files.Example.com:022", "sftp://files.example.com:22/"},
		{"sftp_password", "host", "sftp://[2001:db8::1]:22/", "sftp://[2001:db8::1]:22/"},
		{"sftp_password", "host", "sftp://192.0.2.7:2022/", "sftp://192.0.2.7:2022/"},
		{"sftp_password", "password", " keep my spaces ", " keep my spaces "},
		{"device_account", "hostname", "SRV01.Corp.Example.com.", "srv01.corp.example.com"},
		{"device_account", "hostname", "WIN_SRV-01", "win_srv-01"},
		{"device_account", "ip", "::ffff:10.0.0.5", "10.0.0.5"},
		{"device_account", "ip", "2001:DB8:0:0::1", "2001:db8::1"},
		{"device_account", "notes", "line one\n\tline two", "line one\n\tline two"},
		{"m365", "tenant", "72F988BF-86F1-41AF-91AB-2D7CD011DB47", "72f988bf-86f1-41af-91ab-2d7cd011db47"},
		{"m365", "tenant", "Contoso.onmicrosoft.com", "contoso.onmicrosoft.com"},
		{"m365", "scopes", []string{"  User.Read  Mail.Send ", "User.Read", ""}, []string{"User.Read", "Mail.Send"}},
		{"m365", "scopes", []any{"a", "b"}, []string{"a", "b"}},
		{"servicenow_oauth", "instance", "Dev12345.service-now.com", "dev12345"},
		{"oauth2_client_credentials", "auth_style", "BODY", "body"},
		{"basic", "totp_secret", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
		{"basic", "totp_secret", "JBSWY3DPEHPK3PXP====", "JBSWY3DPEHPK3PXP"},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"/"+tc.field, func(t *testing.T) {
			t.Parallel()
			in := goodValues(t, tc.typ)
			in[tc.field] = tc.in
			got, err := mustType(t, tc.typ).Validate(in)
			if err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if !reflect.DeepEqual(got.Values[tc.field], tc.want) {
				t.Errorf("%s = %q, want %q", tc.field, got.Values[tc.field], tc.want)
			}
		})
	}
}

func TestValidateAppliesDefaultAuthStyleAndFingerprint(t *testing.T) {
	t.Parallel()
	got, err := mustType(t, "oauth2_password").Validate(goodValues(t, "oauth2_password"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Values["auth_style"] != "header" {
		t.Errorf("auth_style = %v, want the header default", got.Values["auth_style"])
	}
	fp := pki().hostKeyFingerprint
	for _, spelling := range []string{fp, "sha256:" + strings.TrimPrefix(fp, "SHA256:"), fp + "="} {
		in := goodValues(t, "sftp_password")
		in["host_key_fingerprint"] = spelling
		got, err := mustType(t, "sftp_password").Validate(in)
		if err != nil {
			t.Fatalf("fingerprint spelling %q: %v", spelling, err)
		}
		if got.Values["host_key_fingerprint"] != fp {
			t.Errorf("fingerprint %q normalized to %q, want %q", spelling, got.Values["host_key_fingerprint"], fp)
		}
	}
}

// TestValidateRefuses breaks one rule per case, starting from the type's good example.
func TestValidateRefuses(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", maxText+1)
	tests := []struct {
		name, typ, field string
		value            any
		want             string
	}{
		// Every field.
		{"too long", "basic", "username", long, "at most 4096 bytes"},
		{"too long secret", "basic", "password", long, "at most 4096 bytes"},
		{"too long PEM", "certificate", "certificate", strings.Repeat("a", maxPEM+1), "at most 65536 bytes"},
		{"newline in single line", "basic", "password", "pass\nword", "single line"},
		{"tab in single line", "device_account", "domain", "CORP\tX", "single line"},
		{"NUL in text", "device_account", "notes", "a\x00b", "control characters"},
		{"invalid UTF-8", "device_account", "notes", "a\xffb", "UTF-8"},
		{"not a string", "basic", "username", 42, "must be a string"},
		{"not a list", "m365", "scopes", "User.Read", "must be a list of strings"},
		{"list of non-strings", "m365", "scopes", []any{"a", 1}, "must be a list of strings"},
		{"too many items", "m365", "scopes", manyScopes(maxListItems + 1), "at most 64 items"},

		// HTTPS URLs, for every URL field.
		{"plain http", "bearer", "url", "http://api.example.com/", "must be an https URL with a host (http only for loopback hosts)"},
		{"http to a private address", "webhook", "url", "http://10.0.0.1/", "https URL"},
		{"http to localhost lookalike", "okta", "url", "http://localhost.example.com/", "https URL"},
		{"other scheme", "api_key", "url", "ftp://files.example.com/", "https URL"},
		{"no scheme", "webhook", "url", "hooks.example.com/x", "https URL"},
		{"no host", "oauth2_client_credentials", "token_url", "https:///token", "https URL"},
		{"opaque", "oauth2_client_credentials", "token_url", "https:token", "https URL"},
		{"userinfo", "oauth2_authorization_code", "auth_url", "https://user:pw@auth.example.com/", "user information"},
		{"fragment", "oauth2_authorization_code", "redirect_url", "https://app.example.com/cb#x", "fragment"},
		{"port zero", "m365", "token_url", "https://login.example.com:0/", "port"},
		{"port too big", "zoom", "auth_url", "https://zoom.example.com:65536/", "port"},
		{"space", "cisco_client_credentials", "auth_url", "https://cisco.example.com/a b", "https URL"},
		{"bad host", "servicenow_oauth", "token_url", "https://bad!host.example.com/", "https URL"},
		{"unicode host", "servicenow_oauth", "auth_url", "https://bücher.example/", "https URL"},
		{"zoned IPv6", "bearer", "url", "http://[fe80::1%25eth0]/", "https URL"},
		{"bracketed name", "bearer", "url", "https://[example.com]/", "https URL"},

		// SFTP host.
		{"sftp without port", "sftp_password", "host", "sftp://files.example.com/", "sftp://host:port/"},
		{"sftp port zero", "sftp_password", "host", "sftp://files.example.com:0/", "port between 1 and 65535"},
		{"sftp path", "sftp_ssh_key", "host", "sftp://files.example.com:22/upload", "no path"},
		{"sftp other scheme", "sftp_ssh_key", "host", "ssh://files.example.com:22/", "sftp://host:port/"},
		{"sftp bare host", "sftp_password", "host", "files.example.com:22", "sftp://host:port/"},
		{"sftp user", "sftp_password", "host", "sftp://upload@files.example.com:22/", "username"},
		{"sftp query", "sftp_password", "host", "sftp://files.example.com:22/?x=1", "sftp://host:port/"},
		{"sftp no host", "sftp_password", "host", "sftp://:22/", "sftp://host:port/"},

		// Host key fingerprints.
		{"MD5 fingerprint", "sftp_password", "host_key_fingerprint", "da:47:93:b4:3a:90:5b:50:1f:20:a8:f9:b7:a1:d0:e1", "ssh-keygen -lf"},
		{"MD5: prefixed", "sftp_ssh_key", "host_key_fingerprint", "MD5:DA:47:93:B4:3A:90:5B:50:1F:20:A8:F9:B7:A1:D0:E1", "MD5 fingerprints are refused"},
		{"SHA1 fingerprint", "sftp_password", "host_key_fingerprint", "SHA1:2jmj7l5rSw0yVb/vlWAYkK/YBwk", "SHA256:<43 base64"},
		{"short SHA256", "sftp_password", "host_key_fingerprint", "SHA256:abc", "SHA256:<43 base64"},
		{"not base64", "sftp_password", "host_key_fingerprint", "SHA256:" + strings.Repeat("!", 43), "32-byte"},
		{"non-canonical base64", "sftp_password", "host_key_fingerprint", "SHA256:" + strings.Repeat("A", 42) + "B", "32-byte"},

		// TOTP secrets.
		{"totp not base32", "basic", "totp_secret", "not base32 at all!", "base32"},
		{"totp digits 0,1,8,9", "sftp_password", "totp_secret", "GEZDGNBVGY3TQOJQ01890000", "base32"},
		{"totp too short", "device_account", "totp_secret", "GEZDGNBVGY3TQOJ", "80 bits"},
		{"totp truncated group", "oauth2_password", "totp_secret", "GEZDGNBVGY3TQOJQG", "whole number of bytes"},
		{"totp too long", "servicenow_oauth", "totp_secret", strings.Repeat("A", maxTOTPSecret+1), "at most 256 bytes"},
		{"totp URI", "basic", "totp_secret", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP", "otpauth"},
		{"totp on a type without passwords", "bearer", "totp_secret", "JBSWY3DPEHPK3PXP", `is not a field of type "bearer"`},

		// Type-specific rules.
		{"basic user with colon", "basic", "username", "domain:user", "':'"},
		{"bearer token with space", "bearer", "token", "abc def", "printable ASCII without spaces"},
		{"bearer token non-ASCII", "bearer", "token", "tökén", "printable ASCII"},
		{"header prefix with space", "bearer", "header_prefix", "Bear er", "HTTP token"},
		{"header name with colon", "api_key", "header_name", "X-Key:", "HTTP token"},
		{"api key with space", "api_key", "key", "k 1", "printable ASCII"},
		{"client id with space", "zoom", "client_id", "a b", "spaces"},
		{"account id with space", "zoom", "account_id", "a b", "spaces"},
		{"auth style", "oauth2_client_credentials", "auth_style", "query", `"header", "body", "private_key_jwt", "tls_client_auth" or "federated"`},
		{"scope with quote", "oauth2_client_credentials", "scopes", []string{`read"write`}, "RFC 6749"},
		{"hostname with space", "device_account", "hostname", "srv 01", "host name"},
		{"hostname leading hyphen", "device_account", "hostname", "-srv.example.com", "host name"},
		{"hostname too long", "device_account", "hostname", strings.Repeat("a.", 127) + "ab", "at most 253 bytes"},
		{"ip out of range", "device_account", "ip", "10.0.0.256", "IPv4 or IPv6"},
		{"ip with zone", "device_account", "ip", "fe80::1%eth0", "without zone"},
		{"ip hostname", "device_account", "ip", "srv01", "IPv4 or IPv6"},
		{"tenant alias", "m365", "tenant", "common", "GUID"},
		{"tenant bad", "m365", "tenant", "not a tenant", "GUID"},
		{"instance with dot", "servicenow_oauth", "instance", "my.instance.example.com", "instance name"},
		{"instance underscore", "servicenow_oauth", "instance", "dev_1", "instance name"},
		{"slack signing secret", "slack", "token", "8f742231b10e8888abcd99yyyzzz85a5", "Slack token"},
		{"pagerduty short", "pagerduty", "routing_key", "abc", "32 letters and digits"},
		{"pagerduty punctuation", "pagerduty", "routing_key", "e93facc0-764012d7bfb002500d5d1a6", "32 letters and digits"},
		{"okta http", "okta", "url", "http://example.okta.com", "https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := goodValues(t, tc.typ)
			in[tc.field] = tc.value
			_, err := mustType(t, tc.typ).Validate(in)
			wantFieldError(t, err, tc.field, tc.want)
		})
	}
}

func manyScopes(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "scope" + strings.Repeat("x", i)
	}
	return s
}

func TestValidateCrossFieldRules(t *testing.T) {
	t.Parallel()
	sn := mustType(t, "servicenow_oauth")
	in := goodValues(t, "servicenow_oauth")
	in["username"] = "integration.user"
	_, err := sn.Validate(in)
	wantFieldError(t, err, "password", "is required when username is set")

	in = goodValues(t, "servicenow_oauth")
	in["password"] = "pw"
	_, err = sn.Validate(in)
	wantFieldError(t, err, "username", "is required when password is set")

	in["username"] = "integration.user"
	if _, err := sn.Validate(in); err != nil {
		t.Errorf("username and password together: %v", err)
	}
}

func TestValidateUnknownFieldsAndErrorShape(t *testing.T) {
	t.Parallel()
	// Empty values of other types' fields set nothing and pass.
	if _, err := mustType(t, "basic").Validate(map[string]any{
		"username": "u", "password": "p", "token": "", "scopes": []string{}, "url": nil,
	}); err != nil {
		t.Errorf("empty values of unknown fields refused: %v", err)
	}
	_, err := mustType(t, "basic").Validate(map[string]any{
		"username": "u:x",
		"token":    "nope",
		"zzz":      []string{"nope"},
	})
	wantFieldError(t, err, "token", `is not a field of type "basic"`)
	wantFieldError(t, err, "zzz", `is not a field of type "basic"`)
	wantFieldError(t, err, "password", "is required")
	wantFieldError(t, err, "username", "':'")

	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("%T is not FieldErrors", err)
	}
	var fields []string
	for _, fe := range fes {
		fields = append(fields, fe.Field)
	}
	if !slices.IsSorted(fields) {
		t.Errorf("errors not sorted by field: %v", fields)
	}
	var one *FieldError
	if !errors.As(err, &one) || one.Field != "password" {
		t.Errorf("errors.As(*FieldError) = %v", one)
	}
	want := `field "token_url": must be an https URL with a host (http only for loopback hosts)`
	if got := (&FieldError{Field: "token_url", Rule: string(errHTTPSURL)}).Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestErrorsNeverEchoSensitiveValues feeds every sensitive field of every type values
// that break its rules in different ways, each carrying a canary, and checks that no
// error message repeats it.
func TestErrorsNeverEchoSensitiveValues(t *testing.T) {
	t.Parallel()
	const canary = "CANARY7Q"
	bad := []string{
		canary + "\x00",
		canary + "\n" + canary,
		canary + " " + canary,
		strings.Repeat(canary, maxPEM/len(canary)+1),
		"\xff" + canary,
		"otpauth://totp/" + canary,
		"-----BEGIN PRIVATE KEY-----\n" + canary + "\n-----END PRIVATE KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: " + canary + "\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
		canary, // valid for some fields; must then be refused elsewhere or accepted
	}
	for _, typ := range All() {
		for _, f := range typ.Fields {
			if !f.Sensitive {
				continue
			}
			t.Run(typ.Name+"/"+f.Name, func(t *testing.T) {
				t.Parallel()
				refused := 0
				for _, v := range bad {
					in := goodValues(t, typ.Name)
					in[f.Name] = v
					_, err := typ.Validate(in)
					if err == nil {
						continue
					}
					refused++
					if strings.Contains(err.Error(), canary) {
						t.Errorf("error echoes the value: %v", err)
					}
				}
				if refused == 0 {
					t.Error("no bad value was refused")
				}
			})
		}
	}
	// Wrong passwords reach the decryption code, which must not echo them either.
	p := pki()
	for _, tc := range []struct {
		typ   string
		in    map[string]any
		field string
	}{
		{"certificate", map[string]any{"certificate": p.rsaCert, "private_key": p.rsaLegacyEncrypted, "private_key_password": canary}, "private_key_password"},
		{"sftp_ssh_key", map[string]any{"private_key": p.sshEd25519Encrypted, "passphrase": canary}, "passphrase"},
		{"sftp_ssh_key", map[string]any{"private_key": p.sshRSALegacyEncrypted, "passphrase": canary}, "passphrase"},
	} {
		in := goodValues(t, tc.typ)
		maps.Copy(in, tc.in)
		_, err := mustType(t, tc.typ).Validate(in)
		wantFieldError(t, err, tc.field, "does not decrypt")
		if strings.Contains(err.Error(), canary) {
			t.Errorf("%s: error echoes the password: %v", tc.typ, err)
		}
	}
}

// A type that derives nothing keeps no Derived map: the backend caches every
// credential's Validated parts for its life, so an empty map would cost each of them.
// A type that derives facts still gets them.
func TestValidateKeepsNoEmptyDerived(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"bearer", "certificate"} {
		typ, _ := Lookup(name)
		got, err := typ.Validate(goodValues(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if wantNil := name == "bearer"; (got.Derived == nil) != wantNil {
			t.Errorf("%s: Derived = %#v, want nil: %v", name, got.Derived, wantNil)
		}
	}
}

// A PEM field given a file name without @ says to send the file with @: every field
// the catalog marks PEM does, naming the file unless the field is sensitive; the same
// name in a field that is not PEM is not taken for a file, and PEM text never is.
func TestPEMFieldGivenAFileNameSaysUseAt(t *testing.T) {
	t.Parallel()
	wantPEM := map[string]bool{"certificate": true, "private_key": true, "client_key": true, "client_certificate": true, FieldCACertificate: true}
	seen := map[string]bool{}
	for _, typ := range All() {
		for _, f := range typ.Fields {
			if f.pem != wantPEM[f.Name] {
				t.Errorf("%s.%s: pem %v", typ.Name, f.Name, f.pem)
			}
			if !f.pem || f.Type != FieldString {
				continue
			}
			seen[f.Name] = true
			in := goodValues(t, typ.Name)
			in[f.Name] = "certs/client.crt"
			_, err := typ.Validate(in)
			want := "looks like a file name: use " + f.Name + "=@certs/client.crt"
			if f.Sensitive {
				want = "looks like a file name: use " + f.Name + "=@<file>"
			}
			wantFieldError(t, err, f.Name, want)
			if f.Sensitive && strings.Contains(err.Error(), "client.crt") {
				t.Errorf("%s.%s: the sensitive value is shown: %v", typ.Name, f.Name, err)
			}
		}
	}
	if len(seen) != len(wantPEM) {
		t.Errorf("PEM fields tried: %v", seen)
	}
	for _, name := range []string{"client.crt", "id_ed25519", "/home/me/.ssh/id_rsa", "tls/ca.pem", "key.pk8"} {
		if !fileNameLike.MatchString(name) {
			t.Errorf("%q not taken for a file name", name)
		}
	}
	for _, v := range []string{"-----BEGIN CERTIFICATE-----", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA/abc", "notes.pem extra", "c:\\x.pem"} {
		if fileNameLike.MatchString(v) {
			t.Errorf("%q taken for a file name", v)
		}
	}
	// basic's password is not PEM: a value such as client.crt is just a password.
	in := goodValues(t, "basic")
	in["password"] = "client.crt"
	if _, err := mustType(t, "basic").Validate(in); err != nil {
		t.Fatalf("password client.crt: %v", err)
	}
}
