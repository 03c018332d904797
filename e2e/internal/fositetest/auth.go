package fositetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/storage"
)

// Client authentication methods (token_endpoint_auth_method, RFC 7591 §2).
const (
	PrivateKeyJWT = "private_key_jwt" // RFC 7523 §2.2 client assertion
	TLSClientAuth = "tls_client_auth" // RFC 8705 §2.1 PKI mutual TLS
)

// jwtBearer is the client_assertion_type of RFC 7523 §2.2.
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Client is a client registered with the provider.
type Client struct {
	ID string
	// Method is PrivateKeyJWT or TLSClientAuth; default PrivateKeyJWT.
	Method string
	// Algorithm is the one signature algorithm its assertions may use (private_key_jwt),
	// one of Algorithms.
	Algorithm string
	// KeyID is the kid of its key in the client's JWKS; "" for none, and then an
	// assertion's kid is not looked at.
	KeyID string
	// PublicKey verifies its assertions (private_key_jwt).
	PublicKey crypto.PublicKey
	// JWKSURI, instead of PublicKey, registers the client by its jwks_uri: fosite
	// fetches the key set there, caches it (Options.JWKSCacheTTL) and fetches it again
	// for a kid it does not hold. RS, PS and ES algorithms only (fosite's).
	JWKSURI string
	// Certificate is, with TLSClientAuth, the one client certificate bound to the client;
	// with RequireX5T, the certificate whose thumbprints its assertions must name.
	Certificate *x509.Certificate
	// RequireX5T refuses an assertion whose header lacks x5t and x5t#S256 of
	// Certificate, as Microsoft Entra does for certificate credentials.
	RequireX5T bool
}

// registered is a Client with the fosite client built from it.
type registered struct {
	Client
	fosite *fosite.DefaultOpenIDConnectClient
}

// store is fosite's in-memory store with a client registry of ours, which tests may add
// to while requests are served (the memory store's own map is not guarded for that).
type store struct {
	*storage.MemoryStore
	mu      sync.RWMutex
	clients map[string]*registered
	trusted []trustedKey // grant-assertion keys (jwtbearer.go)
	// forgetJTI: no assertion jti is kept (Options.ForgetJTI).
	forgetJTI bool
}

// ClientAssertionJWTValid is the memory store's jti replay check, or none with
// forgetJTI.
func (s *store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	if s.forgetJTI {
		return nil
	}
	return s.MemoryStore.ClientAssertionJWTValid(ctx, jti)
}

// SetClientAssertionJWT keeps jti as the memory store does, or not with forgetJTI.
func (s *store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	if s.forgetJTI {
		return nil
	}
	return s.MemoryStore.SetClientAssertionJWT(ctx, jti, exp)
}

func (s *store) GetClient(_ context.Context, id string) (fosite.Client, error) {
	if c, ok := s.lookup(id); ok {
		return c.fosite, nil
	}
	return nil, fosite.ErrNotFound
}

func (s *store) lookup(id string) (*registered, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.clients[id]
	return c, ok
}

// Register adds c, replacing a client of the same ID; it fails t when c is incomplete.
func (p *Provider) Register(t testing.TB, c Client) {
	t.Helper()
	if c.Method == "" {
		c.Method = PrivateKeyJWT
	}
	fc := &fosite.DefaultOpenIDConnectClient{
		DefaultClient:           &fosite.DefaultClient{ID: c.ID, GrantTypes: fosite.Arguments{"client_credentials"}},
		TokenEndpointAuthMethod: c.Method,
	}
	switch {
	case c.ID == "":
		t.Fatal("fositetest: a client needs an ID")
	case c.Method == PrivateKeyJWT && c.JWKSURI != "":
		if !knownAlgorithm(c.Algorithm) || c.Algorithm == EdDSA {
			t.Fatalf("fositetest: client %s: a jwks_uri client needs one of fosite's algorithms (not %q)", c.ID, c.Algorithm)
		}
		fc.TokenEndpointAuthSigningAlgorithm = c.Algorithm
		fc.JSONWebKeysURI = c.JWKSURI
	case c.Method == PrivateKeyJWT:
		if c.PublicKey == nil || !knownAlgorithm(c.Algorithm) {
			t.Fatalf("fositetest: client %s: private_key_jwt needs a public key and one of %v", c.ID, Algorithms)
		}
		fc.TokenEndpointAuthSigningAlgorithm = c.Algorithm
		fc.JSONWebKeys = &josev3.JSONWebKeySet{Keys: []josev3.JSONWebKey{
			{Key: c.PublicKey, KeyID: c.KeyID, Algorithm: c.Algorithm, Use: "sig"},
		}}
	case c.Method == TLSClientAuth:
		if c.Certificate == nil {
			t.Fatalf("fositetest: client %s: tls_client_auth needs a certificate", c.ID)
		}
	default:
		t.Fatalf("fositetest: client %s: unknown method %q", c.ID, c.Method)
	}
	if c.RequireX5T && c.Certificate == nil {
		t.Fatalf("fositetest: client %s: RequireX5T needs a certificate", c.ID)
	}
	p.store.mu.Lock()
	p.store.clients[c.ID] = &registered{Client: c, fosite: fc}
	p.store.mu.Unlock()
}

func knownAlgorithm(alg string) bool {
	for _, a := range Algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// authenticate is the provider's client authentication strategy. fosite's own default
// verifies RS/PS/ES assertions against the client's JWKS (signature, iss, sub, exp,
// aud against the endpoint's URL, jti replay); in front of it this adds what fosite
// lacks: the x5t check, EdDSA assertions, and RFC 8705 mutual TLS.
func (p *Provider) authenticate(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	if form.Get("client_assertion_type") == jwtBearer {
		a, err := peekAssertion(form.Get("client_assertion"))
		if err != nil {
			return nil, invalidClient("the client_assertion is not a JWT")
		}
		id := form.Get("client_id")
		if id == "" {
			id, _ = a.Claims["sub"].(string)
		}
		c, ok := p.store.lookup(id)
		if !ok {
			return nil, invalidClient("unknown client")
		}
		if c.RequireX5T {
			x5t, s256 := Thumbprints(c.Certificate)
			if a.Header["x5t"] != x5t || a.Header["x5t#S256"] != s256 {
				return nil, invalidClient("the assertion's x5t and x5t#S256 must name the registered certificate")
			}
		}
		if a.Header["alg"] == EdDSA {
			return p.verifyEdDSA(ctx, c, form.Get("client_assertion"))
		}
		return p.oauth.DefaultClientAuthenticationStrategy(ctx, r, form)
	}
	if c, ok := p.store.lookup(form.Get("client_id")); ok && c.Method == TLSClientAuth {
		return verifyMutualTLS(r, c)
	}
	return p.oauth.DefaultClientAuthenticationStrategy(ctx, r, form)
}

// verifyEdDSA checks an EdDSA client assertion with go-jose as fosite checks the
// others: the client's registered algorithm and key, the signature, iss = sub =
// client_id, aud naming this endpoint, an exp in the future, and a jti never seen.
func (p *Provider) verifyEdDSA(ctx context.Context, c *registered, raw string) (fosite.Client, error) {
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if c.Method != PrivateKeyJWT || c.Algorithm != EdDSA || !ok {
		return nil, invalidClient("the client does not authenticate with EdDSA assertions")
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, invalidClient("the client_assertion does not parse")
	}
	if kid := tok.Headers[0].KeyID; c.KeyID != "" && kid != "" && kid != c.KeyID {
		return nil, invalidClient("the assertion's kid names no key of the client")
	}
	var claims josejwt.Claims
	if err := tok.Claims(pub, &claims); err != nil {
		return nil, invalidClient("the client_assertion's signature does not verify")
	}
	want := josejwt.Expected{Issuer: c.ID, Subject: c.ID, AnyAudience: josejwt.Audience{endpointURL(ctx)}, Time: time.Now()}
	if err := claims.ValidateWithLeeway(want, 0); err != nil {
		return nil, invalidClient("the client_assertion's claims are not valid: " + err.Error())
	}
	if claims.ID == "" || claims.Expiry == nil {
		return nil, invalidClient("the client_assertion needs jti and exp")
	}
	if p.store.ClientAssertionJWTValid(ctx, claims.ID) != nil {
		return nil, fosite.ErrJTIKnown.WithHint("Claim 'jti' from 'client_assertion' MUST only be used once.")
	}
	if err := p.store.SetClientAssertionJWT(ctx, claims.ID, claims.Expiry.Time()); err != nil {
		return nil, err
	}
	return c.fosite, nil
}

// verifyMutualTLS authenticates a tls_client_auth client (RFC 8705 §2.1): the TLS layer
// has verified the presented certificate against the client CA; here it must also be
// the very certificate registered for the client_id.
func verifyMutualTLS(r *http.Request, c *registered) (fosite.Client, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, invalidClient("tls_client_auth needs a client certificate")
	}
	if !bytes.Equal(r.TLS.PeerCertificates[0].Raw, c.Certificate.Raw) {
		return nil, invalidClient("the client certificate is not the one bound to this client_id")
	}
	return c.fosite, nil
}

func invalidClient(hint string) error { return fosite.ErrInvalidClient.WithHint(hint) }

// Assertion is a client assertion as received, decoded without verification.
type Assertion struct {
	Header map[string]any
	Claims map[string]any
}

// JTI is the assertion's jti claim, "" without one.
func (a *Assertion) JTI() string { s, _ := a.Claims["jti"].(string); return s }

// peekAssertion decodes a compact JWS's header and payload without verifying it.
func peekAssertion(raw string) (*Assertion, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d parts, want 3", len(parts))
	}
	a := &Assertion{}
	for i, into := range []*map[string]any{&a.Header, &a.Claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, err
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(into); err != nil {
			return nil, err
		}
	}
	return a, nil
}
