package backend

import (
	"context"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// designReadKeys are the keys docs/API.md lists for a credentials/<name> read.
var designReadKeys = []string{
	"type", "description", "tags", "used_by", "status", "health", "created_at", "updated_at",
	"last_accessed", "access_count", "suspend_at", "purge_at", "expires_at", "secret_fields",
}

// setSecretFields is the secret_fields a read should show for values of typ.
func setSecretFields(typ *credtype.Type, values map[string]any) []string {
	out := []string{}
	for _, f := range typ.Fields {
		if v, ok := values[f.Name]; ok && f.Sensitive && v != "" {
			out = append(out, f.Name)
		}
	}
	return out
}

func TestCredentialCreateAndReadEveryType(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	now := clock.Now().UTC()
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	for _, typ := range credtype.All() {
		t.Run(typ.Name, func(t *testing.T) {
			t.Parallel()
			values := exampleValues(t, typ.Name, "READBACKMARK")
			data := credWithType(typ.Name, values)
			data["description"] = "for the " + typ.Name + " integration"
			data["tags"] = "team-a, prod"
			data["used_by"] = []any{"siem", "backup", "siem"}
			name := "read-" + typ.Name
			created := mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, data)
			read := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil)
			if !reflect.DeepEqual(created.Data, read.Data) {
				t.Errorf("create response differs from read:\n%v\n%v", created.Data, read.Data)
			}
			d := read.Data
			for _, k := range designReadKeys {
				if _, ok := d[k]; !ok {
					t.Errorf("read lacks %q: %v", k, d)
				}
			}
			want := map[string]any{
				"type":          typ.Name,
				"description":   "for the " + typ.Name + " integration",
				"tags":          []string{"prod", "team-a"},
				"used_by":       []string{"backup", "siem"},
				"status":        "active",
				"health":        "awaiting_usage",
				"created_at":    rfc(now),
				"updated_at":    rfc(now),
				"last_accessed": "",
				"access_count":  int64(0),
				"suspend_at":    rfc(now.Add(180 * day)),
				"purge_at":      rfc(now.Add(365 * day)),
				"expires_at":    "",
				"secret_fields": setSecretFields(typ, values),
			}
			if _, imported := values["refresh_token"]; typ.Consents() && !imported {
				// Created without a consent (a device-code credential has no import):
				// it awaits one, and its inactivity window has not started.
				want["status"], want["health"], want["suspend_at"] = "awaiting_consent", "yellow", ""
			}
			for k, w := range want {
				if !reflect.DeepEqual(d[k], w) {
					t.Errorf("%s = %#v, want %#v", k, d[k], w)
				}
			}
			for _, f := range typ.Fields {
				v, set := values[f.Name]
				switch {
				case f.Lifecycle():
				case f.Sensitive:
					if _, shown := d[f.Name]; shown {
						t.Errorf("sensitive %s is in the read", f.Name)
					}
				case set:
					if !reflect.DeepEqual(d[f.Name], v) {
						t.Errorf("%s = %#v, want %#v", f.Name, d[f.Name], v)
					}
				}
			}
			if typ.Name == "certificate" && d["not_after"] != rfc(exampleNotAfter) {
				t.Errorf("not_after = %v, want %s", d["not_after"], rfc(exampleNotAfter))
			}
			// The read is the same when the credential is decoded afresh from storage.
			b.InvalidateKey(context.Background(), credentialPrefix+name)
			if again := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil); !reflect.DeepEqual(again.Data, read.Data) {
				t.Errorf("read after decoding from storage differs:\n%v\n%v", again.Data, read.Data)
			}
		})
	}
}

// pemBodyLines returns the base64 lines of every PEM block in s, for searching output
// for any part of a key.
func pemBodyLines(s string) []string {
	var lines []string
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return lines
		}
		for _, l := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes})), "\n") {
			if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
				lines = append(lines, l)
			}
		}
	}
}

// Secrets written for every type never come back from a management read, a list, a
// filter, a lookup, the logs or the alerts.
func TestCredentialReadNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	const marker = "ZQSECRETQZ"
	b, s, _ := newTestBackend(t)
	type written struct {
		name, typ string
		values    map[string]any
	}
	var all []written
	for _, typ := range credtype.All() {
		all = append(all, written{"leak-" + typ.Name, typ.Name, exampleValues(t, typ.Name, marker)})
		if typ.Name == "certificate" || typ.Name == "sftp_ssh_key" {
			all = append(all, written{"leak-enc-" + typ.Name, typ.Name, encryptedKeyValues(t, typ.Name, marker)})
		}
	}
	var outputs []string
	record := func(what string, resp *logical.Response) {
		t.Helper()
		if resp == nil {
			t.Fatalf("%s: no response", what)
		}
		outputs = append(outputs, what+": "+credJSON(t, resp))
	}
	for _, w := range all {
		data := credWithType(w.typ, w.values)
		data["tags"] = "leaktest"
		record("create "+w.name, mustOK(t, b, s, logical.CreateOperation, "credentials/"+w.name, data))
		// An update and a patch that send the secrets again answer without them too.
		record("update "+w.name, mustOK(t, b, s, logical.UpdateOperation, "credentials/"+w.name, data))
		record("patch "+w.name, mustOK(t, b, s, logical.PatchOperation, "credentials/"+w.name, w.values))
	}
	for _, w := range all {
		record("read "+w.name, mustOK(t, b, s, logical.ReadOperation, "credentials/"+w.name, nil))
		record("logs "+w.name, mustOK(t, b, s, logical.ReadOperation, "credentials/"+w.name+"/logs", nil))
	}
	record("list", mustOK(t, b, s, logical.ListOperation, "credentials/", nil))
	record("list tag", mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"tag": "leaktest", "filter": "leak"}))
	record("lookup", mustOK(t, b, s, logical.ReadOperation, "lookup", map[string]any{
		"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator",
	}))
	record("upsert", mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "leak-device_account", "password": "pw-" + marker,
	}))
	record("alerts", mustOK(t, b, s, logical.ReadOperation, "alerts", nil))

	// The needles: the marker, and every line of every private key.
	needles := []string{marker}
	for _, w := range all {
		for _, f := range []string{"private_key", "client_key"} {
			if key, ok := w.values[f].(string); ok {
				needles = append(needles, pemBodyLines(key)...)
			}
		}
	}
	for _, out := range outputs {
		for _, n := range needles {
			if strings.Contains(out, n) {
				t.Errorf("secret material %q leaked in %s", n, out)
			}
		}
	}

	// The search can fail: every secret was stored, and access hands the static ones out.
	stored := credStorageSnapshot(t, s)
	for _, w := range all {
		if typ, _ := credtype.Lookup(w.typ); len(typ.SensitiveFields()) > 0 && !markerlessKey(w.typ, "client_key") && !strings.Contains(stored[credentialPrefix+w.name], marker) {
			t.Errorf("%s: stored entry lacks the marker, so the search proves nothing", w.name)
		}
		if typ, _ := credtype.Lookup(w.typ); typ.Kind == credtype.KindStatic && len(typ.SensitiveFields()) > 0 && !strings.HasPrefix(w.name, "leak-enc-") {
			if a := mustOK(t, b, s, logical.ReadOperation, "access/"+w.name, nil); !strings.Contains(credJSON(t, a.Data), marker) {
				t.Errorf("%s: access does not hand out the secret: %s", w.name, outcome(a, nil))
			}
		}
	}
}

// Names: letters, digits, '-', '_' and '.', beginning and ending with a word character
// (so every path below a credential routes them); anything else is a 400 naming the
// field and the rule.
func TestCredentialNameRules(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	values := credWithType("webhook", exampleValues(t, "webhook", "NAMESMARKER"))
	valid := []string{"a", "Z9", "svc.prod_01-x", "_", "_private_", "a.b-c", "x-y.z", strings.Repeat("n", 128)}
	for _, name := range valid {
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, values)
		if got := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data["name"]; got != name {
			t.Errorf("read %q: name %v", name, got)
		}
		if got := mustOK(t, b, s, logical.ReadOperation, "access/"+name, nil).Data["url"]; got != values["url"] {
			t.Errorf("access %q: url %v", name, got)
		}
	}
	keys, _ := mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data["keys"].([]string)
	if !reflect.DeepEqual(keys, slices.Sorted(slices.Values(valid))) {
		t.Errorf("list = %v", keys)
	}
	invalid := []string{"a@b", "with space", "ünïcode", "semi;colon", "quote'", "star*", "plus+", ".", "..", "a..b", "db...prod", ".hidden", "-lead", "trail-", "trail.", strings.Repeat("n", 129)}
	for _, name := range invalid {
		t.Run(name, func(t *testing.T) {
			credWant400(t, b, s, logical.CreateOperation, "credentials/"+name, values, "name", "letters, digits")
			credWant400(t, b, s, logical.UpdateOperation, "credentials/"+name, values, "name", "letters, digits")
		})
	}
	if got := storedCredentialNames(t, s); len(got) != len(valid) {
		t.Errorf("stored %v, want only the valid names", got)
	}
	// Every valid name works on the paths below a credential too.
	for _, name := range valid {
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name+"/suspend", nil)
		mustOK(t, b, s, logical.ReadOperation, "credentials/"+name+"/logs", nil)
	}
	credWant400(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "-lead", "hostname": "h", "ip": "10.0.0.1", "username": "u",
	}, "identifier", "letters, digits")
}

func TestCredentialValidationRefusals(t *testing.T) {
	t.Parallel()
	const marker = "VALIDMARKER"
	other := markedEd25519(t, "OTHERKEYMARK")
	enc := encryptedECKey(t, "right password")
	encSSH := encryptedKeyValues(t, "sftp_ssh_key", marker)
	cases := []struct {
		name     string
		typ      string         // "" sends no type
		set      map[string]any // nil values delete the field
		field    string
		fragment string
	}{
		{"type missing", "", nil, "type", "required"},
		{"type unknown", "kerberos", nil, "type", "must be one of"},
		{"field of another type", "basic", map[string]any{"token": "t"}, "token", "not a field of type basic"},
		{"unknown field", "basic", map[string]any{"passwd": "x"}, "passwd", "unknown field"},
		{"required missing", "basic", map[string]any{"password": nil}, "password", "is required"},
		{"required empty", "okta", map[string]any{"token": "  "}, "token", "is required"},
		{"basic username colon", "basic", map[string]any{"username": "a:b"}, "username", "':'"},
		{"control characters", "basic", map[string]any{"username": "a\x00b"}, "username", "control characters"},
		{"url http", "bearer", map[string]any{"url": "http://api.example.com"}, "url", "https"},
		{"url no host", "bearer", map[string]any{"url": "https://"}, "url", "https"},
		{"url userinfo", "bearer", map[string]any{"url": "https://u:p@api.example.com"}, "url", "user information"},
		{"url fragment", "api_key", map[string]any{"url": "https://api.example.com/#x"}, "url", "fragment"},
		{"url port", "webhook", map[string]any{"url": "https://hooks.example.com:99999/"}, "url", "port"},
		{"webhook ftp", "webhook", map[string]any{"url": "ftp://hooks.example.com/"}, "url", "https"},
		{"okta url relative", "okta", map[string]any{"url": "example.okta.com"}, "url", "https"},
		{"token_url http", "oauth2_client_credentials", map[string]any{"token_url": "http://auth.example.com/token"}, "token_url", "https"},
		{"preset token_url override http", "m365", map[string]any{"token_url": "http://login.example.com/token"}, "token_url", "https"},
		{"auth_url http", "cisco_client_credentials", map[string]any{"auth_url": "http://cisco.example.com/token"}, "auth_url", "https"},
		{"redirect_url http", "oauth2_authorization_code", map[string]any{"redirect_url": "http://vault.example.com/cb"}, "redirect_url", "https"},
		{"header_prefix space", "bearer", map[string]any{"header_prefix": "Bear er"}, "header_prefix", "HTTP token"},
		{"key not ascii", "api_key", map[string]any{"key": "k\u00e9y"}, "key", "printable ASCII"},
		{"auth_style", "oauth2_client_credentials", map[string]any{"auth_style": "query"}, "auth_style", `"body", "private_key_jwt", "tls_client_auth" or "federated"`},
		{"tenant alias", "m365", map[string]any{"tenant": "common"}, "tenant", "tenant ID"},
		{"instance url", "servicenow_oauth", map[string]any{"instance": "https://dev1.service-now.com"}, "instance", "instance name"},
		{"servicenow username without password", "servicenow_oauth", map[string]any{"password": nil}, "password", ""},
		{"slack token", "slack", map[string]any{"token": "abc123"}, "token", "xox"},
		{"routing key", "pagerduty", map[string]any{"routing_key": "short"}, "routing_key", "32"},
		{"certificate not PEM", "certificate", map[string]any{"certificate": "not a certificate"}, "certificate", "PEM"},
		{"certificate holds key", "certificate", map[string]any{"certificate": other.certPEM + other.keyPEM}, "certificate", "private key"},
		{"key does not match", "certificate", map[string]any{"private_key": other.keyPEM}, "private_key", "must match"},
		{"key not PEM", "certificate", map[string]any{"private_key": "secret"}, "private_key", "PEM"},
		{"two keys", "certificate", map[string]any{"private_key": other.keyPEM + other.keyPEM}, "private_key", "exactly one private key"},
		{"key of another kind", "certificate", map[string]any{"private_key": strings.ReplaceAll(other.keyPEM, "PRIVATE KEY", "PUBLIC KEY")}, "private_key", ""},
		{"password for plain key", "certificate", map[string]any{"private_key_password": "pw"}, "private_key_password", "must be empty"},
		{"encrypted key without password", "certificate", map[string]any{"certificate": enc.certPEM, "private_key": enc.keyPEM}, "private_key_password", "is required"},
		{"encrypted key wrong password", "certificate", map[string]any{"certificate": enc.certPEM, "private_key": enc.keyPEM, "private_key_password": "wrong"}, "private_key_password", "does not decrypt"},
		{"sftp host without port", "sftp_password", map[string]any{"host": "sftp://files.example.com/"}, "host", "sftp://host:port/"},
		{"sftp host with path", "sftp_password", map[string]any{"host": "sftp://files.example.com:22/upload"}, "host", "no path"},
		{"sftp host scheme", "sftp_password", map[string]any{"host": "ssh://files.example.com:22/"}, "host", "sftp://"},
		{"sftp host user", "sftp_password", map[string]any{"host": "sftp://me@files.example.com:22/"}, "host", "user"},
		{"fingerprint md5", "sftp_password", map[string]any{"host_key_fingerprint": "16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"}, "host_key_fingerprint", "MD5"},
		{"fingerprint md5 prefixed", "sftp_ssh_key", map[string]any{"host_key_fingerprint": "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"}, "host_key_fingerprint", "MD5"},
		{"fingerprint short", "sftp_ssh_key", map[string]any{"host_key_fingerprint": "SHA256:abc"}, "host_key_fingerprint", "43 base64"},
		{"fingerprint sha1", "sftp_ssh_key", map[string]any{"host_key_fingerprint": "SHA1:" + strings.Repeat("A", 27)}, "host_key_fingerprint", "SHA256"},
		{"ssh key garbage", "sftp_ssh_key", map[string]any{"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"}, "private_key", "SSH private key"},
		{"ssh passphrase for plain key", "sftp_ssh_key", map[string]any{"passphrase": "pw"}, "passphrase", "must be empty"},
		{"ssh encrypted key without passphrase", "sftp_ssh_key", map[string]any{"private_key": encSSH["private_key"]}, "passphrase", "is required"},
		{"ssh wrong passphrase", "sftp_ssh_key", map[string]any{"private_key": encSSH["private_key"], "passphrase": "wrong"}, "passphrase", "does not decrypt"},
		{"totp otpauth", "basic", map[string]any{"totp_secret": "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP"}, "totp_secret", "otpauth"},
		{"totp not base32", "sftp_password", map[string]any{"totp_secret": "1111111111111111"}, "totp_secret", "base32"},
		{"totp short", "device_account", map[string]any{"totp_secret": "JBSWY3DP"}, "totp_secret", "80 bits"},
		{"totp truncated", "basic", map[string]any{"totp_secret": "JBSWY3DPEHPK3PXPA"}, "totp_secret", "whole number of bytes"},
		{"device ip", "device_account", map[string]any{"ip": "10.0.0.300"}, "ip", "IPv4 or IPv6"},
		{"device ip zone", "device_account", map[string]any{"ip": "fe80::1%eth0"}, "ip", "zone"},
		{"device hostname", "device_account", map[string]any{"hostname": "bad host"}, "hostname", "host name"},
		{"scope with quote", "oauth2_client_credentials", map[string]any{"scopes": []any{`read"`}}, "scopes", ""},
		{"description too long", "webhook", map[string]any{"description": strings.Repeat("d", 4097)}, "description", "4096"},
		{"description control character", "webhook", map[string]any{"description": "bell\a"}, "description", "control characters"},
		{"tag control character", "webhook", map[string]any{"tags": []any{"nul\x00"}}, "tags", "control characters"},
		{"expires_at number", "webhook", map[string]any{"expires_at": 1893456000}, "expires_at", "RFC 3339"},
		{"too many tags", "webhook", map[string]any{"tags": manyLabels(65)}, "tags", "at most 64 items"},
		{"tag line break", "webhook", map[string]any{"tags": []any{"a\nb"}}, "tags", "control characters"},
		{"used_by too long", "webhook", map[string]any{"used_by": []any{strings.Repeat("u", 129)}}, "used_by", "128"},
		{"suspend_after negative", "webhook", map[string]any{"suspend_after": -5}, "suspend_after", "negative"},
		{"purge_after zero", "webhook", map[string]any{"purge_after": "0"}, "purge_after", "positive"},
		{"suspend_after words", "webhook", map[string]any{"suspend_after": "soon"}, "suspend_after", ""},
		{"purge before suspend", "webhook", map[string]any{"suspend_after": "30d", "purge_after": "20d"}, "purge_after", "longer than suspend_after"},
		{"purge before default suspend", "webhook", map[string]any{"purge_after": "90d"}, "purge_after", "longer than suspend_after"},
		{"expires_at", "webhook", map[string]any{"expires_at": "next tuesday"}, "expires_at", "RFC 3339"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, s, _ := newTestBackend(t)
			data := map[string]any{}
			update := map[string]any{}
			if typ, ok := credtype.Lookup(tc.typ); ok {
				values := exampleValues(t, typ.Name, marker)
				maps.Copy(values, tc.set)
				// An update that omits a secret keeps it; null removes it.
				update = credWithType(tc.typ, values)
				maps.DeleteFunc(values, func(_ string, v any) bool { return v == nil })
				data = credWithType(tc.typ, values)
			} else if tc.typ != "" {
				data = map[string]any{"type": tc.typ, "username": "u"}
			}
			credWant400(t, b, s, logical.CreateOperation, "credentials/refused", data, tc.field, tc.fragment)
			if snap := credStorageSnapshot(t, s); len(snap) != 0 {
				t.Fatalf("refused create stored %v", slices.Collect(maps.Keys(snap)))
			}
			credWantStatus(t, b, s, logical.ReadOperation, "credentials/refused", nil, http.StatusNotFound)
			if tc.typ == "" || tc.field == "type" {
				return
			}
			// The same change refused as an update leaves the stored credential alone.
			mustOK(t, b, s, logical.CreateOperation, "credentials/refused", credWithType(tc.typ, exampleValues(t, tc.typ, marker)))
			before := credStorageSnapshot(t, s)
			readBefore := mustOK(t, b, s, logical.ReadOperation, "credentials/refused", nil).Data
			credWant400(t, b, s, logical.UpdateOperation, "credentials/refused", update, tc.field, tc.fragment)
			if tc.set != nil {
				credWant400(t, b, s, logical.PatchOperation, "credentials/refused", tc.set, tc.field, tc.fragment)
			}
			if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
				t.Fatalf("refused update changed storage")
			}
			if readAfter := mustOK(t, b, s, logical.ReadOperation, "credentials/refused", nil).Data; !reflect.DeepEqual(readBefore, readAfter) {
				t.Fatalf("refused update changed the credential:\n%v\n%v", readBefore, readAfter)
			}
		})
	}
}

func TestCredentialTypeIsFixedAfterCreate(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/graph", credWithType("m365", exampleValues(t, "m365", "FIXEDTYPEMK")))
	before := credStorageSnapshot(t, s)
	for _, op := range []logical.Operation{logical.UpdateOperation, logical.PatchOperation} {
		credWant400(t, b, s, op, "credentials/graph", credWithType("zoom", exampleValues(t, "zoom", "FIXEDTYPEMK")), "type", "fixed after create")
		credWant400(t, b, s, op, "credentials/graph", map[string]any{"type": "oauth2_client_credentials"}, "type", "fixed after create")
	}
	if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
		t.Fatal("refused type change stored something")
	}
	// The type's alias is the same type.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/graph", credWithType("microsoft_graph", exampleValues(t, "m365", "FIXEDTYPEMK")))
	mustOK(t, b, s, logical.PatchOperation, "credentials/graph", map[string]any{"type": "M365", "description": "graph"})
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/graph", nil).Data; got["type"] != "m365" || got["description"] != "graph" {
		t.Fatalf("after alias update: %v", got)
	}
}

func TestCredentialUpdateKeepsOmittedSecrets(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	values := exampleValues(t, "basic", "KEEPSECRETS")
	data := credWithType("basic", values)
	data["description"] = "first"
	data["tags"] = "a,b"
	mustOK(t, b, s, logical.CreateOperation, "credentials/keep", data)
	created := mustOK(t, b, s, logical.ReadOperation, "credentials/keep", nil).Data["created_at"]

	clock.Advance(time.Hour)
	// An update without the secrets keeps them, and replaces the non-secret fields.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/keep", map[string]any{"username": "renamed"})
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/keep", nil).Data
	if !reflect.DeepEqual(read["secret_fields"], []string{"password", "totp_secret"}) {
		t.Fatalf("secret_fields after update = %v", read["secret_fields"])
	}
	if read["username"] != "renamed" || read["description"] != "" || !reflect.DeepEqual(read["tags"], []string{}) {
		t.Fatalf("update did not replace the non-secret fields: %v", read)
	}
	if read["created_at"] != created || read["updated_at"] != clock.Now().UTC().Format(time.RFC3339) {
		t.Fatalf("created_at %v / updated_at %v", read["created_at"], read["updated_at"])
	}
	got := mustOK(t, b, s, logical.ReadOperation, "access/keep", nil).Data
	if got["password"] != values["password"] || got["username"] != "renamed" {
		t.Fatalf("access after update: %v", got)
	}
	if _, ok := got["totp_code"]; !ok {
		t.Fatalf("the kept totp_secret yields no totp_code: %v", got)
	}

	// An update that sends a secret replaces it; the other is still kept.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/keep", map[string]any{"username": "renamed", "password": "brand new"})
	got = mustOK(t, b, s, logical.ReadOperation, "access/keep", nil).Data
	if got["password"] != "brand new" || got["totp_code"] == nil {
		t.Fatalf("access after replacing the password: %v", got)
	}
	// Sending a secret as null removes an optional one.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/keep", map[string]any{"username": "renamed", "totp_secret": nil})
	if sf := mustOK(t, b, s, logical.ReadOperation, "credentials/keep", nil).Data["secret_fields"]; !reflect.DeepEqual(sf, []string{"password"}) {
		t.Fatalf("secret_fields after removing totp_secret = %v", sf)
	}
	if _, ok := mustOK(t, b, s, logical.ReadOperation, "access/keep", nil).Data["totp_code"]; ok {
		t.Fatal("totp_code still handed out after totp_secret was removed")
	}

	// A certificate update with a new description and no key keeps the key.
	cert := exampleValues(t, "certificate", "KEEPSECRETS")
	mustOK(t, b, s, logical.CreateOperation, "credentials/keep-cert", credWithType("certificate", cert))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/keep-cert", map[string]any{"certificate": cert["certificate"], "description": "rotated"})
	if got := mustOK(t, b, s, logical.ReadOperation, "access/keep-cert", nil).Data; got["private_key"] != cert["private_key"] {
		t.Fatalf("certificate update lost the key: %v", got["private_key"])
	}
}

func TestCredentialPatchChangesOnlyWhatItNames(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	values := exampleValues(t, "bearer", "PATCHMARKER")
	data := credWithType("bearer", values)
	data["description"] = "orig"
	data["tags"] = "a,b"
	data["used_by"] = "siem"
	data["suspend_after"] = "30d"
	mustOK(t, b, s, logical.CreateOperation, "credentials/p", data)
	read := func() map[string]any { return mustOK(t, b, s, logical.ReadOperation, "credentials/p", nil).Data }
	access := func() map[string]any { return mustOK(t, b, s, logical.ReadOperation, "access/p", nil).Data }
	base := read()

	steps := []struct {
		name  string
		patch map[string]any
		want  map[string]any // read keys expected after the patch; absent means unchanged
		gone  []string       // read keys expected to be absent
	}{
		{"description", map[string]any{"description": "new"}, map[string]any{"description": "new"}, nil},
		{"tags", map[string]any{"tags": []any{"z", "y"}}, map[string]any{"tags": []string{"y", "z"}}, nil},
		{"remove optional url", map[string]any{"url": nil}, nil, []string{"url"}},
		{"remove header_prefix restores default", map[string]any{"header_prefix": nil}, map[string]any{"header_prefix": "Bearer"}, nil},
		{"remove tags", map[string]any{"tags": nil}, map[string]any{"tags": []string{}}, nil},
		{"remove suspend_after", map[string]any{"suspend_after": nil}, map[string]any{"suspend_at": clock.Now().UTC().Add(180 * day).Format(time.RFC3339)}, []string{"suspend_after"}},
		{"empty patch", map[string]any{}, nil, nil},
	}
	want := maps.Clone(base)
	for _, st := range steps {
		mustOK(t, b, s, logical.PatchOperation, "credentials/p", st.patch)
		maps.Copy(want, st.want)
		want["version"] = want["version"].(int) + 1 // every patch is a write
		for _, k := range st.gone {
			delete(want, k)
		}
		got := read()
		for _, k := range []string{"updated_at", "access_count", "last_accessed", "health"} {
			delete(got, k) // the access reads below count as usage
			delete(want, k)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after patch %s:\n got %v\nwant %v", st.name, got, want)
		}
		if a := access(); a["token"] != values["token"] {
			t.Fatalf("after patch %s the token changed: %v", st.name, a)
		}
	}
	if _, ok := access()["url"]; ok {
		t.Fatal("removed url still handed out")
	}
	if got := access()["authorization"]; got != "Bearer "+values["token"].(string) {
		t.Fatalf("authorization after header_prefix removal = %v", got)
	}

	// A patch that sends a secret replaces it.
	mustOK(t, b, s, logical.PatchOperation, "credentials/p", map[string]any{"token": "rotated-token"})
	if a := access(); a["token"] != "rotated-token" || read()["description"] != "new" {
		t.Fatalf("after secret patch: %v", a)
	}

	// Removing a required field is refused, by name, and changes nothing.
	before := credStorageSnapshot(t, s)
	credWant400(t, b, s, logical.PatchOperation, "credentials/p", map[string]any{"token": nil}, "token", "is required")
	credWant400(t, b, s, logical.PatchOperation, "credentials/p", map[string]any{"url": "http://insecure.example.com"}, "url", "https")
	if !maps.Equal(before, credStorageSnapshot(t, s)) {
		t.Fatal("refused patch changed storage")
	}

	// A patch of a credential that does not exist is a 404 and creates nothing.
	credWantStatus(t, b, s, logical.PatchOperation, "credentials/missing", map[string]any{"description": "x"}, http.StatusNotFound)
	if names := storedCredentialNames(t, s); !slices.Equal(names, []string{"p"}) {
		t.Fatalf("stored names = %v", names)
	}
}

func TestCredentialDeleteRemovesEverything(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	ctx := context.Background()
	mustOK(t, b, s, logical.CreateOperation, "credentials/gone", credWithType("basic", exampleValues(t, "basic", "DELETEMARK")))
	mustOK(t, b, s, logical.CreateOperation, "credentials/device", credWithType("device_account", exampleValues(t, "device_account", "DELETEMARK")))
	mustOK(t, b, s, logical.CreateOperation, "credentials/stays", credWithType("webhook", exampleValues(t, "webhook", "DELETEMARK")))
	for range 3 {
		mustOK(t, b, s, logical.ReadOperation, "access/gone", nil)
	}
	if err := b.flushUsage(ctx, s); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx, usagePrefix+"gone"); e == nil {
		t.Fatal("no usage stored before the delete; the test proves nothing")
	}

	for _, name := range []string{"gone", "device"} {
		credWantStatus(t, b, s, logical.DeleteOperation, "credentials/"+name, nil, 0)
		credWantStatus(t, b, s, logical.ReadOperation, "credentials/"+name, nil, http.StatusNotFound)
		credWantStatus(t, b, s, logical.ReadOperation, "access/"+name, nil, http.StatusNotFound)
	}
	credWantStatus(t, b, s, logical.ReadOperation, "lookup", map[string]any{
		"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator",
	}, http.StatusNotFound)
	snap := credStorageSnapshot(t, s)
	for k := range snap {
		if strings.Contains(k, "gone") || strings.HasPrefix(k, deviceIndexPrefix) || k == credentialPrefix+"device" {
			t.Errorf("left behind after delete: %s", k)
		}
	}
	if _, ok := snap[credentialPrefix+"stays"]; !ok {
		t.Error("delete removed another credential")
	}
	if keys, _ := mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data["keys"].([]string); !slices.Equal(keys, []string{"stays"}) {
		t.Errorf("list after delete = %v", keys)
	}
	// Deleting again is not an error.
	credWantStatus(t, b, s, logical.DeleteOperation, "credentials/gone", nil, 0)

	// The name can be used again, for a new credential with a fresh history.
	clock.Advance(time.Hour)
	mustOK(t, b, s, logical.CreateOperation, "credentials/gone", credWithType("bearer", exampleValues(t, "bearer", "DELETEMARK")))
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/gone", nil).Data
	if read["type"] != "bearer" || read["access_count"] != int64(0) || read["last_accessed"] != "" ||
		read["created_at"] != clock.Now().UTC().Format(time.RFC3339) {
		t.Fatalf("recreated credential carries the old one's history: %v", read)
	}
}

// The decoded copy kept in memory follows every write, delete and invalidation.
func TestCredentialCacheInvalidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, s, _ := newTestBackend(t)
	values := exampleValues(t, "basic", "CACHEMARKER")
	mustOK(t, b, s, logical.CreateOperation, "credentials/c", credWithType("basic", values))
	password := func() any { return mustOK(t, b, s, logical.ReadOperation, "access/c", nil).Data["password"] }
	if password() != values["password"] {
		t.Fatal("first access")
	}

	// Written through the API: seen at once.
	mustOK(t, b, s, logical.PatchOperation, "credentials/c", map[string]any{"password": "second"})
	if got := password(); got != "second" {
		t.Fatalf("after write: %v", got)
	}

	// Written behind the backend's back, as another node would: the cached copy is
	// served until Vault invalidates the key.
	c, err := b.credentials.get(ctx, s, "c")
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	n := c.clone()
	setValue(n, "password", "third")
	n.Description = "from another node"
	entry, err := logical.StorageEntryJSON(credentialPrefix+"c", n)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, entry); err != nil {
		t.Fatal(err)
	}
	if got := password(); got != "second" {
		t.Fatalf("before invalidation the cached copy should be served, got %v", got)
	}
	b.InvalidateKey(ctx, credentialPrefix+"c")
	if got := password(); got != "third" {
		t.Fatalf("after invalidation: %v", got)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/c", nil).Data["description"]; got != "from another node" {
		t.Fatalf("read after invalidation: %v", got)
	}

	// Deleted behind its back, then invalidated: gone.
	if err := s.Delete(ctx, credentialPrefix+"c"); err != nil {
		t.Fatal(err)
	}
	b.InvalidateKey(ctx, credentialPrefix+"c")
	credWantStatus(t, b, s, logical.ReadOperation, "access/c", nil, http.StatusNotFound)
	credWantStatus(t, b, s, logical.ReadOperation, "credentials/c", nil, http.StatusNotFound)

	// Deleted through the API while cached: gone at once.
	mustOK(t, b, s, logical.CreateOperation, "credentials/d", credWithType("basic", values))
	mustOK(t, b, s, logical.ReadOperation, "access/d", nil)
	mustOK(t, b, s, logical.DeleteOperation, "credentials/d", nil)
	credWantStatus(t, b, s, logical.ReadOperation, "access/d", nil, http.StatusNotFound)
}

// listAllCredentials pages through credentials/ with the given filters and page size, checking
// that no page is larger than asked.
func listAllCredentials(t testing.TB, b logical.Backend, s logical.Storage, filters map[string]any, limit int) (names []string, pages int) {
	t.Helper()
	after := ""
	for {
		q := maps.Clone(filters)
		if q == nil {
			q = map[string]any{}
		}
		q["limit"] = limit
		if after != "" {
			q["after"] = after
		}
		resp := mustOK(t, b, s, logical.ListOperation, "credentials/", q)
		keys, _ := resp.Data["keys"].([]string)
		if len(keys) > limit {
			t.Fatalf("page of %d names, limit %d", len(keys), limit)
		}
		if len(keys) == 0 {
			return names, pages
		}
		info, _ := resp.Data["key_info"].(map[string]any)
		if len(info) != len(keys) {
			t.Fatalf("key_info has %d entries for %d keys", len(info), len(keys))
		}
		pages++
		names = append(names, keys...)
		after = keys[len(keys)-1]
	}
}

func TestCredentialsListKeyInfoAndFilters(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	creds := []struct {
		name, typ, tags string
	}{
		{"alpha-prod", "basic", "prod,db"},
		{"beta-PROD", "bearer", "prod"},
		{"gamma", "m365", "graph"},
		{"delta-dev", "basic", "dev"},
		{"epsilon", "webhook", ""},
		{"zeta-prod", "api_key", "prod,api"},
	}
	for _, c := range creds {
		data := credWithType(c.typ, exampleValues(t, c.typ, "LISTMARKER"))
		data["tags"] = c.tags
		data["description"] = "the " + c.name + " one"
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+c.name, data)
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/delta-dev/suspend", nil)
	mustOK(t, b, s, logical.ReadOperation, "access/alpha-prod", nil)
	accessedAt := clock.Now().UTC().Format(time.RFC3339)

	resp := mustOK(t, b, s, logical.ListOperation, "credentials/", nil)
	keys := resp.Data["keys"].([]string)
	if want := []string{"alpha-prod", "beta-PROD", "delta-dev", "epsilon", "gamma", "zeta-prod"}; !slices.Equal(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	info := resp.Data["key_info"].(map[string]any)
	wantInfo := map[string]any{
		"type": "basic", "description": "the alpha-prod one", "tags": []string{"db", "prod"},
		"status": "active", "health": "green", "last_accessed": accessedAt,
		"verified_at": "", "verify_result": "",
	}
	if got := info["alpha-prod"]; !reflect.DeepEqual(got, wantInfo) {
		t.Errorf("key_info[alpha-prod] =\n%#v\nwant\n%#v", got, wantInfo)
	}
	if got := info["delta-dev"].(map[string]any); got["status"] != "suspended" || got["health"] != "red" {
		t.Errorf("key_info[delta-dev] = %v", got)
	}
	if got := info["epsilon"].(map[string]any); got["health"] != "awaiting_usage" || got["last_accessed"] != "" || !reflect.DeepEqual(got["tags"], []string{}) {
		t.Errorf("key_info[epsilon] = %v", got)
	}

	filters := []struct {
		q    map[string]any
		want []string
	}{
		{map[string]any{"type": "basic"}, []string{"alpha-prod", "delta-dev"}},
		{map[string]any{"type": "microsoft_graph"}, []string{"gamma"}},
		{map[string]any{"tag": "prod"}, []string{"alpha-prod", "beta-PROD", "zeta-prod"}},
		{map[string]any{"tag": "pro"}, nil},
		{map[string]any{"status": "suspended"}, []string{"delta-dev"}},
		{map[string]any{"status": "active", "type": "basic"}, []string{"alpha-prod"}},
		{map[string]any{"status": "needs_reauth"}, nil},
		{map[string]any{"filter": "prod"}, []string{"alpha-prod", "beta-PROD", "zeta-prod"}},
		{map[string]any{"filter": "PROD", "tag": "api"}, []string{"zeta-prod"}},
		{map[string]any{"filter": "ta"}, []string{"beta-PROD", "delta-dev", "zeta-prod"}},
		{map[string]any{"after": "beta-PROD"}, []string{"delta-dev", "epsilon", "gamma", "zeta-prod"}},
		{map[string]any{"after": "c"}, []string{"delta-dev", "epsilon", "gamma", "zeta-prod"}},
		{map[string]any{"after": "zeta-prod"}, nil},
		{map[string]any{"limit": 2}, []string{"alpha-prod", "beta-PROD"}},
		{map[string]any{"limit": 1, "after": "alpha-prod", "tag": "prod"}, []string{"beta-PROD"}},
		{map[string]any{"limit": "2", "filter": "a", "after": "beta-PROD"}, []string{"delta-dev", "gamma"}},
	}
	for _, f := range filters {
		resp, code := credReq(t, b, s, logical.ListOperation, "credentials/", f.q)
		if code != 0 && (code != http.StatusNotFound || f.want != nil) {
			t.Errorf("list %v: status %d", f.q, code)
			continue
		}
		var got []string
		if resp != nil {
			got, _ = resp.Data["keys"].([]string)
		}
		if len(got) == 0 {
			got = nil
		}
		if !slices.Equal(got, f.want) {
			t.Errorf("list %v = %v, want %v", f.q, got, f.want)
		}
	}

	bad := []struct {
		q     map[string]any
		field string
	}{
		{map[string]any{"type": "kerberos"}, "type"},
		{map[string]any{"status": "asleep"}, "status"},
		{map[string]any{"limit": -1}, "limit"},
		{map[string]any{"limit": maxListLimit + 1}, "limit"},
	}
	for _, tc := range bad {
		credWant400(t, b, s, logical.ListOperation, "credentials/", tc.q, tc.field)
	}
}

// Ten thousand credentials page correctly, with and without filters.
func TestCredentialsList10k(t *testing.T) {
	t.Parallel()
	const n = 10000
	b, s, _ := newTestBackend(t)
	name := func(i int) string { return fmt.Sprintf("cred-%05d", i) }
	basic := credWithType("basic", map[string]any{"username": "u", "password": "p"})
	bearer := credWithType("bearer", map[string]any{"token": "t"})
	var all, sevens, bearerSevens, suspended, nines []string
	for i := range n {
		data := basic
		if i%3 == 0 {
			data = bearer
		}
		if i%7 == 0 {
			data = maps.Clone(data)
			data["tags"] = "seven"
		}
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name(i), data)
		all = append(all, name(i))
		if i%7 == 0 {
			sevens = append(sevens, name(i))
			if i%3 == 0 {
				bearerSevens = append(bearerSevens, name(i))
			}
		}
		if strings.Contains(name(i), "99") {
			nines = append(nines, name(i))
		}
	}
	for i := 0; i < n; i += 97 {
		mustOK(t, b, s, logical.UpdateOperation, "credentials/"+name(i)+"/suspend", nil)
		suspended = append(suspended, name(i))
	}

	got, pages := listAllCredentials(t, b, s, nil, 1000)
	if pages != 10 {
		t.Errorf("%d pages of 1000, want 10", pages)
	}
	if !slices.Equal(got, all) {
		seen := map[string]int{}
		for _, g := range got {
			seen[g]++
		}
		for _, a := range all {
			if seen[a] != 1 {
				t.Fatalf("%s appears %d times", a, seen[a])
			}
		}
		t.Fatalf("names out of order or extra: %d names", len(got))
	}
	if one := mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"limit": maxListLimit}).Data["keys"].([]string); !slices.Equal(one, all) {
		t.Errorf("one page of %d: %d names", maxListLimit, len(one))
	}
	if def := mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data["keys"].([]string); !slices.Equal(def, all[:defaultListLimit]) {
		t.Errorf("default page: %d names from %s", len(def), def[0])
	}

	filtered := []struct {
		q     map[string]any
		limit int
		want  []string
	}{
		{map[string]any{"tag": "seven"}, 100, sevens},
		{map[string]any{"tag": "seven", "type": "bearer"}, 37, bearerSevens},
		{map[string]any{"status": "suspended"}, 10, suspended},
		{map[string]any{"filter": "99"}, 33, nines},
		{map[string]any{"filter": "99", "tag": "seven", "status": "active"}, 3, credIntersect(credIntersect(nines, sevens), credMinus(all, suspended))},
	}
	for _, f := range filtered {
		got, pages := listAllCredentials(t, b, s, f.q, f.limit)
		if !slices.Equal(got, f.want) {
			t.Errorf("%v limit %d: %d names, want %d", f.q, f.limit, len(got), len(f.want))
		}
		if wantPages := (len(f.want) + f.limit - 1) / f.limit; pages != wantPages {
			t.Errorf("%v limit %d: %d pages, want %d", f.q, f.limit, pages, wantPages)
		}
	}
}

func credIntersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func credMinus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// gatedStorage holds the first Get of one key, once armed, after it has read the
// entry: a read that has fetched an old copy and not yet cached it.
type gatedStorage struct {
	logical.Storage
	key     string
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (g *gatedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := g.Storage.Get(ctx, key)
	if key == g.key && g.armed.CompareAndSwap(true, false) {
		close(g.reached)
		<-g.release
	}
	return e, err
}

// A read that fetched a credential just before it was deleted or invalidated must not
// put its stale copy into the cache afterwards.
func TestCredentialCacheNotResurrectedByRacingRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, change := range []string{"delete", "invalidate"} {
		t.Run(change, func(t *testing.T) {
			t.Parallel()
			g := &gatedStorage{Storage: &logical.InmemStorage{}, key: credentialPrefix + "raced"}
			b, _ := newBackendOver(t, g, nil)
			mustOK(t, b, g, logical.CreateOperation, "credentials/raced", credWithType("basic", map[string]any{"username": "u", "password": "old"}))
			b.credentials.forget("raced") // as after a restart: the next read goes to storage
			g.reached, g.release = make(chan struct{}), make(chan struct{})
			g.armed.Store(true)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "access/raced", Storage: g})
			}()
			<-g.reached
			switch change {
			case "delete":
				mustOK(t, b, g, logical.DeleteOperation, "credentials/raced", nil)
			case "invalidate":
				c, _ := b.credentials.get(ctx, g, "raced")
				n := c.clone()
				setValue(n, "password", "new")
				entry, _ := logical.StorageEntryJSON(credentialPrefix+"raced", n)
				if err := g.Put(ctx, entry); err != nil {
					t.Fatal(err)
				}
				b.InvalidateKey(ctx, credentialPrefix+"raced")
			}
			close(g.release)
			<-done
			resp, code := credReq(t, b, g, logical.ReadOperation, "access/raced", nil)
			switch {
			case change == "delete" && code != http.StatusNotFound:
				t.Fatalf("deleted credential still handed out: %d %v", code, resp)
			case change == "invalidate" && (code != 0 || resp.Data["password"] != "new"):
				t.Fatalf("invalidated credential served stale: %d %v", code, resp)
			}
		})
	}
}

// The credential name pattern stays expressible in OpenAPI, so the paths keep their
// place in the generated document.
func TestCredentialPathsInOpenAPI(t *testing.T) {
	t.Parallel()
	b := newBackend(time.Now)
	if err := b.Setup(context.Background(), &logical.BackendConfig{
		Logger:      hclog.NewNullLogger(),
		System:      &logical.StaticSystemView{PluginEnvironment: &logical.PluginEnvironment{VaultVersion: "1.20.0"}},
		StorageView: &logical.InmemStorage{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.HelpOperation, Path: ""})
	if err != nil {
		t.Fatal(err)
	}
	doc, ok := resp.Data["openapi"].(*framework.OASDocument)
	if !ok {
		t.Fatalf("no OpenAPI document: %T", resp.Data["openapi"])
	}
	for _, p := range []string{"/credentials/{name}", "/access/{name}", "/credentials/", "/types/{type}", "/device-accounts", "/lookup",
		"/oidc/.well-known/openid-configuration", "/oidc/.well-known/keys", "/oidc/rotate"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("OpenAPI lacks %s (has %v)", p, slices.Sorted(maps.Keys(doc.Paths)))
		}
	}
	if item := doc.Paths["/credentials/{name}"]; item != nil && (item.Patch == nil || item.Post == nil || item.Get == nil || item.Delete == nil) {
		t.Errorf("credentials/{name} operations incomplete: %+v", item)
	}
}

// TestRedirectingSecretsNeedsThemAgain: pointing a credential's stored secret at a new
// destination is refused unless the same request sends the secret, so a caller who may
// update but not read cannot have the secret delivered to a server of its choosing.
func TestRedirectingSecretsNeedsThemAgain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		typ     string
		create  map[string]any
		repoint map[string]any
		secret  string
	}{
		{"oauth2_client_credentials", map[string]any{"token_url": "https://idp.example.com/token", "client_id": "c", "client_secret": "s1"},
			map[string]any{"token_url": "https://evil.example.net/token"}, "client_secret"},
		{"m365", map[string]any{"tenant": "contoso.onmicrosoft.com", "client_id": "c", "client_secret": "s1"},
			map[string]any{"tenant": "evil.onmicrosoft.com"}, "client_secret"},
		{"servicenow_oauth", map[string]any{"instance": "dev1", "client_id": "c", "client_secret": "s1"},
			map[string]any{"instance": "evil1"}, "client_secret"},
		{"bearer", map[string]any{"token": "t1", "url": "https://api.example.com"},
			map[string]any{"url": "https://evil.example.net"}, "token"},
		{"okta", map[string]any{"token": "t1", "url": "https://example.okta.com"},
			map[string]any{"url": "https://evil.okta.com"}, "token"},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			b, s, _ := newTestBackend(t)
			create := maps.Clone(tc.create)
			create["type"] = tc.typ
			mustOK(t, b, s, logical.CreateOperation, "credentials/c", create)
			before := credStorageSnapshot(t, s)
			for _, op := range []logical.Operation{logical.PatchOperation, logical.UpdateOperation} {
				data := maps.Clone(tc.repoint)
				if op == logical.UpdateOperation {
					data = maps.Clone(tc.create)
					maps.Copy(data, tc.repoint)
					delete(data, tc.secret)
				}
				resp := call(t, b, s, op, "credentials/c", data)
				wantFieldError(t, resp, tc.secret)
				if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
					t.Fatalf("%s: refused repoint changed storage", op)
				}
			}
			// Sending the secret with it is fine.
			data := maps.Clone(tc.repoint)
			data[tc.secret] = "s2"
			mustOK(t, b, s, logical.PatchOperation, "credentials/c", data)
		})
	}
}

// TestListFollowsOtherNodesWrites: the in-memory name index is dropped on invalidation,
// so a credential another node created or deleted shows up (or goes) in the next list.
func TestListFollowsOtherNodesWrites(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ctx := context.Background()
	mustOK(t, b, s, logical.CreateOperation, "credentials/a", map[string]any{"type": "webhook", "url": "https://h.example.com/a"})
	list := func() []string {
		return mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data["keys"].([]string)
	}
	if got := list(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("list = %v", got)
	}
	// Another node writes b (copying a's entry under a new name) and deletes a.
	entry, err := s.Get(ctx, "credentials/a")
	if err != nil || entry == nil {
		t.Fatal(err)
	}
	var c credential
	if err := entry.DecodeJSON(&c); err != nil {
		t.Fatal(err)
	}
	c.Name = "b"
	e2, _ := logical.StorageEntryJSON("credentials/b", &c)
	if err := s.Put(ctx, e2); err != nil {
		t.Fatal(err)
	}
	b.InvalidateKey(ctx, "credentials/b")
	if got := list(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after another node's create: %v", got)
	}
	if err := s.Delete(ctx, "credentials/a"); err != nil {
		t.Fatal(err)
	}
	b.InvalidateKey(ctx, "credentials/a")
	if got := list(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after another node's delete: %v", got)
	}
	// Our own writes keep the index without a reload.
	mustOK(t, b, s, logical.CreateOperation, "credentials/0first", map[string]any{"type": "webhook", "url": "https://h.example.com/0"})
	mustOK(t, b, s, logical.DeleteOperation, "credentials/b", nil)
	if got := list(); !slices.Equal(got, []string{"0first"}) {
		t.Fatalf("after own create and delete: %v", got)
	}
}

// manyLabels is n distinct labels as a comma-separated list.
func manyLabels(n int) string {
	labels := make([]string, n)
	for i := range labels {
		labels[i] = fmt.Sprintf("t%d", i)
	}
	return strings.Join(labels, ",")
}
