// Package zitadeltest runs a real RFC 8693 token-exchange server for the e2e suite: the
// op package of github.com/zitadel/oidc/v3 (an OpenID Connect provider library) over
// its example storage, on 127.0.0.1 over plain HTTP. The service user ClientID issues
// access tokens by client credentials and may exchange them; the audiences of
// Options.Audiences are clients of their own that introspect the tokens issued for
// them. It counts the token requests by grant.
package zitadeltest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The service user the engine's credential is: the example storage's own, which is
// the one its client-credentials grant knows.
const (
	ClientID     = "sid1"
	ClientSecret = "verysecret"
)

// AudienceSecret is the client secret of every audience client (for introspection).
const AudienceSecret = "audience-secret"

// GrantTokenExchange is the grant_type of RFC 8693.
const GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// Options configure a Provider.
type Options struct {
	// Audiences are the audience (and resource) values the server issues tokens for,
	// each also a client that may introspect them; any other is invalid_target.
	Audiences []string
}

// Provider is a running server.
type Provider struct {
	srv    *httptest.Server
	issuer string

	mu       sync.Mutex
	requests map[string]int // token requests by grant_type
	hold     chan struct{}  // while set, token-exchange requests wait until it is closed
	arrived  chan struct{}  // closed by the first token exchange held
	once     *sync.Once
}

// New starts a server for t, stopped when t ends.
func New(t testing.TB, o Options) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{issuer: "http://" + ln.Addr().String(), requests: map[string]int{}}
	clients := map[string]*storage.Client{ClientID: storage.WebClient(ClientID, ClientSecret, p.issuer+"/cb")}
	for _, a := range o.Audiences {
		clients[a] = storage.WebClient(a, AudienceSecret, p.issuer+"/cb")
	}
	st := &exchangeStorage{Storage: storage.NewStorageWithClients(users{}, clients), audiences: slices.Clone(o.Audiences)}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		t.Fatal(err)
	}
	provider, err := op.NewProvider(&op.Config{CryptoKey: key, AuthMethodPost: true, SupportedUILocales: []language.Tag{language.English}},
		st, op.StaticIssuer(p.issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	p.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: p.count(provider), ReadHeaderTimeout: 10 * time.Second}}
	p.srv.Start()
	t.Cleanup(func() {
		p.Release()
		p.srv.Close()
	})
	return p
}

// count records each token request by grant_type, and holds token exchanges while
// Hold is in force.
func (p *Provider) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" && r.Method == http.MethodPost {
			_ = r.ParseForm()
			grant := r.PostForm.Get("grant_type")
			p.mu.Lock()
			p.requests[grant]++
			hold, arrived, once := p.hold, p.arrived, p.once
			p.mu.Unlock()
			if grant == GrantTokenExchange && hold != nil {
				once.Do(func() { close(arrived) })
				<-hold
			}
		}
		next.ServeHTTP(w, r)
	})
}

// TokenURL is the token endpoint.
func (p *Provider) TokenURL() string { return p.issuer + "/oauth/token" }

// Requests is how many token requests of grant reached the server.
func (p *Provider) Requests(grant string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[grant]
}

// Hold makes token exchanges wait at the server until Release; the channel it returns
// is closed when the first one arrives.
func (p *Provider) Hold() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold, p.arrived, p.once = make(chan struct{}), make(chan struct{}), new(sync.Once)
	}
	return p.arrived
}

// Release lets held token exchanges through.
func (p *Provider) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// Introspect asks the server's introspection endpoint (RFC 7662) about token as the
// client audience (an Options.Audiences value).
func (p *Provider) Introspect(ctx context.Context, audience, token string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.issuer+"/oauth/introspect",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(audience, AudienceSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("introspection: HTTP %d", resp.StatusCode)
	}
	var out map[string]any
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// exchangeStorage is the example storage with its token-exchange rule replaced: the
// subject is the service user (no impersonation check), the requested token type an
// access token by default, and every audience and resource must be a known audience,
// else invalid_target (RFC 8693 section 2.2.2).
type exchangeStorage struct {
	*storage.Storage
	audiences []string
}

func (s *exchangeStorage) ValidateTokenExchangeRequest(_ context.Context, r op.TokenExchangeRequest) error {
	if r.GetRequestedTokenType() == "" {
		r.SetRequestedTokenType(oidc.AccessTokenType)
	}
	for _, v := range append(slices.Clone(r.GetAudience()), r.GetResourses()...) {
		if !slices.Contains(s.audiences, v) {
			return oidc.ErrInvalidTarget().WithDescription("unknown audience").WithParent(errors.New(v))
		}
	}
	r.SetCurrentScopes(r.GetScopes())
	return nil
}

// users is the user store: the service user is a user too, so the server can answer
// userinfo and introspection about the tokens issued to it.
type users struct{}

var serviceUser = &storage.User{ID: ClientID, Username: ClientID, FirstName: "Service", LastName: "User", PreferredLanguage: language.English}

func (users) GetUserByID(id string) *storage.User {
	if id == ClientID {
		return serviceUser
	}
	return nil
}
func (users) GetUserByUsername(string) *storage.User { return nil }
func (users) ExampleClientID() string                { return "service" }
