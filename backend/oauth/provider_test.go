package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oautherrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
)

// Test fixtures. The secrets contain markers so tests can assert they never
// appear in an error message or warning.
const (
	testClientID     = "integrations"
	testClientSecret = "SECRET-client-7f3a"
	testUsername     = "alice"
	testPassword     = "SECRET-password-91c2"
	testAccountID    = "acct-42"
	testRedirectURL  = "http://127.0.0.1/callback"
	testUserID       = "user-1"
	// bodyMarker is put into every error body the provider sends.
	bodyMarker = "BODY-MARKER-do-not-leak"
)

// providerOptions shape one test provider.
type providerOptions struct {
	// clientAuth is the only client authentication the token endpoint
	// accepts: AuthStyleHeader, AuthStyleBody, or "" for either.
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

// provider is a real OAuth 2.0 authorization server (go-oauth2/oauth2's
// server package) behind httptest on loopback, with hooks for tests.
type provider struct {
	*httptest.Server
	srv      *server.Server
	requests atomic.Int64 // token endpoint requests, counted before any handling

	mu       sync.Mutex
	received []tokenRequest
	// before, when set, sees each token request first; returning true means
	// it answered and the real server is skipped.
	before func(w http.ResponseWriter, r *http.Request) bool
}

func newProvider(t testing.TB, o providerOptions) *provider {
	t.Helper()
	mgr := newManager(t, o, &models.Client{
		ID:     testClientID,
		Secret: testClientSecret,
		Domain: "http://127.0.0.1",
	})
	cfg := server.NewConfig()
	cfg.ForcePKCE = o.forcePKCE
	srv := server.NewServer(cfg, mgr)
	srv.SetClientInfoHandler(func(r *http.Request) (string, string, error) {
		if id, secret, ok := r.BasicAuth(); ok && o.clientAuth != AuthStyleBody {
			return id, secret, nil
		}
		if o.clientAuth == AuthStyleHeader {
			return "", "", oautherrors.ErrInvalidClient
		}
		return server.ClientFormHandler(r)
	})
	srv.SetPasswordAuthorizationHandler(func(_ context.Context, _, username, password string) (string, error) {
		if username == testUsername && password == testPassword {
			return testUserID, nil
		}
		return "", nil // the server answers invalid_grant
	})
	// The consent screen: the user approves at once.
	srv.SetUserAuthorizationHandler(func(http.ResponseWriter, *http.Request) (string, error) {
		return testUserID, nil
	})
	// Put a marker into every error body so tests can check it never leaks.
	srv.SetResponseErrorHandler(func(re *oautherrors.Response) {
		re.Description += " " + bodyMarker
	})

	p := &provider{srv: srv}
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.HandleAuthorizeRequest(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/token", p.handleToken)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func (p *provider) handleToken(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	rec := tokenRequest{Form: cloneValues(r.PostForm), AuthStyle: AuthStyleBody}
	if user, _, ok := r.BasicAuth(); ok {
		rec.AuthStyle, rec.BasicUser = AuthStyleHeader, user
	}
	p.mu.Lock()
	p.received = append(p.received, rec)
	before := p.before
	p.mu.Unlock()
	if before != nil && before(w, r) {
		return
	}
	// Zoom's account_credentials grant is client credentials for the account
	// named by account_id. go-oauth2 knows only RFC 6749 grants, so check the
	// Zoom-specific part here and let the real server do the rest.
	if r.PostForm.Get("grant_type") == string(GrantAccountCredentials) {
		if r.PostForm.Get("account_id") != testAccountID {
			writeJSON(w, http.StatusBadRequest, `{"error":"invalid_request","error_description":"bad account `+bodyMarker+`"}`)
			return
		}
		r.Form.Set("grant_type", string(oauth2.ClientCredentials))
		r.PostForm.Set("grant_type", string(oauth2.ClientCredentials))
	}
	_ = p.srv.HandleTokenRequest(w, r)
}

// tokenURL is the provider's token endpoint.
func (p *provider) tokenURL() string { return p.URL + "/token" }

// setBefore installs a hook that sees token requests before the server.
func (p *provider) setBefore(fn func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.before = fn
	p.mu.Unlock()
}

// last returns the most recent token request.
func (p *provider) last(t testing.TB) tokenRequest {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.received) == 0 {
		t.Fatal("the provider received no token request")
	}
	return p.received[len(p.received)-1]
}

// config returns a client-credentials Config for this provider.
func (p *provider) config(style string) Config {
	return Config{
		Grant:        GrantClientCredentials,
		TokenURL:     p.tokenURL(),
		AuthURL:      p.URL + "/authorize",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		Scopes:       []string{"read", "write"},
		AuthStyle:    style,
		RedirectURL:  testRedirectURL,
	}
}

// authorize drives the provider's authorization endpoint like a browser and
// returns the code and state from the redirect back to the client.
func (p *provider) authorize(t testing.TB, consentURL string) (code, state string) {
	t.Helper()
	// The server's own client: http.DefaultTransport is shared with parallel
	// tests whose httptest servers close its idle connections.
	browser := *p.Client()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // capture the redirect, do not follow it
	}
	resp, err := browser.Get(consentURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize: bad Location: %v", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirectURL {
		t.Fatalf("authorize redirected to %q, want %q", got, testRedirectURL)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		t.Fatalf("authorize: provider refused: %s", q.Get("error"))
	}
	return q.Get("code"), q.Get("state")
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

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
	for _, s := range []string{testClientSecret, testPassword, bodyMarker} {
		if strings.Contains(msg, s) {
			t.Errorf("message leaks %q: %s", s, msg)
		}
	}
}
