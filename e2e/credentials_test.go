//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// cliArgs turns field values into `vault write` arguments: lists comma-joined, and
// multi-line values (PEM) passed as @file, the way operators do it.
func cliArgs(t *testing.T, values map[string]any) []string {
	t.Helper()
	var args []string
	for k, v := range values {
		switch val := v.(type) {
		case []string:
			args = append(args, k+"="+strings.Join(val, ","))
		case map[string]string:
			// A map field (TypeKVPairs) as the CLI sends one: the key repeated, one
			// name=value pair each, which the CLI gathers into a list.
			for name, v := range val {
				args = append(args, k+"="+name+"="+v)
			}
		case map[string]any:
			for name, v := range val {
				args = append(args, fmt.Sprintf("%s=%s=%v", k, name, v))
			}
		case string:
			if strings.Contains(val, "\n") {
				f := filepath.Join(t.TempDir(), k+".pem")
				if err := os.WriteFile(f, []byte(val), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, k+"=@"+f)
			} else {
				args = append(args, k+"="+val)
			}
		default:
			args = append(args, fmt.Sprintf("%s=%v", k, val))
		}
	}
	slices.Sort(args)
	return args
}

type jsonSecret struct {
	Data     map[string]any `json:"data"`
	Warnings []string       `json:"warnings"`
}

func decode(t *testing.T, out string) jsonSecret {
	t.Helper()
	var s jsonSecret
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	return s
}

// TestEveryTypeThroughCLI creates a credential of every type with the vault CLI, reads
// and lists it back without a trace of its secrets, hands static ones to an
// integration through access/, and deletes it.
func TestEveryTypeThroughCLI(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	const marker = "SeCrEtMaRkEr0123456789abcdefABCD"
	for _, typ := range credtype.All() {
		t.Run(typ.Name, func(t *testing.T) {
			values := fixtures.Values(typ.Name, marker, "https://127.0.0.1:9/token")
			path := mount + "/credentials/e2e-" + typ.Name
			args := append([]string{"write", "-format=json", path, "type=" + typ.Name, "tags=e2e,cli", "description=made by the e2e test"}, cliArgs(t, values)...)
			written := shared.mustCLI(t, args...)
			read := shared.mustCLI(t, "read", "-format=json", path)
			list := shared.mustCLI(t, "list", "-format=json", "-detailed", mount+"/credentials")
			for what, out := range map[string]string{"write": written, "read": read, "list": list} {
				if strings.Contains(out, marker) {
					t.Fatalf("%s output shows a secret:\n%s", what, out)
				}
			}
			got := decode(t, read).Data
			if got["type"] != typ.Name || got["description"] != "made by the e2e test" {
				t.Errorf("read back type=%v description=%v", got["type"], got["description"])
			}
			secretFields, _ := got["secret_fields"].([]any)
			if want := len(typ.SensitiveFields()) > 0; want && len(secretFields) == 0 {
				t.Errorf("secret_fields empty for a type with secrets: %v", got)
			}
			for _, f := range typ.Fields {
				if !f.Sensitive && !f.Common {
					if _, set := values[f.Name]; set && got[f.Name] == nil {
						t.Errorf("non-secret field %s missing from read", f.Name)
					}
				}
			}
			if typ.Kind == credtype.KindStatic {
				access := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/access/e2e-"+typ.Name)).Data
				// The certificate's key comes back decrypted and re-encoded, without the
				// PEM header that carried the marker.
				if typ.Name == "certificate" {
					if !strings.Contains(fmt.Sprint(access["private_key"]), "PRIVATE KEY") || access["not_after"] == nil {
						t.Errorf("certificate access: %v", access)
					}
				} else if len(typ.SensitiveFields()) > 0 && !strings.Contains(fmt.Sprint(access), marker) {
					t.Errorf("access did not hand out the secret: %v", access)
				}
			}
			shared.mustCLI(t, "delete", path)
			if out, err := shared.cli("read", path); err == nil {
				t.Errorf("read after delete succeeded: %s", out)
			}
		})
	}
}

// TestManageThroughAPIClient covers update with and without secrets, patch, list
// filters and pagination with the HTTP API client.
func TestManageThroughAPIClient(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	c := shared.client.Logical()
	ctx := context.Background()
	write := func(name string, data map[string]any) {
		t.Helper()
		if _, err := c.WriteWithContext(ctx, mount+"/credentials/"+name, data); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
	}
	access := func(name string) map[string]any {
		t.Helper()
		s, err := c.ReadWithContext(ctx, mount+"/access/"+name)
		if err != nil || s == nil {
			t.Fatalf("access %s: %v %v", name, s, err)
		}
		return s.Data
	}

	write("svc", map[string]any{"type": "basic", "username": "u1", "password": "first", "tags": []string{"prod"}})
	// An update without the secret keeps it.
	write("svc", map[string]any{"username": "u2", "tags": []string{"prod", "billing"}})
	if a := access("svc"); a["username"] != "u2" || a["password"] != "first" {
		t.Fatalf("update without secret: %v", a)
	}
	// An update with it replaces it.
	write("svc", map[string]any{"username": "u2", "password": "second"})
	if a := access("svc"); a["password"] != "second" {
		t.Fatalf("update with secret: %v", a)
	}
	// A patch changes only what it names.
	if _, err := c.JSONMergePatch(ctx, mount+"/credentials/svc", map[string]any{"description": "patched"}); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadWithContext(ctx, mount+"/credentials/svc")
	if err != nil {
		t.Fatal(err)
	}
	if r.Data["description"] != "patched" || r.Data["username"] != "u2" {
		t.Fatalf("after patch: %v", r.Data)
	}
	if a := access("svc"); a["password"] != "second" {
		t.Fatalf("patch lost the secret: %v", a)
	}
	// The type is fixed after create.
	_, err = c.WriteWithContext(ctx, mount+"/credentials/svc", map[string]any{"type": "bearer", "token": "x"})
	if statusCode(err) != 400 || !strings.Contains(err.Error(), `"type"`) {
		t.Fatalf("type change: want 400 naming type, got %v", err)
	}

	// Pagination and filters over a few hundred credentials.
	const n = 250
	for i := range n {
		typ := "webhook"
		data := map[string]any{"type": typ, "url": fmt.Sprintf("https://hooks.example.com/%d", i)}
		if i%5 == 0 {
			data = map[string]any{"type": "slack", "token": fmt.Sprintf("xoxb-%d", i), "tags": []string{"chat"}}
		}
		write(fmt.Sprintf("item-%03d", i), data)
	}
	var all []string
	after := ""
	for {
		q := map[string][]string{"limit": {"60"}}
		if after != "" {
			q["after"] = []string{after}
		}
		page, err := listWith(ctx, mount+"/credentials", q)
		if err != nil {
			t.Fatal(err)
		}
		keys := keysOf(page.Data)
		if len(keys) == 0 {
			break
		}
		all = append(all, keys...)
		after = keys[len(keys)-1]
	}
	if len(all) != n+1 || !slices.IsSorted(all) {
		t.Fatalf("paged %d names (want %d), sorted=%v", len(all), n+1, slices.IsSorted(all))
	}
	for _, q := range []struct {
		query map[string][]string
		want  int
	}{
		{map[string][]string{"type": {"slack"}}, n / 5},
		{map[string][]string{"tag": {"chat"}}, n / 5},
		{map[string][]string{"filter": {"item-01"}}, 10},
		{map[string][]string{"type": {"webhook"}, "filter": {"item-00"}}, 8},
		{map[string][]string{"status": {"active"}, "limit": {"1000"}}, n + 1},
	} {
		page, err := listWith(ctx, mount+"/credentials", q.query)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(keysOf(page.Data)); got != q.want {
			t.Errorf("list %v: %d names, want %d", q.query, got, q.want)
		}
	}
}

// listWith sends LIST with query parameters, which api.Logical has no helper for.
func listWith(ctx context.Context, path string, query map[string][]string) (*api.Secret, error) {
	req := shared.client.NewRequest("LIST", "/v1/"+path)
	req.Params = query
	resp, err := shared.client.RawRequestWithContext(ctx, req) //nolint:staticcheck // SA1019: LIST with query parameters, which api.Logical has no helper for
	if resp != nil {
		defer resp.Body.Close()
	}
	if statusCode(err) == 404 {
		return &api.Secret{Data: map[string]any{}}, nil // Vault's answer to an empty list
	}
	if err != nil {
		return nil, err
	}
	return api.ParseSecret(resp.Body)
}

func keysOf(data map[string]any) []string {
	raw, _ := data["keys"].([]any)
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		out = append(out, k.(string))
	}
	return out
}

// TestValidationThroughCLI: every rule refuses with a 400 naming the field, and
// nothing is stored.
func TestValidationThroughCLI(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	cert, _ := fixtures.Certificate(mustTime(t, "2030-01-01T00:00:00Z"))
	_, otherKey := fixtures.Certificate(mustTime(t, "2030-01-01T00:00:00Z"))
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	certFile := filepath.Join(t.TempDir(), "c.pem")
	sshKey := filepath.Join(t.TempDir(), "id")
	for file, content := range map[string]string{keyFile: otherKey, certFile: cert, sshKey: fixtures.SSHKey("right")} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fp := fixtures.HostKeyFingerprint()
	cases := []struct {
		name, field string
		args        []string
	}{
		{"name too long", "name", []string{"credentials/" + strings.Repeat("n", 200), "type=webhook", "url=https://x.example.com"}},
		{"unknown type", "type", []string{"credentials/v1", "type=carrier_pigeon"}},
		{"missing type", "type", []string{"credentials/v2", "url=https://x.example.com"}},
		{"missing required", "password", []string{"credentials/v3", "type=basic", "username=u"}},
		{"http token url", "token_url", []string{"credentials/v4", "type=oauth2_client_credentials", "token_url=http://idp.example.com/token", "client_id=c", "client_secret=s"}},
		{"sftp without port", "host", []string{"credentials/v5", "type=sftp_password", "host=sftp://files.example.com/", "host_key_fingerprint=" + fp, "username=u", "password=p"}},
		{"md5 fingerprint", "host_key_fingerprint", []string{"credentials/v6", "type=sftp_password", "host=sftp://files.example.com:22/", "host_key_fingerprint=16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "username=u", "password=p"}},
		{"key does not match certificate", "private_key", []string{"credentials/v7", "type=certificate", "certificate=@" + certFile, "private_key=@" + keyFile}},
		{"not a certificate", "certificate", []string{"credentials/v8", "type=certificate", "certificate=hello", "private_key=@" + keyFile}},
		{"wrong ssh passphrase", "passphrase", []string{"credentials/v9", "type=sftp_ssh_key", "host=sftp://f.example.com:22/", "host_key_fingerprint=" + fp, "username=u", "private_key=@" + sshKey, "passphrase=wrong"}},
		{"missing ssh passphrase", "passphrase", []string{"credentials/v10", "type=sftp_ssh_key", "host=sftp://f.example.com:22/", "host_key_fingerprint=" + fp, "username=u", "private_key=@" + sshKey}},
		{"bad totp", "totp_secret", []string{"credentials/v11", "type=basic", "username=u", "password=p", "totp_secret=not!base32"}},
		{"oversize totp", "totp_secret", []string{"credentials/v12", "type=basic", "username=u", "password=p", "totp_secret=" + strings.Repeat("A", 300)}},
		{"field of another type", "token", []string{"credentials/v13", "type=basic", "username=u", "password=p", "token=t"}},
		{"unknown field", "colour", []string{"credentials/v14", "type=webhook", "url=https://x.example.com", "colour=blue"}},
		{"bad device ip", "ip", []string{"credentials/v15", "type=device_account", "hostname=h", "ip=10.0.0.300", "username=u"}},
	}
	for _, tc := range cases {
		args := append([]string{"write", mount + "/" + tc.args[0]}, tc.args[1:]...)
		out, err := shared.cli(args...)
		if err == nil {
			t.Errorf("%s: accepted: %s", tc.name, out)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "Code: 400") || !strings.Contains(msg, tc.field) {
			t.Errorf("%s: want a 400 naming %q, got: %s", tc.name, tc.field, msg)
		}
	}
	list, err := shared.client.Logical().List(mount + "/credentials")
	if err != nil {
		t.Fatal(err)
	}
	if list != nil && len(keysOf(list.Data)) != 0 {
		t.Errorf("refused writes stored credentials: %v", list.Data)
	}
}

func TestDeviceAccountsAndLookupThroughCLI(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	first := decode(t, shared.mustCLI(t, "write", "-format=json", mount+"/device-accounts",
		"hostname=web01", "ip=192.0.2.10", "username=admin", "password=one")).Data
	name, _ := first["name"].(string)
	if name == "" || first["created"] != true {
		t.Fatalf("upsert did not create: %v", first)
	}
	// Same triple: the same account is updated, its password kept when not sent.
	second := decode(t, shared.mustCLI(t, "write", "-format=json", mount+"/device-accounts",
		"hostname=web01", "ip=192.0.2.10", "username=admin", "notes=rotated quarterly")).Data
	if second["name"] != name || second["created"] != false || second["notes"] != "rotated quarterly" {
		t.Fatalf("upsert by triple: %v", second)
	}
	found := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/lookup",
		"hostname=web01", "ip=192.0.2.10", "username=admin")).Data
	if found["name"] != name {
		t.Fatalf("lookup found %v, want %s", found["name"], name)
	}
	access := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/access/"+name)).Data
	if access["password"] != "one" {
		t.Fatalf("password not kept across upsert: %v", access)
	}
	// By identifier.
	byID := decode(t, shared.mustCLI(t, "write", "-format=json", mount+"/device-accounts",
		"identifier=db-root", "hostname=db01", "ip=192.0.2.20", "username=root", "password=two")).Data
	if byID["name"] != "db-root" {
		t.Fatalf("upsert by identifier: %v", byID)
	}
	_, err := shared.cli("read", mount+"/lookup", "hostname=web01", "username=admin")
	if err == nil || !strings.Contains(err.Error(), "ip") {
		t.Fatalf("lookup without ip: %v", err)
	}
	_, err = shared.cli("write", mount+"/device-accounts", "ip=192.0.2.10", "username=admin")
	if err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Fatalf("upsert without hostname: %v", err)
	}
}

func TestPathHelpAndOpenAPIDescribeFields(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	help := shared.mustCLI(t, "path-help", mount+"/credentials/x")
	for _, want := range []string{"client_secret", "host_key_fingerprint", "secret_fields", "type"} {
		if !strings.Contains(help, want) {
			t.Errorf("path-help does not mention %s", want)
		}
	}
	resp, err := shared.client.Logical().ReadRawWithContext(context.Background(), "sys/internal/specs/openapi")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	// Every operation of every path of ours is named integrations-<verb>-<what>.
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/"+mount+"/") {
			continue
		}
		for method, op := range item {
			o, ok := op.(map[string]any)
			if !ok || method == "parameters" {
				continue
			}
			if id, _ := o["operationId"].(string); !strings.HasPrefix(id, "integrations-") || len(id) <= len("integrations-") {
				t.Errorf("%s %s: operationId %q lacks the integrations prefix or a verb", method, path, id)
			}
		}
	}
	for _, p := range []string{"/credentials/{name}", "/access/{name}", "/types/{type}", "/config", "/oauth/callback", "/device-accounts", "/lookup", "/alerts", "/credentials/{name}/logs", "/credentials/{name}/authorize", "/credentials/{name}/suspend", "/metrics"} {
		item, ok := doc.Paths["/"+mount+p]
		if !ok {
			t.Errorf("OpenAPI lacks %s", p)
			continue
		}
		raw, _ := json.Marshal(item)
		if !strings.Contains(string(raw), `"operationId":"integrations-`) {
			t.Errorf("OpenAPI %s has no integrations-* operationId: %s", p, raw[:min(len(raw), 300)])
		}
	}
	// Request fields live in a component schema named after the operation
	// (integrations-write-credential -> IntegrationsWriteCredentialRequest).
	const requestSchema = "IntegrationsWriteCredentialRequest"
	ref := []string{"", requestSchema}
	if doc.Components.Schemas[requestSchema] == nil {
		t.Fatalf("OpenAPI has no %s schema", requestSchema)
	}
	schema, _ := json.Marshal(doc.Components.Schemas[ref[1]])
	for _, f := range []string{"client_secret", "totp_secret", "host_key_fingerprint", "routing_key", "private_key_password"} {
		if !strings.Contains(string(schema), `"`+f+`"`) {
			t.Errorf("OpenAPI schema %s lacks field %s", ref[1], f)
		}
	}
}
