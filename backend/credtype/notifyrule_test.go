package credtype

import (
	"strings"
	"testing"
)

// TestNotifyRuleNamesEveryTarget: the rule quoted by notify_credential names every type
// that has a notification target, and no other.
func TestNotifyRuleNamesEveryTarget(t *testing.T) {
	rule := NotifyRule()
	for _, typ := range All() {
		_, can := typ.NotifyTarget(FieldMap{"url": "https://example.com/x", "token": "xoxb-1"})
		named := strings.Contains(rule, "a "+typ.Name+" credential")
		if can != named {
			t.Errorf("type %s: receives notifications = %v, named in %q = %v", typ.Name, can, rule, named)
		}
	}
	if want := "a bearer credential with a url, a slack credential or a webhook credential"; rule != want {
		t.Errorf("NotifyRule() = %q, want %q", rule, want)
	}
}
