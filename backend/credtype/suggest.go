package credtype

// Suggest is the one field of t whose name is one edit away from name (a letter
// added, dropped or changed, or two neighbours swapped): "passwrod" → password. It
// reports false when no field is, or more than one is, so a suggestion is never a
// guess between fields.
func (t *Type) Suggest(name string) (string, bool) {
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = f.Name
	}
	return NearName(name, names)
}

// NearName is the one of names one edit away from name, as Suggest; false when none
// is or more than one is.
func NearName(name string, names []string) (string, bool) {
	found := ""
	for _, n := range names {
		if n == name || n == found || !oneEditApart(n, name) {
			continue
		}
		if found != "" {
			return "", false
		}
		found = n
	}
	return found, found != ""
}

// oneEditApart reports whether a and b differ by exactly one insertion, deletion,
// substitution, or transposition of two adjacent bytes.
func oneEditApart(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	switch len(a) - len(b) {
	case 0:
		i := 0
		for i < len(a) && a[i] == b[i] {
			i++
		}
		if i == len(a) {
			return false // equal
		}
		if a[i+1:] == b[i+1:] {
			return true // one substitution
		}
		return i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
	case 1:
		i := 0
		for i < len(b) && a[i] == b[i] {
			i++
		}
		return a[i+1:] == b[i:]
	}
	return false
}
