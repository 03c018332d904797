package fositetest

import (
	"context"
	"crypto"
	"testing"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

// GrantJWTBearer is the grant_type of RFC 7523 §2.1, which fosite's rfc7523 handler
// serves: it verifies the assertion's signature with a key trusted for its iss and
// sub (TrustIssuer), aud against the endpoint's own token URL, exp (not passed, not
// more than a day after iat), iat and jti (required, and never replayed), and that
// the scopes asked for are among those the key was trusted with.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// trustedKey is a public key trusted to sign grant assertions for one issuer and
// subject.
type trustedKey struct {
	issuer, subject string
	key             josev3.JSONWebKey
	scopes          []string
}

// TrustIssuer registers pub (of algorithm alg, with key ID kid; "" for none) as the
// key that signs grant assertions with iss issuer and sub subject, allowed scopes.
// It is safe while requests are served.
func (p *Provider) TrustIssuer(t testing.TB, issuer, subject, kid string, pub crypto.PublicKey, alg string, scopes ...string) {
	t.Helper()
	if issuer == "" || subject == "" || pub == nil || !knownAlgorithm(alg) {
		t.Fatalf("fositetest: TrustIssuer needs an issuer, a subject, a public key and one of %v", Algorithms)
	}
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.trusted = append(p.store.trusted, trustedKey{issuer: issuer, subject: subject, scopes: scopes,
		key: josev3.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}})
}

// RegisterJWTBearerClient registers c (as Register does) allowed the JWT-bearer grant
// as well: for a server that authenticates the client beside the assertion.
func (p *Provider) RegisterJWTBearerClient(t testing.TB, c Client) {
	t.Helper()
	p.Register(t, c)
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	r := p.store.clients[c.ID]
	r.fosite.GrantTypes = append(r.fosite.GrantTypes, GrantJWTBearer)
}

func (s *store) keys(issuer, subject string) []trustedKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []trustedKey
	for _, k := range s.trusted {
		if k.issuer == issuer && k.subject == subject {
			out = append(out, k)
		}
	}
	return out
}

// GetPublicKey is the key trusted for issuer and subject with ID keyID.
func (s *store) GetPublicKey(_ context.Context, issuer, subject, keyID string) (*josev3.JSONWebKey, error) {
	for _, k := range s.keys(issuer, subject) {
		if k.key.KeyID == keyID {
			key := k.key
			return &key, nil
		}
	}
	return nil, fosite.ErrNotFound
}

// GetPublicKeys is every key trusted for issuer and subject.
func (s *store) GetPublicKeys(_ context.Context, issuer, subject string) (*josev3.JSONWebKeySet, error) {
	set := &josev3.JSONWebKeySet{}
	for _, k := range s.keys(issuer, subject) {
		set.Keys = append(set.Keys, k.key)
	}
	if len(set.Keys) == 0 {
		return nil, fosite.ErrNotFound
	}
	return set, nil
}

// GetPublicKeyScopes is the scopes the key keyID was trusted with.
func (s *store) GetPublicKeyScopes(_ context.Context, issuer, subject, keyID string) ([]string, error) {
	for _, k := range s.keys(issuer, subject) {
		if k.key.KeyID == keyID {
			return k.scopes, nil
		}
	}
	return nil, fosite.ErrNotFound
}
