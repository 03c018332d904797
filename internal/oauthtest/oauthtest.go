// Package oauthtest runs an OAuth 2.0 authorization server on loopback for tests.
//
// A handler in front of the server's token endpoint adds what tests need and a real
// provider does not offer: it counts and records requests and the tokens issued, speaks
// Zoom's account_credentials grant, and lets a test answer in the server's place to
// simulate a fault. The server itself is a Server (server.go): the standard-library
// one here for the plugin's unit tests, go-oauth2's in the end-to-end module
// (e2e/internal/oauthtest), so the plugin's go.mod names no OAuth server library
// while the end-to-end suite still runs against a separate implementation.
//
// The package imports nothing from Vault, so the SDK-free oauth package can test with
// it as well as the plugin and the end-to-end tests. It is meant for tests only.
package oauthtest

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The provider's one registered client, its one user and Zoom account. The secrets and
// Marker are distinctive so that tests can search any output for them.
const (
	ClientID     = "integrations-client"
	ClientSecret = "SECRET-client-7f3a"
	Username     = "alice"
	Password     = "SECRET-password-91c2"
	UserID       = "user-1"
	AccountID    = "acct-42"
	// Marker is put into the body of every error the provider sends (its own and
	// Fail's), so tests can check that no provider content reaches a caller.
	Marker = "PROVIDER-BODY-MARKER-do-not-leak"
)

// Client authentications the token endpoint can be limited to (Options.ClientAuth).
// They are the words the oauth package uses for its AuthStyle.
const (
	ClientAuthHeader = "header" // HTTP Basic only
	ClientAuthBody   = "body"   // client_id and client_secret in the form only
)

// Options shape one provider. The zero value is a provider that accepts either client
// authentication, does not require PKCE, does not rotate refresh tokens and issues
// access tokens for two hours.
type Options struct {
	// Domain is the client's registered redirect base; the server refuses a
	// redirect_uri on another host. Default http://127.0.0.1.
	Domain string
	// AccessTTL is the lifetime of every access token issued. Default two hours (the
	// default of go-oauth2, which the tests first ran against). SetAccessTTL changes it
	// later.
	AccessTTL time.Duration
	// Rotate makes a refresh_token grant issue a new refresh token and retire the old
	// one; otherwise the answer has no refresh_token and the old one stays valid.
	// SetRotate changes it later.
	Rotate bool
	// ClientAuth is the only client authentication the token endpoint accepts:
	// ClientAuthHeader, ClientAuthBody, or "" for either.
	ClientAuth string
	// ForcePKCE makes the server require a code challenge. Only S256 is accepted either
	// way: a client must never fall back to plain.
	ForcePKCE bool
	// ClientSecret is the registered client's secret and Password its user's password;
	// default ClientSecret and Password. A test that searches outputs for the secrets of
	// several credentials gives each provider its own.
	ClientSecret, Password string
	// Server builds the authorization server; nil is NewStdServer.
	Server func(ServerConfig) (Server, error)
}

// Request is a token request as the provider received it, before any rewriting.
type Request struct {
	Form      url.Values // the POST form
	Basic     bool       // the client authenticated with HTTP Basic
	BasicUser string     // the Basic user name, "" without Basic
}

// Token is an access token the provider issued and the refresh token issued with it
// ("" when none was).
type Token struct{ Access, Refresh string }

// Fault sees a token request before the server does; returning true means it answered
// and the server is skipped. Returning false lets the request through, so a Fault can
// also just hold a request back.
type Fault func(w http.ResponseWriter, r *http.Request) bool

// Provider is a running authorization server. Its endpoints are AuthURL and TokenURL;
// the embedded httptest.Server gives its URL and an HTTP client for it.
type Provider struct {
	*httptest.Server
	srv      Server
	requests atomic.Int64 // token endpoint requests, counted before anything else
	// clientSecret is the registered client's, for IssueRefreshToken.
	clientSecret string

	// cfgMu orders changes of the server's settings against request handling: Set
	// runs with no request in flight (go-oauth2's settings maps are not safe for
	// concurrent use), and tests change them while requests are in flight.
	cfgMu     sync.RWMutex
	accessTTL time.Duration
	rotate    bool

	mu       sync.Mutex
	received []Request
	issued   []Token
	fault    Fault
}

// New starts a provider for the length of the test t.
func New(t testing.TB, o Options) *Provider {
	t.Helper()
	if o.AccessTTL == 0 {
		o.AccessTTL = 2 * time.Hour
	}
	if o.Domain == "" {
		o.Domain = "http://127.0.0.1"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = ClientSecret
	}
	if o.Password == "" {
		o.Password = Password
	}
	if o.Server == nil {
		o.Server = NewStdServer
	}
	p := &Provider{clientSecret: o.ClientSecret, accessTTL: o.AccessTTL, rotate: o.Rotate}
	srv, err := o.Server(ServerConfig{Domain: o.Domain, ClientSecret: o.ClientSecret, Password: o.Password,
		ClientAuth: o.ClientAuth, ForcePKCE: o.ForcePKCE, AccessTTL: o.AccessTTL, Rotate: o.Rotate,
		Issued: func(tok Token) {
			p.mu.Lock()
			p.issued = append(p.issued, tok)
			p.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	p.srv = srv

	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		p.cfgMu.RLock()
		defer p.cfgMu.RUnlock()
		if r.FormValue("response_mode") == "form_post" {
			p.formPost(w, r)
			return
		}
		if err := p.srv.Authorize(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/token", p.ServeToken)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// ServeToken is the token endpoint's handler (TokenURL serves it), for a test that puts
// the endpoint behind a server of its own, such as one that redirects.
func (p *Provider) ServeToken(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	rec := Request{Form: cloneValues(r.PostForm)}
	rec.BasicUser, _, rec.Basic = r.BasicAuth()
	p.mu.Lock()
	p.received = append(p.received, rec)
	fault := p.fault
	p.mu.Unlock()
	// Outside cfgMu: a fault that holds a request must not block SetAccessTTL.
	if fault != nil && fault(w, r) {
		return
	}
	// Zoom's server-to-server grant is client credentials for the account named by
	// account_id. A Server knows only RFC 6749 grants, so check the Zoom-specific
	// part here and let the server do the rest.
	if r.PostForm.Get("grant_type") == "account_credentials" {
		if r.PostForm.Get("account_id") != AccountID {
			WriteJSON(w, http.StatusBadRequest, `{"error":"invalid_request","error_description":"unknown account `+Marker+`"}`)
			return
		}
		for _, f := range []url.Values{r.Form, r.PostForm} {
			f.Set("grant_type", "client_credentials")
			f.Del("account_id")
		}
	}
	p.cfgMu.RLock()
	defer p.cfgMu.RUnlock()
	p.srv.Token(w, r)
}

// TokenURL is the provider's token endpoint.
func (p *Provider) TokenURL() string { return p.URL + "/token" }

// AuthURL is the provider's authorization endpoint.
func (p *Provider) AuthURL() string { return p.URL + "/authorize" }

// SetAccessTTL sets the lifetime of every access token issued from now on. It is safe
// while requests are in flight.
func (p *Provider) SetAccessTTL(d time.Duration) {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	p.accessTTL = d
	p.srv.Set(p.accessTTL, p.rotate)
}

// SetRotate sets whether refresh_token grants from now on rotate the refresh token
// (see Options.Rotate). It is safe while requests are in flight.
func (p *Provider) SetRotate(rotate bool) {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	p.rotate = rotate
	p.srv.Set(p.accessTTL, p.rotate)
}

// SetFault makes f see every token request first; nil removes it.
func (p *Provider) SetFault(f Fault) {
	p.mu.Lock()
	p.fault = f
	p.mu.Unlock()
}

// Requests is the number of requests the token endpoint has received, faulted ones
// and malformed ones included.
func (p *Provider) Requests() int64 { return p.requests.Load() }

// LastRequest is the most recent token request; it fails t when there was none.
func (p *Provider) LastRequest(t testing.TB) Request {
	t.Helper()
	return last(t, p, &p.received, "the provider received no token request")
}

// LastRefreshToken is the refresh_token parameter of the most recent token request
// that had one, or "".
func (p *Provider) LastRefreshToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.received) - 1; i >= 0; i-- {
		if rt := p.received[i].Form.Get("refresh_token"); rt != "" {
			return rt
		}
	}
	return ""
}

// LastIssued is the most recent token the server issued; it fails t when there was
// none.
func (p *Provider) LastIssued(t testing.TB) Token {
	t.Helper()
	return last(t, p, &p.issued, "the provider issued no token")
}

// last is the last of a record p.mu guards; it fails t with none when it is empty.
func last[T any](t testing.TB, p *Provider, record *[]T, none string) T {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(*record) == 0 {
		t.Fatal(none)
	}
	return (*record)[len(*record)-1]
}

// Received is every token request the provider received, oldest first.
func (p *Provider) Received() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.received...)
}

// Issued is every token the server issued, oldest first.
func (p *Provider) Issued() []Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Token(nil), p.issued...)
}

// TokenStore is the server's token store, for what a user or an administrator does at
// the provider, such as revoking a grant (RemoveByRefresh).
func (p *Provider) TokenStore() TokenStore { return p.srv }

// Authorize drives the authorization endpoint like a browser whose user approves, and
// returns the redirect back to the client without following it. It fails t unless the
// provider redirects with a code.
func (p *Provider) Authorize(t testing.TB, authURL string) *url.URL {
	t.Helper()
	// The server's own client: http.DefaultTransport is shared with parallel tests
	// whose httptest servers close its idle connections.
	browser := *p.Client()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // capture the redirect, do not follow it
	}
	resp, err := browser.Get(authURL)
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
	if e := loc.Query().Get("error"); e != "" {
		t.Fatalf("authorize: provider refused: %s", e)
	}
	if loc.Query().Get("code") == "" {
		t.Fatalf("authorize: redirect %q carries no code", loc)
	}
	return loc
}

// formPost answers an authorization request with response_mode=form_post as the Form
// Post Response Mode specification says: instead of a redirect, a page whose form
// the browser POSTs to the redirect URI with the answer's parameters.
func (p *Provider) formPost(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	if err := p.srv.Authorize(rec, r); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	params := loc.Query()
	loc.RawQuery = ""
	var page strings.Builder
	page.WriteString(`<html><body onload="document.forms[0].submit()"><form method="post" action="` + html.EscapeString(loc.String()) + `">`)
	for k := range params {
		page.WriteString(`<input type="hidden" name="` + html.EscapeString(k) + `" value="` + html.EscapeString(params.Get(k)) + `"/>`)
	}
	page.WriteString("</form></body></html>")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(page.String()))
}

var formInputRe = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)"/>`)
var formActionRe = regexp.MustCompile(`<form method="post" action="([^"]*)">`)

// AuthorizeFormPost drives the authorization endpoint like a browser whose user
// approves, for an authorization URL that asks response_mode=form_post: it returns
// the URL the provider's page POSTs its form to and the form's fields, without
// posting it. It fails t unless the provider answered with such a page carrying a code.
func (p *Provider) AuthorizeFormPost(t testing.TB, authURL string) (*url.URL, url.Values) {
	t.Helper()
	browser := *p.Client()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := formActionRe.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("authorize: status %d, no form_post page: %.200s", resp.StatusCode, body)
	}
	action, err := url.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatalf("authorize: bad form action: %v", err)
	}
	form := url.Values{}
	for _, in := range formInputRe.FindAllSubmatch(body, -1) {
		form.Set(html.UnescapeString(string(in[1])), html.UnescapeString(string(in[2])))
	}
	if form.Get("code") == "" {
		t.Fatalf("authorize: form_post page carries no code (error %q)", form.Get("error"))
	}
	return action, form
}

// Fail is a Fault that answers every token request with status, the header pairs
// given (name, value, ...) and a JSON error body carrying Marker.
func Fail(status int, header ...string) Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		WriteJSON(w, status, `{"error_description":"upstream trouble `+Marker+`"}`)
		return true
	}
}

// WriteJSON answers with status and body as application/json, as a provider does.
func WriteJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
