package credtype

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Size limits. A PEM field holds a certificate chain or one key; anything else is a
// name, URL or short secret, and a bound keeps storage and the request path small.
const (
	maxText       = 4 << 10
	maxPEM        = 64 << 10
	maxTOTPSecret = 256
	maxListItems  = 64
	// maxHostname is the DNS limit on a name (RFC 1035), for host names and tenants.
	maxHostname = 253
	// maxLabel bounds one tag or used_by entry.
	maxLabel = 128
	// maxShort bounds the durations and times of the lifecycle fields.
	maxShort = 64
)

const fieldTOTPSecret = "totp_secret"

// Rules shared by several fields; each is shown in the catalog and repeated in errors.
const (
	ruleLine      = "single line without control characters, at most 4096 bytes"
	ruleText      = "text (line breaks allowed), at most 4096 bytes"
	ruleVerbatim  = "single line without control characters, at most 4096 bytes; used exactly as given (not trimmed)"
	ruleNoSpace   = "single line without spaces or control characters, at most 4096 bytes"
	ruleVisible   = "printable ASCII without spaces, at most 4096 bytes"
	ruleHTTPSURL  = "https URL with a host (http only for loopback hosts: localhost, 127.0.0.0/8, ::1); no user:password@ and no #fragment"
	ruleSFTPHost  = "sftp://host:port/ — scheme sftp, a host, a port (1-65535) and no path"
	ruleHostKeyFP = "SHA256:<43 base64 characters> as printed by `ssh-keygen -lf`, of an rsa-sha2-512, rsa-sha2-256, ssh-ed25519 or ecdsa-sha2-nistp256/384/521 host key; MD5 colon-hex fingerprints are refused"
)

// schemaFields holds one type-independent definition per field name. Types take a copy
// through use() and may make it required, give it a default, or tighten its rule, but
// never change its wire type or sensitivity.
var schemaFields = map[string]Field{}

func define(f Field) {
	if _, dup := schemaFields[f.Name]; dup {
		panic("credtype: field defined twice: " + f.Name)
	}
	schemaFields[f.Name] = withLimits(f)
}

// withLimits gives f the default bounds of its wire type and has its rule state them.
func withLimits(f Field) Field {
	if f.Type == FieldStringMap {
		// maxLen bounds each value, maxItems the keys.
		f.maxLen = cmp.Or(f.maxLen, maxMapValueLen)
		f.maxItems, f.maxKeyLen = cmp.Or(f.maxItems, maxMapKeys), cmp.Or(f.maxKeyLen, maxMapKeyLen)
	}
	if f.maxLen == 0 {
		f.maxLen = maxText
	}
	if f.Type == FieldList && f.maxItems == 0 {
		f.maxItems = maxListItems
	}
	f.stateLimits()
	return f
}

// stateLimits makes the rule state the size limits normalize enforces, so what
// types/ shows and what a write is refused for cannot differ: a rule that does not
// already say them gets them appended.
func (f *Field) stateLimits() {
	add := func(part string) {
		if !strings.Contains(f.Rule, part) {
			f.Rule += "; " + part
		}
	}
	switch f.Type {
	case FieldList:
		add(fmt.Sprintf("at most %d items", f.maxItems))
		add(fmt.Sprintf("at most %d bytes each", f.maxLen))
		return
	case FieldStringMap:
		add(mapKeyRule)
		add(f.mapLimits())
		return
	case FieldBool:
		return // a bool has no size
	}
	add(fmt.Sprintf("at most %d bytes", f.maxLen))
}

func init() {
	// Credential material shared by several types.
	define(Field{Name: "username", Type: FieldString, Rule: ruleLine,
		Description: "Account name to sign in with."})
	define(Field{Name: "password", Type: FieldString, Sensitive: true, verbatim: true, Rule: ruleVerbatim,
		Description: "Password of the account."})
	define(Field{Name: "token", Type: FieldString, Sensitive: true, check: checkVisibleASCII, Rule: ruleVisible,
		Description: "API token."})
	define(Field{Name: "key", Type: FieldString, Sensitive: true, check: checkVisibleASCII, Rule: ruleVisible,
		Description: "API key."})
	define(Field{Name: "url", Type: FieldString, Destination: true, check: checkHTTPSURL, Rule: ruleHTTPSURL,
		Description: "URL of the service the credential is for."})
	define(Field{Name: "verify_url", Type: FieldString, Destination: true, check: checkHTTPSURL, Rule: ruleHTTPSURL,
		Description: "URL that credentials/<name>/verify sends one GET to, with the credential's authorization (default: url). It receives the secret: changing it requires resending the secret."})
	define(Field{Name: "header_prefix", Type: FieldString, check: checkHTTPToken, maxLen: 64,
		Rule:        "HTTP authentication scheme: letters, digits and !#$%&'*+-.^_`|~, at most 64 bytes",
		Description: "Scheme put before the token in the Authorization header."})
	define(Field{Name: "header_name", Type: FieldString, check: checkHTTPToken, maxLen: 256,
		Rule:        "HTTP header name: letters, digits and !#$%&'*+-.^_`|~, at most 256 bytes",
		Description: "Request header that carries the key."})

	// Certificates and SSH.
	define(Field{Name: "certificate", Type: FieldString, pem: true, check: checkCertificatePEM, maxLen: maxPEM, multiline: true,
		Rule:        "PEM X.509 certificate, leaf first, optionally followed by its chain; CERTIFICATE blocks only, at most 65536 bytes",
		Description: "Client certificate (PEM), leaf first."})
	define(Field{Name: "private_key", Type: FieldString, pem: true, Sensitive: true, check: checkX509PrivateKey, maxLen: maxPEM, multiline: true,
		Rule:        "PEM private key: PKCS#1 RSA, PKCS#8 or SEC1 EC, optionally encrypted (PKCS#8 ENCRYPTED PRIVATE KEY, or legacy PEM Proc-Type: 4,ENCRYPTED) with private_key_password; " + ruleKDF + "; must match the certificate; at most 65536 bytes",
		Description: "Private key (PEM)."})
	define(Field{Name: "private_key_password", Type: FieldString, Sensitive: true, verbatim: true,
		Rule:        "required when private_key is encrypted and refused when it is not; must decrypt it; " + ruleVerbatim,
		Description: "Password that decrypts private_key."})
	define(Field{Name: "host", Type: FieldString, Destination: true, check: checkSFTPHost, Rule: ruleSFTPHost,
		Description: "SFTP server, as sftp://host:port/."})
	define(Field{Name: "host_key_fingerprint", Type: FieldString, Destination: true, check: checkHostKeyFingerprint, Rule: ruleHostKeyFP,
		Description: "SHA256 fingerprint of the server's host key, checked before authenticating."})
	define(Field{Name: "passphrase", Type: FieldString, Sensitive: true, verbatim: true,
		Rule:        "required when private_key is encrypted and refused when it is not; must decrypt it; " + ruleVerbatim,
		Description: "Passphrase that decrypts private_key."})

	// Device accounts (PAM style).
	define(Field{Name: "hostname", Type: FieldString, Destination: true, check: checkHostname, maxLen: maxHostname,
		Rule:        "host name: dot-separated labels of letters, digits, '-' or '_' (1-63 each); stored lower-case; at most 253 bytes",
		Description: "Host name of the device."})
	define(Field{Name: "ip", Type: FieldString, Destination: true, check: checkIP, maxLen: maxShort,
		Rule:        "IPv4 or IPv6 address without zone; stored in canonical form",
		Description: "IP address of the device."})
	define(Field{Name: "domain", Type: FieldString, Destination: true, Rule: ruleLine,
		Description: "Domain the account belongs to."})
	define(Field{Name: "additional", Type: FieldString, multiline: true, Rule: ruleText,
		Description: "Additional sign-in information."})
	define(Field{Name: "notes", Type: FieldString, multiline: true, Rule: ruleText,
		Description: "Notes about the account."})

	// OAuth 2.0.
	define(Field{Name: "token_url", Type: FieldString, Destination: true, check: checkHTTPSURL, Rule: ruleHTTPSURL,
		Description: "Token endpoint."})
	define(Field{Name: "auth_url", Type: FieldString, Destination: true, check: checkHTTPSURL, Rule: ruleHTTPSURL,
		Description: "Authorization endpoint."})
	define(Field{Name: "redirect_url", Type: FieldString, Destination: true, check: checkHTTPSURL, Rule: ruleHTTPSURL,
		Description: "Redirect URI registered with the provider; defaults to the engine's oauth/callback under config callback_base_url."})
	define(Field{Name: "client_id", Type: FieldString, GrantOwner: true, check: checkNoSpace, Rule: ruleNoSpace,
		Description: "OAuth client (application) ID."})
	define(Field{Name: "client_secret", Type: FieldString, Sensitive: true, Rule: ruleLine,
		Description: "OAuth client secret."})
	define(Field{Name: "scopes", Type: FieldList, item: scopeItems,
		Rule:        "list of scope tokens (RFC 6749: printable ASCII except space, '\"' and '\\'); space-separated items are split, duplicates dropped; at most 64 items of at most 4096 bytes each",
		Description: "Scopes to request."})
	define(Field{Name: "audience", Type: FieldString, Rule: ruleLine,
		Description: "audience parameter of the token request, for providers that need one."})
	define(Field{Name: "auth_style", Type: FieldString, check: checkAuthStyle,
		Rule:        `"header" (client_secret by HTTP Basic, RFC 6749 section 2.3.1), "body" (form parameters), "private_key_jwt" (a client assertion signed with client_key, RFC 7523) or "tls_client_auth" (mutual TLS with client_certificate and client_key, RFC 8705)`,
		Description: "How the client authenticates to the token endpoint."})

	// Provider presets.
	define(Field{Name: "tenant", Type: FieldString, Destination: true, check: checkTenant, maxLen: maxHostname,
		Rule:        "directory (tenant) ID as a GUID, or a verified domain such as contoso.onmicrosoft.com; stored lower-case",
		Description: "Microsoft Entra tenant."})
	define(Field{Name: "account_id", Type: FieldString, check: checkNoSpace, Rule: ruleNoSpace,
		Description: "Zoom account ID of the Server-to-Server OAuth app."})
	define(Field{Name: "instance", Type: FieldString, Destination: true, check: checkInstance, maxLen: maxHostname,
		Rule:        `ServiceNow instance name, a DNS label such as "dev12345" ("dev12345.service-now.com" is accepted and shortened); stored lower-case`,
		Description: "ServiceNow instance."})
	define(Field{Name: "routing_key", Type: FieldString, Sensitive: true, check: checkRoutingKey, maxLen: 32,
		Rule:        "32 letters and digits (the Events API v2 integration key)",
		Description: "PagerDuty Events API v2 routing key."})

	catalog = buildCatalog(types())
}

// fieldOption adapts a shared field definition to one type.
type fieldOption func(*Field)

func required(f *Field) { f.Required = true }

// secret makes a field sensitive in one type (the path schema then masks it for all).
func secret(f *Field) { f.Sensitive = true }

func defaultValue(v any) fieldOption { return func(f *Field) { f.Default = v } }

func describe(s string) fieldOption { return func(f *Field) { f.Description = s } }

// tighten replaces a field's rule for one type; the shared checks still apply first
// unless the new check replaces them (check may call the shared one).
func tighten(rule string, check func(string) (string, error)) fieldOption {
	return func(f *Field) { f.Rule, f.check = rule, check }
}

func use(name string, opts ...fieldOption) Field {
	f, ok := schemaFields[name]
	if !ok {
		panic("credtype: undefined field " + name)
	}
	for _, o := range opts {
		o(&f)
	}
	f.stateLimits() // a tightened rule states them too
	return f
}

// catalogIndex is the catalog in the shapes the exported functions need, built once.
type catalogIndex struct {
	sorted     []*Type
	byName     map[string]*Type
	fieldNames []string
	schema     map[string]Field
	// deviceAccounts is the type marked DeviceIndexed.
	deviceAccounts *Type
}

var catalog catalogIndex

func buildCatalog(ts []*Type) catalogIndex {
	c := catalogIndex{byName: map[string]*Type{}, schema: map[string]Field{}}
	for _, t := range ts {
		deriveFacts(&c, t) // first: it adds fields
		for _, n := range append([]string{t.Name}, t.Aliases...) {
			if _, dup := c.byName[n]; dup {
				panic("credtype: type name used twice: " + n)
			}
			c.byName[n] = t
		}
		seen := map[string]bool{}
		for _, f := range t.Fields {
			if seen[f.Name] {
				panic(fmt.Sprintf("credtype: type %s lists field %s twice", t.Name, f.Name))
			}
			seen[f.Name] = true
			if _, ok := c.schema[f.Name]; !ok {
				s := schemaFields[f.Name]
				s.Required, s.Default = false, nil
				c.schema[f.Name] = s
			}
			if f.Sensitive {
				// Masked in the schema wherever any type holds it as a secret.
				s := c.schema[f.Name]
				s.Sensitive = true
				c.schema[f.Name] = s
			}
		}
		applyOneOf(t)
		t.layOut()
		if t.Kind == KindStatic && t.access == nil {
			t.access = &accessSpec{}
		}
		if t.Kind == KindStatic && t.access.fields == nil {
			// Types whose access material is "all of their fields".
			for _, f := range t.Fields {
				if !f.Common {
					t.access.fields = append(t.access.fields, f.Name)
				}
			}
		}
		c.sorted = append(c.sorted, t)
	}
	slices.SortFunc(c.sorted, func(a, b *Type) int { return strings.Compare(a.Name, b.Name) })
	for n := range c.schema {
		c.fieldNames = append(c.fieldNames, n)
	}
	slices.Sort(c.fieldNames)
	if c.deviceAccounts == nil {
		panic("credtype: no type is DeviceIndexed")
	}
	return c
}

// deriveFacts sets what follows from a type's declarations, and refuses declarations
// that name fields the type lacks.
func deriveFacts(c *catalogIndex, t *Type) {
	t.Kind = KindStatic
	if t.OAuth != nil {
		t.Kind = KindOAuth2
		checkPreset(t)
		if t.OAuth.PasswordGrantWithUser {
			if t.finish != nil {
				panic("credtype: type " + t.Name + ": a preset with PasswordGrantWithUser takes its cross-field check from the preset")
			}
			t.finish = finishUserPassword
		}
		addTokenStateFields(t)
		addAuthorizationFields(t)
		withClientAuth(t)
		withOwnedKeys(t)
	}
	withTrustAnchors(t)
	if t.OAuth == nil || !t.OAuth.OwnAuth {
		addOAuthFields(t) // last: after every field an OAuth type takes for itself
	}
	if t.DeviceIndexed {
		if c.deviceAccounts != nil {
			panic("credtype: two DeviceIndexed types: " + c.deviceAccounts.Name + ", " + t.Name)
		}
		c.deviceAccounts = t
	}
	if n := t.notify; n != nil && !n.slackAPI {
		if _, ok := t.Field(n.urlField); !ok {
			panic(fmt.Sprintf("credtype: type %s notifies through field %s, which it lacks", t.Name, n.urlField))
		}
	}
}
