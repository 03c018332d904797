// Field shapes beyond strings and lists: maps of strings and booleans, and the one-of
// rule that spans fields. Like every rule of the catalog, each is stated in the
// field's Rule (what types/ shows) by the code that enforces it.

package credtype

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds of a map field: how many keys, and how long a key and a value may be.
const (
	maxMapKeys     = 32
	maxMapKeyLen   = 128
	maxMapValueLen = 2048
)

// mapKeyRule is what every map key must be: a parameter or header name, never text a
// provider or a log could mistake for something else.
const mapKeyRule = "keys of letters, digits, '_', '-' and '.'"

// mapLimits is the size part of a map field's rule, as normalizeMap enforces it.
func (f Field) mapLimits() string {
	return fmt.Sprintf("at most %d keys; each key at most %d bytes, each value at most %d bytes", f.maxItems, f.maxKeyLen, f.maxLen)
}

// normalizeMap checks a map value: the shapes a request or storage hands over
// (map[string]string, or map[string]any of strings as JSON decodes it), at most
// maxItems keys, each key of mapKeyRule and at most maxKeyLen bytes, each value a
// single line of valid UTF-8 without control characters and at most maxLen bytes.
// Values are trimmed; a key whose value is empty is dropped.
func (f Field) normalizeMap(raw any) (map[string]string, error) {
	var in map[string]string
	if n := mapLen(raw); n > f.maxItems {
		// Before anything is copied: a request may carry any number of keys.
		return nil, rulef("must have at most %d keys", f.maxItems)
	}
	switch m := raw.(type) {
	case map[string]string:
		in = m
	case map[string]any:
		in = make(map[string]string, len(m))
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return nil, ruleError("must be an object of strings")
			}
			in[k] = s
		}
	default:
		return nil, ruleError("must be an object of strings (key=value pairs)")
	}
	if len(in) > f.maxItems {
		return nil, rulef("must have at most %d keys", f.maxItems)
	}
	out := make(map[string]string, len(in))
	// Sorted, so which refusal a map with several bad entries gets does not vary.
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v := in[k]
		if len(k) > f.maxKeyLen {
			return nil, rulef("must have keys of at most %d bytes", f.maxKeyLen)
		}
		if k == "" || strings.ContainsFunc(k, func(r rune) bool {
			return !(r < utf8.RuneSelf && (isAlnum(byte(r)) || r == '_' || r == '-' || r == '.')) //nolint:gosec,staticcheck // G115: byte(r) only runs for r < utf8.RuneSelf, an ASCII rune that fits; QF1001: reads as the set of allowed runes
		}) {
			return nil, ruleError("must have " + mapKeyRule)
		}
		if f.mapKey != nil {
			var err error
			if k, err = f.mapKey(k); err != nil {
				return nil, err
			}
		}
		if len(v) > f.maxLen {
			return nil, rulef("must have values of at most %d bytes", f.maxLen)
		}
		if !utf8.ValidString(v) {
			return nil, ruleError("must have values of valid UTF-8")
		}
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if err := checkControl(v, false); err != nil {
			return nil, ruleError("must have values on a single line without control characters")
		}
		out[k] = v
	}
	return out, nil
}

// normalizeBool accepts a bool, or a string strconv.ParseBool takes (as a form or the
// CLI sends it); "" is unset.
func normalizeBool(raw any) (v bool, set bool, err error) {
	switch b := raw.(type) {
	case bool:
		return b, true, nil
	case string:
		if strings.TrimSpace(b) == "" {
			return false, false, nil
		}
		v, err := strconv.ParseBool(strings.TrimSpace(b))
		if err != nil {
			return false, false, ruleError("must be true or false")
		}
		return v, true, nil
	}
	return false, false, ruleError("must be true or false")
}

// canonicalMap is a map value as its slot in Values keeps it: JSON with sorted keys.
func canonicalMap(m map[string]string) string {
	b, _ := json.Marshal(m) // a map of strings always encodes
	return string(b)
}

// OneOf is a rule over a group of fields: at most one of them may be set, and with
// Exactly, one must be.
type OneOf struct {
	// Fields are the group, in the order the rule names them.
	Fields []string
	// Exactly makes one of them required.
	Exactly bool
}

// Rule is the rule as types/ shows it on each field of the group and a refusal
// states it.
func (o *OneOf) Rule() string {
	q := make([]string, len(o.Fields))
	copy(q, o.Fields)
	list := strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
	if o.Exactly {
		return "exactly one of " + list + " must be set"
	}
	return "at most one of " + list + " may be set"
}

// check refuses normalized values that break the rule: the second field set is named
// when several are, the first field of the group when none is and one must be.
func (o *OneOf) check(values map[string]any) *FieldError {
	var set []string
	for _, n := range o.Fields {
		if _, ok := values[n]; ok {
			set = append(set, n)
		}
	}
	switch {
	case len(set) > 1:
		return &FieldError{Field: set[1], Rule: fmt.Sprintf("must not be set together with %s: %s", set[0], o.Rule())}
	case len(set) == 0 && o.Exactly:
		return &FieldError{Field: o.Fields[0], Rule: "is required: " + o.Rule()}
	}
	return nil
}

// oneOf declares a one-of rule on a type; the catalog builder applies it (applyOneOf).
func oneOf(exactly bool, fields ...string) *OneOf {
	return &OneOf{Fields: fields, Exactly: exactly}
}

// applyOneOf gives each field of each of t's one-of groups the rule, in its OneOf and
// its Rule text, and refuses a group naming a field t lacks, one of fewer than two
// fields, a field in two groups, or a required field (the rule decides that).
func applyOneOf(t *Type) {
	for _, o := range t.oneOf {
		if len(o.Fields) < 2 {
			panic(fmt.Sprintf("credtype: type %s: a one-of rule needs at least two fields", t.Name))
		}
		for _, n := range o.Fields {
			i := slices.IndexFunc(t.Fields, func(f Field) bool { return f.Name == n })
			if i < 0 {
				panic(fmt.Sprintf("credtype: type %s: one-of rule names %s, which it lacks", t.Name, n))
			}
			f := &t.Fields[i]
			if f.OneOf != nil || f.Required || f.RequiredWhen != nil || f.Default != nil || f.Lifecycle() || f.TokenState {
				panic(fmt.Sprintf("credtype: type %s: field %s cannot take a one-of rule (in another, required, defaulted or not a value)", t.Name, n))
			}
			f.OneOf = o
			f.Rule = o.Rule() + "; " + f.Rule
		}
	}
}

// mapLen is the number of keys of a map value of the shapes normalizeMap takes, -1
// for any other.
func mapLen(raw any) int {
	switch m := raw.(type) {
	case map[string]string:
		return len(m)
	case map[string]any:
		return len(m)
	}
	return -1
}
