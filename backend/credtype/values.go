package credtype

import (
	"bytes"
	"encoding/json"
	"maps"
	"strconv"
)

// Fields reads a credential's stored values by field name: the compact Values a
// backend keeps, or a FieldMap as Validate takes and returns them. Str is "" for an
// unset field and for one that is not a string.
type Fields interface {
	Str(name string) string
}

// FieldMap is values keyed by field name (string or []string), as Validate returns them.
type FieldMap map[string]any

// Str returns m[name] if it is a string, "" otherwise.
func (m FieldMap) Str(name string) string { return str(m, name) }

// StringMap returns a map field's value v as Validate or Get give it
// (map[string]string) or as JSON decodes it (map[string]any of strings); nil when v
// is unset or of another shape. The map returned may be shared: do not modify it.
func StringMap(v any) map[string]string {
	switch m := v.(type) {
	case map[string]string:
		return m
	case map[string]any:
		out := make(map[string]string, len(m))
		for k, e := range m {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out[k] = s
		}
		return out
	}
	return nil
}

// Values is a credential's stored values in a compact form for a long-lived cache: one
// string slot per value field of its type (the fields Validate keeps, in the type's
// field order), without a per-credential map, boxed values or key strings. A map
// value is kept in its slot as canonical JSON (sorted keys), a bool as "true" or
// "false"; Get and Map give them back as map[string]string and bool. List values
// and anything the layout cannot hold (a key the type lacks, an empty string, a value
// of another shape, as an entry stored by other code could have) are kept beside it,
// so that an entry decodes and encodes back exactly as it was stored. Values is
// immutable once built: writers build a new one.
type Values struct {
	t    *Type
	strs []string // by slot; "" when unset or when the field is a list
	rare *rareValues
}

type rareValues struct {
	lists []slotList     // non-empty list values (a credential has one or two)
	extra map[string]any // entries the layout cannot hold
}

type slotList struct {
	name  string // the catalog's field name
	items []string
}

// layOut gives t's value fields (its non-lifecycle fields, in order) their slots.
func (t *Type) layOut() {
	t.slots = map[string]int{}
	for _, f := range t.Fields {
		if !f.Lifecycle() && !f.TokenState {
			t.slots[f.Name] = len(t.slotNames)
			t.slotNames = append(t.slotNames, f.Name)
			t.slotTypes = append(t.slotTypes, f.Type)
		}
	}
}

// Compact returns values (as Validate returns them, or as JSON decoded them: lists as
// []any of strings) in t's compact form. The strings are shared, not copied.
func (t *Type) Compact(values map[string]any) Values {
	v := Values{t: t}
	if len(values) == 0 {
		if values != nil {
			v.rare = &rareValues{extra: map[string]any{}} // an empty map, kept as one
		}
		return v
	}
	v.strs = make([]string, len(t.slots))
	for k, x := range values {
		slot, known := t.slots[k]
		kind := FieldType("")
		if known {
			kind = t.slotTypes[slot]
		}
		if s, ok := encodeSlot(kind, x); ok {
			v.strs[slot] = s
			continue
		}
		switch x := x.(type) {
		case string:
			if known && x != "" && kind != FieldStringMap && kind != FieldBool {
				v.strs[slot] = x
				continue
			}
		case []string, []any:
			if l, ok := stringList(x); ok && known && len(l) > 0 {
				v.setList(t.slotNames[slot], l)
				continue
			}
		}
		if v.rare == nil {
			v.rare = &rareValues{}
		}
		if v.rare.extra == nil {
			v.rare.extra = map[string]any{}
		}
		v.rare.extra[k] = x
	}
	return v
}

// encodeSlot is the slot form of a map or bool value of a field of that kind: ok is
// false for any other kind or shape (an empty map, a map holding a non-string), which
// Compact keeps beside the slots as it was.
func encodeSlot(kind FieldType, x any) (string, bool) {
	switch kind {
	case FieldStringMap:
		var m map[string]string
		switch x := x.(type) {
		case map[string]string:
			m = x
		case map[string]any:
			m = make(map[string]string, len(x))
			for k, e := range x {
				s, ok := e.(string)
				if !ok {
					return "", false
				}
				m[k] = s
			}
		}
		if len(m) == 0 {
			return "", false
		}
		return canonicalMap(m), true
	case FieldBool:
		if b, ok := x.(bool); ok {
			return strconv.FormatBool(b), true
		}
	}
	return "", false
}

// decodeSlot is the value a slot of a field of kind holds.
func decodeSlot(kind FieldType, s string) any {
	switch kind {
	case FieldStringMap:
		var m map[string]string
		_ = json.Unmarshal([]byte(s), &m) // encodeSlot wrote it
		return m
	case FieldBool:
		return s == "true"
	}
	return s
}

func (v *Values) setList(name string, l []string) {
	if v.rare == nil {
		v.rare = &rareValues{}
	}
	v.rare.lists = append(v.rare.lists, slotList{name: name, items: l})
}

// Type is the type whose layout v follows; nil for a Values decoded but not yet bound
// (see Bind).
func (v *Values) Type() *Type { return v.t }

// Str returns the string value of the field called name, "" when unset and for a
// map or bool field.
func (v *Values) Str(name string) string {
	if v.t == nil {
		return ""
	}
	if slot, ok := v.t.slots[name]; ok && slot < len(v.strs) {
		if s := v.strs[slot]; s != "" && v.t.slotTypes[slot] == FieldString {
			return s
		}
	}
	if v.rare != nil {
		s, _ := v.rare.extra[name].(string)
		return s
	}
	return ""
}

// Get returns the value of the field called name (a string or a []string, shared:
// do not modify it; a map[string]string or a bool, decoded from its slot) and whether
// it is set, as a lookup in the map it was built from.
func (v *Values) Get(name string) (any, bool) {
	if v.t != nil {
		if slot, ok := v.t.slots[name]; ok && slot < len(v.strs) && v.strs[slot] != "" {
			return decodeSlot(v.t.slotTypes[slot], v.strs[slot]), true
		}
	}
	if v.rare == nil {
		return nil, false
	}
	for _, l := range v.rare.lists {
		if l.name == name {
			return l.items, true
		}
	}
	x, ok := v.rare.extra[name]
	return x, ok
}

// Map returns the values as a new map keyed by field name (nil when v holds none and
// was built from none), for callers that merge or validate them. Lists are copied.
func (v *Values) Map() map[string]any {
	if v.strs == nil && v.rare == nil {
		return nil
	}
	m := make(map[string]any, len(v.strs))
	for slot, s := range v.strs {
		if s != "" {
			m[v.t.slotNames[slot]] = decodeSlot(v.t.slotTypes[slot], s)
		}
	}
	if v.rare != nil {
		for _, l := range v.rare.lists {
			m[l.name] = append([]string(nil), l.items...)
		}
		maps.Copy(m, v.rare.extra)
	}
	return m
}

// MarshalJSON encodes v exactly as encoding/json encodes the map it was built from.
func (v Values) MarshalJSON() ([]byte, error) { return json.Marshal(v.Map()) }

// UnmarshalJSON decodes a stored values object (numbers kept as json.Number, as the
// storage decoder keeps them). The result is unbound: Bind gives it its type's layout.
func (v *Values) UnmarshalJSON(b []byte) error {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return err
	}
	*v = Values{}
	if m != nil {
		v.rare = &rareValues{extra: m}
	}
	return nil
}

// Bind returns decoded values in t's compact form; values already bound to t are
// returned as they are.
func (t *Type) Bind(v Values) Values {
	if v.t == t {
		return v
	}
	if v.t == nil && v.strs == nil {
		if v.rare == nil {
			return Values{t: t}
		}
		return t.Compact(v.rare.extra)
	}
	return t.Compact(v.Map())
}
