// The common fields every credential type takes, and their validation: the rules
// types/ shows for them are the ones Common.Set enforces, so the backend parses and
// bounds none of them itself.

package credtype

import (
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	lc "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// Refusals of the lifecycle windows and expires_at that are not size limits.
const (
	ruleDuration = `must be a duration in seconds, or such as "180d" or "4320h"`
	ruleTime     = "must be an RFC 3339 time such as 2027-01-31T00:00:00Z"
	// ruleTimeField is the rule types/ shows for a time field.
	ruleTimeField = "RFC 3339 time, such as 2027-01-31T00:00:00Z"
)

// commonNames are the common fields in the order every type lists them after its own;
// totp_secret, last, only on the password-bearing types. Defining them is a package
// variable's initialization, so it runs before any init() builds the type table.
var commonNames = defineCommon()

func defineCommon() []string {
	fs := []Field{
		{Name: "description", Type: FieldString, Common: true, multiline: true,
			Rule:        "text (line breaks allowed, and tabs; no other control characters), at most 4096 bytes",
			Description: "What the credential is for."},
		{Name: "tags", Type: FieldList, Common: true, item: labelItem, maxLen: maxLabel,
			Rule:        "list of labels without commas or control characters; duplicates dropped; at most 64 items of at most 128 bytes each",
			Description: "Labels to find the credential by."},
		{Name: "used_by", Type: FieldList, Common: true, item: integrationItem, maxLen: utf8.UTFMax * MaxIntegration,
			Rule:        "list of integration names without commas, each " + IntegrationRule + " as on access/; duplicates dropped; at most 64 items",
			Description: "Integrations expected to use the credential."},
		{Name: "suspend_after", Type: FieldDuration, Common: true, maxLen: maxShort,
			Rule:        `duration in seconds (or such as "180d" or "4320h"), ` + lc.MinWindowRule + "; unset uses config suspend_after",
			Description: "Suspend the credential after this long without an access read."},
		{Name: "purge_after", Type: FieldDuration, Common: true, maxLen: maxShort,
			Rule:        `duration in seconds (or such as "365d" or "8760h"), ` + lc.MinWindowRule + ", longer than suspend_after; unset uses config purge_after",
			Description: "Delete the credential after this long without an access read."},
		{Name: "verify_interval", Type: FieldDuration, Common: true, maxLen: maxShort, duration: lc.CheckVerifyInterval,
			Rule:        `duration in seconds (or such as "1d" or "12h"), ` + lc.VerifyIntervalRule + "; unset uses config verify_interval",
			Description: "Re-verify the credential this often (credentials/<name>/verify); never counts as an access."},
		{Name: "expires_at", Type: FieldTime, Common: true, maxLen: maxShort,
			Rule:        ruleTimeField,
			Description: "Time from which the credential is suspended as expired."},
		{Name: fieldTOTPSecret, Type: FieldString, Common: true, Sensitive: true, check: checkTOTPSecret, maxLen: maxTOTPSecret,
			Rule:        "base32 TOTP secret (case-insensitive; spaces and '=' padding ignored), at least 80 bits (16 characters), at most 256 bytes; codes are RFC 6238 SHA1, 6 digits, 30 s",
			Description: "TOTP secret of the account; access then also returns the current totp_code."},
	}
	return defineAll(fs)
}

// defineAll defines each field and returns their names in order.
func defineAll(fs []Field) []string {
	names := make([]string, len(fs))
	for i, f := range fs {
		define(f)
		names[i] = f.Name
	}
	return names
}

// MaxIntegration bounds an integration name, in characters: the caller's label on
// access/, the logs filter, and each used_by entry, which names such a caller.
const MaxIntegration = 128

// IntegrationRule is the rule of an integration name, quoted in its refusals.
const IntegrationRule = "at most 128 printable characters (letters, digits, punctuation, symbols and spaces; no control or format characters)"

// ValidIntegration reports whether s follows IntegrationRule.
func ValidIntegration(s string) bool {
	if len(s) > utf8.UTFMax*MaxIntegration || !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxIntegration {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// ClampIntegration makes s follow IntegrationRule: unprintable runes (and
// invalid UTF-8) become '?', and only the first MaxIntegration characters are kept.
func ClampIntegration(s string) string {
	if ValidIntegration(s) {
		return s
	}
	var out strings.Builder
	n := 0
	for _, r := range s {
		if n == MaxIntegration {
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		out.WriteRune(r)
		n++
	}
	return out.String()
}

// integrationItem is a used_by entry: an integration name, without the commas that
// would split it when sent as a comma-separated list.
func integrationItem(s string) ([]string, error) {
	if !ValidIntegration(s) {
		return nil, ruleError("must have items of " + IntegrationRule)
	}
	return labelItem(s)
}

// lifecycle returns the common fields every type takes, plus totp_secret for the
// password-bearing types, whose accounts may demand a second factor.
func lifecycle(withTOTP bool) []Field {
	names := commonNames
	if !withTOTP {
		names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == fieldTOTPSecret })
	}
	fs := make([]Field, len(names))
	for i, n := range names {
		fs[i] = use(n)
	}
	return fs
}

// fields appends the common fields to a type's own.
func fields(withTOTP bool, own ...Field) []Field {
	return append(own, lifecycle(withTOTP)...)
}

// Common is a credential's common lifecycle settings (every Lifecycle field), as the
// catalog validates them. The rule that spans them and the engine's config —
// purge_after longer than suspend_after, where an unset window is the config's — is
// lifecycle.Policy.Validate's.
type Common struct {
	Description string
	// Tags and UsedBy are sorted, without duplicates.
	Tags   []string
	UsedBy []string
	// SuspendAfter and PurgeAfter are the credential's own windows; zero leaves the
	// engine's config in force.
	SuspendAfter time.Duration
	PurgeAfter   time.Duration
	// VerifyInterval is the credential's own verify_interval; zero leaves the engine's.
	VerifyInterval time.Duration
	// ExpiresAt is in UTC; zero for none.
	ExpiresAt time.Time
}

// Set validates the common fields named in values and sets them on c. A field absent
// from values keeps its setting; nil or an empty value clears it. Values are strings
// and lists as Type.Validate takes them; durations may also be numbers of seconds, as
// the framework decodes them. On any failure c is left unchanged and the error is
// FieldErrors, sorted by field, each naming the field and the rule types/ shows.
func (c *Common) Set(values map[string]any) error {
	next := *c
	targets := map[string]any{
		"description":     &next.Description,
		"tags":            &next.Tags,
		"used_by":         &next.UsedBy,
		"suspend_after":   &next.SuspendAfter,
		"purge_after":     &next.PurgeAfter,
		"verify_interval": &next.VerifyInterval,
		"expires_at":      &next.ExpiresAt,
	}
	var errs FieldErrors
	for name, raw := range values {
		f, ok := schemaFields[name]
		if !ok || !f.Lifecycle() {
			errs = append(errs, &FieldError{Field: name, Rule: "is not a common field"})
			continue
		}
		v, _, err := f.normalize(raw)
		if err != nil {
			errs = append(errs, fieldError(name, err))
			continue
		}
		switch dst := targets[name].(type) {
		case *string:
			*dst, _ = v.(string)
		case *[]string:
			*dst, _ = v.([]string)
			slices.Sort(*dst)
		case *time.Duration:
			*dst, _ = v.(time.Duration)
		case *time.Time:
			*dst, _ = v.(time.Time)
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b *FieldError) int { return strings.Compare(a.Field, b.Field) })
		return errs
	}
	*c = next
	return nil
}

// normalizeDuration parses a lifecycle window: "" is unset (zero), anything else must
// parse and meet lifecycle's minimum.
func (f Field) normalizeDuration(raw any) (time.Duration, error) {
	if s, ok := raw.(string); ok {
		if len(s) > f.maxLen {
			return 0, rulef("must be at most %d bytes", f.maxLen)
		}
		if s == "" {
			return 0, nil
		}
	}
	d, err := parseutil.ParseDurationSecond(raw)
	if err != nil {
		return 0, ruleError(ruleDuration)
	}
	check := lc.CheckWindow // a lifecycle window, unless the field says otherwise
	if f.duration != nil {
		check = f.duration
	}
	if err := check(d); err != nil {
		return 0, ruleError(err.Error()) // lifecycle's rule sentence, without the input
	}
	return d, nil
}

// normalizeTime parses an RFC 3339 time, as given (not trimmed); "" is unset.
func (f Field) normalizeTime(raw any) (time.Time, error) {
	s, ok := raw.(string)
	if !ok {
		return time.Time{}, ruleError(ruleTime)
	}
	if len(s) > f.maxLen {
		return time.Time{}, rulef("must be at most %d bytes", f.maxLen)
	}
	if s == "" {
		return time.Time{}, nil
	}
	return parseTime(s)
}

// parseTime is the rule of every time value: RFC 3339, kept in UTC.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, ruleError(ruleTime)
	}
	return t.UTC(), nil
}
