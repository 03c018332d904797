package credtype

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// designTable is docs/API.md's "Credential types" table: field names and which are
// required are part of the API, so the catalog is pinned to it. Required fields are
// marked with a trailing '*'.
var designTable = []struct {
	name    string
	kind    Kind
	aliases []string
	fields  []string
	totp    bool
}{
	{"basic", KindStatic, nil, []string{"username*", "password*", "verify_url", "ca_certificate"}, true},
	{"bearer", KindStatic, nil, []string{"token*", "header_prefix", "url", "verify_url", "ca_certificate"}, false},
	{"api_key", KindStatic, nil, []string{"key*", "header_name", "url", "verify_url", "ca_certificate"}, false},
	{"certificate", KindStatic, nil, []string{"certificate*", "private_key*", "private_key_password"}, false},
	{"sftp_password", KindStatic, nil, []string{"host*", "host_key_fingerprint*", "username*", "password*"}, true},
	{"sftp_ssh_key", KindStatic, nil, []string{"host*", "host_key_fingerprint*", "username*", "private_key*", "passphrase"}, false},
	{"webhook", KindStatic, nil, []string{"url*", "ca_certificate"}, false},
	{"device_account", KindStatic, nil, []string{"hostname*", "ip*", "username*", "password", "domain", "additional", "notes"}, true},
	{"oauth2_client_credentials", KindOAuth2, nil, append([]string{"token_url*", "client_id*", "client_secret~", "scopes", "audience", "auth_style"}, clientAuthFields...), false},
	{"oauth2_password", KindOAuth2, nil, append([]string{"token_url*", "client_id*", "client_secret~", "scopes", "audience", "auth_style", "username*", "password*"}, clientAuthFields...), true},
	{"oauth2_authorization_code", KindOAuth2, nil, append([]string{"auth_url*", "token_url*", "client_id*", "client_secret", "scopes", "redirect_url", "refresh_token", "authorization_params", "response_mode", "auth_style"}, clientAuthFields...), false},
	{"oauth2_device_code", KindOAuth2, nil, append([]string{"device_authorization_url*", "token_url*", "client_id*", "client_secret", "scopes", "auth_style"}, clientAuthFields...), false},
	{"m365", KindOAuth2, []string{"microsoft_graph"}, append([]string{"tenant*", "client_id*", "client_secret~", "scopes", "token_url", "auth_url", "auth_style"}, clientAuthFields...), false},
	{"zoom", KindOAuth2, nil, append([]string{"account_id*", "client_id*", "client_secret~", "token_url", "auth_url", "auth_style"}, clientAuthFields...), false},
	{"servicenow_oauth", KindOAuth2, nil, append([]string{"instance*", "client_id*", "client_secret~", "username", "password", "token_url", "auth_url", "auth_style"}, clientAuthFields...), true},
	{"cisco_client_credentials", KindOAuth2, nil, append([]string{"auth_url*", "client_id*", "client_secret~", "token_url", "auth_style"}, clientAuthFields...), false},
	{"oauth2_jwt_bearer", KindOAuth2, nil, []string{"token_url*", "issuer*", "subject", "audience", "client_key~", "client_key_id", "scopes", "scope_in", "assertion_lifetime", "claims",
		"client_id", "client_secret", "auth_style", "client_certificate~", "client_assertion_audience", "client_assertion_algorithm", ownedKeyOwn[0], ownedKeyOwn[1], ownedKeyOwn[2], ownedKeyOwn[3], ownedKeyOwn[4], ownedKeyOwn[5], "ca_certificate"}, false},
	{"google_service_account", KindOAuth2, nil, []string{"service_account_key*", "scopes*", "subject", "ca_certificate"}, false},
	{"salesforce_jwt", KindOAuth2, nil, []string{"login_url", "consumer_key*", "username*", "client_key~", ownedKeyOwn[0], ownedKeyOwn[1], ownedKeyOwn[2], ownedKeyOwn[3], ownedKeyOwn[4], ownedKeyOwn[5], "ca_certificate"}, false},
	{"slack", KindStatic, nil, []string{"token*"}, false},
	{"pagerduty", KindStatic, nil, []string{"routing_key*"}, false},
	{"okta", KindStatic, nil, []string{"url*", "token*", "ca_certificate"}, false},
	// A GitHub App authenticates with its own JWT: no client-authentication fields.
	{"github_app", KindOAuth2, nil, []string{"app_id", "client_id", "private_key*", "installation_id", "owner", "repositories", "permissions", "base_url", "ca_certificate"}, false},
}

// clientAuthFields are the client-authentication fields every OAuth type takes after
// its own (and auth_style); '~' marks a field required only under a condition
// (RequiredWhen), such as client_secret for the shared-secret auth styles.
var clientAuthFields = []string{"client_key~", "client_key_id", "client_certificate~", "client_assertion_audience", "client_assertion_algorithm",
	"generate_client_key", "generate_client_certificate", "client_certificate_ttl", "client_key_overlap", "client_key_rotation_period", "publish_jwks", "ca_certificate"}

// ownedKeyOwn are the owned-key fields every type with client_key takes (issue 27).
var ownedKeyOwn = []string{"generate_client_key", "generate_client_certificate", "client_certificate_ttl", "client_key_overlap", "client_key_rotation_period", "publish_jwks"}

// oauthOwn are the fields every OAuth type takes after those (API.md, "Every OAuth type").
var oauthOwn = []string{"client_secret_expires_at", "exchange_audiences", "client_secret_overlap"}

var lifecycleNames = []string{"description", "tags", "used_by", "suspend_after", "purge_after", "verify_interval", "expires_at"}

var sensitiveNames = []string{"client_key", "client_secret", "key", "passphrase", "password", "private_key", "private_key_password", "refresh_token", "routing_key", "service_account_key", "token", "totp_secret", "url"}

func TestCatalogMatchesDesign(t *testing.T) {
	t.Parallel()
	if got := len(All()); got != len(designTable) {
		t.Errorf("catalog has %d types, design has %d", got, len(designTable))
	}
	for _, want := range designTable {
		t.Run(want.name, func(t *testing.T) {
			t.Parallel()
			typ := mustType(t, want.name)
			if typ.Name != want.name || typ.Kind != want.kind || !slices.Equal(typ.Aliases, want.aliases) {
				t.Errorf("got %s/%s aliases %v, want %s/%s aliases %v", typ.Name, typ.Kind, typ.Aliases, want.name, want.kind, want.aliases)
			}
			var own []string
			for _, f := range typ.Fields {
				if f.Common {
					continue
				}
				name := f.Name
				switch {
				case f.Required:
					name += "*"
				case f.RequiredWhen != nil:
					name += "~"
				}
				own = append(own, name)
			}
			wantOwn := want.fields
			if want.kind == KindOAuth2 && !typ.OAuth.OwnAuth {
				wantOwn = append(slices.Clone(wantOwn), oauthOwn...)
			}
			if !slices.Equal(own, wantOwn) {
				t.Errorf("own fields = %v, want %v", own, wantOwn)
			}
			common := slices.Clone(lifecycleNames)
			if want.totp {
				common = append(common, "totp_secret")
			}
			var got []string
			for _, f := range typ.Fields[len(own):] {
				if !f.Common {
					t.Errorf("own field %q listed after the common ones", f.Name)
				}
				got = append(got, f.Name)
			}
			if !slices.Equal(got, common) {
				t.Errorf("common fields = %v, want %v", got, common)
			}
			if typ.Description == "" {
				t.Error("no description")
			}
			if (typ.access != nil) != (typ.Kind == KindStatic) {
				t.Errorf("kind %s: access set %v", typ.Kind, typ.access != nil)
			}
		})
	}
}

func TestAllSortedAndLookup(t *testing.T) {
	t.Parallel()
	all := All()
	if !slices.IsSortedFunc(all, func(a, b *Type) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("All() is not sorted by name")
	}
	all[0] = nil // a caller's copy must not reach the catalog
	if All()[0] == nil {
		t.Error("All() returned the catalog's own slice")
	}
	tests := []struct {
		name, want string
	}{
		{"m365", "m365"},
		{"microsoft_graph", "m365"},
		{" Microsoft_Graph ", "m365"},
		{"BASIC", "basic"},
		{"nope", ""},
		{"", ""},
	}
	for _, tc := range tests {
		typ, ok := Lookup(tc.name)
		if ok != (tc.want != "") || ok && typ.Name != tc.want {
			t.Errorf("Lookup(%q) = %v, %v; want %q", tc.name, typ, ok, tc.want)
		}
	}
}

func TestFieldDefinitionsAreConsistent(t *testing.T) {
	t.Parallel()
	seen := map[string]Field{}
	var sensitive []string
	for _, typ := range All() {
		for _, f := range typ.Fields {
			if f.Rule == "" || f.Description == "" {
				t.Errorf("%s.%s: missing rule or description", typ.Name, f.Name)
			}
			switch d := f.Default.(type) {
			case nil:
			case string:
				if f.Type != FieldString {
					t.Errorf("%s.%s: string default on a %s field", typ.Name, f.Name, f.Type)
				}
				if _, err := f.normalizeString(d); err != nil {
					t.Errorf("%s.%s: default does not validate: %v", typ.Name, f.Name, err)
				}
			case []string:
				if f.Type != FieldList {
					t.Errorf("%s.%s: list default on a %s field", typ.Name, f.Name, f.Type)
				}
			default:
				t.Errorf("%s.%s: default of type %T", typ.Name, f.Name, d)
			}
			if f.Required && f.Default != nil {
				t.Errorf("%s.%s: required with a default", typ.Name, f.Name)
			}
			if f.Destination != schemaFields[f.Name].Destination {
				t.Errorf("%s.%s: destination differs from the shared definition", typ.Name, f.Name)
			}
			// A type may make a field sensitive that is not elsewhere (webhook url),
			// never the other way round.
			if schemaFields[f.Name].Sensitive && !f.Sensitive {
				t.Errorf("%s.%s: a secret field made non-sensitive", typ.Name, f.Name)
			}
			if prev, ok := seen[f.Name]; ok {
				if prev.Type != f.Type || prev.Common != f.Common {
					t.Errorf("%s.%s differs from another type's definition in type", typ.Name, f.Name)
				}
				if f.Sensitive && !prev.Sensitive {
					seen[f.Name] = f
					sensitive = append(sensitive, f.Name)
				}
				continue
			}
			seen[f.Name] = f
			if f.Sensitive {
				sensitive = append(sensitive, f.Name)
			}
		}
	}
	slices.Sort(sensitive)
	if !slices.Equal(sensitive, sensitiveNames) {
		t.Errorf("sensitive fields = %v, want %v", sensitive, sensitiveNames)
	}

	names := FieldNames()
	if !slices.IsSorted(names) || len(names) != len(seen) {
		t.Errorf("FieldNames() = %v: want the %d names sorted", names, len(seen))
	}
	for _, n := range names {
		f, ok := SchemaField(n)
		if !ok || f.Name != n || f.Required || f.Default != nil || f.Type != seen[n].Type || f.Sensitive != seen[n].Sensitive {
			t.Errorf("SchemaField(%q) = %+v, %v", n, f, ok)
		}
	}
	if _, ok := SchemaField("nope"); ok {
		t.Error(`SchemaField("nope") found something`)
	}
}

func TestFieldAndSensitiveFields(t *testing.T) {
	t.Parallel()
	typ := mustType(t, "certificate")
	if f, ok := typ.Field("private_key"); !ok || !f.Sensitive || !f.Required {
		t.Errorf("certificate.private_key = %+v, %v", f, ok)
	}
	if _, ok := typ.Field("token"); ok {
		t.Error("certificate has a token field")
	}
	if f, _ := typ.Field("tags"); !f.Lifecycle() {
		t.Error("tags is not a lifecycle field")
	}
	if got, want := typ.SensitiveFields(), []string{"private_key", "private_key_password"}; !slices.Equal(got, want) {
		t.Errorf("SensitiveFields() = %v, want %v", got, want)
	}
	basic := mustType(t, "basic")
	if f, _ := basic.Field("totp_secret"); f.Lifecycle() || !f.Common {
		t.Error("totp_secret must be common but not a lifecycle field")
	}
	if got, want := basic.SensitiveFields(), []string{"password", "totp_secret"}; !slices.Equal(got, want) {
		t.Errorf("SensitiveFields() = %v, want %v", got, want)
	}
}

// TestSensitiveAndDestinationFields pins the per-type facts the backend derives the
// repoint rule and the management view from.
func TestSensitiveAndDestinationFields(t *testing.T) {
	t.Parallel()
	sensitive := func(typ, field string) bool {
		ty, _ := Lookup(typ)
		f, ok := ty.Field(field)
		if !ok {
			t.Fatalf("%s has no field %s", typ, field)
		}
		return f.Sensitive
	}
	if !sensitive("webhook", "url") {
		t.Error("webhook.url is not sensitive: Slack and Teams webhook URLs carry their own secret")
	}
	if sensitive("bearer", "url") || sensitive("okta", "url") {
		t.Error("bearer/okta url made sensitive: only a webhook's URL is a secret")
	}
	for typ, want := range map[string][]string{
		"webhook":                   {"url", "ca_certificate"},
		"bearer":                    {"url", "verify_url", "ca_certificate"},
		"basic":                     {"verify_url", "ca_certificate"},
		"api_key":                   {"url", "verify_url", "ca_certificate"},
		"sftp_password":             {"host", "host_key_fingerprint"},
		"device_account":            {"hostname", "ip", "domain"},
		"oauth2_authorization_code": {"auth_url", "token_url", "redirect_url", "ca_certificate"},
		"m365":                      {"tenant", "token_url", "auth_url", "ca_certificate"},
		"servicenow_oauth":          {"instance", "token_url", "auth_url", "ca_certificate"},
		"pagerduty":                 nil,
	} {
		ty, _ := Lookup(typ)
		if got := ty.DestinationFields(); !slices.Equal(got, want) {
			t.Errorf("%s.DestinationFields() = %v, want %v", typ, got, want)
		}
	}
}

// TestRulesStateEnforcedLimits: the byte and item limits a rule states (what types/
// shows) are exactly the ones normalize enforces — not only "something at or below".
func TestRulesStateEnforcedLimits(t *testing.T) {
	t.Parallel()
	num := func(re, rule string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(rule)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	for _, typ := range All() {
		for _, f := range typ.Fields {
			if f.Type == FieldStringMap {
				for re, want := range map[string]int{`at most (\d+) keys`: f.maxItems, `each key at most (\d+) bytes`: f.maxKeyLen, `each value at most (\d+) bytes`: f.maxLen} {
					if n := num(re, f.Rule); n != want {
						t.Errorf("%s.%s: rule states %d for %s, enforced %d: %s", typ.Name, f.Name, n, re, want, f.Rule)
					}
				}
				continue
			}
			if f.Type == FieldBool {
				continue
			}
			if f.Type == FieldList {
				if n := num(`at most (\d+) bytes each`, f.Rule); n != f.maxLen {
					t.Errorf("%s.%s: rule states items of %d bytes, enforced %d: %s", typ.Name, f.Name, n, f.maxLen, f.Rule)
				}
				if n := num(`at most (\d+) items`, f.Rule); n != f.maxItems {
					t.Errorf("%s.%s: rule states %d items, enforced %d: %s", typ.Name, f.Name, n, f.maxItems, f.Rule)
				}
				continue
			}
			if n := num(`at most (\d+) bytes`, f.Rule); n != f.maxLen {
				t.Errorf("%s.%s: rule states %d bytes, enforced %d: %s", typ.Name, f.Name, n, f.maxLen, f.Rule)
			}
			if f.Type != FieldString {
				continue
			}
			// At the limit the length rule passes (another rule may still refuse).
			if _, err := f.normalizeString(strings.Repeat("a", f.maxLen)); err != nil && strings.Contains(err.Error(), "at most") {
				t.Errorf("%s.%s: a value of exactly %d bytes is refused for its length", typ.Name, f.Name, f.maxLen)
			}
		}
	}
}

// The refresh_token field comes from the preset's grant, not from a type name: every
// type whose preset uses authorization_code takes it, no other type does, and it is
// never among the values Validate keeps.
func TestRefreshTokenFieldFollowsTheGrant(t *testing.T) {
	for _, typ := range All() {
		_, has := typ.Field(FieldRefreshToken)
		if want := typ.OAuth != nil && typ.OAuth.Grant == "authorization_code"; has != want {
			t.Errorf("%s: has refresh_token %v, want %v", typ.Name, has, want)
		}
	}
	fake := &Type{Name: "fake_code", OAuth: &OAuthPreset{Grant: "authorization_code", AuthURL: "{auth_url}"},
		Fields: fields(false, use("auth_url", required), use("token_url", required), use("client_id", required))}
	addTokenStateFields(fake)
	if f, ok := fake.Field(FieldRefreshToken); !ok || !f.Sensitive || !f.TokenState {
		t.Fatalf("a preset with the authorization_code grant got no sensitive token-state refresh_token: %+v", f)
	}
	typ, _ := Lookup("oauth2_authorization_code")
	v, err := typ.Validate(map[string]any{"auth_url": "https://idp.example/auth", "token_url": "https://idp.example/token",
		"client_id": "c", FieldRefreshToken: "  rt-123 with space  "})
	if err != nil {
		t.Fatal(err)
	}
	if v.RefreshToken != "rt-123 with space" {
		t.Errorf("RefreshToken %q, want it trimmed", v.RefreshToken)
	}
	if _, kept := v.Values[FieldRefreshToken]; kept {
		t.Error("refresh_token kept among the values")
	}
	if vals := typ.Compact(v.Values); vals.Str(FieldRefreshToken) != "" {
		t.Error("refresh_token has a slot in the compact values")
	}
	for _, bad := range []string{"rt\x01x", "rt\u00e9", strings.Repeat("r", maxRefreshToken+1)} {
		_, err := typ.Validate(map[string]any{"auth_url": "https://idp.example/auth", "token_url": "https://idp.example/token",
			"client_id": "c", FieldRefreshToken: bad})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != FieldRefreshToken || strings.Contains(err.Error(), bad) {
			t.Errorf("refresh_token %.10q: error %v, want a refusal naming the field and not the value", bad, err)
		}
	}
}
