package credtype

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
)

// shapesType is a type with every field shape and both one-of rules, as later catalog
// entries will declare them: a map, a bool, an "exactly one of" pair and an "at most
// one of" pair. It is built the way buildCatalog builds a type.
func shapesType(t *testing.T) *Type {
	t.Helper()
	str := func(name string) Field {
		return withLimits(Field{Name: name, Type: FieldString, Rule: ruleLine, Description: name})
	}
	typ := &Type{
		Name: "shapes",
		Fields: fields(false,
			withLimits(Field{Name: "labels", Type: FieldStringMap, Rule: "object of labels", Description: "labels"}),
			withLimits(Field{Name: "enabled", Type: FieldBool, Rule: "true or false", Description: "enabled"}),
			str("app_id"), str("client_id"), str("installation_id"), str("owner"),
		),
		oneOf: []*OneOf{oneOf(true, "app_id", "client_id"), oneOf(false, "installation_id", "owner")},
	}
	applyOneOf(typ)
	typ.layOut()
	return typ
}

// TestOneOfRuleAgreesWithValidation: the rule a field of a one-of group states (what
// types/ shows: its OneOf and its Rule text) is the one Validate enforces, for every
// group of the catalog and of shapesType.
func TestOneOfRuleAgreesWithValidation(t *testing.T) {
	t.Parallel()
	types := append(All(), shapesType(t))
	groups := 0
	for _, typ := range types {
		for _, o := range typ.oneOf {
			groups++
			for _, n := range o.Fields {
				f, _ := typ.Field(n)
				if f.OneOf != o || !strings.Contains(f.Rule, o.Rule()) {
					t.Errorf("%s.%s: OneOf %+v, rule %q: want the group's rule %q", typ.Name, n, f.OneOf, f.Rule, o.Rule())
				}
			}
			base := map[string]any{}
			for _, f := range typ.Fields {
				if f.Required {
					base[f.Name] = oneOfSample(t, typ.Name, f.Name)
				}
				if other := f.OneOf; other != nil && other != o && other.Exactly {
					base[other.Fields[0]] = oneOfSample(t, typ.Name, other.Fields[0])
				}
			}
			// Each one alone is accepted.
			for _, n := range o.Fields {
				v := maps.Clone(base)
				v[n] = oneOfSample(t, typ.Name, n)
				if _, err := typ.Validate(v); err != nil {
					t.Errorf("%s: %s alone refused: %v", typ.Name, n, err)
				}
			}
			// Two together are refused, naming the second and the rule.
			v := maps.Clone(base)
			v[o.Fields[0]], v[o.Fields[1]] = oneOfSample(t, typ.Name, o.Fields[0]), oneOfSample(t, typ.Name, o.Fields[1])
			wantRefusal(t, typ, v, o.Fields[1], o.Rule())
			// None: refused naming the first when one is required, accepted otherwise.
			_, err := typ.Validate(base)
			if o.Exactly {
				wantRefusal(t, typ, base, o.Fields[0], o.Rule())
			} else if err != nil {
				t.Errorf("%s: none of %v refused: %v", typ.Name, o.Fields, err)
			}
		}
	}
	if groups < 2 {
		t.Fatalf("%d one-of groups checked: the test is blind", groups)
	}
}

// oneOfSample is a valid value of field in typ: "x" where any line is, else the
// type's own (its goodValues example, or one of oneOfSamples).
func oneOfSample(t *testing.T, typ, field string) any {
	if v, ok := oneOfSamples[typ][field]; ok {
		return v
	}
	if typ != "shapes" {
		if v, ok := goodValues(t, typ)[field]; ok {
			return v
		}
	}
	return "x"
}

// oneOfSamples are values of one-of fields that goodValues leaves unset.
var oneOfSamples = map[string]map[string]any{
	"github_app": {"client_id": "Iv23liExample", "owner": "octo-org"},
}

func wantRefusal(t *testing.T, typ *Type, v map[string]any, field, rule string) {
	t.Helper()
	_, err := typ.Validate(v)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != field || !strings.Contains(fe.Rule, rule) {
		t.Errorf("%s: Validate(%v) = %v, want a refusal of %s stating %q", typ.Name, v, err, field, rule)
	}
}

// TestMapFieldBounds: a map field's stated bounds (keys, key bytes, value bytes) are
// the ones enforced, exactly: at the bound accepted, one over refused with the rule.
func TestMapFieldBounds(t *testing.T) {
	t.Parallel()
	typ := shapesType(t)
	f, _ := typ.Field("labels")
	for _, part := range []string{"at most 32 keys", "each key at most 128 bytes", "each value at most 2048 bytes", mapKeyRule} {
		if !strings.Contains(f.Rule, part) {
			t.Errorf("rule %q lacks %q", f.Rule, part)
		}
	}
	many := func(n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[fmt.Sprintf("k%d", i)] = "v"
		}
		return m
	}
	ok := []any{
		many(32),
		map[string]any{strings.Repeat("k", 128): strings.Repeat("v", 2048)},
		map[string]string{"a.b-c_D9": "value with spaces and ünïcode"},
	}
	for _, m := range ok {
		if _, err := typ.Validate(map[string]any{"app_id": "a", "labels": m}); err != nil {
			t.Errorf("labels %.60v refused: %v", m, err)
		}
	}
	bad := []struct {
		m    any
		rule string
	}{
		{many(33), "at most 32 keys"},
		{map[string]any{strings.Repeat("k", 129): "v"}, "keys of at most 128 bytes"},
		{map[string]any{"k": strings.Repeat("v", 2049)}, "values of at most 2048 bytes"},
		{map[string]any{"bad key": "v"}, mapKeyRule},
		{map[string]any{"k\n": "v"}, mapKeyRule},
		{map[string]any{"": "v"}, mapKeyRule},
		{map[string]any{"k": "line\nbreak"}, "single line"},
		{map[string]any{"k": "\xff"}, "UTF-8"},
		{map[string]any{"k": 5}, "object of strings"},
		{"k=v", "object of strings"},
		{[]string{"k=v"}, "object of strings"},
	}
	for _, tc := range bad {
		wantRefusal(t, typ, map[string]any{"app_id": "a", "labels": tc.m}, "labels", tc.rule)
	}
}

// TestBoolField: a bool field takes true and false (and their strings); anything else
// is refused naming the rule.
func TestBoolField(t *testing.T) {
	t.Parallel()
	typ := shapesType(t)
	for raw, want := range map[any]bool{true: true, false: false, "true": true, "false": false, " 1 ": true, "0": false} {
		v, err := typ.Validate(map[string]any{"app_id": "a", "enabled": raw})
		if err != nil || v.Values["enabled"] != want {
			t.Errorf("enabled=%#v: %v, %v; want %v", raw, v, err, want)
		}
	}
	if v, err := typ.Validate(map[string]any{"app_id": "a", "enabled": ""}); err != nil || v.Values["enabled"] != nil {
		t.Errorf(`enabled="": %v %v, want unset`, v, err)
	}
	for _, raw := range []any{"yes", "2", 1, []string{"true"}} {
		wantRefusal(t, typ, map[string]any{"app_id": "a", "enabled": raw}, "enabled", "must be true or false")
	}
}

// TestValuesCarryMapsAndBools: the compact layout keeps a map (as canonical JSON in
// its slot) and a bool, and gives them back through Get, Map and a JSON round trip as
// storage makes it; Str says "" for them.
func TestValuesCarryMapsAndBools(t *testing.T) {
	t.Parallel()
	typ := shapesType(t)
	v, err := typ.Validate(map[string]any{"app_id": "a", "enabled": false,
		"labels": map[string]any{"b": " 2 ", "a": "1", "empty": ""}})
	if err != nil {
		t.Fatal(err)
	}
	wantMap := map[string]string{"a": "1", "b": "2"}
	if !reflect.DeepEqual(v.Values["labels"], wantMap) {
		t.Fatalf("labels normalized to %#v, want %#v", v.Values["labels"], wantMap)
	}
	vals := typ.Compact(v.Values)
	if slot := vals.strs[typ.slots["labels"]]; slot != `{"a":"1","b":"2"}` {
		t.Errorf("labels slot %q, want canonical JSON", slot)
	}
	if vals.rare != nil {
		t.Errorf("map or bool kept beside the slots: %+v", vals.rare)
	}
	check := func(what string, vals Values) {
		t.Helper()
		if got, ok := vals.Get("labels"); !ok || !reflect.DeepEqual(got, wantMap) {
			t.Errorf("%s: Get(labels) = %#v, %v", what, got, ok)
		}
		if got, ok := vals.Get("enabled"); !ok || got != false {
			t.Errorf("%s: Get(enabled) = %#v, %v", what, got, ok)
		}
		if vals.Str("labels") != "" || vals.Str("enabled") != "" {
			t.Errorf("%s: Str of a map or bool is not empty", what)
		}
		want := map[string]any{"app_id": "a", "enabled": false, "labels": wantMap}
		if m := vals.Map(); !reflect.DeepEqual(m, want) {
			t.Errorf("%s: Map() = %#v, want %#v", what, m, want)
		}
		if _, err := typ.Validate(vals.Map()); err != nil {
			t.Errorf("%s: Map() does not validate again: %v", what, err)
		}
	}
	check("compact", vals)
	b, err := json.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"app_id":"a","enabled":false,"labels":{"a":"1","b":"2"}}` {
		t.Errorf("stored as %s", b)
	}
	var back Values
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	check("decoded", typ.Bind(back))
}

// FuzzAuthorizationParams: authorization_params never panics, refuses with a rule only
// (a fixed sentence, never input), keeps no key the engine owns, and what it accepts is a fixed
// point that survives the compact layout and a JSON round trip.
func FuzzAuthorizationParams(f *testing.F) {
	for _, seed := range [][2]string{{"access_type", "offline"}, {"login_hint", " a@b "}, {"STATE", "x"}, {"k", "v\n"},
		{"résumé", "v"}, {"prompt", "none"}, {"resource", "https://api.example/?a=b,c"}, {"", ""}, {"k", "\xff"}} {
		f.Add(seed[0], seed[1])
	}
	typ := mustType(f, "oauth2_authorization_code")
	field, _ := typ.Field(FieldAuthorizationParams)
	f.Fuzz(func(t *testing.T, k, v string) {
		m, err := field.normalizeMap(map[string]any{k: v, "access_type": "offline"})
		if err != nil {
			var re ruleError
			if !errors.As(err, &re) {
				t.Fatalf("refusal %v is not a rule", err)
			}
			return
		}
		for key := range m {
			if OwnedAuthorizationParam(key) {
				t.Fatalf("accepted an owned key %q", key)
			}
		}
		again, err := field.normalizeMap(m)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("not a fixed point: %q -> %q (%v)", m, again, err)
		}
		vals := typ.Compact(map[string]any{FieldAuthorizationParams: m})
		b, _ := json.Marshal(vals)
		var back Values
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		back = typ.Bind(back)
		if got, _ := back.Get(FieldAuthorizationParams); !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: %q -> %q", m, got)
		}
	})
}
