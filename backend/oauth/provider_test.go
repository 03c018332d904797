package oauth

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// testRedirectURL is the redirect URL the tests' authorization-code configs use.
const testRedirectURL = "http://127.0.0.1/callback"

// providerOptions shape one test provider.
type providerOptions struct {
	// clientAuth is the only client authentication the token endpoint
	// accepts: AuthStyleHeader, AuthStyleBody, or "" for either. oauthtest
	// uses the same words.
	clientAuth string
	// rotateRefresh makes a refresh_token grant issue a new refresh token and
	// retire the old one; otherwise the response has no refresh_token and the
	// old one stays valid.
	rotateRefresh bool
	// forcePKCE makes the server require a code challenge.
	forcePKCE bool
}

// tokenRequest is what the token endpoint received, for assertions.
type tokenRequest struct {
	Form      url.Values // POST form
	AuthStyle string     // AuthStyleHeader or AuthStyleBody
	BasicUser string
}

// provider is the shared real OAuth 2.0 test server (internal/oauthtest) under the
// names this package's tests (broker_test.go, client_test.go) were written against.
type provider struct {
	*oauthtest.Provider
	requests requestCount // token endpoint requests
}

// requestCount lets tests read the count as p.requests.Load().
type requestCount struct{ p *oauthtest.Provider }

func (c requestCount) Load() int64 { return c.p.Requests() }

func newProvider(t testing.TB, o providerOptions) *provider {
	t.Helper()
	p := oauthtest.New(t, oauthtest.Options{ClientAuth: o.clientAuth, Rotate: o.rotateRefresh, ForcePKCE: o.forcePKCE})
	return &provider{Provider: p, requests: requestCount{p}}
}

// tokenURL is the provider's token endpoint.
func (p *provider) tokenURL() string { return p.TokenURL() }

// handleToken is the token endpoint's handler, to mount behind another server.
func (p *provider) handleToken(w http.ResponseWriter, r *http.Request) { p.ServeToken(w, r) }

// setBefore installs a hook that sees token requests before the server.
func (p *provider) setBefore(fn func(w http.ResponseWriter, r *http.Request) bool) { p.SetFault(fn) }

// last returns the most recent token request.
func (p *provider) last(t testing.TB) tokenRequest {
	t.Helper()
	r := p.LastRequest(t)
	rec := tokenRequest{Form: r.Form, AuthStyle: AuthStyleBody, BasicUser: r.BasicUser}
	if r.Basic {
		rec.AuthStyle = AuthStyleHeader
	}
	return rec
}

// config returns a client-credentials Config for this provider.
func (p *provider) config(style string) Config {
	return Config{
		Grant:        GrantClientCredentials,
		TokenURL:     p.TokenURL(),
		AuthURL:      p.AuthURL(),
		ClientID:     oauthtest.ClientID,
		ClientSecret: oauthtest.ClientSecret,
		Scopes:       []string{"read", "write"},
		AuthStyle:    style,
		RedirectURL:  testRedirectURL,
	}
}

// authorize drives the provider's authorization endpoint like a browser and
// returns the code and state from the redirect back to the client.
func (p *provider) authorize(t testing.TB, consentURL string) (code, state string) {
	t.Helper()
	loc := p.Authorize(t, consentURL)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirectURL {
		t.Fatalf("authorize redirected to %q, want %q", got, testRedirectURL)
	}
	return loc.Query().Get("code"), loc.Query().Get("state")
}

// writeJSON answers as a provider does, for the stand-in servers of client_test.go.
var writeJSON = oauthtest.WriteJSON

// fakeClock is an injected clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// assertNoLeak fails when msg carries a secret or provider content.
func assertNoLeak(t testing.TB, msg string) {
	t.Helper()
	for _, s := range []string{oauthtest.ClientSecret, oauthtest.Password, oauthtest.Marker} {
		if strings.Contains(msg, s) {
			t.Errorf("message leaks %q: %s", s, msg)
		}
	}
}
