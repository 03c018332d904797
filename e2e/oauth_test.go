//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// newIDP starts the shared real OAuth 2.0 test server (e2e/internal/oauthtest: go-oauth2) on
// 127.0.0.1 for t. Vault must send a PKCE challenge: the provider requires one.
func newIDP(t *testing.T, o oauthtest.Options) *oauthtest.Provider {
	t.Helper()
	o.ForcePKCE = true
	return oauthtest.New(t, o)
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
		fields func(p *oauthtest.Provider) []string
		want   want
	}{
		{"oauth2_client_credentials-header", func(p *oauthtest.Provider) []string {
			return []string{"type=oauth2_client_credentials", "token_url=" + p.TokenURL(), "auth_style=header", "scopes=read,write"}
		}, want{"client_credentials", "header", "read write", nil}},
		{"oauth2_client_credentials-body", func(p *oauthtest.Provider) []string {
			return []string{"type=oauth2_client_credentials", "token_url=" + p.TokenURL(), "auth_style=body", "audience=https://api.example.com"}
		}, want{"client_credentials", "body", "", map[string]string{"audience": "https://api.example.com"}}},
		{"oauth2_password", func(p *oauthtest.Provider) []string {
			return []string{"type=oauth2_password", "token_url=" + p.TokenURL(), "username=" + oauthtest.Username, "password=" + oauthtest.Password}
		}, want{"password", "header", "", map[string]string{"username": oauthtest.Username}}},
		{"m365", func(p *oauthtest.Provider) []string {
			return []string{"type=m365", "tenant=contoso.onmicrosoft.com", "token_url=" + p.TokenURL()}
		}, want{"client_credentials", "body", "https://graph.microsoft.com/.default", nil}},
		{"microsoft_graph", func(p *oauthtest.Provider) []string {
			return []string{"type=microsoft_graph", "tenant=contoso.onmicrosoft.com", "token_url=" + p.TokenURL()}
		}, want{"client_credentials", "body", "https://graph.microsoft.com/.default", nil}},
		{"zoom", func(p *oauthtest.Provider) []string {
			return []string{"type=zoom", "account_id=" + oauthtest.AccountID, "token_url=" + p.TokenURL()}
		}, want{"account_credentials", "header", "", map[string]string{"account_id": oauthtest.AccountID}}},
		{"servicenow_oauth-client", func(p *oauthtest.Provider) []string {
			return []string{"type=servicenow_oauth", "instance=dev12345", "token_url=" + p.TokenURL()}
		}, want{"client_credentials", "body", "", nil}},
		{"servicenow_oauth-password", func(p *oauthtest.Provider) []string {
			return []string{"type=servicenow_oauth", "instance=dev12345", "token_url=" + p.TokenURL(), "username=" + oauthtest.Username, "password=" + oauthtest.Password}
		}, want{"password", "body", "", map[string]string{"username": oauthtest.Username}}},
		{"cisco_client_credentials", func(p *oauthtest.Provider) []string {
			return []string{"type=cisco_client_credentials", "auth_url=" + p.TokenURL()}
		}, want{"client_credentials", "header", "", nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newIDP(t, oauthtest.Options{})
			name := "grant-" + tc.name
			args := append([]string{"write", mount + "/credentials/" + name, "client_id=" + oauthtest.ClientID, "client_secret=" + oauthtest.ClientSecret}, tc.fields(p)...)
			shared.mustCLI(t, args...)

			got := readAccess(t, shared, mount, name)
			issued := p.LastIssued(t)
			if n := p.Requests(); n != 1 {
				t.Fatalf("%d token requests, want 1", n)
			}
			if got["access_token"] != issued.Access || got["token_type"] != "Bearer" || got["authorization"] != "Bearer "+issued.Access {
				t.Fatalf("access returned %v; the provider issued %.8s…", got, issued.Access)
			}
			if exp := mustTime(t, got["expires_at"].(string)); time.Until(exp) < 110*time.Minute || time.Until(exp) > 2*time.Hour {
				t.Fatalf("expires_at %v, want about two hours from now", exp)
			}
			if tc.want.scope != "" && got["scope"] != tc.want.scope {
				t.Fatalf("scope %v, want %q", got["scope"], tc.want.scope)
			}

			req := p.LastRequest(t)
			if g := req.Form.Get("grant_type"); g != tc.want.grant {
				t.Fatalf("grant_type %q, want %q", g, tc.want.grant)
			}
			switch tc.want.style {
			case "header":
				if req.BasicUser != oauthtest.ClientID || req.Form.Get("client_secret") != "" {
					t.Fatalf("client authentication: basic user %q, secret in body %v; want HTTP Basic", req.BasicUser, req.Form.Has("client_secret"))
				}
			case "body":
				if req.BasicUser != "" || req.Form.Get("client_id") != oauthtest.ClientID || req.Form.Get("client_secret") != oauthtest.ClientSecret {
					t.Fatalf("client authentication: basic user %q, body client_id %q; want the body", req.BasicUser, req.Form.Get("client_id"))
				}
			}
			if tc.want.scope != "" && req.Form.Get("scope") != tc.want.scope {
				t.Fatalf("requested scope %q, want %q", req.Form.Get("scope"), tc.want.scope)
			}
			for k, v := range tc.want.form {
				if req.Form.Get(k) != v {
					t.Fatalf("request parameter %s=%q, want %q", k, req.Form.Get(k), v)
				}
			}

			// Cached: a second read makes no request and returns the same token.
			if again := readAccess(t, shared, mount, name); again["access_token"] != issued.Access || p.Requests() != 1 {
				t.Fatalf("second read: token changed or %d requests", p.Requests())
			}
			logs := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name+"/logs")).Data
			if !strings.Contains(fmt.Sprint(logs["events"]), "token_minted") {
				t.Errorf("the log does not record the mint: %v", logs["events"])
			}
			assertNothingShows(t, shared, mount, name, issued.Access, issued.Refresh, oauthtest.ClientSecret, oauthtest.Password)
		})
	}
}

// authorizeThroughBrowser starts an authorization with the CLI, lets a browser (no
// Vault token) approve at the provider and follow its redirect to Vault's
// oauth/callback, and returns the callback URL it landed on.
func authorizeThroughBrowser(t *testing.T, v *vaultServer, p *oauthtest.Provider, mount, name string) *url.URL {
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
	if consent.Scheme+"://"+consent.Host+consent.Path != p.AuthURL() || q.Get("state") != start["state"] ||
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
	p := newIDP(t, oauthtest.Options{Domain: shared.addr, Rotate: true})
	shared.mustCLI(t, "write", mount+"/credentials/ac", "type=oauth2_authorization_code",
		"auth_url="+p.AuthURL(), "token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID,
		"client_secret="+oauthtest.ClientSecret, "scopes=offline_access,read")
	vc := noRetryClient(t, shared)

	// Before consent there is nothing to mint with: refused, naming authorize.
	_, err := vc.Logical().Read(mount + "/access/ac")
	if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "authorize") {
		t.Fatalf("access before consent: %v", err)
	}

	start := time.Now()
	landed := authorizeThroughBrowser(t, shared, p, mount, "ac")
	t.Logf("authorize → consent → callback: %s", time.Since(start).Round(time.Millisecond))
	exchange := p.LastRequest(t)
	if exchange.Form.Get("grant_type") != "authorization_code" || exchange.Form.Get("code_verifier") == "" ||
		exchange.Form.Get("redirect_uri") != shared.addr+"/v1/"+mount+"/oauth/callback" {
		t.Fatalf("code exchange carried %v", exchange.Form)
	}
	issued := p.LastIssued(t)
	if got := readAccess(t, shared, mount, "ac"); got["access_token"] != issued.Access || p.Requests() != 1 {
		t.Fatalf("access after consent: %v after %d requests", got["access_token"], p.Requests())
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
	if err := p.TokenStore().RemoveByRefresh(context.Background(), issued.Refresh); err != nil {
		t.Fatal(err)
	}
	// An update that keeps the destination makes the cached access token stale but
	// keeps the refresh token, so the next read refreshes.
	shared.mustCLI(t, "patch", mount+"/credentials/ac", "description=revoked upstream")
	_, err = vc.Logical().Read(mount + "/access/ac")
	if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "re-authoriz") {
		t.Fatalf("access after revocation: %v", err)
	}
	read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/ac")).Data
	if read["status"] != "needs_reauth" || read["status_reason"] != "invalid_grant" || read["health"] != "red" {
		t.Fatalf("after revocation: status %v (%v), health %v", read["status"], read["status_reason"], read["health"])
	}
	requests := p.Requests()
	if _, err := vc.Logical().Read(mount + "/access/ac"); statusCode(err) != http.StatusForbidden || p.Requests() != requests {
		t.Fatalf("access while needs_reauth: %v (%d new requests)", err, p.Requests()-requests)
	}
	// A new consent clears it.
	authorizeThroughBrowser(t, shared, p, mount, "ac")
	if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/ac")).Data["status"]; st != "active" {
		t.Fatalf("status after re-authorization %v", st)
	}
	second := p.LastIssued(t)
	if got := readAccess(t, shared, mount, "ac"); got["access_token"] != second.Access {
		t.Fatalf("access after re-authorization: %v", got["access_token"])
	}
	assertNothingShows(t, shared, mount, "ac", issued.Access, issued.Refresh, second.Access, second.Refresh, oauthtest.ClientSecret)

	t.Run("completed by hand", func(t *testing.T) {
		shared.mustCLI(t, "write", mount+"/credentials/ac-manual", "type=oauth2_authorization_code",
			"auth_url="+p.AuthURL(), "token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
		start := decode(t, shared.mustCLI(t, "write", "-force", "-format=json", mount+"/credentials/ac-manual/authorize")).Data
		loc := p.Authorize(t, start["auth_url"].(string)) // consent, redirect not followed
		// A wrong state is refused and does not spend the authorization.
		if out, err := shared.cli("write", mount+"/credentials/ac-manual/authorize", "code="+loc.Query().Get("code"), "state="+strings.Repeat("A", 43)); err == nil || !strings.Contains(err.Error(), "state does not match") {
			t.Fatalf("wrong state accepted: %s %v", out, err)
		}
		done := decode(t, shared.mustCLI(t, "write", "-format=json", mount+"/credentials/ac-manual/authorize",
			"code="+loc.Query().Get("code"), "state="+loc.Query().Get("state"))).Data
		if done["status"] != "active" || done["name"] != "ac-manual" {
			t.Fatalf("manual completion answered %v", done)
		}
		if got := readAccess(t, shared, mount, "ac-manual"); got["access_token"] != p.LastIssued(t).Access {
			t.Fatalf("access after manual completion: %v", got["access_token"])
		}
	})
}

// TestOAuthRefreshRotation: an access token made stale by an update that keeps the
// destination is refreshed with the stored refresh token; the provider rotates the
// refresh token, Vault stores the new one (it is what Vault sends after a restart) and
// the old one is refused.
func TestOAuthRefreshRotation(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{persistent: true})
	mount := v.mount(t)
	v.mustCLI(t, "write", mount+"/config", "callback_base_url="+v.addr)
	p := newIDP(t, oauthtest.Options{Domain: v.addr, AccessTTL: 30 * time.Second, Rotate: true})
	v.mustCLI(t, "write", mount+"/credentials/ac", "type=oauth2_authorization_code",
		"auth_url="+p.AuthURL(), "token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID,
		"client_secret="+oauthtest.ClientSecret, "scopes=offline_access")
	authorizeThroughBrowser(t, v, p, mount, "ac")
	first := p.LastIssued(t)

	v.mustCLI(t, "patch", mount+"/credentials/ac", "description=rotation")
	got := readAccess(t, v, mount, "ac")
	second := p.LastIssued(t)
	if n := p.Requests(); n != 2 {
		t.Fatalf("%d token requests after one read of a stale token, want 2 (exchange + refresh)", n)
	}
	if refreshReq := p.LastRequest(t); refreshReq.Form.Get("grant_type") != "refresh_token" || refreshReq.Form.Get("refresh_token") != first.Refresh {
		t.Fatalf("the refresh sent %v", refreshReq.Form)
	}
	if got["access_token"] != second.Access || second.Access == first.Access {
		t.Fatalf("access returned %v, want the refreshed token", got["access_token"])
	}
	if second.Refresh == "" || second.Refresh == first.Refresh {
		t.Fatal("the provider did not rotate the refresh token")
	}
	// The retired refresh token is refused by the provider.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Refresh}}
	req, _ := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(oauthtest.ClientID, oauthtest.ClientSecret)
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
	before := p.Requests()
	v.mustCLI(t, "patch", mount+"/credentials/ac", "description=after restart")
	got = readAccess(t, v, mount, "ac")
	if p.Requests() != before+1 {
		t.Fatalf("%d requests after the restart, want 1", p.Requests()-before)
	}
	if sent := p.LastRequest(t).Form.Get("refresh_token"); sent != second.Refresh {
		t.Fatal("after the restart Vault refreshed with a refresh token other than the rotated one it was given")
	}
	third := p.LastIssued(t)
	if got["access_token"] != third.Access {
		t.Fatalf("access after the restart returned %v", got["access_token"])
	}
	assertNothingShows(t, v, mount, "ac", first.Access, first.Refresh, second.Access, second.Refresh, third.Access, third.Refresh)
}

// TestOAuthCachedTokenSurvivesRestart: the token is cached in storage, so a restarted
// Vault serves it without asking the provider.
func TestOAuthCachedTokenSurvivesRestart(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{persistent: true})
	mount := v.mount(t)
	p := newIDP(t, oauthtest.Options{AccessTTL: 2 * time.Hour})
	v.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
	before := readAccess(t, v, mount, "cc")
	v.restart(t)
	start := time.Now()
	after := readAccess(t, v, mount, "cc")
	t.Logf("first access after restart: %s", time.Since(start).Round(time.Millisecond))
	if after["access_token"] != before["access_token"] || p.Requests() != 1 {
		t.Fatalf("after the restart: token changed=%v, %d provider requests (want the same token, 1 request)",
			after["access_token"] != before["access_token"], p.Requests())
	}
}

// TestOAuthSingleFlight: 1,000 concurrent reads of a stale token through the real
// Vault make exactly one request to the provider, and all get its token.
func TestOAuthSingleFlight(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	p := newIDP(t, oauthtest.Options{AccessTTL: 2 * time.Hour})
	shared.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
	stale := readAccess(t, shared, mount, "cc")["access_token"]
	// An update makes the cached token stale: every reader of the wave needs a new one.
	shared.mustCLI(t, "patch", mount+"/credentials/cc", "description=wave")

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
	p.SetFault(func(http.ResponseWriter, *http.Request) bool {
		<-released
		return false
	})

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

	fresh := p.LastIssued(t).Access
	for i := range readers {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		if tokens[i] != fresh || tokens[i] == stale {
			t.Fatalf("reader %d got a different token", i)
		}
	}
	if n := p.Requests(); n != 2 {
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
			"token_url=" + tokenURL, "client_id=" + oauthtest.ClientID}, extra...)...)
	}
	access := func(name string) (*api.Secret, error) { return client.Logical().Read(mount + "/access/" + name) }
	noLeak := func(t *testing.T, err error) {
		t.Helper()
		for _, s := range []string{oauthtest.Marker, oauthtest.ClientSecret} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("the error shows %q: %v", s, err)
			}
		}
	}

	t.Run("invalid_client needs a new secret", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, oauthtest.Options{})
		create(t, "refused", p.TokenURL(), "client_secret=wrong-secret")
		_, err := access("refused")
		// Told to patch its secret, never to authorize (a client_credentials credential has no authorize).
		if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "invalid_client") ||
			!strings.Contains(err.Error(), "vault patch "+mount+"/credentials/refused client_secret=") || strings.Contains(err.Error(), "/authorize") {
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
		if _, err := access("refused"); statusCode(err) != http.StatusForbidden || p.Requests() != 1 {
			t.Fatalf("second access: %v after %d requests (want 403 without asking again)", err, p.Requests())
		}
		// The operator fixes the secret: the update clears the state and the next read mints.
		shared.mustCLI(t, "write", mount+"/credentials/refused", "token_url="+p.TokenURL(),
			"client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
		if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/refused")).Data["status"]; st != "active" {
			t.Fatalf("status after the update %v", st)
		}
		s, err := access("refused")
		if err != nil || s.Data["access_token"] != p.LastIssued(t).Access {
			t.Fatalf("access after the update: %v %v", s, err)
		}
	})

	t.Run("500", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, oauthtest.Options{})
		p.SetFault(oauthtest.Fail(http.StatusInternalServerError))
		create(t, "down", p.TokenURL(), "client_secret="+oauthtest.ClientSecret)
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
		p := newIDP(t, oauthtest.Options{})
		p.SetFault(oauthtest.Fail(http.StatusTooManyRequests, "Retry-After", "120"))
		create(t, "limited", p.TokenURL(), "client_secret="+oauthtest.ClientSecret)
		_, err := access("limited")
		if statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), "retry after 2m0s") {
			t.Fatalf("access during a 429: %v", err)
		}
		noLeak(t, err)
		// Within the Retry-After window Vault does not ask again, even once the provider is back.
		p.SetFault(nil)
		if _, err := access("limited"); statusCode(err) != http.StatusBadGateway || p.Requests() != 1 {
			t.Fatalf("inside Retry-After: %v after %d requests, want 502 after 1", err, p.Requests())
		}
	})

	t.Run("cached token served during an outage", func(t *testing.T) {
		t.Parallel()
		// A 62 s token is served for its first 2 s, then falls inside expiry_buffer
		// (60 s) while still valid for a minute.
		p := newIDP(t, oauthtest.Options{AccessTTL: 62 * time.Second})
		create(t, "outage", p.TokenURL(), "client_secret="+oauthtest.ClientSecret)
		s, err := access("outage")
		if err != nil {
			t.Fatal(err)
		}
		cached := s.Data["access_token"]
		p.SetFault(oauthtest.Fail(http.StatusServiceUnavailable))
		// Read until the engine has asked the provider for the next token (ahead of
		// time, or at the due point) and says it failed.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if s, err = access("outage"); err != nil || s.Data["access_token"] != cached {
				t.Fatalf("while the provider is down: %v %v (want the cached token)", s, err)
			}
			if len(s.Warnings) > 0 {
				break
			}
		}
		if err != nil || s.Data["access_token"] != cached || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "HTTP 503") {
			t.Fatalf("during the outage: %v %v (want the cached token with a warning naming 503)", s, err)
		}
		if strings.Contains(s.Warnings[0], oauthtest.Marker) || strings.Contains(s.Warnings[0], cached.(string)) {
			t.Fatalf("the warning leaks: %s", s.Warnings[0])
		}
		if p.Requests() != 2 {
			t.Fatalf("%d requests, want 2", p.Requests())
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
		create(t, "unreachable", dead, "client_secret="+oauthtest.ClientSecret)
		_, err = access("unreachable")
		// Named by its kind, never by the address dialled.
		if statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "connection_refused") ||
			strings.Contains(err.Error(), l.Addr().String()) {
			t.Fatalf("access to a closed port: %v", err)
		}
	})
}
