// Package credtype is the catalog of credential types the integrations secrets engine
// stores: each type's fields, how every field is validated and normalized, and the
// access material a static credential hands an integration.
//
// The catalog that `types/<type>` shows, the Vault path schema and the validator are all
// built from the same Field definitions here, so they cannot drift apart. The package
// imports no Vault package; the backend translates between it and the framework.
package credtype

import (
	"slices"
	"strings"
	"time"
)

// Kind says how a credential yields access material.
type Kind string

const (
	// KindStatic credentials are handed out as stored (plus derived values such as an
	// Authorization header or a TOTP code).
	KindStatic Kind = "static"
	// KindOAuth2 credentials are used to mint OAuth 2.0 access tokens; the stored
	// secrets never leave the engine.
	KindOAuth2 Kind = "oauth2"
)

// FieldType is the wire type of a field, which the path schema maps to a framework type.
type FieldType string

const (
	// FieldString values are Go strings.
	FieldString FieldType = "string"
	// FieldList values are []string (comma-separated or a JSON array on the wire).
	FieldList FieldType = "list"
	// FieldDuration values are durations in seconds (Common.Set parses them).
	FieldDuration FieldType = "duration"
	// FieldTime values are RFC 3339 times (Common.Set parses them).
	FieldTime FieldType = "time"
	// FieldStringMap values are map[string]string: a JSON object of strings on the
	// wire, or key=value pairs from the CLI. Bounded in keys, key bytes and value bytes.
	FieldStringMap FieldType = "map"
	// FieldBool values are bool: true or false (or the strings strconv.ParseBool takes).
	FieldBool FieldType = "bool"
)

// Field describes one field of a credential type. The same name means the same thing,
// with the same FieldType, in every type that has it. Sensitivity and destination are
// the same too, except that a type may mark a field sensitive that others do not (a
// webhook's url carries its own secret; a bearer token's url does not).
type Field struct {
	// Name is the API name of the field; it is part of the engine's API.
	Name string
	// Type is the wire type.
	Type FieldType
	// Required fields must be set (after defaults) for Validate to accept a credential.
	Required bool
	// RequiredWhen makes a field that is not Required required when another field
	// (after its default) has one of some values; the Rule states it.
	RequiredWhen *Condition
	// OneOf is the one-of rule the field takes part in (its type's declaration): at
	// most one, or exactly one, of a group of fields may be set. The Rule states it.
	OneOf *OneOf
	// Sensitive fields are stored but never returned by `credentials/<name>`.
	Sensitive bool
	// Destination fields say where the credential's secrets are sent or used: an
	// endpoint the engine posts them to, or the host or URL an integration is handed
	// them for. Changing one requires sending the secrets again, and forgets every token
	// and pending authorization learnt under the old destination.
	Destination bool
	// GrantOwner fields name the OAuth client a grant is issued to (client_id): a
	// refresh token belongs to that client and is useless to any other, so changing
	// one forgets the token state and pending authorization as a repoint does,
	// without asking for the secrets again.
	GrantOwner bool
	// Default is applied by Validate when the field is unset: a string, a []string or
	// nil. Treat it as read-only; it is shared with the catalog.
	Default any
	// Rule is the human-readable validation rule shown by `types/<type>`.
	Rule string
	// Description says what the field is for.
	Description string
	// Common is true for the fields every type takes (the lifecycle fields and, on
	// password-bearing types, totp_secret).
	Common bool
	// TokenState fields (refresh_token) are validated like the others but are not
	// among a credential's values: Validate hands the value over in
	// Validated.RefreshToken, for the backend's token state.
	TokenState bool

	// check validates and normalizes one non-empty string value. It returns only
	// ruleError values, never a library error, so no input can be echoed.
	check func(string) (string, error)
	// item validates and normalizes one list element; it may split it into several.
	item func(string) ([]string, error)
	// maxLen bounds a string value (or one list element) in bytes.
	maxLen int
	// maxItems bounds a list, or the keys of a map.
	maxItems int
	// maxKeyLen bounds one key of a map, in bytes.
	maxKeyLen int
	// mapKey validates and normalizes one key of a map field; nil: mapKeyRule only.
	mapKey func(string) (string, error)
	// duration is the rule of a duration field; nil: a lifecycle window (lifecycle.CheckWindow).
	duration func(time.Duration) error
	// multiline fields (PEM, notes) may contain line breaks and tabs.
	multiline bool
	// pem fields hold PEM text (certificates, keys): a value that is a file name is
	// refused saying to send the file with @ (the CLI reads it then).
	pem bool
	// verbatim fields (passwords, passphrases) are used byte for byte: trimming them
	// would silently change the secret.
	verbatim bool
}

// Lifecycle reports whether f is one of the common lifecycle fields (description, tags,
// used_by, suspend_after, purge_after, expires_at). Common.Set validates those;
// Validate skips them.
func (f Field) Lifecycle() bool {
	return f.Common && f.Name != fieldTOTPSecret
}

// Type is one credential type of the catalog.
type Type struct {
	// Name is the canonical type name stored with a credential, e.g. "m365".
	Name string
	// Kind says whether the credential is handed out (static) or mints tokens (oauth2).
	// The catalog derives it: oauth2 for a type with an OAuth preset, else static.
	Kind Kind
	// Aliases are other names Lookup accepts, e.g. "microsoft_graph".
	Aliases []string
	// Description says what the type is for.
	Description string
	// Fields are the type's own fields, then the common fields that apply to it.
	Fields []Field
	// OAuth is how an oauth2 type's fields become a token request; nil for static
	// types. The oauth package builds its Config from it and knows no type names.
	OAuth *OAuthPreset
	// DeviceIndexed marks the one type whose accounts are also found by hostname + ip
	// + username (the backend's device-accounts/ and lookup/ paths, and its device
	// index); see DeviceAccountType.
	DeviceIndexed bool

	// finish runs the checks that span fields (a key matching its certificate, a
	// passphrase decrypting its key) once every field is valid on its own, and fills in
	// derived facts.
	finish func(*Validated) FieldErrors
	// access shapes what `access/<name>` returns; nil for oauth2 kinds.
	access *accessSpec
	// notify says how the type receives the engine's notifications; nil when it cannot.
	notify *notifySpec
	// verify is how credentials/<name>/verify checks a static type (verify.go); OAuth
	// types mint a token instead, and nil is unsupported.
	verify *verifySpec
	// oneOf are the type's one-of rules; the catalog builder gives each field of a
	// group its Field.OneOf.
	oneOf []*OneOf
	// slots is the slot of each value field in Values, slotNames the field of each
	// slot (layOut).
	slots     map[string]int
	slotNames []string
	// slotTypes is the wire type of each slot's field: maps and bools are kept in
	// their slot as canonical JSON.
	slotTypes []FieldType
}

// All returns every credential type, sorted by Name. The types are shared with the
// catalog: treat them as read-only.
func All() []*Type {
	return slices.Clone(catalog.sorted)
}

// Lookup returns the type called name, resolving aliases to the canonical type. Type
// names are case-insensitive. The type is shared with the catalog: treat it as
// read-only.
func Lookup(name string) (*Type, bool) {
	t, ok := catalog.byName[strings.ToLower(strings.TrimSpace(name))]
	return t, ok
}

// DeviceAccountType returns the type marked DeviceIndexed. The type is shared with
// the catalog: treat it as read-only.
func DeviceAccountType() *Type {
	return catalog.deviceAccounts
}

// FieldNames returns the union of every field name of every type, sorted, so the path
// schema can declare each once.
func FieldNames() []string {
	return slices.Clone(catalog.fieldNames)
}

// SchemaField returns the type-independent definition of the field called name: its
// Type, Sensitive and Common flags and a generic Description, for a path schema that
// declares each name once. Required and Default are left unset because they depend on
// the type; Validate applies them.
func SchemaField(name string) (Field, bool) {
	f, ok := catalog.schema[name]
	return f, ok
}

// Field returns the field of t called name.
func (t *Type) Field(name string) (Field, bool) {
	for _, f := range t.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// DestinationFields returns the names of t's destination fields, in field order.
func (t *Type) DestinationFields() []string {
	return t.fieldsWhere(func(f Field) bool { return f.Destination })
}

// GrantOwnerFields returns the names of t's grant-owner fields, in field order.
func (t *Type) GrantOwnerFields() []string {
	return t.fieldsWhere(func(f Field) bool { return f.GrantOwner })
}

// SettingFields returns the names of the fields a provider's refusal of t's
// credential can be about, in field order: every field of the type except the common
// ones (the lifecycle fields and totp_secret) and client_secret_expires_at, which only
// records a date. Secrets, destinations, the client and how it authenticates, scopes
// and the grant's parameters all are. A patch that sends one of them gives a credential
// the provider refused a new attempt (lifecycle.Reconfigured).
func (t *Type) SettingFields() []string {
	return t.fieldsWhere(func(f Field) bool { return !f.Common && f.Name != fieldSecretExpiresAt })
}

// SensitiveFields returns the names of t's sensitive fields, in field order, so the
// backend can list which secrets are set and keep stored ones an update omits.
func (t *Type) SensitiveFields() []string {
	return t.fieldsWhere(func(f Field) bool { return f.Sensitive })
}

// fieldsWhere returns the names of t's fields that keep accepts, in field order.
func (t *Type) fieldsWhere(keep func(Field) bool) []string {
	var names []string
	for _, f := range t.Fields {
		if keep(f) {
			names = append(names, f.Name)
		}
	}
	return names
}
