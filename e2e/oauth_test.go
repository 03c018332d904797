//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oauth2errors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"
	"github.com/hashicorp/vault/api"
)

// The identity provider's fixtures. Secrets carry markers so any output can be
// searched for them.
const (
	idpClientID     = "vault-integrations"
	idpClientSecret = "SECRET-client-e2e-4c1d"
	idpUsername     = "svc-alice"
	idpPassword     = "SECRET-password-e2e-93ab"
	idpAccountID    = "zoom-account-7"
	idpUserID       = "user-1"
	idpBodyMarker   = "PROVIDER-BODY-MARKER-e2e"
)

// idp is a real OAuth 2.0 authorization server: go-oauth2's manager, in-memory token
// and client stores, and server, listening on 127.0.0.1. A thin handler in front of
// its token endpoint counts requests, records what they carried, translates Zoom's
// account_credentials grant for the library, and can answer in its place to simulate
// an outage.
type idp struct {
	*httptest.Server
	mgr    *manage.Manager
	tokens oauth2.TokenStore

	requests atomic.Int64 // token endpoint requests, counted before anything else

	// cfgMu orders changes of the manager's settings against request handling: the
	// library's settings maps are not safe for concurrent use.
	cfgMu  sync.RWMutex
	rotate bool

	mu     sync.Mutex
	seen   []idpRequest
	issued []issuedToken
	fault  func(w http.ResponseWriter, r *http.Request) bool
	hold   func() // runs before the library sees a token request
}

type idpRequest struct {
	form      url.Values
	basicUser string // client_id sent with HTTP Basic, "" when the client authenticated in the body
}

type issuedToken struct{ access, refresh string }

type idpOptions struct {
	domain    string        // the client's registered redirect base (Vault's address)
	accessTTL time.Duration // lifetime of the access tokens issued (default 2h)
	rotate    bool          // refresh grants issue a new refresh token and retire the old
}

func newIDP(t *testing.T, o idpOptions) *idp {
	t.Helper()
	if o.accessTTL == 0 {
		o.accessTTL = 2 * time.Hour
	}
	if o.domain == "" {
		o.domain = "http://127.0.0.1"
	}
	p := &idp{mgr: manage.NewDefaultManager(), rotate: o.rotate}
	tokens, err := store.NewMemoryTokenStore()
	if err != nil {
		t.Fatal(err)
	}
	p.tokens = tokens
	p.mgr.MapTokenStorage(tokens)
	clients := store.NewClientStore()
	if err := clients.Set(idpClientID, &models.Client{ID: idpClientID, Secret: idpClientSecret, Domain: o.domain}); err != nil {
		t.Fatal(err)
	}
	p.mgr.MapClientStorage(clients)
	p.setAccessTTL(o.accessTTL)

	cfg := server.NewConfig()
	// Vault must send a PKCE challenge, and only S256 is accepted.
	cfg.ForcePKCE = true
	cfg.AllowedCodeChallengeMethods = []oauth2.CodeChallengeMethod{oauth2.CodeChallengeS256}
	srv := server.NewServer(cfg, p.mgr)
	srv.SetClientInfoHandler(func(r *http.Request) (string, string, error) {
		if id, secret, ok := r.BasicAuth(); ok {
			return id, secret, nil
		}
		return server.ClientFormHandler(r)
	})
	srv.SetPasswordAuthorizationHandler(func(_ context.Context, _, username, password string) (string, error) {
		if username == idpUsername && password == idpPassword {
			return idpUserID, nil
		}
		return "", nil // the library answers invalid_grant
	})
	// The consent screen: the user approves.
	srv.SetUserAuthorizationHandler(func(http.ResponseWriter, *http.Request) (string, error) { return idpUserID, nil })
	srv.SetResponseErrorHandler(func(re *oauth2errors.Response) { re.Description += " " + idpBodyMarker })
	srv.SetExtensionFieldsHandler(func(ti oauth2.TokenInfo) map[string]any {
		p.mu.Lock()
		p.issued = append(p.issued, issuedToken{ti.GetAccess(), ti.GetRefresh()})
		p.mu.Unlock()
		return nil
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		p.cfgMu.RLock()
		defer p.cfgMu.RUnlock()
		if err := srv.HandleAuthorizeRequest(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		rec := idpRequest{form: cloneForm(r.PostForm)}
		if user, _, ok := r.BasicAuth(); ok {
			rec.basicUser = user
		}
		p.mu.Lock()
		p.seen = append(p.seen, rec)
		fault, hold := p.fault, p.hold
		p.mu.Unlock()
		if hold != nil {
			hold()
		}
		if fault != nil && fault(w, r) {
			return
		}
		// Zoom's server-to-server grant is client credentials for the account named by
		// account_id; the library knows only RFC 6749 grants.
		if r.PostForm.Get("grant_type") == "account_credentials" {
			if r.PostForm.Get("account_id") != idpAccountID {
				writeJSON(w, http.StatusBadRequest, `{"error":"invalid_request","error_description":"unknown account `+idpBodyMarker+`"}`)
				return
			}
			for _, f := range []url.Values{r.Form, r.PostForm} {
				f.Set("grant_type", string(oauth2.ClientCredentials))
				f.Del("account_id")
			}
		}
		p.cfgMu.RLock()
		defer p.cfgMu.RUnlock()
		_ = srv.HandleTokenRequest(w, r)
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func (p *idp) tokenURL() string { return p.URL + "/token" }
func (p *idp) authURL() string  { return p.URL + "/authorize" }

// setAccessTTL sets the lifetime of every access token issued from now on.
func (p *idp) setAccessTTL(d time.Duration) {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	p.mgr.SetClientTokenCfg(&manage.Config{AccessTokenExp: d})
	p.mgr.SetPasswordTokenCfg(&manage.Config{AccessTokenExp: d, RefreshTokenExp: 24 * time.Hour, IsGenerateRefresh: true})
	p.mgr.SetAuthorizeCodeTokenCfg(&manage.Config{AccessTokenExp: d, RefreshTokenExp: 24 * time.Hour, IsGenerateRefresh: true})
	p.mgr.SetRefreshTokenCfg(&manage.RefreshingConfig{
		AccessTokenExp: d, IsGenerateRefresh: p.rotate, IsRemoveAccess: true, IsRemoveRefreshing: p.rotate,
	})
}

func (p *idp) setFault(fn func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.fault = fn
	p.mu.Unlock()
}

func (p *idp) lastIssued(t *testing.T) issuedToken {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.issued) == 0 {
		t.Fatal("the provider issued no token")
	}
	return p.issued[len(p.issued)-1]
}

func (p *idp) lastRequest(t *testing.T) idpRequest {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		t.Fatal("the provider received no token request")
	}
	return p.seen[len(p.seen)-1]
}

// failWith answers token requests with status, extra headers and a body carrying the
// marker that must never reach a Vault client.
func failWith(status int, header ...string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		writeJSON(w, status, `{"error_description":"`+idpBodyMarker+`"}`)
		return true
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func cloneForm(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// noRetryClient is an API client for v that does not retry 5xx answers, so every
// request the test makes is one access read.
func noRetryClient(t *testing.T, v *vaultServer) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	cfg.MaxRetries = 0
	cfg.Timeout = 60 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.token)
	return c
}

// browser is a user agent without a Vault token.
func browser(followRedirects bool) *http.Client {
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{}}
	if !followRedirects {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// readAccess reads access/<name> through the CLI and returns its data.
func readAccess(t *testing.T, v *vaultServer, mount, name string, args ...string) map[string]any {
	t.Helper()
	return decode(t, v.mustCLI(t, append([]string{"read", "-format=json", mount + "/access/" + name}, args...)...)).Data
}

// assertNothingShows fails when a secret appears in the management read, the list,
// the credential's logs or the Vault server's log.
func assertNothingShows(t *testing.T, v *vaultServer, mount, name string, secrets ...string) {
	t.Helper()
	outputs := map[string]string{
		"read": v.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name),
		"list": v.mustCLI(t, "list", "-format=json", "-detailed", mount+"/credentials"),
		"logs": v.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name+"/logs"),
	}
	serverLog, err := os.ReadFile(v.logPath)
	if err != nil {
		t.Fatal(err)
	}
	outputs["server log"] = string(serverLog)
	for what, out := range outputs {
		for _, s := range secrets {
			if s != "" && strings.Contains(out, s) {
				t.Errorf("%s of %s shows a secret (%d characters long)", what, name, len(s))
			}
		}
	}
}

// TestOAuthGrantsAndPresets mints a token with every grant and preset through the
// vault CLI, each pointed at a real OAuth server on loopback.
func TestOAuthGrantsAndPresets(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	type want struct {
		grant, style, scope string // style: "header" (HTTP Basic) or "body"
		form                map[string]string
	}
	cases := []struct {
		name   string
		fields func(p *idp) []string
		want   want
	}{
		{"oauth2_client_credentials-header", func(p *idp) []string {
			return []string{"type=oauth2_client_credentials", "token_url=" + p.tokenURL(), "auth_style=header", "scopes=read,write"}
		}, want{"client_credentials", "header", "read write", nil}},
		{"oauth2_client_credentials-body", func(p *idp) []string {
			return []string{"type=oauth2_client_credentials", "token_url=" + p.tokenURL(), "auth_style=body", "audience=https://api.example.com"}
		}, want{"client_credentials", "body", "", map[string]string{"audience": "https://api.example.com"}}},
		{"oauth2_password", func(p *idp) []string {
			return []string{"type=oauth2_password", "token_url=" + p.tokenURL(), "username=" + idpUsername, "password=" + idpPassword}
		}, want{"password", "header", "", map[string]string{"username": idpUsername}}},
		{"m365", func(p *idp) []string {
			return []string{"type=m365", "tenant=contoso.onmicrosoft.com", "token_url=" + p.tokenURL()}
		}, want{"client_credentials", "body", "https://graph.microsoft.com/.default", nil}},
		{"microsoft_graph", func(p *idp) []string {
			return []string{"type=microsoft_graph", "tenant=contoso.onmicrosoft.com", "token_url=" + p.tokenURL()}
		}, want{"client_credentials", "body", "https://graph.microsoft.com/.default", nil}},
		{"zoom", func(p *idp) []string {
			return []string{"type=zoom", "account_id=" + idpAccountID, "token_url=" + p.tokenURL()}
		}, want{"account_credentials", "header", "", map[string]string{"account_id": idpAccountID}}},
		{"servicenow_oauth-client", func(p *idp) []string {
			return []string{"type=servicenow_oauth", "instance=dev12345", "token_url=" + p.tokenURL()}
		}, want{"client_credentials", "body", "", nil}},
		{"servicenow_oauth-password", func(p *idp) []string {
			return []string{"type=servicenow_oauth", "instance=dev12345", "token_url=" + p.tokenURL(), "username=" + idpUsername, "password=" + idpPassword}
		}, want{"password", "body", "", map[string]string{"username": idpUsername}}},
		{"cisco_client_credentials", func(p *idp) []string {
			return []string{"type=cisco_client_credentials", "auth_url=" + p.tokenURL()}
		}, want{"client_credentials", "header", "", nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newIDP(t, idpOptions{})
			name := "grant-" + tc.name
			args := append([]string{"write", mount + "/credentials/" + name, "client_id=" + idpClientID, "client_secret=" + idpClientSecret}, tc.fields(p)...)
			shared.mustCLI(t, args...)

			got := readAccess(t, shared, mount, name)
			issued := p.lastIssued(t)
			if n := p.requests.Load(); n != 1 {
				t.Fatalf("%d token requests, want 1", n)
			}
			if got["access_token"] != issued.access || got["token_type"] != "Bearer" || got["authorization"] != "Bearer "+issued.access {
				t.Fatalf("access returned %v; the provider issued %.8s…", got, issued.access)
			}
			if exp := mustTime(t, got["expires_at"].(string)); time.Until(exp) < 110*time.Minute || time.Until(exp) > 2*time.Hour {
				t.Fatalf("expires_at %v, want about two hours from now", exp)
			}
			if tc.want.scope != "" && got["scope"] != tc.want.scope {
				t.Fatalf("scope %v, want %q", got["scope"], tc.want.scope)
			}

			req := p.lastRequest(t)
			if g := req.form.Get("grant_type"); g != tc.want.grant {
				t.Fatalf("grant_type %q, want %q", g, tc.want.grant)
			}
			switch tc.want.style {
			case "header":
				if req.basicUser != idpClientID || req.form.Get("client_secret") != "" {
					t.Fatalf("client authentication: basic user %q, secret in body %v; want HTTP Basic", req.basicUser, req.form.Has("client_secret"))
				}
			case "body":
				if req.basicUser != "" || req.form.Get("client_id") != idpClientID || req.form.Get("client_secret") != idpClientSecret {
					t.Fatalf("client authentication: basic user %q, body client_id %q; want the body", req.basicUser, req.form.Get("client_id"))
				}
			}
			if tc.want.scope != "" && req.form.Get("scope") != tc.want.scope {
				t.Fatalf("requested scope %q, want %q", req.form.Get("scope"), tc.want.scope)
			}
			for k, v := range tc.want.form {
				if req.form.Get(k) != v {
					t.Fatalf("request parameter %s=%q, want %q", k, req.form.Get(k), v)
				}
			}

			// Cached: a second read makes no request and returns the same token.
			if again := readAccess(t, shared, mount, name); again["access_token"] != issued.access || p.requests.Load() != 1 {
				t.Fatalf("second read: token changed or %d requests", p.requests.Load())
			}
			logs := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name+"/logs")).Data
			if !strings.Contains(fmt.Sprint(logs["events"]), "token_minted") {
				t.Errorf("the log does not record the mint: %v", logs["events"])
			}
			assertNothingShows(t, shared, mount, name, issued.access, issued.refresh, idpClientSecret, idpPassword)
		})
	}
}

// authorizeThroughBrowser starts an authorization with the CLI, lets a browser (no
// Vault token) approve at the provider and follow its redirect to Vault's
// oauth/callback, and returns the callback URL it landed on.
func authorizeThroughBrowser(t *testing.T, v *vaultServer, p *idp, mount, name string) *url.URL {
	t.Helper()
	start := decode(t, v.mustCLI(t, "write", "-force", "-format=json", mount+"/credentials/"+name+"/authorize")).Data
	callback := v.addr + "/v1/" + mount + "/oauth/callback"
	if start["redirect_url"] != callback {
		t.Fatalf("redirect_url %v, want Vault's own callback %s", start["redirect_url"], callback)
	}
	consent, err := url.Parse(start["auth_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	q := consent.Query()
	if consent.Scheme+"://"+consent.Host+consent.Path != p.authURL() || q.Get("state") != start["state"] ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("redirect_uri") != callback {
		t.Fatalf("consent URL %s: want the provider's, with state, an S256 challenge and the callback", consent)
	}
	resp, err := browser(true).Get(consent.String())
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	landed := resp.Request.URL
	if landed.Scheme+"://"+landed.Host+landed.Path != callback {
		t.Fatalf("the browser ended at %s, want Vault's callback", landed)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "Authorization complete") {
		t.Fatalf("callback page: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return landed
}

// TestOAuthAuthorizationCodeFlow: consent through a browser, the unauthenticated
// callback, manual completion, single-use state, and re-authorization after the
// provider revokes the grant.
func TestOAuthAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/config", "callback_base_url="+shared.addr)
	p := newIDP(t, idpOptions{domain: shared.addr, rotate: true})
	shared.mustCLI(t, "write", mount+"/credentials/ac", "type=oauth2_authorization_code",
		"auth_url="+p.authURL(), "token_url="+p.tokenURL(), "client_id="+idpClientID,
		"client_secret="+idpClientSecret, "scopes=offline_access,read")
	vc := noRetryClient(t, shared)

	// Before consent there is nothing to mint with: refused, naming authorize.
	_, err := vc.Logical().Read(mount + "/access/ac")
	if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "authorize") {
		t.Fatalf("access before consent: %v", err)
	}

	start := time.Now()
	landed := authorizeThroughBrowser(t, shared, p, mount, "ac")
	t.Logf("authorize → consent → callback: %s", time.Since(start).Round(time.Millisecond))
	exchange := p.lastRequest(t)
	if exchange.form.Get("grant_type") != "authorization_code" || exchange.form.Get("code_verifier") == "" ||
		exchange.form.Get("redirect_uri") != shared.addr+"/v1/"+mount+"/oauth/callback" {
		t.Fatalf("code exchange carried %v", exchange.form)
	}
	issued := p.lastIssued(t)
	if got := readAccess(t, shared, mount, "ac"); got["access_token"] != issued.access || p.requests.Load() != 1 {
		t.Fatalf("access after consent: %v after %d requests", got["access_token"], p.requests.Load())
	}
	if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/ac")).Data["status"]; st != "active" {
		t.Fatalf("status after consent %v", st)
	}

	// The state is single-use: the same redirect again is refused.
	resp, err := browser(false).Get(landed.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "already used") {
		t.Fatalf("replayed callback: %d %s", resp.StatusCode, body)
	}
	// And the callback cannot be driven without state and code.
	resp, err = browser(false).Get(shared.addr + "/v1/" + mount + "/oauth/callback")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback without state: %d", resp.StatusCode)
	}

	// The user revokes the grant: the next refresh is refused for good.
	if err := p.tokens.RemoveByRefresh(context.Background(), issued.refresh); err != nil {
		t.Fatal(err)
	}
	_, err = vc.Logical().ReadWithData(mount+"/access/ac", map[string][]string{"minimum_seconds": {"86400"}})
	if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "re-authoriz") {
		t.Fatalf("access after revocation: %v", err)
	}
	read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/ac")).Data
	if read["status"] != "needs_reauth" || read["status_reason"] != "invalid_grant" || read["health"] != "red" {
		t.Fatalf("after revocation: status %v (%v), health %v", read["status"], read["status_reason"], read["health"])
	}
	requests := p.requests.Load()
	if _, err := vc.Logical().Read(mount + "/access/ac"); statusCode(err) != http.StatusForbidden || p.requests.Load() != requests {
		t.Fatalf("access while needs_reauth: %v (%d new requests)", err, p.requests.Load()-requests)
	}
	// A new consent clears it.
	authorizeThroughBrowser(t, shared, p, mount, "ac")
	if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/ac")).Data["status"]; st != "active" {
		t.Fatalf("status after re-authorization %v", st)
	}
	second := p.lastIssued(t)
	if got := readAccess(t, shared, mount, "ac"); got["access_token"] != second.access {
		t.Fatalf("access after re-authorization: %v", got["access_token"])
	}
	assertNothingShows(t, shared, mount, "ac", issued.access, issued.refresh, second.access, second.refresh, idpClientSecret)

	t.Run("completed by hand", func(t *testing.T) {
		shared.mustCLI(t, "write", mount+"/credentials/ac-manual", "type=oauth2_authorization_code",
			"auth_url="+p.authURL(), "token_url="+p.tokenURL(), "client_id="+idpClientID, "client_secret="+idpClientSecret)
		start := decode(t, shared.mustCLI(t, "write", "-force", "-format=json", mount+"/credentials/ac-manual/authorize")).Data
		resp, err := browser(false).Get(start["auth_url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
			t.Fatalf("consent: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		// A wrong state is refused and does not spend the authorization.
		if out, err := shared.cli("write", mount+"/credentials/ac-manual/authorize", "code="+loc.Query().Get("code"), "state=not-the-state"); err == nil || !strings.Contains(err.Error(), "state does not match") {
			t.Fatalf("wrong state accepted: %s %v", out, err)
		}
		done := decode(t, shared.mustCLI(t, "write", "-format=json", mount+"/credentials/ac-manual/authorize",
			"code="+loc.Query().Get("code"), "state="+loc.Query().Get("state"))).Data
		if done["status"] != "active" || done["name"] != "ac-manual" {
			t.Fatalf("manual completion answered %v", done)
		}
		if got := readAccess(t, shared, mount, "ac-manual"); got["access_token"] != p.lastIssued(t).access {
			t.Fatalf("access after manual completion: %v", got["access_token"])
		}
	})
}

// TestOAuthRefreshRotation: an access token that is stale as soon as it is issued
// (its lifetime is shorter than expiry_buffer) is refreshed on every read; the
// provider rotates the refresh token, Vault stores the new one (it is what Vault
// sends after a restart) and the old one is refused.
func TestOAuthRefreshRotation(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{persistent: true})
	mount := v.mount(t)
	v.mustCLI(t, "write", mount+"/config", "callback_base_url="+v.addr)
	p := newIDP(t, idpOptions{domain: v.addr, accessTTL: 30 * time.Second, rotate: true})
	v.mustCLI(t, "write", mount+"/credentials/ac", "type=oauth2_authorization_code",
		"auth_url="+p.authURL(), "token_url="+p.tokenURL(), "client_id="+idpClientID,
		"client_secret="+idpClientSecret, "scopes=offline_access")
	authorizeThroughBrowser(t, v, p, mount, "ac")
	first := p.lastIssued(t)

	got := readAccess(t, v, mount, "ac")
	second := p.lastIssued(t)
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d token requests after one read of a stale token, want 2 (exchange + refresh)", n)
	}
	if refreshReq := p.lastRequest(t); refreshReq.form.Get("grant_type") != "refresh_token" || refreshReq.form.Get("refresh_token") != first.refresh {
		t.Fatalf("the refresh sent %v", refreshReq.form)
	}
	if got["access_token"] != second.access || second.access == first.access {
		t.Fatalf("access returned %v, want the refreshed token", got["access_token"])
	}
	if second.refresh == "" || second.refresh == first.refresh {
		t.Fatal("the provider did not rotate the refresh token")
	}
	// The retired refresh token is refused by the provider.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.refresh}}
	req, _ := http.NewRequest(http.MethodPost, p.tokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(idpClientID, idpClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || !strings.Contains(string(body), "invalid_grant") {
		t.Fatalf("the old refresh token still works: %d %s", resp.StatusCode, body)
	}

	// After a restart the plugin holds nothing in memory: the refresh it makes uses
	// the refresh token it stored.
	v.restart(t)
	before := p.requests.Load()
	got = readAccess(t, v, mount, "ac")
	if p.requests.Load() != before+1 {
		t.Fatalf("%d requests after the restart, want 1", p.requests.Load()-before)
	}
	if sent := p.lastRequest(t).form.Get("refresh_token"); sent != second.refresh {
		t.Fatal("after the restart Vault refreshed with a refresh token other than the rotated one it was given")
	}
	third := p.lastIssued(t)
	if got["access_token"] != third.access {
		t.Fatalf("access after the restart returned %v", got["access_token"])
	}
	assertNothingShows(t, v, mount, "ac", first.access, first.refresh, second.access, second.refresh, third.access, third.refresh)
}

// TestOAuthCachedTokenSurvivesRestart: the token is cached in storage, so a restarted
// Vault serves it without asking the provider.
func TestOAuthCachedTokenSurvivesRestart(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{persistent: true})
	mount := v.mount(t)
	p := newIDP(t, idpOptions{accessTTL: 2 * time.Hour})
	v.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+p.tokenURL(), "client_id="+idpClientID, "client_secret="+idpClientSecret)
	before := readAccess(t, v, mount, "cc")
	v.restart(t)
	start := time.Now()
	after := readAccess(t, v, mount, "cc")
	t.Logf("first access after restart: %s", time.Since(start).Round(time.Millisecond))
	if after["access_token"] != before["access_token"] || p.requests.Load() != 1 {
		t.Fatalf("after the restart: token changed=%v, %d provider requests (want the same token, 1 request)",
			after["access_token"] != before["access_token"], p.requests.Load())
	}
}

// TestOAuthSingleFlight: 1,000 concurrent reads of a stale token through the real
// Vault make exactly one request to the provider, and all get its token.
func TestOAuthSingleFlight(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	p := newIDP(t, idpOptions{accessTTL: 30 * time.Second}) // stale at once: expiry_buffer is 60 s
	shared.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+p.tokenURL(), "client_id="+idpClientID, "client_secret="+idpClientSecret)
	stale := readAccess(t, shared, mount, "cc")["access_token"]
	p.setAccessTTL(2 * time.Hour) // the next token is good for the whole wave

	const (
		readers = 1000
		workers = 100
	)
	// The wave's one provider request is held until every worker has sent its
	// first read, so the first hundred readers really are concurrent.
	var wrote atomic.Int64
	released := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(released) }) }
	t.Cleanup(release)
	p.mu.Lock()
	p.hold = func() { <-released }
	p.mu.Unlock()

	transport := &http.Transport{MaxConnsPerHost: workers, MaxIdleConnsPerHost: workers,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 2 * time.Minute}
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		if wrote.Add(1) == workers {
			release()
		}
	}}
	jobs := make(chan int, readers)
	for i := range readers {
		jobs <- i
	}
	close(jobs)
	tokens := make([]string, readers)
	errs := make([]error, readers)
	latency := make([]time.Duration, readers)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t0 := time.Now()
				tokens[i], errs[i] = accessToken(client, trace, shared, mount+"/access/cc")
				latency[i] = time.Since(t0)
				if errs[i] != nil {
					release() // never leave the others waiting on a gate that will not open
				}
			}
		}()
	}
	wg.Wait()
	wave := time.Since(start)

	fresh := p.lastIssued(t).access
	for i := range readers {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		if tokens[i] != fresh || tokens[i] == stale {
			t.Fatalf("reader %d got a different token", i)
		}
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d token requests for %d concurrent readers of a stale token, want exactly 1 (+1 before the wave)", n-1, readers)
	}
	var maxLat time.Duration
	for _, l := range latency {
		maxLat = max(maxLat, l)
	}
	t.Logf("%d readers (%d at a time): 1 provider request; wave %s, slowest read %s",
		readers, workers, wave.Round(time.Millisecond), maxLat.Round(time.Millisecond))
}

// accessToken reads one access token over plain HTTP.
func accessToken(client *http.Client, trace *httptrace.ClientTrace, v *vaultServer, path string) (string, error) {
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, v.addr+"/v1/"+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Vault-Token", v.token)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var out struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", err
	}
	return out.Data.AccessToken, nil
}

// TestOAuthFaults: every class of provider failure, through the real Vault.
func TestOAuthFaults(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	client := noRetryClient(t, shared)
	create := func(t *testing.T, name, tokenURL string, extra ...string) {
		t.Helper()
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/" + name, "type=oauth2_client_credentials",
			"token_url=" + tokenURL, "client_id=" + idpClientID}, extra...)...)
	}
	access := func(name string) (*api.Secret, error) { return client.Logical().Read(mount + "/access/" + name) }
	noLeak := func(t *testing.T, err error) {
		t.Helper()
		for _, s := range []string{idpBodyMarker, idpClientSecret} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("the error shows %q: %v", s, err)
			}
		}
	}

	t.Run("invalid_client needs re-authorization", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, idpOptions{})
		create(t, "refused", p.tokenURL(), "client_secret=wrong-secret")
		_, err := access("refused")
		if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "invalid_client") || !strings.Contains(err.Error(), "re-authorize") {
			t.Fatalf("access with a wrong secret: %v", err)
		}
		noLeak(t, err)
		read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/refused")).Data
		if read["status"] != "needs_reauth" || read["status_reason"] != "invalid_client" {
			t.Fatalf("management read: status %v (%v)", read["status"], read["status_reason"])
		}
		list := decode(t, shared.mustCLI(t, "list", "-format=json", "-detailed", mount+"/credentials")).Data
		if info := fmt.Sprint(list["key_info"]); !strings.Contains(info, "needs_reauth") {
			t.Fatalf("list does not show needs_reauth: %s", info)
		}
		if _, err := access("refused"); statusCode(err) != http.StatusForbidden || p.requests.Load() != 1 {
			t.Fatalf("second access: %v after %d requests (want 403 without asking again)", err, p.requests.Load())
		}
		// The operator fixes the secret: the update clears the state and the next read mints.
		shared.mustCLI(t, "write", mount+"/credentials/refused", "token_url="+p.tokenURL(),
			"client_id="+idpClientID, "client_secret="+idpClientSecret)
		if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/refused")).Data["status"]; st != "active" {
			t.Fatalf("status after the update %v", st)
		}
		s, err := access("refused")
		if err != nil || s.Data["access_token"] != p.lastIssued(t).access {
			t.Fatalf("access after the update: %v %v", s, err)
		}
	})

	t.Run("500", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, idpOptions{})
		p.setFault(failWith(http.StatusInternalServerError))
		create(t, "down", p.tokenURL(), "client_secret="+idpClientSecret)
		_, err := access("down")
		if statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "HTTP 500") {
			t.Fatalf("access during a 500: %v", err)
		}
		noLeak(t, err)
		if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/down")).Data["status"]; st != "active" {
			t.Fatalf("a transient failure changed the status to %v", st)
		}
	})

	t.Run("429 Retry-After", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, idpOptions{})
		p.setFault(failWith(http.StatusTooManyRequests, "Retry-After", "120"))
		create(t, "limited", p.tokenURL(), "client_secret="+idpClientSecret)
		_, err := access("limited")
		if statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), "retry after 2m0s") {
			t.Fatalf("access during a 429: %v", err)
		}
		noLeak(t, err)
		// Within the Retry-After window Vault does not ask again, even once the provider is back.
		p.setFault(nil)
		if _, err := access("limited"); statusCode(err) != http.StatusBadGateway || p.requests.Load() != 1 {
			t.Fatalf("inside Retry-After: %v after %d requests, want 502 after 1", err, p.requests.Load())
		}
	})

	t.Run("cached token served during an outage", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, idpOptions{accessTTL: 59 * time.Second}) // valid, but inside expiry_buffer (60 s)
		create(t, "outage", p.tokenURL(), "client_secret="+idpClientSecret)
		s, err := access("outage")
		if err != nil {
			t.Fatal(err)
		}
		cached := s.Data["access_token"]
		p.setFault(failWith(http.StatusServiceUnavailable))
		s, err = access("outage")
		if err != nil || s.Data["access_token"] != cached || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "HTTP 503") {
			t.Fatalf("during the outage: %v %v (want the cached token with a warning naming 503)", s, err)
		}
		if strings.Contains(s.Warnings[0], idpBodyMarker) || strings.Contains(s.Warnings[0], cached.(string)) {
			t.Fatalf("the warning leaks: %s", s.Warnings[0])
		}
		if p.requests.Load() != 2 {
			t.Fatalf("%d requests, want 2", p.requests.Load())
		}
		if h := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/outage")).Data["health"]; h != "yellow" {
			t.Fatalf("health while serving through an outage %v, want yellow", h)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + l.Addr().String() + "/token"
		l.Close()
		create(t, "unreachable", dead, "client_secret="+idpClientSecret)
		_, err = access("unreachable")
		if statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("access to a closed port: %v", err)
		}
	})
}
