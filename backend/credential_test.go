package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// catalogType is the catalog's type called name.
func catalogType(t testing.TB, name string) *credtype.Type {
	t.Helper()
	typ, ok := credtype.Lookup(name)
	if !ok {
		t.Fatalf("no credential type %q", name)
	}
	return typ
}

// setValue sets one value of c, a clone the test owns, as a writer does: in a new
// compact Values.
func setValue(c *credential, name string, v any) {
	m := c.Values.Map()
	m[name] = v
	c.Values = c.typeDef().Compact(m)
}

// goldenEntries reads a golden file of stored credentials: entry by name.
// typesAfterGolden are the types added after the golden files were written: no
// stored entry of theirs predates the current record version.
var typesAfterGolden = []string{"oauth2_jwt_bearer", "google_service_account", "salesforce_jwt"}

func goldenEntries(t *testing.T, file string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]string
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) < len(credtype.All())-len(typesAfterGolden) {
		t.Fatalf("%s: %d stored entries, want one per type at least", file, len(stored))
	}
	return stored
}

// TestStoredCredentialsReadBackUnchanged: entries written by the engine before the
// compact cached form and before record versions (testdata/credentials-62069f0.json,
// one of every type, written through the API at commit 62069f0) decode into the
// compact form, the compact form answers as the stored map does, and they encode
// back as the current version writes them: testdata/credentials-v1.json, the same
// entries with their record version, their settings' version (1) and a certificate's
// expiry in its lifecycle state (upgradeCredential; TestCredentialRecordVersions
// checks that this is all that differs). Those decode to the same credentials and
// encode back to the same bytes.
func TestStoredCredentialsReadBackUnchanged(t *testing.T) {
	current := goldenEntries(t, "testdata/credentials-v1.json")
	for name, entry := range goldenEntries(t, "testdata/credentials-62069f0.json") {
		c := decodeStored(t, name, entry)
		if c.Values.Type() == nil || c.Values.Type().Name != c.Type {
			t.Fatalf("%s: values not bound to type %s", name, c.Type)
		}
		var plain struct {
			Values map[string]any `json:"values"`
		}
		if err := json.Unmarshal([]byte(entry), &plain); err != nil {
			t.Fatal(err)
		}
		for k, want := range plain.Values {
			got, ok := c.Values.Get(k)
			if !ok || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: value %s = %v, %v; stored %v", name, k, got, ok, want)
			}
		}
		if !reflect.DeepEqual(normalizeLists(c.Values.Map()), plain.Values) {
			t.Fatalf("%s: Map() = %v, stored %v", name, c.Values.Map(), plain.Values)
		}
		reencoded(t, name, c, current[name])
		if now := decodeStored(t, name, current[name]); !reflect.DeepEqual(now, c) {
			t.Fatalf("%s: the current version's entry decodes to\n%+v\nthe older one's to\n%+v", name, now, c)
		}
		reencoded(t, name, decodeStored(t, name, current[name]), current[name])
	}
}

// TestOddStoredValuesReadBackUnchanged: values no write of the engine produces (an
// empty string, a key the type lacks, a number, an empty list, no values at all) are
// kept as they were stored (entries of the current record version, which an upgrade
// leaves as they are).
func TestOddStoredValuesReadBackUnchanged(t *testing.T) {
	for name, entry := range map[string]string{
		"odd":   `{"name":"odd","type":"basic","values":{"extra":{"a":1},"n":12345678901234567890,"password":"","scopes":[],"username":"u"},"created_at":"2026-01-01T12:00:00Z","updated_at":"2026-01-01T12:00:00Z","version":1,"state":{"status":"active","created_at":"2026-01-01T12:00:00Z","activity_at":"2026-01-01T12:00:00Z"},"record_version":1}` + "\n",
		"empty": `{"name":"empty","type":"basic","values":{},"created_at":"2026-01-01T12:00:00Z","updated_at":"2026-01-01T12:00:00Z","version":1,"state":{"status":"active","created_at":"2026-01-01T12:00:00Z","activity_at":"2026-01-01T12:00:00Z"},"record_version":1}` + "\n",
		"null":  `{"name":"null","type":"basic","values":null,"created_at":"2026-01-01T12:00:00Z","updated_at":"2026-01-01T12:00:00Z","version":1,"state":{"status":"active","created_at":"2026-01-01T12:00:00Z","activity_at":"2026-01-01T12:00:00Z"},"record_version":1}` + "\n",
		"gone":  `{"name":"gone","type":"no_such_type","values":{"username":"u"},"created_at":"2026-01-01T12:00:00Z","updated_at":"2026-01-01T12:00:00Z","version":1,"state":{"status":"active","created_at":"2026-01-01T12:00:00Z","activity_at":"2026-01-01T12:00:00Z"},"record_version":1}` + "\n",
	} {
		c := decodeStored(t, name, entry)
		reencoded(t, name, c, entry)
		if name == "odd" {
			if v, set := c.Values.Get("password"); !set || v != "" {
				t.Fatalf("odd: an empty stored password reads %v, %v", v, set)
			}
			if c.Values.Str("username") != "u" {
				t.Fatalf("odd: username %q", c.Values.Str("username"))
			}
		}
	}
}

// decodeStored decodes entry as the store does on a cache miss.
func decodeStored(t *testing.T, name, entry string) *credential {
	t.Helper()
	s := &logical.InmemStorage{}
	if err := s.Put(context.Background(), &logical.StorageEntry{Key: credentialPrefix + name, Value: []byte(entry)}); err != nil {
		t.Fatal(err)
	}
	c, err := newCredentialStore(names.NewTable()).get(context.Background(), s, name)
	if err != nil || c == nil {
		t.Fatalf("%s: %v, %v", name, c, err)
	}
	return c
}

// reencoded checks that c encodes, as put stores it, to entry.
func reencoded(t *testing.T, name string, c *credential, entry string) {
	t.Helper()
	e, err := logical.StorageEntryJSON(credentialPrefix+name, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value) != entry {
		t.Fatalf("%s encodes back differently:\n got %s\nwant %s", name, e.Value, entry)
	}
}

// normalizeLists turns []string into []any, as JSON decodes them.
func normalizeLists(m map[string]any) map[string]any {
	for k, v := range m {
		if l, ok := v.([]string); ok {
			a := make([]any, len(l))
			for i, s := range l {
				a[i] = s
			}
			m[k] = a
		}
	}
	return m
}
