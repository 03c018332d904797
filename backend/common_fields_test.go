package backend

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// typeRule is the rule types/<typ> shows for field.
func typeRule(t *testing.T, b logical.Backend, s logical.Storage, typ, field string) string {
	t.Helper()
	if f, ok := typeFields(t, b, s, typ)[field]; ok {
		return f["rule"].(string)
	}
	t.Fatalf("types/%s shows no field %s", typ, field)
	return ""
}

// TestUsedByTakesIntegrationLabels: used_by names the integrations that call access/,
// so an entry follows the rule of the integration label there (docs/API.md, Input rules: at most 128
// printable characters). used_by had a copy of its own — 128 bytes, no control
// characters — which refused a label access/ takes and took one access/ refuses.
func TestUsedByTakesIntegrationLabels(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	label := strings.Repeat("é", 128) // 128 printable characters, 256 bytes
	mustOK(t, b, s, logical.CreateOperation, "credentials/labels", map[string]any{
		"type": "basic", "username": "u", "password": "p", "used_by": []any{label},
	})
	mustOK(t, b, s, logical.ReadOperation, "access/labels", map[string]any{"integration": label})
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/labels", nil).Data["used_by"]; !reflect.DeepEqual(got, []string{label}) {
		t.Fatalf("used_by = %v", got)
	}
	for _, refused := range []string{"zero\u200bwidth", "no\u00a0break"} {
		credWant400(t, b, s, logical.ReadOperation, "access/labels", map[string]any{"integration": refused}, "integration", "128 printable characters")
		credWant400(t, b, s, logical.PatchOperation, "credentials/labels", map[string]any{"used_by": []any{refused}}, "used_by", "128 printable characters")
	}
	if rule := typeRule(t, b, s, "basic", "used_by"); !strings.Contains(rule, "128 printable characters") {
		t.Errorf("types/ shows used_by as %q, not the integration rule", rule)
	}
}

// TestDescriptionRuleShowsControlCharacters: types/ shows the description refusing
// control characters other than tabs and line breaks, as a write does; the rule said
// only "line breaks allowed".
func TestDescriptionRuleShowsControlCharacters(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	rule := typeRule(t, b, s, "webhook", "description")
	if !strings.Contains(rule, "control characters") {
		t.Errorf("types/ shows description as %q, without the control-character rule", rule)
	}
	data := credWithType("webhook", exampleValues(t, "webhook", "DESCRULE"))
	data["description"] = "bell\a"
	credWant400(t, b, s, logical.CreateOperation, "credentials/desc", data, "description", "control characters")
}
