//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// oidcProvider is a running panva oidc-provider (e2e/oidcprovider/server.mjs): the
// OpenID Certified Node.js server, with its default consent rules and refresh-token
// rotation, one confidential client, and its development login and consent forms.
type oidcProvider struct {
	issuer       string
	clientID     string
	clientSecret string
}

// startOIDCProvider runs the provider for t with redirectURI as its client's only
// redirect URI. scripts/test.sh installs it (npm ci into .cache/node) and exports
// E2E_OIDC_PROVIDER_DIR; without it the test fails under CI=true and skips elsewhere.
func startOIDCProvider(t *testing.T, redirectURI string, accessTTL int) *oidcProvider {
	t.Helper()
	installed := os.Getenv("E2E_OIDC_PROVIDER_DIR")
	if installed == "" {
		msg := "no oidc-provider installed (E2E_OIDC_PROVIDER_DIR unset): run the e2e tests through scripts/test.sh, which installs it with npm ci (oidc_provider_dir in scripts/lib.sh); Node.js is a prerequisite of make test"
		missingPrerequisite(t, msg)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}
	dir := t.TempDir()
	// The server script from the repository, beside the installed packages it imports.
	src, err := os.ReadFile(filepath.Join("oidcprovider", "server.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(installed, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	p := &oidcProvider{clientID: "vault-e2e", clientSecret: "e2e-client-secret-" + randomHex(16)}
	cfg, _ := json.Marshal(map[string]any{"port": 0, "client_id": p.clientID, "client_secret": p.clientSecret,
		"redirect_uris": []string{redirectURI}, "access_token_ttl": accessTTL})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "provider.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(dir, "server.mjs"), filepath.Join(dir, "config.json"))
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting oidc-provider: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("oidc-provider log:\n%s", log)
		}
	})
	// The server prints its issuer once it listens.
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		var hello struct{ Issuer string }
		if err := json.Unmarshal([]byte(line), &hello); err != nil || hello.Issuer == "" {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("oidc-provider did not start (%q): %v\n%s", line, err, log)
		}
		p.issuer = hello.Issuer
	case <-time.After(60 * time.Second):
		t.Fatal("oidc-provider did not print its issuer within 60 s")
	}
	return p
}

// refreshTokens lists the refresh tokens the provider issued, oldest first.
func (p *oidcProvider) refreshTokens(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get(p.issuer + "/e2e/refresh-tokens")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// refreshAtProvider sends a refresh_token grant with rt straight to the provider, as
// the client, and returns the status and the error code of the answer.
func (p *oidcProvider) refreshAtProvider(t *testing.T, rt string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.issuer+"/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(p.clientID), url.QueryEscape(p.clientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

var (
	formActionAttr = regexp.MustCompile(`<form[^>]*\saction="([^"]*)"`)
	formInputTag   = regexp.MustCompile(`<input[^>]*>`)
	inputName      = regexp.MustCompile(`\sname="([^"]*)"`)
	inputValue     = regexp.MustCompile(`\svalue="([^"]*)"`)
)

// htmlForm reads the first form of a page: its action and its inputs' values.
func htmlForm(page string) (action string, fields url.Values, ok bool) {
	m := formActionAttr.FindStringSubmatch(page)
	if m == nil {
		return "", nil, false
	}
	fields = url.Values{}
	for _, in := range formInputTag.FindAllString(page, -1) {
		n := inputName.FindStringSubmatch(in)
		if n == nil {
			continue
		}
		v := ""
		if m := inputValue.FindStringSubmatch(in); m != nil {
			v = html.UnescapeString(m[1])
		}
		fields.Set(html.UnescapeString(n[1]), v)
	}
	return html.UnescapeString(m[1]), fields, true
}

// providerAnswer is how the provider sent the browser back to the engine: a redirect
// (response_mode query) or a page whose form posts to the callback (form_post).
type providerAnswer struct {
	redirect *url.URL   // the callback URL with code and state in its query
	postTo   *url.URL   // the callback the form posts to
	form     url.Values // the posted fields: code, state, iss
	// loginHint is what the login form was filled in with: the login_hint the
	// authorization request carried.
	loginHint string
}

// consent drives the provider like a person's browser from the engine's consent URL:
// its login form (as login), its consent form, until the provider sends the browser
// back off its own host. Nothing is sent to Vault.
func (p *oidcProvider) consent(t *testing.T, authURL, login string) providerAnswer {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	issuer, _ := url.Parse(p.issuer)
	var ans providerAnswer
	next, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	method, body := http.MethodGet, url.Values(nil)
	for step := 0; step < 12; step++ {
		if next.Host != issuer.Host {
			ans.redirect = next
			return ans
		}
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, next.String(), strings.NewReader(body.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, next.String(), nil)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, next.Path, err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := next.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatalf("bad Location %q", resp.Header.Get("Location"))
			}
			next, method, body = loc, http.MethodGet, nil
			continue
		case resp.StatusCode != http.StatusOK:
			t.Fatalf("%s %s: status %d: %.500s", method, next.Path, resp.StatusCode, page)
		}
		action, fields, ok := htmlForm(string(page))
		if !ok {
			t.Fatalf("%s %s: a page without a form: %.500s", method, next.Path, page)
		}
		to, err := next.Parse(action)
		if err != nil {
			t.Fatal(err)
		}
		if to.Host != issuer.Host { // form_post: the page posts the answer to the callback
			ans.postTo, ans.form = to, fields
			return ans
		}
		switch fields.Get("prompt") {
		case "login":
			// The development login form is prefilled with the request's login_hint.
			if in := regexp.MustCompile(`name="login"[^>]*value="([^"]*)"`).FindStringSubmatch(string(page)); in != nil {
				ans.loginHint = html.UnescapeString(in[1])
			}
			fields.Set("login", login)
			fields.Set("password", "any password")
		case "consent":
		default:
			t.Fatalf("unexpected form at %s: %v", next.Path, fields)
		}
		next, method, body = to, http.MethodPost, fields
	}
	t.Fatal("the provider did not send the browser back within 12 steps")
	return ans
}

// TestOIDCProviderConsentAndRotation consents through Vault's authorize and callback at
// panva's oidc-provider, an OpenID Certified server with its default consent rules and
// refresh-token rotation:
//   - without prompt=consent (the engine's consent URL with prompt stripped, as it was
//     before) the server drops offline_access and issues no refresh token, and the
//     callback page, the credential and alerts say no_refresh_token_issued at once;
//   - the engine's own URL asks prompt=consent and carries authorization_params
//     (login_hint reaches the login form); the consent yields a refresh token; a read
//     once the provider's short-lived (5 s) access token falls due refreshes it, with
//     rotation: the new refresh token differs and the provider refuses the retired
//     one;
//   - with response_mode form_post the provider answers with a page that posts the
//     code to the callback, which completes; the file audit device then holds the
//     query-mode code in clear (the control: Vault writes the URL unhashed) and the
//     form-posted code nowhere.
func TestOIDCProviderConsentAndRotation(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{})
	auditLog := filepath.Join(v.dir, "audit-oidc.log")
	if err := v.client.Sys().EnableAuditWithOptions("oidcfile", &api.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditLog}}); err != nil {
		t.Fatalf("enabling the file audit device: %v", err)
	}
	mount := v.mount(t)
	// A token falls due one second before it expires, and only a read refreshes it (no
	// refresh ahead), so the test knows when the refresh happens.
	if _, err := v.client.Logical().Write(mount+"/config", map[string]any{"callback_base_url": v.addr,
		"expiry_buffer": 1, "refresh_ahead": false}); err != nil {
		t.Fatal(err)
	}
	callback := v.addr + "/v1/" + mount + "/oauth/callback"
	const accessTTL = 5 // seconds: the provider's access tokens are short-lived
	p := startOIDCProvider(t, callback, accessTTL)
	create := func(name string, extra map[string]any) {
		t.Helper()
		data := map[string]any{"type": "oauth2_authorization_code", "auth_url": p.issuer + "/auth", "token_url": p.issuer + "/token",
			"client_id": p.clientID, "client_secret": p.clientSecret, "scopes": "openid,offline_access",
			"authorization_params": []any{"login_hint=hint-" + name}}
		for k, x := range extra {
			data[k] = x
		}
		if _, err := v.client.Logical().Write(mount+"/credentials/"+name, data); err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
	}
	authorize := func(name string) *url.URL {
		t.Helper()
		s, err := v.client.Logical().Write(mount+"/credentials/"+name+"/authorize", map[string]any{})
		if err != nil {
			t.Fatalf("authorize %s: %v", name, err)
		}
		u, err := url.Parse(s.Data["auth_url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	anon := browser(false)
	page := func(resp *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	read := func(path string, query ...string) map[string]any {
		t.Helper()
		data := map[string][]string{}
		for i := 0; i+1 < len(query); i += 2 {
			data[query[i]] = []string{query[i+1]}
		}
		s, err := v.client.Logical().ReadWithData(mount+"/"+path, data)
		if err != nil || s == nil {
			t.Fatalf("read %s: %v", path, err)
		}
		return s.Data
	}

	// 1. The request as the engine made it before: no prompt=consent. The certified
	// server drops offline_access and issues no refresh token; the engine says so at once.
	create("noprompt", nil)
	u := authorize("noprompt")
	q := u.Query()
	if q.Get("prompt") != "consent" {
		t.Fatalf("the consent URL asks offline_access without prompt=consent: %s", u)
	}
	q.Del("prompt")
	u.RawQuery = q.Encode()
	before := len(p.refreshTokens(t))
	ans := p.consent(t, u.String(), "user-noprompt")
	if ans.redirect == nil {
		t.Fatal("the provider did not redirect to the callback")
	}
	status, body := page(anon.Get(ans.redirect.String()))
	if status != http.StatusOK || !strings.Contains(body, "no_refresh_token_issued") {
		t.Fatalf("callback without a refresh token: %d %s", status, body)
	}
	if n := len(p.refreshTokens(t)); n != before {
		t.Fatalf("the provider issued %d refresh tokens without prompt=consent: the control is void", n-before)
	}
	if got := read("credentials/noprompt")["authorization_issue"]; got != "no_refresh_token_issued" {
		t.Errorf("credential authorization_issue = %v, want no_refresh_token_issued", got)
	}
	alerts, _ := read("alerts")["alerts"].([]any)
	if !slices.ContainsFunc(alerts, func(a any) bool {
		m, _ := a.(map[string]any)
		return m["name"] == "noprompt" && m["reason"] == "no_refresh_token_issued"
	}) {
		t.Errorf("alerts lack no_refresh_token_issued for noprompt: %v", alerts)
	}

	// 2. The engine's request: prompt=consent, login_hint; a refresh token, then a
	// refresh with rotation. Written with the vault CLI, whose key=value pairs are how
	// an operator sets authorization_params.
	if out, err := v.cli("write", mount+"/credentials/query", "type=oauth2_authorization_code",
		"auth_url="+p.issuer+"/auth", "token_url="+p.issuer+"/token", "client_id="+p.clientID, "client_secret="+p.clientSecret,
		"scopes=openid,offline_access", "authorization_params=login_hint=hint-query", "authorization_params=max_age=3600"); err != nil {
		t.Fatalf("vault write credentials/query: %v\n%s", err, out)
	}
	if got := read("credentials/query")["authorization_params"]; !reflect.DeepEqual(got, map[string]any{"login_hint": "hint-query", "max_age": "3600"}) {
		t.Errorf("authorization_params read back as %#v", got)
	}
	u = authorize("query")
	ans = p.consent(t, u.String(), "user-query")
	if ans.loginHint != "hint-query" {
		t.Errorf("login form prefilled with %q: authorization_params login_hint did not reach the provider", ans.loginHint)
	}
	if ans.redirect == nil || ans.redirect.Query().Get("code") == "" || ans.redirect.String() != callback+"?"+ans.redirect.RawQuery {
		t.Fatalf("redirect %v: want the callback with a code", ans.redirect)
	}
	queryCode := ans.redirect.Query().Get("code")
	status, body = page(anon.Get(ans.redirect.String()))
	if status != http.StatusOK || !strings.Contains(body, "Authorization complete") || strings.Contains(body, "no_refresh_token_issued") {
		t.Fatalf("callback: %d %s", status, body)
	}
	if got := read("credentials/query")["authorization_issue"]; got != "" {
		t.Errorf("authorization_issue %v after a consent with prompt=consent", got)
	}
	rts := p.refreshTokens(t)
	if len(rts) != before+1 {
		t.Fatalf("%d refresh tokens issued by the consent, want 1", len(rts)-before)
	}
	a := read("access/query")
	held := p.refreshTokens(t) // the refresh token the engine holds is the newest
	// The token falls due (less than expiry_buffer, 1 s, left) by the second its
	// expires_at names (truncated to the second): wait for that time, which no injected
	// clock can stand in for across Vault, the plugin and the provider.
	due, err := time.Parse(time.RFC3339, a["expires_at"].(string))
	if err != nil {
		t.Fatalf("expires_at %v: %v", a["expires_at"], err)
	}
	time.Sleep(time.Until(due.Add(100 * time.Millisecond)))
	b := read("access/query")
	if a["access_token"] == nil || a["access_token"] == b["access_token"] {
		t.Fatalf("access tokens %v then %v: want a refresh once the first fell due", a["access_token"], b["access_token"])
	}
	after := p.refreshTokens(t)
	if len(after) != len(held)+1 || after[len(after)-1] == held[len(held)-1] {
		t.Fatalf("refresh tokens %d -> %d: want one new, rotated, refresh token", len(held), len(after))
	}
	if status, code := p.refreshAtProvider(t, held[len(held)-1]); status != http.StatusBadRequest || code != "invalid_grant" {
		t.Errorf("the retired refresh token: %d %q, want 400 invalid_grant", status, code)
	}

	// 3. form_post: the code comes as a POSTed form and never stands in a URL.
	create("formpost", map[string]any{"response_mode": "form_post"})
	u = authorize("formpost")
	if u.Query().Get("response_mode") != "form_post" {
		t.Fatalf("consent URL lacks response_mode=form_post: %s", u)
	}
	ans = p.consent(t, u.String(), "user-formpost")
	if ans.postTo == nil || ans.postTo.String() != callback || ans.form.Get("code") == "" {
		t.Fatalf("the provider did not answer with a form posting a code to the callback: %+v", ans)
	}
	formCode := ans.form.Get("code")
	status, body = page(anon.PostForm(ans.postTo.String(), ans.form))
	if status != http.StatusOK || !strings.Contains(body, "Authorization complete") {
		t.Fatalf("POST callback: %d %s", status, body)
	}
	if tok := read("access/formpost")["access_token"]; tok == nil {
		t.Fatal("no access token after the form_post consent")
	}
	audit, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), queryCode) {
		t.Errorf("control: the query-mode code is not in the audit log: the scan below could not see a leak")
	}
	if strings.Contains(string(audit), formCode) {
		t.Errorf("the form_post code stands in clear in the audit log")
	}
	if !strings.Contains(string(audit), `"path":"`+mount+`/oauth/callback"`) {
		t.Errorf("the audit log has no entry for the callback")
	}
}
