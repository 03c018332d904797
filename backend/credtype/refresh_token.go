// Imported refresh tokens: the refresh_token field every type whose OAuth preset uses
// the authorization_code grant takes, as an alternative to the consent flow.

package credtype

// FieldRefreshToken is the field that imports a refresh token obtained elsewhere.
const FieldRefreshToken = "refresh_token"

// maxRefreshToken bounds an imported refresh token: providers' are well under it
// (Microsoft's, the longest seen, a few KiB).
const maxRefreshToken = 16 << 10

// refreshTokenField is defined while the package variables are initialized, before
// any init() builds the type table.
var refreshTokenField = defineRefreshToken()

func defineRefreshToken() string {
	define(Field{Name: FieldRefreshToken, Type: FieldString, Sensitive: true, TokenState: true,
		check: checkVSChar, maxLen: maxRefreshToken,
		Rule: "printable ASCII (RFC 6749 VSCHAR), at most 16384 bytes; write-only: kept as the credential's token state, not among its fields",
		Description: "A refresh token obtained outside Vault, imported instead of running the consent flow (credentials/<name>/authorize); the next access/ read mints through it. " +
			"It replaces any token held; it is forgotten with every token when a destination field changes."})
	return FieldRefreshToken
}

// RefreshTokens reports whether t's credentials hold refresh tokens: its OAuth preset
// uses the authorization_code or the device_code grant (a person's consent), which the
// engine refreshes through them.
func (t *Type) RefreshTokens() bool {
	return t.codeFlow() || t.DeviceFlow()
}

// Consents reports whether t's credentials are authorized by a person's consent
// (credentials/<name>/authorize): those that hold refresh tokens.
func (t *Type) Consents() bool { return t.RefreshTokens() }

// RefusedField names the field a provider's refusal of t's credential with the OAuth
// error code is most likely about, for the refusal to say what to change: the client's
// secret (client_key when it authenticates with a key) for invalid_client and
// unauthorized_client, the password of a password grant for invalid_grant, scopes for
// invalid_scope. "" when no one field is (an authorization-code credential's
// invalid_grant is its refresh token: it needs a new consent).
func (t *Type) RefusedField(values Fields, code string) string {
	has := func(f string) bool { _, ok := t.Field(f); return ok }
	switch code {
	case "invalid_client", "unauthorized_client":
		switch values.Str("auth_style") {
		case AuthStylePrivateKeyJWT, AuthStyleTLSClientAuth:
			return "client_key"
		case AuthStyleFederated:
			return FieldFederatedSubject // or the provider's federated credential: issuer, subject, audience
		}
		if has("client_secret") {
			return "client_secret"
		}
	case "invalid_grant":
		if t.OAuth != nil && (t.OAuth.Grant == "password" || (t.OAuth.PasswordGrantWithUser && values.Str("username") != "")) {
			return "password"
		}
	case "invalid_scope":
		if has("scopes") {
			return "scopes"
		}
	default:
		return gitHubRefusedField(t, values, code)
	}
	return ""
}

// addTokenStateFields gives an authorization-code type the field that imports a
// refresh token, after its own fields and before the common ones.
func addTokenStateFields(t *Type) {
	if !t.codeFlow() {
		return
	}
	if _, ok := t.Field(refreshTokenField); ok {
		return
	}
	t.insertBeforeCommon(use(refreshTokenField))
}

// checkVSChar accepts RFC 6749's VSCHAR (%x20-7E), the characters of a refresh token.
func checkVSChar(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "", ruleError("must be printable ASCII (RFC 6749 VSCHAR)")
		}
	}
	return s, nil
}
