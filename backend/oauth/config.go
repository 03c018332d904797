package oauth

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
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
	AuthStyle    string // AuthStyleHeader (default) or AuthStyleBody
	Username     string
	Password     string
	RedirectURL  string
	// Params are extra parameters for the token request of direct grants and
	// the authorization request of the authorization-code grant, e.g. Zoom's
	// account_id.
	Params map[string]string

	// Timeout bounds one request made with this Config; zero (or more than the
	// Client's own timeout) means the Client's. It lets one long-lived Client and
	// Broker follow a changed engine setting without being rebuilt.
	Timeout time.Duration
	// DefaultLifetime is assumed for a token whose answer has no expires_in;
	// zero means the Client's.
	DefaultLifetime time.Duration
}

// Preset type names. They match the credential-type catalog; "microsoft_graph"
// is accepted as an alias of TypeM365.
const (
	TypeClientCredentials = "oauth2_client_credentials"
	TypePassword          = "oauth2_password"
	TypeAuthorizationCode = "oauth2_authorization_code"
	TypeM365              = "m365"
	TypeMicrosoftGraph    = "microsoft_graph"
	TypeZoom              = "zoom"
	TypeServiceNow        = "servicenow_oauth"
	TypeCisco             = "cisco_client_credentials"
)

// Provider endpoints and defaults baked into the presets.
const (
	m365TokenURLFormat = "https://login.microsoftonline.com/%s/oauth2/v2.0/token"
	m365AuthURLFormat  = "https://login.microsoftonline.com/%s/oauth2/v2.0/authorize"
	m365DefaultScope   = "https://graph.microsoft.com/.default"
	zoomTokenURL       = "https://zoom.us/oauth/token"
	serviceNowURLFmt   = "https://%s.service-now.com/oauth_token.do"
	serviceNowSuffix   = ".service-now.com"
)

// reservedParams are set by the grant itself; letting Params override them
// would change the grant or leak one credential's secret into another slot.
var reservedParams = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true,
	"username": true, "password": true, "scope": true, "refresh_token": true,
	"code": true, "code_verifier": true, "code_challenge": true,
	"code_challenge_method": true, "redirect_uri": true, "state": true,
	"response_type": true, "audience": true,
}

var (
	// A tenant is a GUID, a verified domain or one of "common",
	// "organizations", "consumers"; it lands in a URL path, so nothing else.
	tenantPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$`)
	// A ServiceNow instance name is one DNS label.
	instancePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// IsOAuthType reports whether typeName is one of the OAuth 2.0 credential
// types FromFields understands.
func IsOAuthType(typeName string) bool {
	switch typeName {
	case TypeClientCredentials, TypePassword, TypeAuthorizationCode,
		TypeM365, TypeMicrosoftGraph, TypeZoom, TypeServiceNow, TypeCisco:
		return true
	}
	return false
}

// FromFields maps a credential type's validated fields to a Config, applying
// the provider presets. fields values are strings, except "scopes", which may
// also be a []string (or []any of strings, as JSON decoding yields). Every
// preset honours "token_url" and "auth_url" overrides, so a test or a private
// deployment can point it elsewhere. The result is validated with
// Config.Validate.
func FromFields(typeName string, fields map[string]any) (Config, error) {
	f := fieldReader{fields: fields}
	cfg := Config{
		ClientSecret: f.secret("client_secret"),
		Scopes:       f.scopes(),
		Audience:     f.str("audience"),
		AuthStyle:    f.str("auth_style"),
		RedirectURL:  f.str("redirect_url"),
	}

	switch typeName {
	case TypeClientCredentials:
		cfg.Grant = GrantClientCredentials
		cfg.TokenURL = f.required("token_url")
	case TypePassword:
		cfg.Grant = GrantPassword
		cfg.TokenURL = f.required("token_url")
		cfg.Username = f.required("username")
		cfg.Password = f.requiredSecret("password")
	case TypeAuthorizationCode:
		cfg.Grant = GrantAuthorizationCode
		cfg.AuthURL = f.required("auth_url")
		cfg.TokenURL = f.required("token_url")
		// A public client (no secret) identifies itself in the body; HTTP Basic with
		// an empty password is refused by some providers.
		if cfg.ClientSecret == "" {
			defaultStyle(&cfg, AuthStyleBody)
		}
	case TypeM365, TypeMicrosoftGraph:
		tenant := f.required("tenant")
		if tenant != "" && !tenantPattern.MatchString(tenant) {
			f.fail("tenant", "must be a tenant ID or domain")
		}
		cfg.Grant = GrantClientCredentials
		cfg.TokenURL = fmt.Sprintf(m365TokenURLFormat, tenant)
		cfg.AuthURL = fmt.Sprintf(m365AuthURLFormat, tenant)
		if len(cfg.Scopes) == 0 {
			cfg.Scopes = []string{m365DefaultScope}
		}
		defaultStyle(&cfg, AuthStyleBody)
	case TypeZoom:
		cfg.Grant = GrantAccountCredentials
		cfg.TokenURL = zoomTokenURL
		cfg.Params = map[string]string{"account_id": f.required("account_id")}
		defaultStyle(&cfg, AuthStyleHeader)
	case TypeServiceNow:
		instance := strings.TrimSuffix(strings.ToLower(f.required("instance")), serviceNowSuffix)
		if instance != "" && !instancePattern.MatchString(instance) {
			f.fail("instance", "must be the instance name, as in <name>.service-now.com")
		}
		cfg.TokenURL = fmt.Sprintf(serviceNowURLFmt, instance)
		cfg.Username, cfg.Password = f.str("username"), f.secret("password")
		switch {
		case cfg.Username != "" && cfg.Password != "":
			cfg.Grant = GrantPassword
		case cfg.Username != "" || cfg.Password != "":
			f.fail("password", "username and password must be given together")
		default:
			cfg.Grant = GrantClientCredentials
		}
		defaultStyle(&cfg, AuthStyleBody)
	case TypeCisco:
		cfg.Grant = GrantClientCredentials
		cfg.TokenURL = f.required("auth_url") // Cisco calls its token endpoint the auth URL
		defaultStyle(&cfg, AuthStyleHeader)
	default:
		return Config{}, fmt.Errorf("credential type %q is not an OAuth 2.0 type", typeName)
	}
	cfg.ClientID = f.required("client_id")

	// Overrides apply to every preset. For cisco, auth_url already is the
	// token endpoint, so only token_url overrides it.
	if v := f.str("token_url"); v != "" {
		cfg.TokenURL = v
	}
	if v := f.str("auth_url"); v != "" && typeName != TypeCisco {
		cfg.AuthURL = v
	}
	if f.err != nil {
		return Config{}, fmt.Errorf("%s: %w", typeName, f.err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", typeName, err)
	}
	return cfg, nil
}

// String describes c with the client secret and password redacted.
func (c Config) String() string {
	return fmt.Sprintf("oauth.Config{Grant:%s TokenURL:%s AuthURL:%s ClientID:%s ClientSecret:%s Scopes:%v "+
		"Audience:%s AuthStyle:%s Username:%s Password:%s RedirectURL:%s Params:%v}",
		c.Grant, c.TokenURL, c.AuthURL, c.ClientID, redact(c.ClientSecret), c.Scopes,
		c.Audience, c.AuthStyle, c.Username, redact(c.Password), c.RedirectURL, c.Params)
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
	var errs []error
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_id is required"))
	}
	if err := CheckEndpoint(c.TokenURL); err != nil {
		errs = append(errs, fmt.Errorf("token_url: %w", err))
	}
	switch c.AuthStyle {
	case "", AuthStyleHeader, AuthStyleBody:
	default:
		errs = append(errs, fmt.Errorf("auth_style must be %q or %q", AuthStyleHeader, AuthStyleBody))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		if reservedParams[k] {
			errs = append(errs, fmt.Errorf("parameter %q is set by the grant and cannot be overridden", k))
		}
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
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errInsecureEndpoint
	default:
		return fmt.Errorf("scheme %q is not supported", u.Scheme)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// authStyle maps the configured style onto x/oauth2's. Auto-detection is never
// used: it retries a failed request with the other style, which would double
// provider requests on every failure and blur error classification.
func (c Config) authStyle() oauth2.AuthStyle {
	if c.AuthStyle == AuthStyleBody {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
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
