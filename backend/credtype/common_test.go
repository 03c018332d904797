package credtype

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCommonSet: absent fields keep their setting, nil and "" clear it, lists come back
// sorted without duplicates, windows parse as seconds or durations, times as UTC.
func TestCommonSet(t *testing.T) {
	t.Parallel()
	c := Common{Description: "keep", Tags: []string{"old"}}
	err := c.Set(map[string]any{
		"tags":          []string{"b", "a", "b"},
		"used_by":       []any{"siem"},
		"suspend_after": "2d",
		"purge_after":   json.Number("259200"),
		"expires_at":    "2027-01-31T01:00:00+01:00",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Common{
		Description: "keep", Tags: []string{"a", "b"}, UsedBy: []string{"siem"},
		SuspendAfter: 48 * time.Hour, PurgeAfter: 72 * time.Hour,
		ExpiresAt: time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC),
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Set = %+v\nwant  %+v", c, want)
	}
	if err := c.Set(map[string]any{"description": nil, "tags": nil, "suspend_after": "", "expires_at": ""}); err != nil {
		t.Fatal(err)
	}
	want = Common{UsedBy: []string{"siem"}, PurgeAfter: 72 * time.Hour}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("clearing Set = %+v\nwant  %+v", c, want)
	}
}

// TestCommonSetRefusals: every failure names its field and a rule, never the value,
// and a refused Set changes nothing.
func TestCommonSetRefusals(t *testing.T) {
	t.Parallel()
	before := Common{Description: "kept", SuspendAfter: 48 * time.Hour}
	c := before
	err := c.Set(map[string]any{
		"description":   "bell\aSECRET",
		"tags":          []string{"a,SECRET"},
		"suspend_after": "10s",
		"purge_after":   "SECRET",
		"expires_at":    "next SECRET",
		"totp_secret":   "JBSWY3DPEHPK3PXP",
	})
	wantFieldError(t, err, "description", "control characters")
	wantFieldError(t, err, "expires_at", "RFC 3339")
	wantFieldError(t, err, "purge_after", `such as "180d"`)
	wantFieldError(t, err, "suspend_after", "at least one day (86400 seconds)")
	wantFieldError(t, err, "tags", "without commas")
	wantFieldError(t, err, "totp_secret", "is not a common field")
	if fes, ok := err.(FieldErrors); !ok || len(fes) != 6 || !slices.IsSortedFunc(fes, func(a, b *FieldError) int { return strings.Compare(a.Field, b.Field) }) {
		t.Errorf("Set = %v, want six FieldErrors sorted by field", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error echoes a value: %s", err)
	}
	if !reflect.DeepEqual(c, before) {
		t.Errorf("a refused Set changed the settings: %+v", c)
	}
}

// TestUsedByFollowsIntegrationRule: a used_by entry names an integration, so it
// follows the rule of the integration label on access/ (docs/API.md, Input rules: at most 128
// printable characters). Before, used_by had a rule of its own: 128 bytes and no
// control characters, which refused a 128-character non-ASCII name the label takes and
// took a format character the label refuses.
func TestUsedByFollowsIntegrationRule(t *testing.T) {
	t.Parallel()
	for _, name := range []string{strings.Repeat("é", MaxIntegration), "backup job", "siem-01"} {
		if !ValidIntegration(name) {
			t.Fatalf("ValidIntegration(%q) = false", name)
		}
		var c Common
		if err := c.Set(map[string]any{"used_by": []string{name}}); err != nil {
			t.Errorf("used_by %q refused: %v", name, err)
		}
	}
	for _, name := range []string{"zero\u200bwidth", "no\u00a0break", strings.Repeat("u", MaxIntegration+1)} {
		if ValidIntegration(name) {
			t.Fatalf("ValidIntegration(%q) = true", name)
		}
		var c Common
		if err := c.Set(map[string]any{"used_by": []string{name}}); err == nil || !strings.Contains(err.Error(), IntegrationRule) {
			t.Errorf("used_by %q: %v, want the integration rule", name, err)
		}
	}
	if f, _ := SchemaField("used_by"); !strings.Contains(f.Rule, IntegrationRule) {
		t.Errorf("used_by rule %q does not show the integration rule", f.Rule)
	}
}

// TestCommonRulesShowRefusals: what types/ shows for each common field names what a
// write is refused for. The description's rule did not say that control characters
// other than tabs and line breaks are refused.
func TestCommonRulesShowRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		field string
		value any
		shown string // in the rule and in the refusal
	}{
		{"description", "bell\a", "control characters"},
		{"description", strings.Repeat("d", maxText+1), "4096 bytes"},
		{"tags", []string{"a\tb"}, "control characters"},
		{"tags", []string{"a,b"}, "commas"},
		{"tags", []string{strings.Repeat("t", maxLabel+1)}, "128 bytes"},
		{"used_by", []string{strings.Repeat("u", MaxIntegration+1)}, "128 printable characters"},
		{"suspend_after", "10s", "at least one day (86400 seconds)"},
		{"purge_after", "0", "at least one day (86400 seconds)"},
		{"suspend_after", strings.Repeat("1", maxShort+1), "64 bytes"},
		{"expires_at", "tomorrow", "RFC 3339"},
		{"expires_at", strings.Repeat("1", maxShort+1), "64 bytes"},
	}
	for _, tc := range cases {
		f, _ := SchemaField(tc.field)
		if !strings.Contains(f.Rule, tc.shown) {
			t.Errorf("%s rule %q does not show %q", tc.field, f.Rule, tc.shown)
		}
		var c Common
		if err := c.Set(map[string]any{tc.field: tc.value}); err == nil || !strings.Contains(err.Error(), tc.shown) {
			t.Errorf("%s: Set = %v, want a refusal stating %q", tc.field, err, tc.shown)
		}
	}
}
