package backend

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

var (
	ruleBytesRe = regexp.MustCompile(`at most (\d+) bytes`)
	ruleItemsRe = regexp.MustCompile(`at most (\d+) items`)
	ruleEachRe  = regexp.MustCompile(`at most (\d+) bytes each`)
)

// ruleLimit reads the limit a rule states, failing the test when it states none.
func ruleLimit(t testing.TB, re *regexp.Regexp, typeName string, f credtype.Field) int {
	t.Helper()
	m := re.FindStringSubmatch(f.Rule)
	if m == nil {
		t.Fatalf("%s.%s: rule states no limit matching %q: %s", typeName, f.Name, re, f.Rule)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestEveryFieldRefusesOneByteOver walks every field of every type in the catalog: its
// rule (what types/<type> shows) states a byte limit, and a write one byte over it —
// or, for a list, one item over or an item one byte over — is a 400 naming the field
// and the limit, and stores nothing.
func TestEveryFieldRefusesOneByteOver(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, typ := range credtype.All() {
		for _, f := range typ.Fields {
			t.Run(typ.Name+"/"+f.Name, func(t *testing.T) {
				base := credWithType(typ.Name, exampleValues(t, typ.Name, "BOUNDSMARK"))
				write := func(v any, want string) {
					t.Helper()
					data := credWithType(typ.Name, base)
					data[f.Name] = v
					credWant400(t, b, s, logical.CreateOperation, "credentials/bounds", data, f.Name, want)
					if names := storedCredentialNames(t, s); len(names) != 0 {
						t.Fatalf("refused write stored %v", names)
					}
				}
				if f.Type == credtype.FieldBool {
					return // a bool has no size
				}
				if f.Type == credtype.FieldStringMap {
					keys := ruleLimit(t, regexp.MustCompile(`at most (\d+) keys`), typ.Name, f)
					keyLen := ruleLimit(t, regexp.MustCompile(`each key at most (\d+) bytes`), typ.Name, f)
					valueLen := ruleLimit(t, regexp.MustCompile(`each value at most (\d+) bytes`), typ.Name, f)
					many := map[string]any{}
					for i := range keys + 1 {
						many[fmt.Sprintf("k%d", i)] = "v"
					}
					write(many, fmt.Sprintf("at most %d keys", keys))
					write(map[string]any{strings.Repeat("k", keyLen+1): "v"}, fmt.Sprintf("at most %d bytes", keyLen))
					write(map[string]any{"k": strings.Repeat("v", valueLen+1)}, fmt.Sprintf("at most %d bytes", valueLen))
					return
				}
				if f.Type == credtype.FieldList {
					each := ruleLimit(t, ruleEachRe, typ.Name, f)
					items := ruleLimit(t, ruleItemsRe, typ.Name, f)
					write([]any{strings.Repeat("a", each+1)}, fmt.Sprintf("at most %d bytes", each))
					many := make([]any, items+1)
					for i := range many {
						many[i] = fmt.Sprintf("a%d", i)
					}
					write(many, fmt.Sprintf("at most %d items", items))
					return
				}
				n := ruleLimit(t, ruleBytesRe, typ.Name, f)
				over := strings.Repeat("1", n+1)
				if f.Type == credtype.FieldDuration {
					// One second, spelt in n+1 bytes: the framework parses durations
					// before the handler sees them, so the value must be one it parses.
					over = strings.Repeat("0", n) + "1"
				}
				write(over, fmt.Sprintf("at most %d bytes", n))
			})
		}
	}
}

// TestAccessIntegrationLabelBounded: the integration label is at most 128 printable
// characters; anything else is a 400 naming it, served nothing and logged nothing. The
// fallback from the caller's display name is clamped to the same rule.
func TestAccessIntegrationLabelBounded(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	lcCreateBasic(t, b, s, "lbl", nil)
	ok128 := strings.Repeat("é", 128) // 128 characters, 256 bytes
	mustOK(t, b, s, logical.ReadOperation, "access/lbl", map[string]any{"integration": ok128})
	for name, label := range map[string]string{
		"129 characters": strings.Repeat("a", 129),
		"100 KB":         strings.Repeat("x", 100<<10),
		"line break":     "siem\nINJECTED",
		"control":        "siem\x1b[31m",
		"format char":    "siem\u200bx",
		"invalid UTF-8":  "siem\xff",
	} {
		credWant400(t, b, s, logical.ReadOperation, "access/lbl", map[string]any{"integration": label}, "integration", "at most 128 printable characters")
		_ = name
	}
	long := strings.Repeat("d", 300) + "\n"
	if resp, err := lcDo(b, s, logical.ReadOperation, "access/lbl", "token-"+long, nil); err != nil || resp.IsError() {
		t.Fatalf("access with a long display name: %s", outcome(resp, err))
	}
	var labels []string
	for _, ev := range lcLogs(t, b, s, "lbl", nil) {
		labels = append(labels, ev["integration"].(string))
	}
	for _, l := range labels {
		if utf8.RuneCountInString(l) > 128 || strings.ContainsAny(l, "\n\x1b\u200b") || len(l) > 512 {
			t.Errorf("logged integration label breaks the rule: %q", l)
		}
	}
	if !contains(labels, ok128) || !contains(labels, "token-"+strings.Repeat("d", 122)) {
		t.Errorf("logged labels = %q, want the 128-character one and the clamped display name", labels)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestQueryFiltersBounded: the list and logs filters are bounded with a 400 naming
// the filter.
func TestQueryFiltersBounded(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	lcCreateBasic(t, b, s, "q", nil)
	for _, tc := range []struct {
		op    logical.Operation
		path  string
		field string
		value string
		want  string
	}{
		{logical.ListOperation, "credentials/", "filter", strings.Repeat("f", 129), "at most 128 bytes"},
		{logical.ListOperation, "credentials/", "after", strings.Repeat("f", 129), "at most 128 bytes"},
		{logical.ListOperation, "credentials/", "tag", strings.Repeat("f", 129), "at most 128 bytes"},
		{logical.ReadOperation, "credentials/q/logs", "integration", strings.Repeat("i", 129), "at most 128 printable characters"},
		{logical.ReadOperation, "credentials/q/logs", "integration", "a\nb", "at most 128 printable characters"},
		{logical.ReadOperation, "credentials/q/logs", "event", strings.Repeat("e", 65), "at most 64 bytes"},
		{logical.ReadOperation, "credentials/q/logs", "since", strings.Repeat("1", 65), "at most 64 bytes"},
		{logical.ReadOperation, "credentials/q/logs", "until", strings.Repeat("1", 65), "at most 64 bytes"},
	} {
		credWant400(t, b, s, tc.op, tc.path, map[string]any{tc.field: tc.value}, tc.field, tc.want)
	}
	// At the limit they are accepted.
	mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"filter": strings.Repeat("f", 128), "after": strings.Repeat("f", 128), "tag": strings.Repeat("f", 128)})
	mustOK(t, b, s, logical.ReadOperation, "credentials/q/logs", map[string]any{"integration": strings.Repeat("i", 128), "event": strings.Repeat("e", 64)})
}

// TestWindowMinimumOneDay: a credential's own suspend_after and purge_after are at
// least one day — stated in types/ and enforced with a 400 naming the field, on create
// and on patch — so an update right cannot become a delete right.
func TestWindowMinimumOneDay(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, name := range []string{"suspend_after", "purge_after"} {
		typ, _ := credtype.Lookup("basic")
		f, _ := typ.Field(name)
		if !strings.Contains(f.Rule, "at least one day (86400 seconds)") {
			t.Errorf("%s rule does not state the minimum: %s", name, f.Rule)
		}
		for _, v := range []any{"1s", 60, "23h59m59s", 86399} {
			data := map[string]any{"type": "basic", "username": "u", "password": "p", name: v}
			credWant400(t, b, s, logical.CreateOperation, "credentials/short", data, name, "at least one day")
		}
	}
	if names := storedCredentialNames(t, s); len(names) != 0 {
		t.Fatalf("refused writes stored %v", names)
	}
	lcCreateBasic(t, b, s, "w", map[string]any{"suspend_after": "1d", "purge_after": 2 * 86400})
	stored := func() string { return credStorageSnapshot(t, s)[credentialPrefix+"w"] }
	before := stored()
	credWant400(t, b, s, logical.PatchOperation, "credentials/w", map[string]any{"purge_after": "10s"}, "purge_after", "at least one day")
	credWant400(t, b, s, logical.PatchOperation, "credentials/w", map[string]any{"suspend_after": "10s"}, "suspend_after", "at least one day")
	if stored() != before {
		t.Error("a refused patch changed the stored credential")
	}
}

// TestPasswordReachesProviderVerbatim: a password written with leading and trailing
// spaces ("used exactly as given") reaches the token endpoint as written, through the
// catalog, storage and the oauth package.
func TestPasswordReachesProviderVerbatim(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	const password = "  " + oauthtest.Password + " "
	mustOK(t, b, s, logical.CreateOperation, "credentials/pw", map[string]any{
		"type": "oauth2_password", "token_url": p.tokenURL(), "client_id": oauthtest.ClientID,
		"client_secret": oauthtest.ClientSecret, "username": oauthtest.Username, "password": password, "auth_style": "body",
	})
	_, _ = request(b, s, logical.ReadOperation, "access/pw", nil) // the provider refuses the spaced password
	if got := p.LastRequest(t).Form.Get("password"); got != password {
		t.Fatalf("provider received password %q, want %q", got, password)
	}
}

// TestConversionErrorsDoNotEchoValues: a value the framework cannot convert to its
// field's type (a list or object sent as a password, words as a duration) is a 400
// naming the field, without the value: the framework's own message quotes it, and
// error text reaches the audit log in clear.
func TestConversionErrorsDoNotEchoValues(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, tc := range []struct {
		field string
		value any
	}{
		{"password", []any{"SECRETINALIST7Q"}},
		{"password", map[string]any{"k": "SECRETINAMAP7Q"}},
		{"password", []any{map[string]any{"k": "SECRETDEEP7Q"}}},
		{"suspend_after", "SECRETDURATION7Q"},
		{"suspend_after", "-SECRET7Q"},
		{"tags", map[string]any{"SECRETKEY7Q": "SECRETVAL7Q"}},
	} {
		data := map[string]any{"type": "basic", "username": "u", "password": "p", tc.field: tc.value}
		credWant400(t, b, s, logical.CreateOperation, "credentials/conv", data, tc.field, "wrong type or form")
		resp, _ := credReq(t, b, s, logical.CreateOperation, "credentials/conv", data)
		if msg := resp.Error().Error(); strings.Contains(msg, "SECRET") {
			t.Errorf("%s: error echoes the value: %s", tc.field, msg)
		}
	}
}

// TestLogsNameBounded: a name no credential can have (too long, or with '..', which
// Vault's storage refuses) is a plain 404 on the logs path, never a storage error.
func TestLogsNameBounded(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	cs := &countingStorage{Storage: s}
	for _, name := range []string{strings.Repeat("a", 129), "a..b", "x" + strings.Repeat("y", 1<<16)} {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "credentials/" + name + "/logs", Storage: cs})
		if err != nil || resp != nil {
			t.Errorf("logs of an impossible name: %v %v, want a plain 404", resp, err)
		}
	}
	if n := cs.reads(); n != 0 {
		t.Errorf("logs of impossible names read storage %d times", n)
	}
}

// TestHostileKeyRefusedByWrite: through the write path, a certificate whose key asks
// scrypt for 16 GiB is a 400 on private_key stating the cap, stores nothing and runs no
// KDF. (credtype's tests cover every KDF and cipher case and the benchmark the time.)
func TestHostileKeyRefusedByWrite(t *testing.T) {
	b, s, _ := newTestBackend(t)
	k := encryptedECKey(t, "pw-hostile")
	before := credtype.KDFRuns()
	credWant400(t, b, s, logical.CreateOperation, "credentials/hostile", map[string]any{
		"type": "certificate", "certificate": k.certPEM, "private_key": hostileScryptKey(t), "private_key_password": "pw-hostile",
	}, "private_key", "128·N·r ≤ 128 MiB")
	if n := credtype.KDFRuns() - before; n != 0 {
		t.Errorf("KDF ran %d times", n)
	}
	if names := storedCredentialNames(t, s); len(names) != 0 {
		t.Errorf("refused write stored %v", names)
	}
}

// hostileScryptKey is an ENCRYPTED PRIVATE KEY whose PBES2 parameters ask for scrypt
// with N=2^24, r=8 (16 GiB); the ciphertext is filler.
func hostileScryptKey(t testing.TB) string {
	t.Helper()
	der := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	alg := func(oid asn1.ObjectIdentifier, params any) pkix.AlgorithmIdentifier {
		return pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{FullBytes: der(params)}}
	}
	kdf := alg(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}, struct {
		Salt    []byte
		N, R, P int64
	}{make([]byte, 16), 1 << 24, 8, 1})
	cipher := alg(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, make([]byte, 16))
	pbes2 := alg(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, struct{ KDF, Cipher pkix.AlgorithmIdentifier }{kdf, cipher})
	info := der(struct {
		Alg  pkix.AlgorithmIdentifier
		Data []byte
	}{pbes2, make([]byte, 64)})
	return string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: info}))
}
