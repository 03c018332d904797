package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"
)

// Bounds on what a provider's answer may carry, so a stored token always fits one
// storage entry (Consul's are 512 KiB; JSON may escape a byte as six).
const (
	MaxAccessTokenBytes  = 64 << 10 // the largest JWT access tokens seen are a few KiB
	MaxRefreshTokenBytes = 16 << 10
	maxTokenTypeBytes    = 64
	maxScopeBytes        = 8 << 10
)

// Token is an access token as the backend caches and serves it. Expiry and
// IssuedAt come from the Client's clock, so cache decisions and tests agree.
type Token struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
	Scope        string    `json:"scope,omitempty"`
	IssuedAt     time.Time `json:"issued_at"`
	// AssumedLifetime is the default lifetime Expiry was computed from when the
	// provider's answer said nothing of it (no expires_in); 0 when it did. A token
	// whose lifetime was assumed is only as good as the assumption: Fresh refuses
	// it once the default in force is another.
	AssumedLifetime time.Duration `json:"assumed_lifetime,omitempty"`
	// From is the refresh token this token was refreshed from ("" for any other
	// grant), in memory only: the backend stores an answer only over the token state
	// it was refreshed from, so an answer to an older grant never replaces a newer one.
	From string `json:"-"`
	// LifetimeCapped is set when the provider's expires_in was longer than
	// MaxLifetime: Expiry is IssuedAt + MaxLifetime instead.
	LifetimeCapped bool `json:"lifetime_capped,omitempty"`
	// Extra are the answer's members the preset names besides the token
	// (Config.ResponseFields: Salesforce's instance_url), handed out with it. Not
	// secrets.
	Extra map[string]string `json:"extra,omitempty"`
	// ByPrevious, in memory only, is set on a token obtained through Config.Previous
	// after the current client secret or key was refused (overlap.go).
	ByPrevious bool `json:"-"`
	// GitHub is what a GitHub App installation token was granted (githubapp.go).
	GitHub *GitHubGrant `json:"github,omitempty"`
}

// Fresh reports whether t is valid for d after now (ValidFor) and its expiry rests
// on what the provider said or on defaultLifetime, the default in force now.
func (t *Token) Fresh(now time.Time, d, defaultLifetime time.Duration) bool {
	return t.ValidFor(now, d) && (t.AssumedLifetime == 0 || t.AssumedLifetime == defaultLifetime)
}

// String describes t without its access and refresh tokens, for logs. It
// has a value receiver so Token values and pointers both redact.
func (t Token) String() string {
	return fmt.Sprintf("oauth.Token{TokenType:%s AccessToken:%s RefreshToken:%s Expiry:%s Scope:%q IssuedAt:%s Extra:%v}",
		t.TokenType, redact(t.AccessToken), redact(t.RefreshToken),
		t.Expiry.UTC().Format(time.RFC3339), t.Scope, t.IssuedAt.UTC().Format(time.RFC3339), t.Extra)
}

// GoString is String, so %#v redacts too.
func (t Token) GoString() string { return t.String() }

// ValidFor reports whether the token has an access token that stays valid for
// at least d after now. A nil token is never valid.
func (t *Token) ValidFor(now time.Time, d time.Duration) bool {
	return t != nil && t.AccessToken != "" && t.Expiry.Sub(now) >= d
}

// Defaults for ClientOptions.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = oauth2ReadLimit - 1
	DefaultLifetime         = time.Hour
	// MaxLifetime is the longest an access token is taken to live, whatever the
	// provider's expires_in says; a longer one is capped to it (Token.LifetimeCapped).
	// The longest-lived access tokens providers issue last 60 days (Facebook,
	// LinkedIn); a year leaves room for any real lifetime and keeps a hostile or
	// broken number (1e30, 2^63−1) from overflowing the expiry.
	MaxLifetime = 365 * 24 * time.Hour
)

// oauth2ReadLimit is how much of a token response x/oauth2 reads: it parses the first
// MiB and ignores the rest, so a cap must stay under it to see an answer exceed it.
const oauth2ReadLimit = 1 << 20

// ClientOptions bound a Client. Zero values take the Default* constants.
type ClientOptions struct {
	// Timeout bounds one token request, including reading the response.
	Timeout time.Duration
	// MaxResponseBytes caps a token response body. x/oauth2 itself reads at
	// most 1 MiB, so a cap of 1 MiB or more is lowered to one byte under it:
	// otherwise an oversized answer would be cut there and reported as a bad
	// response instead of a too large one.
	MaxResponseBytes int64
	// DefaultLifetime is assumed for tokens whose response has no expires_in.
	DefaultLifetime time.Duration
	// Now is the clock for Expiry, IssuedAt and Retry-After dates.
	Now func() time.Time
	// Transport is the base transport; nil means a clone of
	// http.DefaultTransport (system TLS roots, proxy from the environment).
	Transport http.RoundTripper
	// Observer is told of every token request and single-flight waiter; nil
	// observes nothing.
	Observer Observer
	// HostNow is the host gate's clock (hostgate.go), the wall clock when nil. It is
	// not Now: a test's frozen clock would never let a paced request start; a test
	// gives the wall clock moved on by its own clock's advances, so a host paused by a
	// Retry-After ends when the test moves past it.
	HostNow func() time.Time
	// Transports holds the transports of credentials with their own TLS
	// (ca_certificate, tls_client_auth); nil means a cache of its own over
	// Transport.
	Transports *tlsclient.Cache
}

// Client makes token requests with a bounded HTTP client. It is safe for
// concurrent use and holds no per-credential state.
type Client struct {
	http       *http.Client
	base       http.RoundTripper // under http's bounds
	transports *tlsclient.Cache
	limit      int64
	timeout    time.Duration
	lifetime   time.Duration
	now        func() time.Time
	observer   Observer
	gate       *hostGate // the per-token-host bound of every request (hostgate.go)
}

// NewClient returns a Client with o's bounds.
func NewClient(o ClientOptions) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxResponseBytes <= 0 || o.MaxResponseBytes >= oauth2ReadLimit {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.DefaultLifetime <= 0 {
		o.DefaultLifetime = DefaultLifetime
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Transports == nil {
		o.Transports = tlsclient.NewCache(o.Transport, 0)
	}
	return &Client{
		http: &http.Client{
			Transport:     &boundedTransport{base: o.Transport, limit: o.MaxResponseBytes},
			CheckRedirect: checkRedirect,
			Timeout:       o.Timeout,
		},
		base:       o.Transport,
		transports: o.Transports,
		limit:      o.MaxResponseBytes,
		timeout:    o.Timeout,
		lifetime:   o.DefaultLifetime,
		now:        o.Now,
		observer:   o.Observer,
		gate:       newHostGate(gateClock{now: o.HostNow}),
	}
}

// HostStats lists the token hosts the Client has sent requests to: what is in flight,
// queued and paused at each (hostgate.go), for the metrics.
func (c *Client) HostStats() []HostStat { return c.gate.stats() }

// Mint obtains a new token. Client-credentials, password and
// account-credentials grants use cfg alone; an authorization-code credential
// is refreshed with refreshToken, and without one it fails permanently with
// Code "no_refresh_token". When the provider does not rotate the refresh
// token, the returned Token keeps refreshToken. Failures are *Error.
func (c *Client) Mint(ctx context.Context, cfg Config, refreshToken string) (*Token, error) {
	if cfg.Previous != nil {
		return c.mintOverlap(ctx, cfg, refreshToken)
	}
	ctx, cancel, tr, err := c.startRequest(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if cfg.Grant == GrantGitHubApp {
		return c.mintGitHubApp(ctx, cfg, tr)
	}
	var tok *oauth2.Token
	grant, start := string(cfg.Grant), time.Now()
	switch cfg.Grant {
	case GrantAuthorizationCode, GrantDeviceCode: // refreshed; the device grant itself is PollDevice
		if refreshToken == "" {
			return nil, &Error{Class: Permanent, Code: CodeNoRefreshToken,
				detail: "the credential has not been authorized"}
		}
		// reuseTokenSource sees a token without an access token as expired
		// and runs exactly one refresh_token grant.
		grant = "refresh_token"
		tok, err = cfg.codeConfig().TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	case GrantJWTBearer:
		dc, aerr := c.jwtBearerConfig(cfg)
		if aerr != nil {
			c.observe(grant, start, aerr)
			return nil, aerr
		}
		tok, err = dc.Token(ctx)
	default:
		tok, err = cfg.directConfig().Token(ctx)
	}
	if err != nil {
		e := classify(err, tr, c.now())
		c.observe(grant, start, e)
		return nil, e
	}
	t, err := c.token(tok, cfg)
	c.observe(grant, start, err)
	if err != nil {
		return nil, err
	}
	if t.RefreshToken == "" {
		t.RefreshToken = refreshToken
	}
	t.From = refreshToken
	return t, nil
}

// Exchange completes an authorization-code grant: code from the provider's
// redirect, verifier the PKCE verifier whose challenge AuthCodeURL sent (empty
// when the authorization did not use PKCE). Failures are *Error.
func (c *Client) Exchange(ctx context.Context, cfg Config, code, verifier string) (*Token, error) {
	if cfg.Grant != GrantAuthorizationCode {
		return nil, &Error{Class: Permanent, Code: CodeInvalidConfig,
			detail: fmt.Sprintf("grant %q has no authorization code to exchange", cfg.Grant)}
	}
	if code == "" {
		return nil, &Error{Class: Permanent, Code: CodeInvalidConfig, detail: "authorization code is empty"}
	}
	if cfg.Previous != nil {
		return c.exchangeOverlap(ctx, cfg, code, verifier)
	}
	opts := cfg.extraOptions()
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	ctx, cancel, tr, err := c.startRequest(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cancel()
	start := time.Now()
	tok, err := cfg.codeConfig().Exchange(ctx, code, opts...)
	if err != nil {
		e := classify(err, tr, c.now())
		c.observe(string(GrantAuthorizationCode), start, e)
		return nil, e
	}
	t, err := c.token(tok, cfg)
	c.observe(string(GrantAuthorizationCode), start, err)
	return t, err
}

// AuthCodeURL builds the provider's consent URL for cfg with state and an S256
// PKCE challenge derived from verifier (none when verifier is empty). Audience,
// Params and AuthorizationParams are added as authorization-request parameters;
// response_mode=form_post when ResponseMode asks it; and with offline_access among
// the scopes, prompt carries consent (OpenID Connect Core section 11: without it a
// certified server drops offline_access and issues no refresh token).
func AuthCodeURL(cfg Config, state, verifier string) string {
	opts := cfg.extraOptions()
	asked := ""
	for _, k := range slices.Sorted(maps.Keys(cfg.AuthorizationParams)) {
		if credtype.OwnedAuthorizationParam(k) {
			continue // refused at write; never sent, whatever storage holds
		}
		if k == "prompt" {
			asked = cfg.AuthorizationParams[k]
			continue
		}
		opts = append(opts, oauth2.SetAuthURLParam(k, cfg.AuthorizationParams[k]))
	}
	if prompt := credtype.AuthorizationPrompt(cfg.Scopes, asked); prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	if cfg.ResponseMode == credtype.ResponseModeFormPost {
		opts = append(opts, oauth2.SetAuthURLParam("response_mode", credtype.ResponseModeFormPost))
	}
	if verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	return cfg.codeConfig().AuthCodeURL(state, opts...)
}

// NewVerifier returns a fresh PKCE code verifier (RFC 7636, 32 random bytes).
func NewVerifier() string { return oauth2.GenerateVerifier() }

// NewState returns an unguessable OAuth state value: 32 random bytes,
// base64url without padding.
func NewState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating oauth state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// stateLen is the length of every state NewState returns.
const stateLen = 43

// ValidState reports whether s has the form of a state NewState returns (43 base64url
// characters), so anything else can be refused before it is used as a storage key.
func ValidState(s string) bool {
	if len(s) != stateLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') { //nolint:staticcheck // QF1001: reads as the set of allowed bytes
			return false
		}
	}
	return true
}

// MaxAuthCodeLen bounds an authorization code. RFC 6749 sets no limit; providers' codes are
// well under 2 KB.
const MaxAuthCodeLen = 4096

// ValidCode reports whether s can be an authorization code: 1 to MaxCodeLen visible
// ASCII characters or spaces (RFC 6749 appendix A.11: VSCHAR).
func ValidCode(s string) bool { return printableASCII(s, MaxAuthCodeLen, true) }

// printableASCII reports whether s is 1 to n printable ASCII characters, spaces
// included when spaces says so (RFC 6749 appendix A: VSCHAR with spaces, NQCHAR-like
// without).
func printableASCII(s string, n int, spaces bool) bool {
	if s == "" || len(s) > n {
		return false
	}
	lowest := byte(0x21)
	if spaces {
		lowest = 0x20
	}
	for i := 0; i < len(s); i++ {
		if s[i] < lowest || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// bound limits one request to cfg.Timeout (when set and shorter than the
// client's own timeout, which stays the upper bound).
func (c *Client) bound(ctx context.Context, cfg Config) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeoutFor(cfg))
}

func (c *Client) timeoutFor(cfg Config) time.Duration {
	if cfg.Timeout > 0 && cfg.Timeout < c.timeout {
		return cfg.Timeout
	}
	return c.timeout
}

// lifetimeFor is the lifetime assumed for cfg's tokens when the provider names
// none.
func (c *Client) lifetimeFor(cfg Config) time.Duration {
	if cfg.DefaultLifetime > 0 {
		return cfg.DefaultLifetime
	}
	return c.lifetime
}

// checkConfig repeats Config.Validate right before a request (defence in
// depth: a Config may be built by hand or decoded from old storage).
func checkConfig(cfg Config) error {
	if err := CheckEndpoint(cfg.TokenURL); errors.Is(err, errInsecureEndpoint) {
		return &Error{Class: Permanent, Code: CodeInsecureEndpoint, detail: "token_url " + err.Error()}
	}
	if err := cfg.Validate(); err != nil {
		return &Error{Class: Permanent, Code: CodeInvalidConfig, detail: err.Error()}
	}
	return nil
}

// token converts x/oauth2's token, re-basing the expiry on the injected clock. A
// negative expires_in makes the answer a bad response.
func (c *Client) token(tok *oauth2.Token, cfg Config) (*Token, error) {
	now := c.now()
	lifetime, assumed, capped, err := c.lifetimeOf(tok, cfg)
	if err != nil {
		return nil, err
	}
	scope, _ := tok.Extra("scope").(string)
	for _, f := range []struct {
		name  string
		value string
		max   int
	}{
		{"access_token", tok.AccessToken, MaxAccessTokenBytes},
		{"refresh_token", tok.RefreshToken, MaxRefreshTokenBytes},
		{"token_type", tok.TokenType, maxTokenTypeBytes},
		{"scope", scope, maxScopeBytes},
	} {
		if len(f.value) > f.max {
			// What is kept must fit one storage entry on every backend (and stay so
			// once JSON escapes it): an answer that would not is refused, not stored
			// and retried for ever.
			return nil, &Error{Class: Transient, Code: CodeBadResponse, Status: http.StatusOK,
				detail: fmt.Sprintf("the provider's answer has a %s of %d bytes, more than the %d the engine keeps", f.name, len(f.value), f.max)}
		}
	}
	t := &Token{
		AccessToken:    tok.AccessToken,
		TokenType:      tok.Type(),
		RefreshToken:   tok.RefreshToken,
		Expiry:         now.Add(lifetime),
		IssuedAt:       now,
		LifetimeCapped: capped,
	}
	if assumed {
		t.AssumedLifetime = lifetime
	}
	if t.Extra, err = responseFields(tok, cfg); err != nil {
		return nil, err
	}
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		t.Scope = s
	} else {
		// RFC 6749 §5.1: an omitted scope is the one requested.
		t.Scope = strings.Join(cfg.Scopes, " ")
	}
	return t, nil
}

// lifetimeOf reads expires_in: from the raw answer (x/oauth2 keeps a JSON number as
// a float64, a form value as an int64, a float64 or the string itself; it truncates
// its own JSON field to 32 bits, which can make a negative value positive), so JSON
// and form answers follow one rule (Lifetime). Without one (or with 0) it assumes
// cfg.DefaultLifetime (else the client's) and says so. capped reports a lifetime cut
// to MaxLifetime.
func (c *Client) lifetimeOf(tok *oauth2.Token, cfg Config) (d time.Duration, assumed, capped bool, err error) {
	raw := tok.Extra("expires_in")
	if raw == nil && tok.ExpiresIn != 0 {
		raw = tok.ExpiresIn
	}
	d, capped, err = Lifetime(raw)
	if err != nil {
		return 0, false, false, &Error{Class: Transient, Code: CodeBadResponse, Status: http.StatusOK,
			detail: "the provider's answer gives " + err.Error()}
	}
	if d > 0 {
		return d, false, capped, nil
	}
	return c.lifetimeFor(cfg), true, false, nil
}

// Lifetime is the token lifetime an expires_in value gives, as a token answer
// carries it (a number, or a string of one, which some providers send): 0 when it
// is absent, empty or 0 (the caller assumes a default); at most MaxLifetime, with
// capped set when the value was longer (huge values and overflows included);
// fractions of a second kept. A negative value or one that is not a decimal number
// is an error: a lifetime is never before the issue time.
func Lifetime(v any) (d time.Duration, capped bool, err error) {
	var secs float64
	switch v := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		secs = v
	case int64:
		secs = float64(v)
	case int:
		secs = float64(v)
	case json.Number:
		return Lifetime(string(v))
	case string:
		s := strings.TrimSpace(v)
		if s == "" {
			return 0, false, nil
		}
		if strings.Trim(s, "+-0123456789.eE") != "" {
			return 0, false, errExpiresInNotNumber
		}
		f, perr := strconv.ParseFloat(s, 64)
		if perr != nil && !errors.Is(perr, strconv.ErrRange) {
			return 0, false, errExpiresInNotNumber
		}
		secs = f // out of range: ±Inf, capped or refused below
	default:
		return 0, false, errExpiresInNotNumber
	}
	switch {
	case math.IsNaN(secs):
		return 0, false, errExpiresInNotNumber
	case secs < 0:
		return 0, false, errExpiresInNegative
	case secs == 0:
		return 0, false, nil
	case secs > MaxLifetime.Seconds():
		return MaxLifetime, true, nil
	}
	// At least a nanosecond: a positive lifetime never rounds to "none given".
	return max(time.Duration(secs*float64(time.Second)), time.Nanosecond), false, nil
}

var (
	errExpiresInNegative  = errors.New("a negative expires_in")
	errExpiresInNotNumber = errors.New("an expires_in that is not a number")
)

// directConfig expresses every direct grant through clientcredentials.Config:
// it is the one x/oauth2 entry point that takes extra token parameters, and
// it lets EndpointParams override grant_type (golang.org/x/oauth2/clientcredentials exempts
// "grant_type" from its no-overwrite check). oauth2.Config's
// PasswordCredentialsToken cannot send audience or other parameters.
func (c Config) directConfig() *clientcredentials.Config {
	params := url.Values{}
	switch c.Grant {
	case GrantPassword:
		params.Set("grant_type", string(GrantPassword))
		params.Set("username", c.Username)
		params.Set("password", c.Password)
	case GrantAccountCredentials:
		params.Set("grant_type", string(GrantAccountCredentials))
	}
	c.addParams(params.Set)
	return &clientcredentials.Config{
		ClientID:       c.ClientID,
		ClientSecret:   c.secret(),
		TokenURL:       c.TokenURL,
		Scopes:         c.Scopes,
		EndpointParams: params,
		AuthStyle:      c.authStyle(),
	}
}

// codeConfig is the authorization-code (and refresh) view of c.
func (c Config) codeConfig() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.secret(),
		Endpoint: oauth2.Endpoint{
			AuthURL:   c.AuthURL,
			TokenURL:  c.TokenURL,
			AuthStyle: c.authStyle(),
		},
		RedirectURL: c.RedirectURL,
		Scopes:      c.Scopes,
	}
}

// extraOptions carries Audience and Params into authorization and
// code-exchange requests.
func (c Config) extraOptions() []oauth2.AuthCodeOption {
	var opts []oauth2.AuthCodeOption
	c.addParams(func(k, v string) { opts = append(opts, oauth2.SetAuthURLParam(k, v)) })
	return opts
}

func (c Config) addParams(set func(k, v string)) {
	if c.Audience != "" {
		set("audience", c.Audience)
	}
	for k, v := range c.Params {
		set(k, v)
	}
}
