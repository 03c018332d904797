// Package fositetest runs a real OAuth 2.0 authorization server, ory/fosite, on
// loopback for tests of client authentication.
//
// fosite is a second implementation of the standards, not a fake of ours: its token
// endpoint verifies private_key_jwt client assertions (RFC 7523 §2.2) for RS256, PS256,
// ES256 and ES384 against each client's JWKS — signature, iss, sub, exp, jti replay, and
// aud against its own token URL — so a client that agrees only with our reading of the
// RFCs is caught. What fosite lacks is added in its own client-authentication strategy:
// EdDSA assertions (verified with go-jose), RFC 8705 tls_client_auth (a second endpoint
// behind a TLS listener that requires and verifies client certificates, bound to the
// client_id), and Microsoft Entra's demand for x5t and x5t#S256 headers.
//
// Both endpoints speak HTTPS with a server certificate from a private test CA
// (CACertificatePEM), so tests hand that CA to the client as a trust anchor and nothing
// touches the system trust store. Every request is recorded with the assertion it
// carried and the answer it got. The package imports nothing from Vault. It is meant
// for tests only.
package fositetest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// Marker is put into the description of every error the provider answers, so tests can
// check that no provider text reaches a caller.
const Marker = "FOSITE-BODY-MARKER-do-not-leak"

// maxBody caps a token request's body.
const maxBody = 64 << 10

// Options shape one provider. The zero value issues access tokens for an hour.
type Options struct {
	// AccessTTL is the lifetime of the access tokens issued; SetAccessTTL changes it.
	AccessTTL time.Duration
	// JWTBearerWithoutClient lets a JWT-bearer grant (GrantJWTBearer) come without
	// client authentication, the assertion alone identifying the caller; otherwise the
	// client must authenticate and be allowed the grant (RegisterJWTBearerClient).
	JWTBearerWithoutClient bool
	// JWKSCacheTTL is how long fosite keeps a client's JWKS fetched from its jwks_uri
	// (Client.JWKSURI) before fetching it again; 0 is fosite's default (an hour). An
	// assertion whose kid is not in the cached set makes it fetch at once either way.
	JWKSCacheTTL time.Duration
	// ForgetJTI makes the provider keep no assertion jti, so a replayed assertion is
	// judged by its signature and dates alone (a test's way of showing that a refusal
	// is the key's, not the replay rule's).
	ForgetJTI bool
}

// Request is one token request as received, with the answer given.
type Request struct {
	// Endpoint is the URL of the endpoint that received it: TokenURL or MTLSTokenURL.
	Endpoint string
	// Form is the POST form; nil when the body did not parse.
	Form url.Values
	// Assertion is the client_assertion, decoded unverified; nil when none parsed.
	Assertion *Assertion
	// Grant is the JWT-bearer grant's assertion, decoded unverified; nil when none
	// parsed.
	Grant *Assertion
	// PeerCertificate is the client certificate presented over mutual TLS, if any.
	PeerCertificate *x509.Certificate
	// Status is the HTTP status answered; Error the OAuth error code ("" on success)
	// and AccessToken the token issued ("" on a refusal).
	Status      int
	Error       string
	AccessToken string
	// RefreshToken is the refresh token issued ("" when none was).
	RefreshToken string
}

// Provider is a running fosite authorization server with two token endpoints.
type Provider struct {
	server, mtls *httptest.Server
	ca, clientCA *fixtures.CA
	store        *store
	oauth        *fosite.Fosite
	accessTTL    atomic.Int64 // time.Duration
	requests     atomic.Int64
	held         atomic.Pointer[hold]

	mu       sync.Mutex
	received []Request
}

// config is fosite's configuration with the parts a test changes or a request decides:
// the token lifetime, the client-authentication strategy and the token URL that
// assertions must name (the URL of the endpoint the request came in on).
type config struct {
	*fosite.Config
	p *Provider
}

func (c config) GetAccessTokenLifespan(context.Context) time.Duration {
	return time.Duration(c.p.accessTTL.Load())
}

func (c config) GetClientAuthenticationStrategy(context.Context) fosite.ClientAuthenticationStrategy {
	return c.p.authenticate
}

func (c config) GetTokenURLs(ctx context.Context) []string { return []string{endpointURL(ctx)} }

type endpointKey struct{}

// endpointURL is the URL of the endpoint serving the request of ctx.
func endpointURL(ctx context.Context) string { s, _ := ctx.Value(endpointKey{}).(string); return s }

// New starts a provider for the length of the test t.
func New(t testing.TB, o Options) *Provider {
	t.Helper()
	p := &Provider{store: &store{MemoryStore: storage.NewMemoryStore(), clients: map[string]*registered{}, forgetJTI: o.ForgetJTI}}
	if o.AccessTTL == 0 {
		o.AccessTTL = time.Hour
	}
	p.accessTTL.Store(int64(o.AccessTTL))
	p.ca, p.clientCA = fixtures.NewCA("fositetest server CA"), fixtures.NewCA("fositetest client CA")
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	base := &fosite.Config{
		GlobalSecret: secret,
		// A test provider grants whatever scope and audience is asked for: what it
		// checks is client authentication. Set here rather than left to fosite's lazy
		// defaults, which write the config while requests read it.
		ScopeStrategy:            func([]string, string) bool { return true },
		AudienceMatchingStrategy: func([]string, []string) error { return nil },
		JWKSFetcherStrategy:      jwksFetcher(o.JWKSCacheTTL),

		GrantTypeJWTBearerCanSkipClientAuth: o.JWTBearerWithoutClient,
	}
	base.ClientSecretsHasher = &fosite.BCrypt{Config: base}
	cfg := config{Config: base, p: p}
	p.oauth = fosite.NewOAuth2Provider(p.store, cfg)
	strategy := compose.NewOAuth2HMACStrategy(cfg)
	base.EnforcePKCE = true
	for _, factory := range []compose.Factory{
		compose.OAuth2ClientCredentialsGrantFactory, compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory, compose.OAuth2PKCEFactory,
		compose.RFC7523AssertionGrantFactory,
	} {
		h := factory(cfg, p.store, strategy)
		if ah, ok := h.(fosite.AuthorizeEndpointHandler); ok {
			base.AuthorizeEndpointHandlers.Append(ah)
		}
		if th, ok := h.(fosite.TokenEndpointHandler); ok {
			base.TokenEndpointHandlers.Append(th)
		}
	}

	serverCert := p.ca.ServerCertificate()
	p.server = p.start(serverCert, nil)
	p.mtls = p.start(serverCert, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.clientCA.Pool()})
	t.Cleanup(p.Close)
	return p
}

// jwksFetcher is fosite's JWKS fetcher, with ttl as its cache lifetime when set.
func jwksFetcher(ttl time.Duration) fosite.JWKSFetcherStrategy {
	if ttl <= 0 {
		return fosite.NewDefaultJWKSFetcherStrategy()
	}
	return fosite.NewDefaultJWKSFetcherStrategy(fosite.JKWKSFetcherWithDefaultTTL(ttl))
}

// start serves the token endpoint over TLS with cert; mtls adds client-certificate
// settings.
func (p *Provider) start(cert tls.Certificate, mtls *tls.Config) *httptest.Server {
	var s *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		p.serveToken(w, r, s.URL+"/token")
	})
	mux.HandleFunc("GET /auth", p.serveAuthorize)
	s = httptest.NewUnstartedServer(mux)
	// Refused handshakes are part of the tests; the server need not log them.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if mtls != nil {
		s.TLS.ClientAuth, s.TLS.ClientCAs = mtls.ClientAuth, mtls.ClientCAs
	}
	s.StartTLS()
	return s
}

// serveToken is fosite's token endpoint with the bookkeeping around it.
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request, endpoint string) {
	p.requests.Add(1)
	rec := Request{Endpoint: endpoint}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if r.ParseForm() == nil {
		rec.Form = maps.Clone(r.PostForm)
		if a, err := peekAssertion(r.PostForm.Get("client_assertion")); err == nil {
			rec.Assertion = a
		}
		if a, err := peekAssertion(r.PostForm.Get("assertion")); err == nil {
			rec.Grant = a
		}
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.PeerCertificate = r.TLS.PeerCertificates[0]
	}
	ctx := context.WithValue(r.Context(), endpointKey{}, endpoint)
	if rec.Form != nil {
		p.waitHeld(ctx, rec.Form)
	}
	ar, err := p.oauth.NewAccessRequest(ctx, r, new(fosite.DefaultSession))
	if err == nil {
		for _, scope := range ar.GetRequestedScopes() {
			ar.GrantScope(scope)
		}
		var resp fosite.AccessResponder
		if resp, err = p.oauth.NewAccessResponse(ctx, ar); err == nil {
			rec.Status, rec.AccessToken = http.StatusOK, resp.GetAccessToken()
			rec.RefreshToken, _ = resp.GetExtra("refresh_token").(string)
			p.record(rec) // before the answer: a client that has it finds it recorded
			p.oauth.WriteAccessResponse(ctx, w, ar, resp)
			return
		}
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	rec.Status, rec.Error = rfc.StatusCode(), rfc.ErrorField
	p.record(rec)
	p.oauth.WriteAccessError(ctx, w, ar, rfc.WithHint(rfc.HintField+" "+Marker))
}

func (p *Provider) record(rec Request) {
	p.mu.Lock()
	p.received = append(p.received, rec)
	p.mu.Unlock()
}

// Close stops both endpoints.
func (p *Provider) Close() {
	p.server.Close()
	p.mtls.Close()
}

// TokenURL is the token endpoint for private_key_jwt; assertions sent to it must name
// it as aud.
func (p *Provider) TokenURL() string { return p.server.URL + "/token" }

// MTLSTokenURL is the token endpoint behind mutual TLS, for tls_client_auth.
func (p *Provider) MTLSTokenURL() string { return p.mtls.URL + "/token" }

// CACertificatePEM is the private CA that issued both endpoints' server certificate:
// the trust anchor a client needs (a credential's ca_certificate).
func (p *Provider) CACertificatePEM() string { return p.ca.PEM }

// IssueClientCertificate is a certificate for key's public half from the client CA the
// mutual-TLS endpoint trusts, with common name cn.
func (p *Provider) IssueClientCertificate(t testing.TB, cn string, key crypto.Signer) *x509.Certificate {
	t.Helper()
	return issue(t, p.clientCA, cn, key)
}

// HTTPClient is a client that trusts the provider's CA and, when given one, presents a
// client certificate.
func (p *Provider) HTTPClient(clientCert ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: p.ca.Pool(), Certificates: clientCert, MinVersion: tls.VersionTLS12,
	}}}
}

// SetAccessTTL sets the lifetime of the access tokens issued from now on; it is safe
// while requests are in flight.
func (p *Provider) SetAccessTTL(d time.Duration) { p.accessTTL.Store(int64(d)) }

// Requests is the number of requests the token endpoints have received, refused and
// malformed ones included.
func (p *Provider) Requests() int64 { return p.requests.Load() }

// Received is every token request answered, oldest first.
func (p *Provider) Received() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.received...)
}

// LastRequest is the most recent token request answered; it fails t when there was none.
func (p *Provider) LastRequest(t testing.TB) Request {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.received) == 0 {
		t.Fatal("the provider received no token request")
	}
	return p.received[len(p.received)-1]
}

// Assertions is every client assertion received, oldest first.
func (p *Provider) Assertions() []*Assertion {
	var out []*Assertion
	for _, r := range p.Received() {
		if r.Assertion != nil {
			out = append(out, r.Assertion)
		}
	}
	return out
}

// Issued is every access token issued, oldest first.
func (p *Provider) Issued() []string {
	var out []string
	for _, r := range p.Received() {
		if r.AccessToken != "" {
			out = append(out, r.AccessToken)
		}
	}
	return out
}
