package fositetest

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/ory/fosite"
	"golang.org/x/crypto/bcrypt"
)

// The authorization-code grant with refresh tokens, as fosite implements it: PKCE
// (S256, required), refresh tokens issued for offline_access, and on every refresh a
// new refresh token with the old one retired. fosite detects reuse: a retired refresh
// token presented again revokes the whole grant (every access and refresh token issued
// from the consent), as Okta, Auth0 and OAuth 2.1 servers do, so a client that ever
// sends a retired refresh token loses the grant.

// SecretClient is a confidential client that authenticates with client_secret_basic
// (or client_secret_post) and may use the authorization-code and refresh grants.
type SecretClient struct {
	ID, Secret  string
	RedirectURI string
}

// RegisterSecretClient adds c, replacing a client of the same ID.
func (p *Provider) RegisterSecretClient(t testing.TB, c SecretClient) {
	t.Helper()
	if c.ID == "" || c.Secret == "" || c.RedirectURI == "" {
		t.Fatal("fositetest: a secret client needs an ID, a secret and a redirect URI")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(c.Secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	fc := &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{
			ID: c.ID, Secret: hash, RedirectURIs: []string{c.RedirectURI},
			GrantTypes:    fosite.Arguments{"authorization_code", "refresh_token"},
			ResponseTypes: fosite.Arguments{"code"},
			Scopes:        fosite.Arguments{"offline_access", "offline", "openid", "read", "write"},
		},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	p.store.mu.Lock()
	p.store.clients[c.ID] = &registered{Client: Client{ID: c.ID, Method: "client_secret_basic"}, fosite: fc}
	p.store.mu.Unlock()
}

// AuthURL is the authorization endpoint. It consents at once for the user "subject"
// to every scope asked (a test stands in for the person), and redirects to the
// client's redirect URI with the code.
func (p *Provider) AuthURL() string { return p.server.URL + "/auth" }

func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		p.oauth.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	session := &fosite.DefaultSession{Subject: "subject"}
	resp, err := p.oauth.NewAuthorizeResponse(ctx, ar, session)
	if err != nil {
		p.oauth.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// hold makes token requests of one grant type wait at the provider until released.
type hold struct {
	grant   string
	arrived chan struct{}
	gate    chan struct{}
	release func()
}

// Hold makes every token request of grant type grant ("refresh_token",
// "authorization_code") wait before fosite handles it, until release is called (at the
// latest when the test ends). arrived receives one value per request held. One hold at
// a time: a new one replaces the last, releasing it.
func (p *Provider) Hold(t testing.TB, grant string) (arrived <-chan struct{}, release func()) {
	h := &hold{grant: grant, arrived: make(chan struct{}, 64), gate: make(chan struct{})}
	var once sync.Once
	release = func() { once.Do(func() { close(h.gate) }) }
	if old := p.held.Swap(h); old != nil {
		old.release()
	}
	h.release = release
	t.Cleanup(release)
	return h.arrived, release
}

// waitHeld holds a request of the held grant until its release.
func (p *Provider) waitHeld(ctx context.Context, form url.Values) {
	h := p.held.Load()
	if h == nil || form.Get("grant_type") != h.grant {
		return
	}
	h.arrived <- struct{}{}
	select {
	case <-h.gate:
	case <-ctx.Done():
	}
}

// RefreshTokens is every refresh token the provider issued, oldest first.
func (p *Provider) RefreshTokens() []string {
	var out []string
	for _, r := range p.Received() {
		if r.RefreshToken != "" {
			out = append(out, r.RefreshToken)
		}
	}
	return out
}
