package oauth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // x5t is defined as the SHA-1 thumbprint (RFC 7515 §4.1.7)
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"
)

// ClientAssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionLifetime is how long a client assertion is valid (exp - iat): short, as
// it is made for one request. RFC 7523 leaves it to the client; Entra and Okta
// accept at most an hour.
const AssertionLifetime = 5 * time.Minute

// maxTokenRequest bounds the form body the assertion transport reads back: a token
// request is a few parameters, built by x/oauth2 from this package's own values.
const maxTokenRequest = 64 << 10

// tlsMaterial is the TLS the token endpoint's connection needs: cfg's trust
// anchors, and its client certificate for tls_client_auth.
func (c Config) tlsMaterial() tlsclient.Material {
	m := tlsclient.Material{CACertificates: c.CACertificate}
	if c.AuthStyle == AuthStyleTLSClientAuth {
		m.ClientCertificate, m.ClientKey = c.ClientCertificate, c.ClientKey
	}
	return m
}

// asserter signs the client assertions of one Config: with private_key_jwt by its
// client_key (iss = sub = client_id), with federated by the mount's issuer key at the
// time of each assertion (iss = the issuer, sub = federated_subject).
type asserter struct {
	// signer is the signer of an assertion made at now, and the kid it names.
	signer   func(ctx context.Context, now time.Time) (jose.Signer, error)
	issuer   string
	subject  string
	audience string
	now      func() time.Time
}

func configError(detail string) *Error {
	return &Error{Class: Permanent, Code: CodeInvalidConfig, detail: detail}
}

// newAsserter prepares cfg's signer: its key under the catalog's rules, the
// algorithm that fits it, kid, and the certificate thumbprints.
func newAsserter(cfg Config, now func() time.Time) (*asserter, error) {
	key, err := credtype.ClientKey(cfg.ClientKey)
	if err != nil {
		return nil, configError(err.Error())
	}
	alg, err := credtype.AssertionAlgorithm(key.Public(), cfg.ClientAssertionAlgorithm)
	if err != nil {
		return nil, configError(err.Error())
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if cfg.ClientCertificate != "" {
		leaf, err := credtype.LeafCertificate(cfg.ClientCertificate)
		if err != nil {
			return nil, configError(err.Error())
		}
		s1, s256 := sha1.Sum(leaf.Raw), sha256.Sum256(leaf.Raw) //nolint:gosec // see import
		opts = opts.WithHeader("x5t", base64.RawURLEncoding.EncodeToString(s1[:])).
			WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(s256[:]))
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(alg),
		Key:       jose.JSONWebKey{Key: crypto.Signer(key), KeyID: cfg.ClientKeyID},
	}, opts)
	if err != nil {
		return nil, configError("client_key cannot sign " + alg)
	}
	aud := cfg.ClientAssertionAudience
	if aud == "" {
		aud = cfg.TokenURL
	}
	fixed := func(context.Context, time.Time) (jose.Signer, error) { return signer, nil }
	return &asserter{signer: fixed, issuer: cfg.ClientID, subject: cfg.ClientID, audience: aud, now: now}, nil
}

// assertion is a fresh client assertion (RFC 7523 §3, OpenID Connect Core §9):
// iss, sub, aud, a random jti, iat = nbf = now, exp AssertionLifetime on.
func (a *asserter) assertion(ctx context.Context) (string, error) {
	jti := make([]byte, 24)
	if _, err := rand.Read(jti); err != nil {
		return "", configError("no randomness for the assertion's jti")
	}
	now := a.now()
	signer, err := a.signer(ctx, now)
	if err != nil {
		return "", err
	}
	claims := jwt.Claims{
		Issuer:    a.issuer,
		Subject:   a.subject,
		Audience:  jwt.Audience{a.audience},
		ID:        base64.RawURLEncoding.EncodeToString(jti),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(AssertionLifetime)),
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", configError("the client assertion could not be signed")
	}
	return s, nil
}

// assertionTransport adds a fresh client assertion to every token request it sends,
// whichever grant x/oauth2 built it for (refreshes included), and removes any other
// client authentication: with private_key_jwt no secret goes out.
type assertionTransport struct {
	base http.RoundTripper
	a    *asserter
}

// RoundTrip sends a copy of req whose form carries client_assertion_type and
// client_assertion.
func (t *assertionTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil {
		return nil, configError("a token request without a body cannot carry a client assertion")
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxTokenRequest+1))
	_ = req.Body.Close() // read in full above: nothing is lost
	if err != nil || len(body) > maxTokenRequest {
		return nil, configError("the token request could not be read back to add the client assertion")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, configError("the token request is not a form")
	}
	assertion, err := t.a.assertion(req.Context())
	if err != nil {
		return nil, err
	}
	form.Del("client_secret")
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", assertion)
	enc := form.Encode()
	out := req.Clone(req.Context())
	out.Header.Del("Authorization")
	out.Body = io.NopCloser(strings.NewReader(enc))
	out.ContentLength = int64(len(enc))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(enc)), nil }
	return t.base.RoundTrip(out)
}

// startRequest is the start of every token request the Client makes: cfg checked
// (checkConfig), the request bounded to cfg's timeout (bound), x/oauth2 handed cfg's
// bounded client and a fresh trace (requestContext). The caller defers cancel.
func (c *Client) startRequest(ctx context.Context, cfg Config) (context.Context, context.CancelFunc, *exchangeTrace, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := c.bound(ctx, cfg)
	ctx, tr, err := c.requestContext(ctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	// The host's bound (hostgate.go): the wait counts toward the request's timeout.
	release, err := c.gate.acquire(ctx, HostOf(cfg.TokenURL), cfg.Host, urgencyOf(ctx))
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, func() {
		release(tr.status, tr.retryAfter)
		cancel()
	}, tr, nil
}

// requestContext hands x/oauth2 cfg's bounded client (httpFor) and a fresh trace.
func (c *Client) requestContext(ctx context.Context, cfg Config) (context.Context, *exchangeTrace, error) {
	hc, err := c.httpFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	tr := &exchangeTrace{}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	return context.WithValue(ctx, traceKey{}, tr), tr, nil
}

// httpFor is the HTTP client of cfg's token requests: the shared one, or for a
// credential with its own TLS or a client assertion, one over the cached transport
// of its TLS material with the same bounds (timeout, response cap, redirects).
func (c *Client) httpFor(cfg Config) (*http.Client, error) {
	m := cfg.tlsMaterial()
	if m.Empty() && !cfg.asserts() {
		return c.http, nil
	}
	rt, err := c.base, error(nil)
	if !m.Empty() {
		rt, err = c.transports.For(m)
	}
	if err != nil {
		detail := "the TLS material does not parse"
		if errors.Is(err, tlsclient.ErrMaterial) {
			detail = err.Error()
		}
		return nil, configError(detail)
	}
	if cfg.asserts() {
		newA := newAsserter
		if cfg.AuthStyle == AuthStyleFederated {
			newA = newFederatedAsserter
		}
		a, err := newA(cfg, c.now)
		if err != nil {
			return nil, err
		}
		rt = &assertionTransport{base: rt, a: a}
	}
	return &http.Client{
		Transport:     &boundedTransport{base: rt, limit: c.limit},
		CheckRedirect: checkRedirect,
		Timeout:       c.timeout,
	}, nil
}

// asserts reports whether cfg's token requests carry a client assertion.
func (c Config) asserts() bool {
	return c.AuthStyle == AuthStylePrivateKeyJWT || c.AuthStyle == AuthStyleFederated
}
