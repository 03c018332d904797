package credtype

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// FieldError is one validation failure: the field and the rule its value broke. It
// never carries a secret value (the one value shown is a PEM field's file name, see
// fileNameLike), so it is safe to return for secrets.
type FieldError struct {
	// Field is the API name of the offending field.
	Field string
	// Rule is what the value must be, phrased to follow the field name, e.g.
	// "must be an https URL with a host (http only for loopback hosts)".
	Rule string
}

// Error reads like `field "token_url": must be an https URL with a host`.
func (e *FieldError) Error() string {
	return fmt.Sprintf("field %q: %s", e.Field, e.Rule)
}

// FieldErrors is every failure one Validate call found, sorted by field. errors.As
// finds the individual *FieldError values through Unwrap.
type FieldErrors []*FieldError

// Error joins the failures with "; ".
func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes each *FieldError to errors.Is and errors.As.
func (es FieldErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// ruleError is what the field checks return: a rule sentence, never input. Validate
// pairs it with the field name.
type ruleError string

func (e ruleError) Error() string { return string(e) }

func rulef(format string, args ...any) error { return ruleError(fmt.Sprintf(format, args...)) }

// Validated is a credential's type-specific values after validation.
type Validated struct {
	// Values are the normalized values (trimmed, canonical forms, defaults applied),
	// keyed by field name: string for string fields, []string for lists,
	// map[string]string for maps, bool for bools. Unset fields are absent.
	Values map[string]any
	// Derived are non-secret facts read from the values, such as a certificate's
	// "not_after" (time.Time), "subject", "issuer", "serial" and "key_algorithm", or an
	// SSH key's "key_algorithm", "public_key" and "public_key_fingerprint".
	Derived map[string]any
	// NotAfter is the certificate's expiry; zero for other types.
	NotAfter time.Time
	// RefreshToken is an imported refresh token (the TokenState field), normalized;
	// it is not in Values. "" when none was sent.
	RefreshToken string
	// ClientCertNotAfter is the expiry of an OAuth type's client_certificate (its
	// leaf); zero without one.
	ClientCertNotAfter time.Time
	// Secrets is secret material derived from the values when they are validated, so
	// that reading the credential never derives it again: for a certificate whose
	// private_key is encrypted, "private_key" holds the decrypted key as PKCS#8 PEM
	// (the KDF runs here, once per write). It is as secret as the values: store it with
	// them, pass it to Access, and never show it in a management read. Nil when there
	// is nothing to derive.
	Secrets map[string]string

	// now is the clock of ValidateAt; zero for Validate.
	now time.Time
	// ctx bounds the wait of a key derivation for its turn (ValidateContext).
	ctx context.Context
	// err is a failure that is no field's: a derivation the key-work gate refused.
	err error
	// prev is the credential being changed (ValidateContext), nil for a create.
	prev *Previous
}

// Validate checks the complete set of type-specific values of a credential — the
// backend merges stored and new values first — and returns them normalized.
//
// values holds the type's own fields and totp_secret: a string for string fields, a
// []string (or []any of strings, as decoded from JSON) for lists, a map[string]string
// (or map[string]any of strings) for maps, a bool (or "true"/"false") for bools. An
// empty string, empty list, empty map or nil counts as unset. A one-of rule is checked
// on the values once each is valid on its own. The lifecycle fields (description, tags, used_by,
// suspend_after, purge_after, expires_at) are Common.Set's: Validate neither checks
// them nor copies them into Values. Any other name that is not a field of t is
// refused unless its value is empty, so a caller may pass the zero values of a
// schema that declares every type's fields.
//
// Every failure is a *FieldError, returned together as FieldErrors. Checks that span
// fields (a key matching its certificate, a passphrase decrypting its key) run once
// every field is valid on its own. Validate does not look at the clock: an expired
// certificate is accepted, and its NotAfter lets the backend warn about it.
// ValidateAt adds the rules that need the time.
func (t *Type) Validate(values map[string]any) (*Validated, error) {
	return t.ValidateAt(values, time.Time{})
}

// ValidateAt is Validate with the rules that need the time at now: an OAuth type's
// client_certificate must not be expired (a certificate credential's may be: its
// not_after is what the engine warns about).
func (t *Type) ValidateAt(values map[string]any, now time.Time) (*Validated, error) {
	return t.ValidateContext(context.Background(), values, now, nil)
}

// Previous is what a credential held before a write: its stored values and the
// secrets derived from them. A derivation whose inputs the write leaves unchanged (an
// edit of the description of a credential with an encrypted key) takes its result from
// here instead of running the KDF again.
type Previous struct {
	Values  Fields
	Secrets map[string]string
}

// ValidateContext is ValidateAt for a request: a key derivation (an encrypted key
// checked against its password) waits for its turn under the process-wide limits
// (KeyWorkLimits) within ctx's deadline, and without one returns *keywork.Busy, not a
// FieldError: the input may well be valid. prev (nil for a create) is the credential
// being changed: a key and password it already held are not derived again.
func (t *Type) ValidateContext(ctx context.Context, values map[string]any, now time.Time, prev *Previous) (*Validated, error) {
	var errs FieldErrors
	for name, raw := range values {
		if _, ok := t.Field(name); !ok && !isEmpty(raw) {
			errs = append(errs, &FieldError{Field: name, Rule: fmt.Sprintf("is not a field of type %q", t.Name)})
		}
	}
	// Sized for the type's own fields, not its lifecycle ones: the map is kept for the
	// credential's life in the backend's cache, and a hint above 8 makes Go allocate
	// a multi-group table (~700 B) where the ≤6 values fit one group (~330 B).
	n := 0
	for _, f := range t.Fields {
		if !f.Lifecycle() && !f.TokenState {
			n++
		}
	}
	out := make(map[string]any, min(n, 8)) // the OAuth types have more fields than any one credential sets
	var conditional []Field                // unset, required when another field says so
	refreshToken := ""
	for _, f := range t.Fields {
		if f.Lifecycle() {
			continue
		}
		v, set, err := f.normalize(values[f.Name])
		switch {
		case err != nil:
			errs = append(errs, fieldError(f.Name, err))
		case f.TokenState:
			if set {
				refreshToken = v.(string)
			}
		case set:
			out[f.Name] = v
		case f.Default != nil:
			out[f.Name] = cloneValue(f.Default)
		case f.Required:
			errs = append(errs, &FieldError{Field: f.Name, Rule: "is required"})
		case f.RequiredWhen != nil:
			conditional = append(conditional, f)
		}
	}
	for _, f := range conditional {
		if f.RequiredWhen.holds(out) {
			errs = append(errs, &FieldError{Field: f.Name, Rule: "is " + f.RequiredWhen.Rule()})
		}
	}
	for _, o := range t.oneOf {
		if fe := o.check(out); fe != nil && !slices.ContainsFunc(errs, func(e *FieldError) bool { return slices.Contains(o.Fields, e.Field) }) {
			errs = append(errs, fe)
		}
	}
	res := &Validated{Values: out, Derived: map[string]any{}, RefreshToken: refreshToken, now: now, ctx: ctx, prev: prev}
	if len(errs) == 0 && t.finish != nil {
		errs = t.finish(res)
	}
	if len(errs) == 0 && res.err != nil {
		return nil, res.err
	}
	res.ctx, res.prev = nil, nil // the request's: not kept with the result
	if len(res.Derived) == 0 {
		res.Derived = nil // most types derive nothing: no empty map kept per credential
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b *FieldError) int {
			return cmp.Or(strings.Compare(a.Field, b.Field), strings.Compare(a.Rule, b.Rule))
		})
		return nil, errs
	}
	return res, nil
}

// fieldError names the field a check failed on. A check that somehow returned
// something other than a rule gets a generic rule, so no library message — which might
// quote input — ever reaches the caller.
func fieldError(field string, err error) *FieldError {
	var re ruleError
	if errors.As(err, &re) {
		return &FieldError{Field: field, Rule: string(re)}
	}
	return &FieldError{Field: field, Rule: "is not valid"}
}

// normalize checks one raw value of f and returns its normalized form; set is false
// when the value is absent or empty.
func (f Field) normalize(raw any) (v any, set bool, err error) {
	if raw == nil {
		return nil, false, nil
	}
	switch f.Type {
	case FieldString:
		s, ok := raw.(string)
		if !ok {
			return nil, false, ruleError("must be a string")
		}
		s, err := f.normalizeString(s)
		return s, s != "" && err == nil, err
	case FieldList:
		items, ok := stringList(raw)
		if !ok {
			return nil, false, ruleError("must be a list of strings")
		}
		list, err := f.normalizeList(items)
		return list, len(list) > 0 && err == nil, err
	case FieldDuration: // the lifecycle windows, which Common.Set validates
		d, err := f.normalizeDuration(raw)
		return d, d != 0 && err == nil, err
	case FieldTime:
		t, err := f.normalizeTime(raw)
		return t, !t.IsZero() && err == nil, err
	case FieldStringMap:
		m, err := f.normalizeMap(raw)
		return m, len(m) > 0 && err == nil, err
	case FieldBool:
		return normalizeBool(raw)
	}
	return nil, false, rulef("is a %s field, which no check knows", f.Type)
}

// fileNameLike is a file name a PEM field may be given by mistake: a path of
// letters, digits and ._~/- ending in a key or certificate extension, or an OpenSSH
// key file's usual name. No PEM text and no base64 (which has no '.') matches it.
var fileNameLike = regexp.MustCompile(`^[A-Za-z0-9._~/-]{0,250}(\.(pem|crt|cer|cert|key|der|p8|pk8|p12|pfx|pub|ca|bundle|txt)|(^|/)id_(rsa|dsa|ecdsa|ed25519)(_sk)?)$`)

// normalizeString applies the checks every string field gets — size, encoding,
// control characters — then the field's own.
func (f Field) normalizeString(s string) (string, error) {
	if len(s) > f.maxLen {
		return "", rulef("must be at most %d bytes", f.maxLen)
	}
	if !utf8.ValidString(s) {
		return "", ruleError("must be valid UTF-8")
	}
	if !f.verbatim {
		s = strings.TrimSpace(s)
	}
	if s == "" {
		return "", nil
	}
	if f.pem && fileNameLike.MatchString(s) {
		// The CLI sends a file's content for field=@file, and the name itself without
		// the @. The name is shown (fileNameLike matches nothing PEM or base64 could
		// be), except for a sensitive field, whose value is never shown.
		name := s
		if f.Sensitive {
			name = "<file>"
		}
		return "", rulef("looks like a file name: use %s=@%s", f.Name, name)
	}
	if err := checkControl(s, f.multiline); err != nil {
		return "", err
	}
	if f.check == nil {
		return s, nil
	}
	return f.check(s)
}

func (f Field) normalizeList(items []string) ([]string, error) {
	var out []string
	for _, it := range items {
		if len(it) > f.maxLen {
			return nil, rulef("must have items of at most %d bytes", f.maxLen)
		}
		if !utf8.ValidString(it) {
			return nil, ruleError("must be valid UTF-8")
		}
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if err := checkControl(it, false); err != nil {
			return nil, err
		}
		parts := []string{it}
		if f.item != nil {
			var err error
			if parts, err = f.item(it); err != nil {
				return nil, err
			}
		}
		for _, p := range parts {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
			// Checked as the list grows, so a huge list costs one pass, not a
			// quadratic de-duplication.
			if len(out) > f.maxItems {
				return nil, rulef("must have at most %d items", f.maxItems)
			}
		}
	}
	return out, nil
}

// MaxBytes is the size limit f's rule states: of a value, or of one list item.
func (f Field) MaxBytes() int { return f.maxLen }

// stringList accepts the list shapes the backend may hand over: []string from a
// request, []any from JSON-decoded storage.
func stringList(raw any) ([]string, bool) {
	switch v := raw.(type) {
	case []string:
		return v, true
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

func checkControl(s string, multiline bool) error {
	for _, r := range s {
		if !unicode.IsControl(r) {
			continue
		}
		if !multiline {
			return ruleError("must be a single line without control characters")
		}
		if r != '\n' && r != '\r' && r != '\t' {
			return ruleError("must not contain control characters other than tabs and line breaks")
		}
	}
	return nil
}

// isEmpty reports a value that sets nothing: nil, "", or an empty list.
func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []string:
		return len(v) == 0
	case []any:
		return len(v) == 0
	case map[string]string:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case []string:
		return slices.Clone(v)
	case map[string]string:
		return maps.Clone(v)
	}
	return v
}

// str returns values[name] if it is a string, "" otherwise.
func str(values map[string]any, name string) string {
	s, _ := values[name].(string)
	return s
}

// finishUserPassword refuses half a password grant, for a preset that selects the
// password grant when username and password are set (OAuthPreset.PasswordGrantWithUser):
// they come together.
func finishUserPassword(v *Validated) FieldErrors {
	user, pass := str(v.Values, "username") != "", str(v.Values, "password") != ""
	switch {
	case user && !pass:
		return FieldErrors{{Field: "password", Rule: "is required when username is set (they select the password grant together)"}}
	case pass && !user:
		return FieldErrors{{Field: "username", Rule: "is required when password is set (they select the password grant together)"}}
	}
	return nil
}
