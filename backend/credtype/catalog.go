package credtype

import (
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
	if f.maxLen == 0 {
		f.maxLen = maxText
	}
	if f.Type == FieldList && f.maxItems == 0 {
		f.maxItems = maxListItems
	}
	f.stateLimits()
	schemaFields[f.Name] = f
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
	if f.Type == FieldList {
		add(fmt.Sprintf("at most %d items", f.maxItems))
		add(fmt.Sprintf("at most %d bytes each", f.maxLen))
		return
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
	define(Field{Name: "header_prefix", Type: FieldString, check: checkHTTPToken, maxLen: 64,
		Rule:        "HTTP authentication scheme: letters, digits and !#$%&'*+-.^_`|~, at most 64 bytes",
		Description: "Scheme put before the token in the Authorization header."})
	define(Field{Name: "header_name", Type: FieldString, check: checkHTTPToken, maxLen: 256,
		Rule:        "HTTP header name: letters, digits and !#$%&'*+-.^_`|~, at most 256 bytes",
		Description: "Request header that carries the key."})

	// Certificates and SSH.
	define(Field{Name: "certificate", Type: FieldString, check: checkCertificatePEM, maxLen: maxPEM, multiline: true,
		Rule:        "PEM X.509 certificate, leaf first, optionally followed by its chain; CERTIFICATE blocks only, at most 65536 bytes",
		Description: "Client certificate (PEM), leaf first."})
	define(Field{Name: "private_key", Type: FieldString, Sensitive: true, check: checkX509PrivateKey, maxLen: maxPEM, multiline: true,
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
	define(Field{Name: "client_id", Type: FieldString, check: checkNoSpace, Rule: ruleNoSpace,
		Description: "OAuth client (application) ID."})
	define(Field{Name: "client_secret", Type: FieldString, Sensitive: true, Rule: ruleLine,
		Description: "OAuth client secret."})
	define(Field{Name: "scopes", Type: FieldList, item: scopeItems,
		Rule:        "list of scope tokens (RFC 6749: printable ASCII except space, '\"' and '\\'); space-separated items are split, duplicates dropped; at most 64 items of at most 4096 bytes each",
		Description: "Scopes to request."})
	define(Field{Name: "audience", Type: FieldString, Rule: ruleLine,
		Description: "audience parameter of the token request, for providers that need one."})
	define(Field{Name: "auth_style", Type: FieldString, check: checkAuthStyle,
		Rule:        `"header" (HTTP Basic, RFC 6749 section 2.3.1) or "body" (form parameters)`,
		Description: "How the client ID and secret are sent to the token endpoint."})

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

// oauthOverrides are the endpoint overrides every OAuth preset accepts.
func oauthOverrides(tokenDesc, authDesc string) []Field {
	return []Field{
		use("token_url", describe(tokenDesc)),
		use("auth_url", describe(authDesc)),
	}
}

func types() []*Type {
	const graphScope = "https://graph.microsoft.com/.default"
	return []*Type{
		{
			Name: "basic", Kind: KindStatic,
			Description: "Username and password, handed out with a ready HTTP Basic Authorization header.",
			Fields: fields(true,
				use("username", required, tighten(ruleLine+"; no ':' (RFC 7617)", checkBasicUsername)),
				use("password", required),
			),
			access: &accessSpec{fields: []string{"username", "password"}, extra: basicAuthorization},
		},
		{
			Name: "bearer", Kind: KindStatic,
			Description: "A static bearer token, handed out with a ready Authorization header.",
			Fields: fields(false,
				use("token", required),
				use("header_prefix", defaultValue("Bearer")),
				use("url", describe("URL of the API the token is for.")),
			),
			access: &accessSpec{fields: []string{"token"}, extra: prefixedAuthorization("header_prefix", "Bearer")},
		},
		{
			Name: "api_key", Kind: KindStatic,
			Description: "An API key sent in a request header.",
			Fields: fields(false,
				use("key", required),
				use("header_name", defaultValue("X-API-Key")),
				use("url", describe("URL of the API the key is for.")),
			),
			access: &accessSpec{fields: []string{"key", "header_name"}},
		},
		{
			Name: "certificate", Kind: KindStatic,
			Description: "An X.509 client certificate and its private key, for mutual TLS.",
			Fields: fields(false,
				use("certificate", required),
				use("private_key", required),
				use("private_key_password"),
			),
			finish: finishCertificate,
			access: &accessSpec{fields: []string{"certificate"}, extra: certificateAccess, derive: certificateSecrets},
		},
		{
			Name: "sftp_password", Kind: KindStatic,
			Description: "Sign-in to an SFTP server with a password.",
			Fields: fields(true,
				use("host", required),
				use("host_key_fingerprint", required),
				use("username", required),
				use("password", required),
			),
		},
		{
			Name: "sftp_ssh_key", Kind: KindStatic,
			Description: "Sign-in to an SFTP server with an SSH private key.",
			Fields: fields(false,
				use("host", required),
				use("host_key_fingerprint", required),
				use("username", required),
				use("private_key", required, describe("SSH private key (OpenSSH or PEM)."),
					tighten(fmt.Sprintf("SSH private key: OpenSSH format, or PEM PKCS#1 RSA, PKCS#8 or SEC1 EC (legacy PEM encryption allowed); RSA, ECDSA or Ed25519; at most %d bcrypt KDF rounds; at most 65536 bytes", maxKDFRounds), checkSSHPrivateKey)),
				use("passphrase"),
			),
			finish: finishSSHKey,
		},
		{
			Name: "webhook", Kind: KindStatic,
			Description: "An incoming-webhook URL.",
			Fields: fields(false,
				use("url", required, secret, describe("The webhook URL. Sensitive: Slack and Teams webhook URLs carry their own secret.")),
			),
			access: &accessSpec{fields: []string{"url"}},
		},
		{
			Name: "device_account", Kind: KindStatic,
			Description: "An account on a device (PAM style), also found by hostname + ip + username.",
			Fields: fields(true,
				use("hostname", required),
				use("ip", required),
				use("username", required),
				use("password"),
				use("domain"),
				use("additional"),
				use("notes"),
			),
		},
		{
			Name: "oauth2_client_credentials", Kind: KindOAuth2,
			Description: "Any OAuth 2.0 provider, client credentials grant.",
			Fields: fields(false,
				use("token_url", required),
				use("client_id", required),
				use("client_secret", required),
				use("scopes"),
				use("audience"),
				use("auth_style", defaultValue("header")),
			),
		},
		{
			Name: "oauth2_password", Kind: KindOAuth2,
			Description: "Any OAuth 2.0 provider, resource owner password grant.",
			Fields: fields(true,
				use("token_url", required),
				use("client_id", required),
				use("client_secret", required),
				use("scopes"),
				use("audience"),
				use("auth_style", defaultValue("header")),
				use("username", required),
				use("password", required),
			),
		},
		{
			Name: "oauth2_authorization_code", Kind: KindOAuth2,
			Description: "Any OAuth 2.0 provider, authorization code grant with PKCE; a person consents once through credentials/<name>/authorize.",
			Fields: fields(false,
				use("auth_url", required),
				use("token_url", required),
				use("client_id", required),
				use("client_secret", describe("OAuth client secret; leave unset for a public client.")),
				use("scopes"),
				use("redirect_url"),
			),
		},
		{
			Name: "m365", Kind: KindOAuth2, Aliases: []string{"microsoft_graph"},
			Description: "Microsoft Graph (Microsoft Entra app registration), client credentials grant.",
			Fields: fields(false, append([]Field{
				use("tenant", required),
				use("client_id", required, describe("Application (client) ID of the app registration.")),
				use("client_secret", required),
				use("scopes", defaultValue([]string{graphScope})),
			}, oauthOverrides(
				"Token endpoint; default https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token.",
				"Authorization endpoint; default https://login.microsoftonline.com/<tenant>/oauth2/v2.0/authorize.",
			)...)...),
		},
		{
			Name: "zoom", Kind: KindOAuth2,
			Description: "Zoom Server-to-Server OAuth app (account credentials grant).",
			Fields: fields(false, append([]Field{
				use("account_id", required),
				use("client_id", required),
				use("client_secret", required),
			}, oauthOverrides(
				"Token endpoint; default https://zoom.us/oauth/token.",
				"Authorization endpoint; default https://zoom.us/oauth/authorize.",
			)...)...),
		},
		{
			Name: "servicenow_oauth", Kind: KindOAuth2,
			Description: "ServiceNow OAuth client: client credentials grant, or password grant when username and password are given.",
			Fields: fields(true, append([]Field{
				use("instance", required),
				use("client_id", required),
				use("client_secret", required),
				use("username", describe("User for the password grant; set together with password.")),
				use("password", describe("Password for the password grant; set together with username.")),
			}, oauthOverrides(
				"Token endpoint; default https://<instance>.service-now.com/oauth_token.do.",
				"Authorization endpoint; default https://<instance>.service-now.com/oauth_auth.do.",
			)...)...),
			finish: finishServiceNow,
		},
		{
			Name: "cisco_client_credentials", Kind: KindOAuth2,
			Description: "Cisco API client (for example Secure Endpoint, XDR or Umbrella), client credentials grant against auth_url.",
			Fields: fields(false,
				use("auth_url", required, describe("Token (authentication) endpoint of the Cisco API.")),
				use("client_id", required),
				use("client_secret", required),
				use("token_url", describe("Token endpoint, overriding auth_url.")),
			),
		},
		{
			Name: "slack", Kind: KindStatic,
			Description: "A Slack bot, user or app-level token.",
			Fields: fields(false,
				use("token", required, describe("Slack token."),
					tighten(`Slack token: printable ASCII without spaces, beginning "xox" (xoxb-, xoxp-, xoxe.…) or "xapp-"`, checkSlackToken)),
			),
			access: &accessSpec{fields: []string{"token"}, extra: fixedAuthorization("Bearer")},
		},
		{
			Name: "pagerduty", Kind: KindStatic,
			Description: "A PagerDuty Events API v2 routing (integration) key.",
			Fields: fields(false,
				use("routing_key", required),
			),
			access: &accessSpec{fields: []string{"routing_key"}},
		},
		{
			Name: "okta", Kind: KindStatic,
			Description: "An Okta API token (SSWS) for one Okta org.",
			Fields: fields(false,
				use("url", required, describe("Okta org URL, such as https://example.okta.com.")),
				use("token", required, describe("Okta API token.")),
			),
			access: &accessSpec{fields: []string{"token"}, extra: fixedAuthorization("SSWS")},
		},
	}
}

// catalogIndex is the catalog in the shapes the exported functions need, built once.
type catalogIndex struct {
	sorted     []*Type
	byName     map[string]*Type
	fieldNames []string
	schema     map[string]Field
}

var catalog catalogIndex

func buildCatalog(ts []*Type) catalogIndex {
	c := catalogIndex{byName: map[string]*Type{}, schema: map[string]Field{}}
	for _, t := range ts {
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
		if t.Kind == KindStatic && t.access == nil {
			// Types whose access material is "all of their fields".
			t.access = &accessSpec{}
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
	return c
}
