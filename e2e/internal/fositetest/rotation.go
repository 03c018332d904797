package fositetest

import (
	"testing"

	"github.com/ory/fosite"
	"golang.org/x/crypto/bcrypt"
)

// Client-secret methods (token_endpoint_auth_method) of RegisterRotatingClient.
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
)

// RegisterRotatingClient registers (or replaces) a client-credentials client that
// authenticates with a client secret by method (ClientSecretBasic or
// ClientSecretPost): its current secret, and the rotated ones fosite still accepts
// (DefaultClient.RotatedSecrets), as a provider does while a new secret replicates or
// an old one is being retired. A secret it does not know is refused with
// invalid_client.
func (p *Provider) RegisterRotatingClient(t testing.TB, id, method, secret string, rotated ...string) {
	t.Helper()
	if id == "" || secret == "" || (method != ClientSecretBasic && method != ClientSecretPost) {
		t.Fatalf("fositetest: a rotating client needs an ID, a secret and a client-secret method (got %q)", method)
	}
	hash := func(s string) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte(s), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	fc := &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{
			ID: id, Secret: hash(secret),
			GrantTypes: fosite.Arguments{"client_credentials"},
			Scopes:     fosite.Arguments{"read", "write"},
		},
		TokenEndpointAuthMethod: method,
	}
	for _, r := range rotated {
		fc.RotatedSecrets = append(fc.RotatedSecrets, hash(r))
	}
	p.store.mu.Lock()
	p.store.clients[id] = &registered{Client: Client{ID: id, Method: method}, fosite: fc}
	p.store.mu.Unlock()
}
