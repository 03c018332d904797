package backend

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// designTypes is the type table of docs/API.md: name, kind, required and sensitive
// fields. The catalog must offer at least these, spelt this way.
var designTypes = []struct {
	name, kind          string
	required, sensitive []string
}{
	{"basic", "static", []string{"username", "password"}, []string{"password", "totp_secret"}},
	{"bearer", "static", []string{"token"}, []string{"token"}},
	{"api_key", "static", []string{"key"}, []string{"key"}},
	{"certificate", "static", []string{"certificate", "private_key"}, []string{"private_key", "private_key_password"}},
	{"sftp_password", "static", []string{"host", "host_key_fingerprint", "username", "password"}, []string{"password", "totp_secret"}},
	{"sftp_ssh_key", "static", []string{"host", "host_key_fingerprint", "username", "private_key"}, []string{"private_key", "passphrase"}},
	{"webhook", "static", []string{"url"}, []string{"url"}},
	{"device_account", "static", []string{"hostname", "ip", "username"}, []string{"password", "totp_secret"}},
	{"oauth2_client_credentials", "oauth2", []string{"token_url", "client_id"}, []string{"client_key", "client_secret"}},
	{"oauth2_password", "oauth2", []string{"token_url", "client_id", "username", "password"}, []string{"client_key", "client_secret", "password", "totp_secret"}},
	{"oauth2_authorization_code", "oauth2", []string{"auth_url", "token_url", "client_id"}, []string{"client_key", "client_secret", "refresh_token"}},
	{"oauth2_device_code", "oauth2", []string{"device_authorization_url", "token_url", "client_id"}, []string{"client_key", "client_secret"}},
	{"m365", "oauth2", []string{"tenant", "client_id"}, []string{"client_key", "client_secret"}},
	{"zoom", "oauth2", []string{"account_id", "client_id"}, []string{"client_key", "client_secret"}},
	{"servicenow_oauth", "oauth2", []string{"instance", "client_id"}, []string{"client_key", "client_secret", "password", "totp_secret"}},
	{"cisco_client_credentials", "oauth2", []string{"auth_url", "client_id"}, []string{"client_key", "client_secret"}},
	{"oauth2_jwt_bearer", "oauth2", []string{"token_url", "issuer"}, []string{"client_key", "client_secret"}},
	{"google_service_account", "oauth2", []string{"service_account_key", "scopes"}, []string{"service_account_key"}},
	{"salesforce_jwt", "oauth2", []string{"consumer_key", "username"}, []string{"client_key"}},
	{"slack", "static", []string{"token"}, []string{"token"}},
	{"pagerduty", "static", []string{"routing_key"}, []string{"routing_key"}},
	{"okta", "static", []string{"url", "token"}, []string{"token"}},
	{"github_app", "oauth2", []string{"private_key"}, []string{"private_key"}},
}

// typeFields is the per-field details types/<typ> shows, keyed by field name.
func typeFields(t *testing.T, b logical.Backend, s logical.Storage, typ string) map[string]map[string]any {
	t.Helper()
	return mustOK(t, b, s, logical.ReadOperation, "types/"+typ, nil).Data["fields"].(map[string]map[string]any)
}

func TestTypesListShowsEveryTypeWithKind(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	resp := mustOK(t, b, s, logical.ListOperation, "types/", nil)
	keys, _ := resp.Data["keys"].([]string)
	var want []string
	for _, d := range designTypes {
		want = append(want, d.name)
	}
	slices.Sort(want)
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("types keys = %v\nwant %v", keys, want)
	}
	info, _ := resp.Data["key_info"].(map[string]any)
	for _, d := range designTypes {
		ki, _ := info[d.name].(map[string]any)
		if ki == nil {
			t.Errorf("%s: no key_info", d.name)
			continue
		}
		if ki["kind"] != d.kind {
			t.Errorf("%s: kind %v, want %s", d.name, ki["kind"], d.kind)
		}
		if desc, _ := ki["description"].(string); desc == "" {
			t.Errorf("%s: empty description", d.name)
		}
	}
	if aliases := info["m365"].(map[string]any)["aliases"]; !reflect.DeepEqual(aliases, []string{"microsoft_graph"}) {
		t.Errorf("m365 aliases = %v", aliases)
	}
}

func TestTypeReadMatchesCatalogAndDesign(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	commonFields := []string{"description", "tags", "used_by", "suspend_after", "purge_after", "expires_at"}
	for _, d := range designTypes {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			typ, ok := credtype.Lookup(d.name)
			if !ok {
				t.Fatalf("type %s not in the catalog", d.name)
			}
			resp := mustOK(t, b, s, logical.ReadOperation, "types/"+d.name, nil)
			if resp.Data["name"] != d.name || resp.Data["kind"] != d.kind {
				t.Fatalf("name/kind = %v/%v", resp.Data["name"], resp.Data["kind"])
			}
			fields, _ := resp.Data["fields"].(map[string]map[string]any)
			if len(fields) != len(typ.Fields) {
				t.Fatalf("%d fields shown, catalog has %d", len(fields), len(typ.Fields))
			}
			var required, optional, sensitive, names []string
			for _, cf := range typ.Fields {
				f := fields[cf.Name]
				want := map[string]any{
					"type": string(cf.Type), "required": cf.Required, "sensitive": cf.Sensitive, "destination": cf.Destination,
					"default": cf.Default, "rule": cf.Rule, "description": cf.Description, "common": cf.Common,
				}
				if w := cf.RequiredWhen; w != nil {
					rw := map[string]any{"field": w.Field, "values": w.Values}
					if w.Unless != "" {
						rw["unless"] = w.Unless
					}
					want["required_when"] = rw
				}
				if o := cf.OneOf; o != nil {
					want["one_of"] = map[string]any{"fields": o.Fields, "exactly": o.Exactly}
				}
				if !reflect.DeepEqual(f, want) {
					t.Errorf("field %s:\n got %v\nwant %v", cf.Name, f, want)
				}
				if r, _ := f["rule"].(string); r == "" {
					t.Errorf("field %s has no rule", cf.Name)
				}
				if r, _ := f["description"].(string); r == "" {
					t.Errorf("field %s has no description", cf.Name)
				}
				names = append(names, cf.Name)
				if cf.Required {
					required = append(required, cf.Name)
				} else {
					optional = append(optional, cf.Name)
				}
				if cf.Sensitive {
					sensitive = append(sensitive, cf.Name)
				}
			}
			// The lists the table shows: field names in catalog order.
			for key, want := range map[string][]string{"required": required, "optional": optional, "sensitive": sensitive} {
				if got, _ := resp.Data[key].([]string); !slices.Equal(got, want) {
					t.Errorf("%s = %v, want %v", key, resp.Data[key], want)
				}
			}
			slices.Sort(required)
			slices.Sort(sensitive)
			wantReq, wantSens := slices.Sorted(slices.Values(d.required)), slices.Sorted(slices.Values(d.sensitive))
			if !slices.Equal(required, wantReq) {
				t.Errorf("required = %v, docs/API.md says %v", required, wantReq)
			}
			if !slices.Equal(sensitive, wantSens) {
				t.Errorf("sensitive = %v, docs/API.md says %v", sensitive, wantSens)
			}
			for _, c := range commonFields {
				if !slices.Contains(names, c) {
					t.Errorf("missing common field %s", c)
				}
			}
		})
	}
}

func TestTypeReadDefaultsMatchDesign(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	cases := []struct {
		typ, field string
		want       any
	}{
		{"bearer", "header_prefix", "Bearer"},
		{"api_key", "header_name", "X-API-Key"},
		{"m365", "scopes", []string{"https://graph.microsoft.com/.default"}},
		{"oauth2_client_credentials", "auth_style", "header"},
		{"basic", "username", nil},
	}
	for _, tc := range cases {
		var got any = "<missing>"
		if f, ok := typeFields(t, b, s, tc.typ)[tc.field]; ok {
			got = f["default"]
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s.%s default = %#v, want %#v", tc.typ, tc.field, got, tc.want)
		}
	}
}

func TestTypeReadAliasesAndUnknown(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, alias := range []string{"microsoft_graph", "M365"} {
		resp := mustOK(t, b, s, logical.ReadOperation, "types/"+alias, nil)
		if resp.Data["name"] != "m365" {
			t.Errorf("types/%s name = %v, want m365", alias, resp.Data["name"])
		}
	}
	credWantStatus(t, b, s, logical.ReadOperation, "types/no_such_type", nil, http.StatusNotFound)
}

// The path schema of credentials/<name> is generated from the catalog: every field of
// every type is declared once, with the same sensitivity, and nothing else (but for
// name, type and the check-and-set parameter cas).
func TestCredentialSchemaComesFromCatalog(t *testing.T) {
	t.Parallel()
	schema := credentialFields()
	want := map[string]bool{"name": true, "type": true, fieldCAS: true}
	for _, typ := range credtype.All() {
		for _, f := range typ.Fields {
			want[f.Name] = true
			sf, ok := schema[f.Name]
			if !ok {
				t.Errorf("%s.%s is not in the path schema", typ.Name, f.Name)
				continue
			}
			// The schema masks a field that any type holds as a secret (webhook url).
			if sf.DisplayAttrs == nil || f.Sensitive && !sf.DisplayAttrs.Sensitive {
				t.Errorf("%s: schema sensitive flag disagrees with the catalog", f.Name)
			}
			wantType := framework.TypeString
			switch f.Type {
			case credtype.FieldList:
				wantType = framework.TypeCommaStringSlice
			case credtype.FieldDuration:
				wantType = framework.TypeDurationSecond
			case credtype.FieldStringMap:
				wantType = framework.TypeKVPairs
			case credtype.FieldBool:
				wantType = framework.TypeBool
			}
			if sf.Type != wantType {
				t.Errorf("%s: schema type %v, want %v", f.Name, sf.Type, wantType)
			}
		}
	}
	for name := range schema {
		if !want[name] {
			t.Errorf("schema field %s belongs to no type", name)
		}
	}
}

// Validation follows the definitions types/<type> shows: each required field, when
// missing, is refused by name; each field a type does not list is refused; each
// one-of group refuses two of its fields together (naming the second and the group's
// rule) and, when one must be set, none (naming the first); a map refuses more keys
// than it states and a bool anything but true or false.
func TestValidationFollowsTypeDefinitions(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, typ := range credtype.All() {
		t.Run(typ.Name, func(t *testing.T) {
			t.Parallel()
			own := map[string]bool{}
			for name, f := range typeFields(t, b, s, typ.Name) {
				own[name] = true
				path := "credentials/rule-" + typ.Name + "-" + name
				switch f["type"] {
				case string(credtype.FieldStringMap):
					values := exampleValues(t, typ.Name, "MAPFIELD")
					n := ruleNumber(t, `at most (\d+) keys`, f["rule"].(string))
					pairs := make([]any, n+1)
					for i := range pairs {
						pairs[i] = fmt.Sprintf("k%d=v", i)
					}
					values[name] = pairs
					credWant400(t, b, s, logical.CreateOperation, path, credWithType(typ.Name, values), name, fmt.Sprintf("at most %d keys", n))
				case string(credtype.FieldBool):
					values := exampleValues(t, typ.Name, "BOOLFIELD")
					values[name] = "maybe"
					credWant400(t, b, s, logical.CreateOperation, path, credWithType(typ.Name, values), name, "wrong type or form")
				}
				if o, ok := f["one_of"].(map[string]any); ok {
					group := o["fields"].([]string)
					rule := f["rule"].(string)
					if name == group[0] {
						values := exampleValues(t, typ.Name, "ONEOFFIELD")
						for _, g := range group {
							values[g] = sampleValue(g)
						}
						credWant400(t, b, s, logical.CreateOperation, path, credWithType(typ.Name, values), group[1], strings.SplitN(rule, ";", 2)[0])
						if o["exactly"] == true {
							for _, g := range group {
								delete(values, g)
							}
							credWant400(t, b, s, logical.CreateOperation, path, credWithType(typ.Name, values), group[0], "is required")
						}
					}
				}
				if f["required"] != true {
					continue
				}
				values := exampleValues(t, typ.Name, "REQUIREDFIELD")
				delete(values, name)
				credWant400(t, b, s, logical.CreateOperation, "credentials/req-"+typ.Name+"-"+name, credWithType(typ.Name, values), name, "is required")
			}
			for _, other := range credtype.FieldNames() {
				if own[other] {
					continue
				}
				values := exampleValues(t, typ.Name, "FOREIGNFIELD")
				values[other] = sampleValue(other)
				credWant400(t, b, s, logical.CreateOperation, "credentials/foreign-"+typ.Name, credWithType(typ.Name, values), other, "not a field of type")
			}
		})
	}
	if names := storedCredentialNames(t, s); len(names) != 0 {
		t.Fatalf("refused writes stored %v", names)
	}
}

// sampleValue is a value of the field's wire type that the framework converts, so
// that what refuses it is the engine's rule.
func sampleValue(field string) any {
	f, _ := credtype.SchemaField(field)
	switch field {
	case "app_id", "installation_id":
		return "42"
	case "owner":
		return "octo-org"
	}
	switch f.Type {
	case credtype.FieldStringMap:
		return map[string]any{"k": "v"}
	case credtype.FieldBool:
		return true
	}
	return "x"
}

// ruleNumber reads the number re captures in a rule, failing the test without one.
func ruleNumber(t *testing.T, re, rule string) int {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(rule)
	if m == nil {
		t.Fatalf("rule %q states nothing matching %s", rule, re)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A type that tightens a shared field shows its own rule, the one it validates with.
func TestTypeReadShowsTypeSpecificRules(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	cases := []struct{ typ, field, fragment string }{
		{"basic", "username", "no ':'"},
		{"slack", "token", "xox"},
		{"sftp_ssh_key", "private_key", "OpenSSH"},
		{"certificate", "private_key", "must match the certificate"},
		{"sftp_password", "host_key_fingerprint", "MD5"},
		{"webhook", "url", "https"},
		{"basic", "totp_secret", "base32"},
	}
	for _, tc := range cases {
		rule := "<field missing>"
		if f, ok := typeFields(t, b, s, tc.typ)[tc.field]; ok {
			rule, _ = f["rule"].(string)
		}
		if !strings.Contains(rule, tc.fragment) {
			t.Errorf("%s.%s rule %q lacks %q", tc.typ, tc.field, rule, tc.fragment)
		}
	}
}

// The lifecycle fields are validated by the backend, by the rules types/<type> shows
// for them: a description as long as the rule allows is accepted, one byte more is not.
func TestLifecycleFieldRulesMatchCatalog(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	rule, _ := typeFields(t, b, s, "webhook")["description"]["rule"].(string)
	if !strings.Contains(rule, "4096 bytes") || !strings.Contains(rule, "line breaks allowed") {
		t.Fatalf("description rule %q: update this test to the catalog's limit", rule)
	}
	data := credWithType("webhook", exampleValues(t, "webhook", "RULESMATCH"))
	data["description"] = strings.Repeat("line\n", 4096/5) + "tail\t"
	data["description"] = data["description"].(string)[:4096]
	mustOK(t, b, s, logical.CreateOperation, "credentials/long-description", data)
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/long-description", nil).Data["description"]; got != data["description"] {
		t.Fatalf("description not kept as written (%d bytes)", len(got.(string)))
	}
	data["description"] = data["description"].(string) + "x"
	credWant400(t, b, s, logical.UpdateOperation, "credentials/long-description", data, "description", "4096")
}

// vault read integrations/types works (it was a list path only: 405): one one-line
// row per catalog type, keyed by its name, saying its kind and description.
func TestTypesReadIsOneLinePerType(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	resp := mustOK(t, b, s, logical.ReadOperation, "types", nil)
	if len(resp.Data) != len(credtype.All()) {
		t.Fatalf("read has %d rows, the catalog %d types: %v", len(resp.Data), len(credtype.All()), resp.Data)
	}
	for _, typ := range credtype.All() {
		line, ok := resp.Data[typ.Name].(string)
		if !ok || strings.Contains(line, "\n") || !strings.HasPrefix(line, string(typ.Kind)+" — ") || !strings.Contains(line, typ.Description) {
			t.Fatalf("type %s: row %#v, want one line with its kind and description", typ.Name, resp.Data[typ.Name])
		}
	}
	// LIST answers as before.
	if keys, _ := mustOK(t, b, s, logical.ListOperation, "types/", nil).Data["keys"].([]string); len(keys) != len(credtype.All()) {
		t.Fatalf("list keys %v", keys)
	}
}
