package credtype

import "testing"

func TestOneEditApart(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"password", "passwrd", true},   // deletion
		{"password", "passwordd", true}, // insertion
		{"password", "passward", true},  // substitution
		{"password", "passwrod", true},  // transposition
		{"password", "apssword", true},  // transposition at the start
		{"password", "passwodr", true},  // transposition at the end
		{"password", "password", false},
		{"password", "pasword1", false}, // two edits
		{"password", "pswd", false},
		{"password", "", false},
		{"", "a", true},
		{"token", "tokne", true},
		{"token", "otken", true},
		{"token", "tkoen", true},
		{"token", "toekn", true},
		{"token", "knoet", false},
	} {
		if got := oneEditApart(c.a, c.b); got != c.want {
			t.Errorf("oneEditApart(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := oneEditApart(c.b, c.a); got != c.want {
			t.Errorf("oneEditApart(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestSuggestOnlyOneField(t *testing.T) {
	t.Parallel()
	basic := mustType(t, "basic")
	if s, ok := basic.Suggest("passwrod"); !ok || s != "password" {
		t.Fatalf("passwrod: %q %v", s, ok)
	}
	if s, ok := basic.Suggest("hostname"); ok {
		t.Fatalf("hostname suggested %q", s)
	}
	if s, ok := basic.Suggest("password"); ok {
		t.Fatalf("password itself suggested %q", s)
	}
}
