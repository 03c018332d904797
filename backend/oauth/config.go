package oauth

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// Grant is the OAuth 2.0 grant a credential uses to obtain access tokens.
type Grant string

// Grants understood by Mint. Refreshing is not a grant of its own here: an
// authorization-code credential is minted by its refresh token.
const (
	GrantClientCredentials  Grant = "client_credentials"
	GrantPassword           Grant = "password"
	GrantAuthorizationCode  Grant = "authorization_code"
	GrantAccountCredentials Grant = "account_credentials" // Zoom server-to-server apps
)

// Auth styles: how the client authenticates to the token endpoint.
const (
	// AuthStyleHeader sends client_id and client_secret as HTTP Basic
	// credentials, the style RFC 6749 §2.3.1 requires every server to support;
	// it is the default.
	AuthStyleHeader = "header"
	// AuthStyleBody sends client_id and client_secret as form parameters.
	AuthStyleBody = "body"
	// AuthStylePrivateKeyJWT sends client_id and a fresh client assertion signed
	// with ClientKey (RFC 7523 §2.2), and no secret.
	AuthStylePrivateKeyJWT = credtype.AuthStylePrivateKeyJWT
	// AuthStyleTLSClientAuth sends client_id over mutual TLS with
	// ClientCertificate and ClientKey (RFC 8705 §2.1), and no secret.
	AuthStyleTLSClientAuth = credtype.AuthStyleTLSClientAuth
)

// Config is everything needed to talk to one provider's token endpoint,
// usually derived from a credential's fields by FromFields. It holds secrets;
// String redacts them so a stray %v cannot log them.
type Config struct {
	Grant        Grant
	TokenURL     string
	AuthURL      string
	ClientID     string
	ClientSecret string
	Scopes       []string
	Audience     string // sent as the "audience" parameter when set (Auth0, Okta custom servers)
	AuthStyle    string // AuthStyleHeader (default), AuthStyleBody, AuthStylePrivateKeyJWT, AuthStyleTLSClientAuth or AuthStyleFederated
	Username     string
	Password     string
	RedirectURL  string
	// DeviceAuthorizationURL is the device authorization endpoint of the device_code
	// grant (device.go).
	DeviceAuthorizationURL string
	// Params are extra parameters for the token request of direct grants and
	// the authorization request of the authorization-code grant, e.g. Zoom's
	// account_id.
	Params map[string]string
	// AuthorizationParams are the credential's authorization_params: provider
	// parameters of the authorization request only (Google's access_type=offline,
	// login_hint, resource), never of a token request. None is one the engine owns
	// (credtype.OwnedAuthorizationParam).
	AuthorizationParams map[string]string
	// ResponseMode is the credential's response_mode: "" or "query" (the code comes
	// back in the redirect's query), or "form_post" (asked as response_mode=form_post).
	ResponseMode string

	// Client authentication without a secret (clientauth.go). ClientKey is a PEM
	// private key (secret); ClientCertificate its PEM certificate, leaf first.
	ClientKey                string
	ClientKeyID              string // kid of the client assertion
	ClientCertificate        string
	ClientAssertionAudience  string // aud of the client assertion; default TokenURL
	ClientAssertionAlgorithm string // JWS alg; default from the key
	// CACertificate is a PEM bundle of extra trust anchors for the token endpoint.
	CACertificate string

	// Timeout bounds one request made with this Config; zero (or more than the
	// Client's own timeout) means the Client's. It lets one long-lived Client and
	// Broker follow a changed engine setting without being rebuilt.
	Timeout time.Duration
	// DefaultLifetime is assumed for a token whose answer has no expires_in;
	// zero means the Client's.
	DefaultLifetime time.Duration

	// Assertion is what the JWT-bearer grant signs for every token request
	// (jwtbearer.go); nil for the other grants. It holds the signing key.
	Assertion *credtype.Assertion
	// ResponseFields are token-answer members handed out with the token
	// (credtype.OAuthPreset.ResponseFields), kept in Token.Extra.
	ResponseFields []string
	// Previous is the client as it was before its secret or key was rotated, while the
	// credential keeps it (client_secret_overlap): tried once when this one is refused
	// with invalid_client (overlap.go). Never printed by String.
	Previous *Config
	// GitHub is a github_app credential's App (githubapp.go); nil for other grants.
	GitHub *GitHubApp
	// Federation is the issuer and key of auth_style federated (federated.go), set by
	// the engine when config issuer is; nil otherwise. It holds no key, only the way
	// to sign with the current one.
	Federation *Federation
	// Host bounds the token requests to this Config's token host, shared with every
	// other Config of the same host (hostgate.go); zero fields take the defaults. The
	// backend sets it from config token_host_concurrency and token_host_rate.
	Host HostLimits
}

// reservedParams are set by the grant itself; letting Params override them
// would change the grant or leak one credential's secret into another slot.
var reservedParams = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true,
	"username": true, "password": true, "scope": true, "refresh_token": true,
	"code": true, "code_verifier": true, "code_challenge": true,
	"code_challenge_method": true, "redirect_uri": true, "state": true,
	"response_type": true, "audience": true, "assertion": true,
	"client_assertion": true, "client_assertion_type": true,
}

// FromFields maps a credential's validated fields to a Config by its type's OAuth
// preset in the catalog (credtype.OAuthPreset): the grant, endpoint templates filled
// from fields by the fields' own rules, the default scopes and auth style, and the
// fields sent as parameters. Every preset honours "token_url" and "auth_url"
// overrides, so a test or a private deployment can point it elsewhere. fields values
// are strings, except "scopes", which may also be a []string (or []any of strings, as
// JSON decoding yields). The result is validated with Config.Validate.
func FromFields(typeName string, fields map[string]any) (Config, error) {
	t, ok := credtype.Lookup(typeName)
	if !ok || t.OAuth == nil {
		return Config{}, fmt.Errorf("credential type %q is not an OAuth 2.0 type", typeName)
	}
	p := t.OAuth
	f := fieldReader{fields: fields}
	if p.Grant == credtype.GrantGitHubApp {
		return gitHubFromFields(typeName, &f)
	}
	cfg := Config{
		Grant:        Grant(p.Grant),
		ClientSecret: f.secret("client_secret"),
		Scopes:       f.scopes(),
		Audience:     f.str("audience"),
		AuthStyle:    f.str("auth_style"),
		RedirectURL:  f.str("redirect_url"),

		ClientKey:                f.secret("client_key"),
		ClientKeyID:              f.str("client_key_id"),
		ClientCertificate:        f.str("client_certificate"),
		ClientAssertionAudience:  f.str("client_assertion_audience"),
		ClientAssertionAlgorithm: f.str("client_assertion_algorithm"),
		CACertificate:            f.str("ca_certificate"),

		AuthorizationParams: credtype.StringMap(f.fields[credtype.FieldAuthorizationParams]),
		ResponseMode:        f.str(credtype.FieldResponseMode),
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = t.DefaultScopes()
	}
	if !p.TokenURLFromKey {
		cfg.TokenURL = f.endpoint(t, p.TokenURL, "token_url")
	}
	if cfg.Grant == GrantJWTBearer && f.err == nil {
		if err := fromAssertion(t, &cfg, fields); err != nil {
			f.err = err
		}
	}
	if p.AuthURL != "" {
		cfg.AuthURL = f.endpoint(t, p.AuthURL, "auth_url")
	}
	if t.DeviceFlow() {
		cfg.DeviceAuthorizationURL = f.required(credtype.FieldDeviceAuthorizationURL)
	}
	switch {
	case cfg.Grant == GrantPassword:
		cfg.Username, cfg.Password = f.required("username"), f.requiredSecret("password")
	case p.PasswordGrantWithUser:
		cfg.Username, cfg.Password = f.str("username"), f.secret("password")
		switch {
		case cfg.Username != "" && cfg.Password != "":
			cfg.Grant = GrantPassword
		case cfg.Username != "" || cfg.Password != "":
			f.fail("password", "username and password must be given together")
		}
	}
	for _, name := range p.Params {
		if cfg.Params == nil {
			cfg.Params = make(map[string]string, len(p.Params))
		}
		cfg.Params[name] = f.required(name)
	}
	// A public client (no secret) identifies itself in the body; HTTP Basic with an
	// empty password is refused by some providers.
	if cfg.ClientSecret == "" {
		defaultStyle(&cfg, AuthStyleBody)
	}
	defaultStyle(&cfg, p.AuthStyle)
	if cfg.Grant == GrantJWTBearer {
		cfg.ClientID = f.str("client_id") // optional: the assertion names the client
	} else {
		cfg.ClientID = f.required("client_id")
	}
	if f.err != nil {
		return Config{}, fmt.Errorf("%s: %w", typeName, f.err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", typeName, err)
	}
	return cfg, nil
}

// String describes c with the client secret, client key and password redacted
// (certificates are public, but long: only whether one is set is shown).
func (c Config) String() string {
	return fmt.Sprintf("oauth.Config{Grant:%s TokenURL:%s AuthURL:%s ClientID:%s ClientSecret:%s Scopes:%v "+
		"Audience:%s AuthStyle:%s Username:%s Password:%s RedirectURL:%s Params:%v "+
		"ClientKey:%s ClientKeyID:%s ClientCertificate:%s ClientAssertionAudience:%s ClientAssertionAlgorithm:%s CACertificate:%s Assertion:%v Federation:%s}",
		c.Grant, c.TokenURL, c.AuthURL, c.ClientID, redact(c.ClientSecret), c.Scopes,
		c.Audience, c.AuthStyle, c.Username, redact(c.Password), c.RedirectURL, c.Params,
		redact(c.ClientKey), c.ClientKeyID, present(c.ClientCertificate), c.ClientAssertionAudience,
		c.ClientAssertionAlgorithm, present(c.CACertificate), c.Assertion, c.Federation.String())
}

func present(s string) string {
	if s == "" {
		return ""
	}
	return "[set]"
}

// GoString is String, so %#v redacts too.
func (c Config) GoString() string { return c.String() }

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

func defaultStyle(cfg *Config, style string) {
	if cfg.AuthStyle == "" {
		cfg.AuthStyle = style
	}
}

// Validate checks that the Config can be used for its grant: the fields the
// grant needs are present, the auth style is known and the endpoints are https
// (or loopback). Errors name the field, never its value.
func (c Config) Validate() error {
	if c.Grant == GrantGitHubApp {
		return c.GitHub.validate(c)
	}
	var errs []error
	if c.ClientID == "" && c.Grant != GrantJWTBearer {
		errs = append(errs, errors.New("client_id is required"))
	}
	if err := CheckEndpoint(c.TokenURL); err != nil {
		errs = append(errs, fmt.Errorf("token_url: %w", err))
	}
	switch c.AuthStyle {
	case "", AuthStyleHeader, AuthStyleBody:
	case AuthStylePrivateKeyJWT:
		if c.ClientKey == "" {
			errs = append(errs, errors.New("client_key is required for auth_style private_key_jwt"))
		}
	case AuthStyleTLSClientAuth:
		if c.ClientKey == "" || c.ClientCertificate == "" {
			errs = append(errs, errors.New("client_key and client_certificate are required for auth_style tls_client_auth"))
		}
	case AuthStyleFederated: // the issuer is the engine's: checked when a request is made (federated.go)
	default:
		errs = append(errs, fmt.Errorf("auth_style must be %q, %q, %q, %q or %q", AuthStyleHeader, AuthStyleBody, AuthStylePrivateKeyJWT, AuthStyleTLSClientAuth, AuthStyleFederated))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		if reservedParams[k] {
			errs = append(errs, fmt.Errorf("parameter %q is set by the grant and cannot be overridden", k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.AuthorizationParams)) {
		if credtype.OwnedAuthorizationParam(k) {
			errs = append(errs, fmt.Errorf("authorization_params: parameter %q is set by the engine and cannot be overridden", k))
		}
	}
	switch c.ResponseMode {
	case "", credtype.ResponseModeQuery, credtype.ResponseModeFormPost:
	default:
		errs = append(errs, fmt.Errorf("response_mode must be %q or %q", credtype.ResponseModeQuery, credtype.ResponseModeFormPost))
	}
	switch c.Grant {
	case GrantClientCredentials:
	case GrantPassword:
		if c.Username == "" || c.Password == "" {
			errs = append(errs, errors.New("username and password are required for the password grant"))
		}
	case GrantAccountCredentials:
		if c.Params["account_id"] == "" {
			errs = append(errs, errors.New("account_id is required for the account_credentials grant"))
		}
	case GrantAuthorizationCode:
		if err := CheckEndpoint(c.AuthURL); err != nil {
			errs = append(errs, fmt.Errorf("auth_url: %w", err))
		}
	case GrantJWTBearer:
		if err := c.validateAssertion(); err != nil {
			errs = append(errs, err)
		}
	case GrantDeviceCode:
		if err := CheckEndpoint(c.DeviceAuthorizationURL); err != nil {
			errs = append(errs, fmt.Errorf("device_authorization_url: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("unsupported grant %q", c.Grant))
	}
	return errors.Join(errs...)
}

// CheckEndpoint reports whether raw may be used as an OAuth endpoint: an
// absolute https URL, or http only to a loopback host (localhost, 127.0.0.0/8,
// ::1) so development and tests need no certificates. Credentials embedded in
// the URL are refused because URLs end up in logs and error messages.
func CheckEndpoint(raw string) error {
	if raw == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	return checkEndpointURL(u)
}

func checkEndpointURL(u *url.URL) error {
	switch {
	case u.Host == "" || !u.IsAbs():
		return errors.New("must be an absolute URL")
	case u.User != nil:
		return errors.New("must not contain credentials")
	case credtype.EndpointAllowed(u.Scheme, u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errInsecureEndpoint
	default:
		return fmt.Errorf("scheme %q is not supported", u.Scheme)
	}
}

// authStyle maps the configured style onto x/oauth2's. Auto-detection is never
// used: it retries a failed request with the other style, which would double
// provider requests on every failure and blur error classification.
func (c Config) authStyle() oauth2.AuthStyle {
	if c.AuthStyle == AuthStyleHeader || c.AuthStyle == "" {
		return oauth2.AuthStyleInHeader
	}
	// body, and the styles without a secret: client_id in the body
	return oauth2.AuthStyleInParams
}

// secret is the client secret the token request carries: none for the styles that
// authenticate otherwise, whatever is stored.
func (c Config) secret() string {
	if c.AuthStyle == AuthStylePrivateKeyJWT || c.AuthStyle == AuthStyleTLSClientAuth || c.AuthStyle == AuthStyleFederated {
		return ""
	}
	return c.ClientSecret
}

// fieldReader pulls typed values out of a credential's field map, remembering
// the first problem so FromFields reads as a list of assignments.
type fieldReader struct {
	fields map[string]any
	err    error
}

func (f *fieldReader) fail(name, rule string) {
	if f.err == nil {
		f.err = fmt.Errorf("field %q %s", name, rule)
	}
}

// endpoint is a preset's endpoint: its template filled from the fields, overridden by
// the field called field when that is set. Without a template the field is required.
func (f *fieldReader) endpoint(t *credtype.Type, tmpl, field string) string {
	if tmpl == "" {
		return f.required(field)
	}
	v, err := t.FillEndpoint(tmpl, f.fields)
	if err != nil && f.err == nil {
		f.err = err
	}
	if o := f.str(field); o != "" {
		return o
	}
	return v
}

func (f *fieldReader) str(name string) string {
	return strings.TrimSpace(f.secret(name))
}

// secret reads a secret exactly as stored: a password is used as given (the catalog
// marks it so), and a client secret is sent as it was validated and stored. Trimming
// here would silently send another secret than the one the operator wrote.
func (f *fieldReader) secret(name string) string {
	v, ok := f.fields[name]
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		f.fail(name, "must be a string")
		return ""
	}
	return s
}

func (f *fieldReader) required(name string) string {
	s := f.str(name)
	if s == "" {
		f.fail(name, "is required")
	}
	return s
}

func (f *fieldReader) requiredSecret(name string) string {
	s := f.secret(name)
	if s == "" {
		f.fail(name, "is required")
	}
	return s
}

// scopes accepts a list or a single string of space- or comma-separated scopes.
func (f *fieldReader) scopes() []string {
	var raw []string
	switch v := f.fields["scopes"].(type) {
	case nil:
		return nil
	case string:
		raw = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
	case []string:
		raw = v
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				f.fail("scopes", "must be a list of strings")
				return nil
			}
			raw = append(raw, s)
		}
	default:
		f.fail("scopes", "must be a list of strings")
		return nil
	}
	out := make([]string, 0, len(raw))
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
