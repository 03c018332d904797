// The device authorization grant (RFC 8628): the device authorization request that
// starts it (DeviceAuthorize) and one poll of the token endpoint (PollDevice). The
// backend's poller decides when to poll; this file makes each request, bounded and
// classified like every token request, with the client authentication of the
// credential (header, body, private_key_jwt, tls_client_auth, or a public client).

package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// GrantDeviceCode is the device authorization grant. A device-code credential is
// minted by its refresh token once a person has consented (Mint), as an
// authorization-code credential is; PollDevice is the grant itself.
const GrantDeviceCode Grant = credtype.GrantDeviceCode

// The token endpoint's answers while a device authorization is pending (RFC 8628
// section 3.5). access_denied ends the attempt as a refusal (a permanent code already).
const (
	CodeAuthorizationPending = "authorization_pending"
	CodeSlowDown             = "slow_down"
	CodeExpiredToken         = "expired_token"
	CodeAccessDenied         = "access_denied"
)

// Bounds on a device authorization answer: the provider's numbers and strings are a
// stranger's data.
const (
	// DefaultDeviceInterval is the polling interval when the answer names none
	// (RFC 8628 section 3.2).
	DefaultDeviceInterval = 5 * time.Second
	// SlowDownStep is what every slow_down adds to the interval (section 3.5).
	SlowDownStep = 5 * time.Second
	// MinDeviceInterval and MaxDeviceInterval bound the interval a provider names.
	MinDeviceInterval = time.Second
	MaxDeviceInterval = 5 * time.Minute
	// MaxDeviceExpiry bounds how long the engine polls for one attempt (Entra and
	// GitHub give 15 minutes, Google 30).
	MaxDeviceExpiry = time.Hour

	maxDeviceCodeBytes = 4096
	maxUserCodeBytes   = 64
	maxVerifyURIBytes  = 2048
)

// DeviceAuthorization is a provider's answer to a device authorization request.
// DeviceCode is a secret (whoever holds it collects the tokens): String redacts it.
type DeviceAuthorization struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	ExpiresIn               time.Duration
	Interval                time.Duration
}

// String describes d without its device code.
func (d DeviceAuthorization) String() string {
	return fmt.Sprintf("oauth.DeviceAuthorization{DeviceCode:%s UserCode:%s VerificationURI:%s ExpiresIn:%s Interval:%s}",
		redact(d.DeviceCode), d.UserCode, d.VerificationURI, d.ExpiresIn, d.Interval)
}

// GoString is String, so %#v redacts too.
func (d DeviceAuthorization) GoString() string { return d.String() }

// DeviceAuthorize sends cfg's device authorization request (RFC 8628 section 3.1):
// client_id, scope, Audience and Params, authenticated as cfg's token requests are.
// Failures are *Error; an answer without a usable device_code, user_code,
// verification_uri or expires_in is CodeBadResponse, naming the field, never its value.
func (c *Client) DeviceAuthorize(ctx context.Context, cfg Config) (*DeviceAuthorization, error) {
	if cfg.Grant != GrantDeviceCode {
		return nil, configError(fmt.Sprintf("grant %q has no device authorization", cfg.Grant))
	}
	ctx, cancel, tr, err := c.startRequest(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cancel()
	hc, _ := ctx.Value(oauth2.HTTPClient).(*http.Client)
	form := url.Values{}
	if len(cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(cfg.Scopes, " "))
	}
	cfg.addParams(form.Set)
	secret := cfg.secret()
	header := cfg.authStyle() == oauth2.AuthStyleInHeader && secret != ""
	if !header {
		form.Set("client_id", cfg.ClientID)
		if secret != "" {
			form.Set("client_secret", secret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.DeviceAuthorizationURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, configError("device_authorization_url is not a valid URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// GitHub answers a form unless asked for JSON; both are read below.
	req.Header.Set("Accept", "application/json")
	if header {
		// RFC 6749 section 2.3.1: both form-encoded, as x/oauth2 sends them.
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(secret))
	}
	start := time.Now()
	d, err := c.deviceAuthorization(hc, req, tr)
	c.observe("device_authorization", start, err)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (c *Client) deviceAuthorization(hc *http.Client, req *http.Request, tr *exchangeTrace) (*DeviceAuthorization, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, classify(err, tr, c.now())
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read in full or failed: nothing more to do with it
	if err != nil {
		tr.noteReadErr(err)
		return nil, classify(err, tr, c.now())
	}
	vals, perr := answerValues(resp.Header.Get("Content-Type"), body)
	failure := resp.StatusCode < 200 || resp.StatusCode > 299
	if code := vals.str("error"); failure || code != "" {
		// GitHub answers errors with HTTP 200 and an error field.
		return nil, classifyResponse(&oauth2.RetrieveError{Response: resp, ErrorCode: code}, c.now())
	}
	bad := func(what string) error {
		return &Error{Class: Transient, Code: CodeBadResponse, Status: resp.StatusCode,
			detail: "the device authorization answer has " + what}
	}
	if perr != nil {
		return nil, bad("a body that is neither JSON nor a form")
	}
	d := &DeviceAuthorization{
		DeviceCode:              vals.str("device_code"),
		UserCode:                vals.str("user_code"),
		VerificationURI:         vals.str("verification_uri"),
		VerificationURIComplete: vals.str("verification_uri_complete"),
	}
	if d.VerificationURI == "" {
		d.VerificationURI = vals.str("verification_url") // Google's name for it
	}
	switch {
	case !validDeviceCode(d.DeviceCode):
		return nil, bad("no usable device_code")
	case !validUserCode(d.UserCode):
		return nil, bad("no usable user_code (1-64 letters, digits, '-', '_', '.' or spaces)")
	case !validVerificationURI(d.VerificationURI):
		return nil, bad("no usable verification_uri (an https URL of at most 2048 bytes)")
	case d.VerificationURIComplete != "" && !validVerificationURI(d.VerificationURIComplete):
		return nil, bad("an unusable verification_uri_complete (an https URL of at most 2048 bytes)")
	}
	expires, _, err := Lifetime(vals.raw("expires_in"))
	if err != nil || expires <= 0 {
		return nil, bad("no usable expires_in")
	}
	d.ExpiresIn = min(expires, MaxDeviceExpiry)
	interval, _, err := Lifetime(vals.raw("interval"))
	if err != nil {
		return nil, bad("an interval that is not a number of seconds")
	}
	d.Interval = DeviceInterval(interval)
	return d, nil
}

// DeviceInterval is the polling interval a provider's interval gives: the default
// when it names none, held within MinDeviceInterval and MaxDeviceInterval.
func DeviceInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultDeviceInterval
	}
	return min(max(d, MinDeviceInterval), MaxDeviceInterval)
}

// slowDownInterval is the interval a slow_down answer names (GitHub sends one), held
// within the device interval bounds; 0 when it names none.
func slowDownInterval(err error) time.Duration {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return 0
	}
	vals, perr := answerValues(re.Response.Header.Get("Content-Type"), re.Body)
	if perr != nil {
		return 0
	}
	d, _, lerr := Lifetime(vals.raw("interval"))
	if lerr != nil || d <= 0 {
		return 0
	}
	return DeviceInterval(d)
}

// SlowedDown is the interval after a slow_down at interval (RFC 8628 section 3.5:
// five seconds more, for this and every later poll), held under MaxDeviceInterval.
func SlowedDown(interval time.Duration) time.Duration {
	return min(interval+SlowDownStep, MaxDeviceInterval)
}

// PollDevice makes one device access token request (RFC 8628 section 3.4) for
// deviceCode. The pending answers are transient *Error values with Code
// CodeAuthorizationPending or CodeSlowDown; access_denied and expired_token end the
// attempt (permanent). GitHub's answers with HTTP 200 and an error field are errors
// like the others.
func (c *Client) PollDevice(ctx context.Context, cfg Config, deviceCode string) (*Token, error) {
	if cfg.Grant != GrantDeviceCode {
		return nil, configError(fmt.Sprintf("grant %q has no device authorization", cfg.Grant))
	}
	if !validDeviceCode(deviceCode) {
		return nil, configError("the device code is not one a device authorization answers")
	}
	ctx, cancel, tr, err := c.startRequest(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cancel()
	params := url.Values{}
	cfg.addParams(params.Set)
	params.Set("grant_type", string(GrantDeviceCode))
	params.Set("device_code", deviceCode)
	style := cfg.authStyle()
	if cfg.secret() == "" {
		style = oauth2.AuthStyleInParams // a public client (or a key) names itself in the body
	}
	if style == oauth2.AuthStyleInHeader {
		// RFC 8628 section 3.4 names client_id among the parameters; servers that
		// authenticate the client by the header accept it beside (oidc-provider,
		// Entra), and GitHub requires it.
		params.Set("client_id", cfg.ClientID)
	}
	cc := &clientcredentials.Config{
		ClientID:       cfg.ClientID,
		ClientSecret:   cfg.secret(),
		TokenURL:       cfg.TokenURL,
		EndpointParams: params,
		AuthStyle:      style,
		// No scope: the device authorization request carried it.
	}
	start := time.Now()
	tok, err := cc.Token(ctx)
	if err != nil {
		e := classify(err, tr, c.now())
		if e.Code == CodeAuthorizationPending || e.Code == CodeSlowDown {
			e.Class = Transient
		}
		if e.Code == CodeSlowDown {
			// GitHub's slow_down names the new interval: RetryAfter carries it, and the
			// poller keeps to the later of it and five seconds more.
			e.RetryAfter = slowDownInterval(err)
		}
		c.observe(string(GrantDeviceCode), start, e)
		return nil, e
	}
	t, err := c.token(tok, cfg)
	c.observe(string(GrantDeviceCode), start, err)
	return t, err
}

// DeviceAuthorize starts a device authorization for key when key's request bucket
// lets a request through; otherwise it sends nothing and fails with CodeThrottled.
func (b *Broker) DeviceAuthorize(ctx context.Context, key string, cfg Config) (*DeviceAuthorization, error) {
	return limited(ctx, b, key, func(ctx context.Context) (*DeviceAuthorization, error) {
		return b.client.DeviceAuthorize(ctx, cfg)
	})
}

// PollDevice polls for key's device authorization (Client.PollDevice) when key's
// request bucket lets a request through; otherwise it sends nothing and fails with
// CodeThrottled (the poller tries again at its next interval). A poll is a flight of
// its own, so Close cancels it and waits for it.
func (b *Broker) PollDevice(ctx context.Context, key string, cfg Config, deviceCode string) (*Token, error) {
	return limited(ctx, b, key, func(ctx context.Context) (*Token, error) {
		return b.client.PollDevice(ctx, cfg, deviceCode)
	})
}

// answer holds a provider's answer decoded from JSON or a form.
type answer map[string]any

func (a answer) raw(k string) any { return a[k] }

func (a answer) str(k string) string {
	s, _ := a[k].(string)
	return s
}

// answerValues decodes a body as JSON (numbers kept as json.Number) or, when its
// content type says so, as a form. An empty answer and an error are returned when it
// is neither.
func answerValues(contentType string, body []byte) (answer, error) {
	media, _, _ := mime.ParseMediaType(contentType)
	if media == "application/x-www-form-urlencoded" || media == "text/plain" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return answer{}, err
		}
		a := answer{}
		for k := range vals {
			a[k] = vals.Get(k)
		}
		return a, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	a := answer{}
	if err := dec.Decode(&a); err != nil {
		return answer{}, errors.New("not JSON")
	}
	for k, v := range a {
		if n, ok := v.(json.Number); ok {
			a[k] = string(n) // Lifetime reads a number written as a string
		}
	}
	return a, nil
}

// validDeviceCode: 1 to 4096 bytes of RFC 6749 VSCHAR.
func validDeviceCode(s string) bool { return printableASCII(s, maxDeviceCodeBytes, true) }

// validUserCode: what a person types, shown as it is: 1 to 64 letters, digits, '-',
// '_', '.' or spaces (Entra's "FN4G8ZXYZ", GitHub's "WDJB-MJHT", RFC 8628's examples).
func validUserCode(s string) bool {
	if strings.TrimSpace(s) == "" || len(s) > maxUserCodeBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ' ':
		default:
			return false
		}
	}
	return true
}

// validVerificationURI: where a person is sent, so an endpoint CheckEndpoint accepts
// (https, or http to loopback), of at most 2048 printable ASCII bytes.
func validVerificationURI(s string) bool {
	if len(s) > maxVerifyURIBytes || !validDeviceCode(s) || strings.ContainsAny(s, " \"<>\\^`{|}") {
		return false
	}
	return CheckEndpoint(s) == nil
}
