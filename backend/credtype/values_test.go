package credtype

import (
	"reflect"
	"testing"
)

// TestCompactValues: Compact keeps what Validate returns in slots, without a map, and
// answers Str, Get and Map as the map it was built from does.
func TestCompactValues(t *testing.T) {
	typ := mustType(t, "m365")
	in := map[string]any{"tenant": "t1", "client_id": "id", "client_secret": "s", "scopes": []string{"a", "b"}}
	v := typ.Compact(in)
	if v.Type() != typ || len(v.strs) != len(typ.slots) {
		t.Fatalf("layout: type %v, %d slots for %d value fields", v.Type(), len(v.strs), len(typ.slots))
	}
	if v.rare == nil || len(v.rare.extra) != 0 || len(v.rare.lists) != 1 {
		t.Fatalf("only the list is kept beside the slots: %+v", v.rare)
	}
	for k, want := range in {
		got, ok := v.Get(k)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("Get(%s) = %v, %v; want %v", k, got, ok, want)
		}
	}
	if v.Str("scopes") != "" || v.Str("tenant") != "t1" || v.Str("nosuch") != "" {
		t.Fatal("Str answers strings only")
	}
	if _, ok := v.Get("auth_style"); ok {
		t.Fatal("an unset field reads as set")
	}
	if m := v.Map(); !reflect.DeepEqual(m, in) {
		t.Fatalf("Map() = %v, want %v", m, in)
	}
	// Map copies lists: changing the copy leaves the compact form alone.
	v.Map()["scopes"].([]string)[0] = "changed"
	if l, _ := v.Get("scopes"); l.([]string)[0] != "a" {
		t.Fatal("Map shares a list with the compact form")
	}
	basic := mustType(t, "basic").Compact(map[string]any{"username": "u", "password": "p"})
	if basic.rare != nil {
		t.Fatalf("a credential of strings keeps something beside its slots: %+v", basic.rare)
	}
	if (&Values{}).Str("username") != "" || (&Values{}).Map() != nil {
		t.Fatal("zero Values holds something")
	}
}
