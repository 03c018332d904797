package backend

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/githubtest"
)

const testAppID = 123456

// gitHubFixture is a backend on the test clock and a GitHub server on the same clock,
// with one installation (7890, on octo-org) of repositories a, b and c.
type gitHubFixture struct {
	b     *integrationsBackend
	s     logical.Storage
	clock *testClock
	gh    *githubtest.Server
	url   string
}

func newGitHubFixture(t *testing.T, installs ...*githubtest.Installation) *gitHubFixture {
	t.Helper()
	b, s, clock := newBackendWith(t, backendOptions{})
	if len(installs) == 0 {
		installs = []*githubtest.Installation{{ID: 7890, Account: "octo-org", Repositories: []string{"a", "b", "c"},
			Permissions: map[string]string{"contents": "write", "issues": "write", "metadata": "read"}}}
	}
	gh := githubtest.New(testAppID, "Iv23liTestClient", &fixtures.GitHubAppKey().PublicKey, installs...)
	gh.Now = clock.Now
	srv := httptest.NewServer(gh.Handler())
	t.Cleanup(srv.Close)
	gh.SetBaseURL(srv.URL)
	return &gitHubFixture{b: b, s: s, clock: clock, gh: gh, url: srv.URL}
}

func (f *gitHubFixture) create(t *testing.T, name string, extra map[string]any) {
	t.Helper()
	data := map[string]any{"type": "github_app", "app_id": fmt.Sprint(testAppID), "private_key": fixtures.GitHubAppKeyPEM(), "base_url": f.url}
	if _, ok := extra["owner"]; !ok {
		data["installation_id"] = "7890"
	}
	for k, v := range extra {
		data[k] = v
	}
	mustOK(t, f.b, f.s, logical.CreateOperation, "credentials/"+name, data)
}

func (f *gitHubFixture) access(t *testing.T, name string, data map[string]any) (*logical.Response, int) {
	t.Helper()
	return credReq(t, f.b, f.s, logical.ReadOperation, "access/"+name, data)
}

// accessErr reads access/<name> with data, expecting a coded error: its status and text.
func (f *gitHubFixture) accessErr(t *testing.T, name string, data map[string]any) (int, string) {
	t.Helper()
	resp, err := request(f.b, f.s, logical.ReadOperation, "access/"+name, data)
	var ce logical.HTTPCodedError
	if !errors.As(err, &ce) {
		t.Fatalf("access %s %v: %s, want a coded error", name, data, outcome(resp, err))
	}
	return ce.Code(), err.Error()
}

// TestGitHubAppAccess: a read mints an installation token with an App JWT as GitHub
// documents it, answers the github_app shape, and the next reads are served from the
// cache without a request to GitHub.
func TestGitHubAppAccess(t *testing.T) {
	t.Parallel()
	f := newGitHubFixture(t)
	f.create(t, "gh", nil)
	now := f.clock.Now()
	resp, code := f.access(t, "gh", nil)
	if code != 0 {
		t.Fatalf("access: %d %s", code, outcome(resp, nil))
	}
	tok, _ := resp.Data["token"].(string)
	if !f.gh.Valid(tok) || resp.Data["authorization"] != "Bearer "+tok {
		t.Fatalf("token %q not one GitHub issued, or authorization %v", tok, resp.Data["authorization"])
	}
	wantKeys := []string{"authorization", "expires_at", "last_vault_rotation", "permissions", "repositories", "repository_selection", "rotation_period", "token", "ttl"}
	var keys []string
	for k := range resp.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("answer keys %v, want %v", keys, wantKeys)
	}
	if resp.Data["expires_at"] != rfc3339(now.Add(time.Hour)) || resp.Data["rotation_period"] != int64(3600) {
		t.Fatalf("expires_at %v rotation_period %v, want an hour", resp.Data["expires_at"], resp.Data["rotation_period"])
	}
	if ttl := resp.Data["ttl"].(int64); ttl <= 0 || ttl >= 3600 {
		t.Fatalf("ttl %d", ttl)
	}
	if got := resp.Data["repositories"].([]string); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("repositories %v", got)
	}
	if got := resp.Data["permissions"].(map[string]string); got["contents"] != "write" {
		t.Fatalf("permissions %v", got)
	}
	reqs := f.gh.Requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/app/installations/7890/access_tokens" || reqs[0].Status != http.StatusCreated {
		t.Fatalf("requests %+v", reqs)
	}
	r := reqs[0]
	if r.Alg != "RS256" || r.Claims["iss"] != float64(testAppID) ||
		r.Claims["iat"] != float64(now.Add(-60*time.Second).Unix()) || r.Claims["exp"] != float64(now.Add(9*time.Minute).Unix()) {
		t.Fatalf("JWT alg %s claims %v", r.Alg, r.Claims)
	}
	if len(r.Body) != 0 || r.Header.Get("X-GitHub-Api-Version") != oauth.GitHubAPIVersion || r.Header.Get("Accept") != "application/vnd.github+json" {
		t.Fatalf("request body %q headers %v", r.Body, r.Header)
	}
	for range 3 {
		f.clock.Advance(5 * time.Minute)
		again, code := f.access(t, "gh", nil)
		if code != 0 || again.Data["token"] != tok {
			t.Fatalf("cached read: %d %v", code, again.Data["token"])
		}
	}
	if n := f.gh.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests, want 1 (the rest from the cache)", n)
	}
	// Past the due point (expiry − expiry_buffer) a read mints again.
	f.clock.Advance(50 * time.Minute)
	again, _ := f.access(t, "gh", nil)
	if again.Data["token"] == tok || f.gh.TokenRequests() != 2 {
		t.Fatalf("after an hour: token %v, %d requests", again.Data["token"], f.gh.TokenRequests())
	}
}

// TestGitHubAppConfiguredNarrowing: the credential's repositories and permissions are
// sent in the token request's body, and client_id stands in for app_id as iss.
func TestGitHubAppConfiguredNarrowing(t *testing.T) {
	t.Parallel()
	f := newGitHubFixture(t)
	mustOK(t, f.b, f.s, logical.CreateOperation, "credentials/gh", map[string]any{
		"type": "github_app", "client_id": "Iv23liTestClient", "private_key": fixtures.GitHubAppKeyPEM(), "base_url": f.url,
		"installation_id": "7890", "repositories": "b,a", "permissions": map[string]any{"contents": "read"},
	})
	resp, code := f.access(t, "gh", nil)
	if code != 0 {
		t.Fatalf("access: %d %s", code, outcome(resp, nil))
	}
	r := f.gh.Requests()[0]
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(body["repositories"]) != "[b a]" || fmt.Sprint(body["permissions"]) != "map[contents:read]" || r.Claims["iss"] != "Iv23liTestClient" {
		t.Fatalf("body %s, iss %v", r.Body, r.Claims["iss"])
	}
	if fmt.Sprint(resp.Data["repositories"]) != "[b a]" || fmt.Sprint(resp.Data["permissions"]) != "map[contents:read]" {
		t.Fatalf("answer %v", resp.Data)
	}
}

// TestGitHubAppOwnerLookup: with owner instead of installation_id the installation is
// found through GET /app/installations, across pages.
func TestGitHubAppOwnerLookup(t *testing.T) {
	t.Parallel()
	var installs []*githubtest.Installation
	for i := range 150 {
		installs = append(installs, &githubtest.Installation{ID: int64(10000 + i), Account: fmt.Sprintf("org-%d", i),
			Repositories: []string{"r"}, Permissions: map[string]string{"contents": "read"}})
	}
	f := newGitHubFixture(t, installs...)
	f.create(t, "gh", map[string]any{"owner": "ORG-120"})
	if resp, code := f.access(t, "gh", nil); code != 0 {
		t.Fatalf("access: %d %s", code, outcome(resp, nil))
	}
	var paths []string
	for _, r := range f.gh.Requests() {
		paths = append(paths, r.Method+" "+r.Path+"?"+r.RawQuery)
	}
	want := []string{"GET /app/installations?per_page=100&page=1", "GET /app/installations?per_page=100&page=2", "POST /app/installations/10120/access_tokens?"}
	if !slices.Equal(paths, want) {
		t.Fatalf("requests %v, want %v", paths, want)
	}
	// An owner without an installation of the App: needs_reauth, naming the reason.
	f.create(t, "nobody", map[string]any{"owner": "someone-else"})
	if code, msg := accessErr(t, f.b, f.s, "nobody"); code != http.StatusForbidden || !strings.Contains(msg, oauth.CodeGitHubInstallationNotFound) {
		t.Fatalf("unknown owner: %d %s", code, msg)
	}
}

// TestGitHubAppCallerNarrowing: access/ repositories and permissions narrow the token
// (a request for more is a 400 naming the parameter), each distinct narrowing is
// cached on its own, and a narrowing that narrows nothing is the credential's token.
func TestGitHubAppCallerNarrowing(t *testing.T) {
	t.Parallel()
	f := newGitHubFixture(t)
	f.create(t, "gh", map[string]any{"repositories": []string{"a", "b"}, "permissions": map[string]any{"contents": "write", "issues": "read"}})
	own, code := f.access(t, "gh", nil)
	if code != 0 {
		t.Fatalf("access: %d", code)
	}
	narrow := map[string]any{"repositories": "a", "permissions": map[string]any{"contents": "read"}}
	resp, code := f.access(t, "gh", narrow)
	if code != 0 {
		t.Fatalf("narrowed access: %d %s", code, outcome(resp, nil))
	}
	if resp.Data["token"] == own.Data["token"] || fmt.Sprint(resp.Data["repositories"]) != "[a]" || fmt.Sprint(resp.Data["permissions"]) != "map[contents:read]" {
		t.Fatalf("narrowed answer %v", resp.Data)
	}
	last := f.gh.Requests()[len(f.gh.Requests())-1]
	if string(last.Body) != `{"permissions":{"contents":"read"},"repositories":["a"]}` {
		t.Fatalf("narrowed request body %s", last.Body)
	}
	again, _ := f.access(t, "gh", map[string]any{"repositories": "A", "permissions": map[string]any{"contents": "read"}})
	if again.Data["token"] != resp.Data["token"] || f.gh.TokenRequests() != 2 {
		t.Fatalf("the same narrowing again: %v, %d requests", again.Data["token"], f.gh.TokenRequests())
	}
	same, _ := f.access(t, "gh", map[string]any{"repositories": "b,a"})
	if same.Data["token"] != own.Data["token"] || f.gh.TokenRequests() != 2 {
		t.Fatalf("a narrowing to everything is the credential's own token: %v", same.Data["token"])
	}
	for _, c := range []struct {
		data  map[string]any
		param string
	}{
		{map[string]any{"repositories": "c"}, "repositories"},
		{map[string]any{"repositories": "../x"}, "repositories"},
		{map[string]any{"permissions": map[string]any{"contents": "admin"}}, "permissions"},
		{map[string]any{"permissions": map[string]any{"pull_requests": "read"}}, "permissions"},
		{map[string]any{"permissions": map[string]any{"contents": "all"}}, "permissions"},
	} {
		code, msg := f.accessErr(t, "gh", c.data)
		if code != http.StatusBadRequest || !strings.Contains(msg, c.param) {
			t.Errorf("narrowing %v: %d %s, want a 400 naming %s", c.data, code, msg, c.param)
		}
	}
	if f.gh.TokenRequests() != 2 {
		t.Fatalf("refused narrowings reached GitHub: %d requests", f.gh.TokenRequests())
	}
	// Another type refuses the parameters.
	mustOK(t, f.b, f.s, logical.CreateOperation, "credentials/bearer", map[string]any{"type": "bearer", "token": "t"})
	if _, code := f.access(t, "bearer", map[string]any{"repositories": "a"}); code != http.StatusBadRequest {
		t.Fatalf("bearer with repositories: %d, want 400", code)
	}
	// An edit drops the narrowed token: the next narrowed read mints under the new settings.
	mustOK(t, f.b, f.s, logical.PatchOperation, "credentials/gh", map[string]any{"description": "edited"})
	f.clock.Advance(time.Second)
	after, _ := f.access(t, "gh", narrow)
	if after.Data["token"] == resp.Data["token"] {
		t.Fatal("a narrowed token minted before an edit was served after it")
	}
}

// TestGitHubAppNarrowingGitHubRefuses: a narrowing GitHub refuses (422: the
// installation does not grant it) is the caller's 400; the credential stays usable.
func TestGitHubAppNarrowingGitHubRefuses(t *testing.T) {
	t.Parallel()
	f := newGitHubFixture(t)
	f.create(t, "gh", nil)
	code, msg := f.accessErr(t, "gh", map[string]any{"permissions": map[string]any{"administration": "write"}})
	if code != http.StatusBadRequest || !strings.Contains(msg, "github_unprocessable") {
		t.Fatalf("narrowing beyond the installation: %d %s", code, msg)
	}
	if _, code := f.access(t, "gh", nil); code != 0 {
		t.Fatalf("the credential after a refused narrowing: %d", code)
	}
}

// TestNarrowedCacheBounds: at most maxNarrowedPerCredential per credential and
// maxNarrowed in all, the least recently used dropped, older generations dropped.
func TestNarrowedCacheBounds(t *testing.T) {
	t.Parallel()
	var nc narrowedCache
	tok := &oauth.Token{AccessToken: "x"}
	var dropped []string
	for i := range maxNarrowedPerCredential + 1 {
		dropped = append(dropped, nc.put(fmt.Sprintf("a\x00%d", i), "a", 1, tok)...)
	}
	if nc.len() != maxNarrowedPerCredential || !slices.Equal(dropped, []string{"a\x000"}) {
		t.Fatalf("%d kept, dropped %q", nc.len(), dropped)
	}
	if d := nc.put("a\x00new", "a", 2, tok); len(d) != maxNarrowedPerCredential || nc.len() != 1 {
		t.Fatalf("a new generation dropped %d, %d kept", len(d), nc.len())
	}
	if nc.get("a\x00new", 1) != nil || nc.get("a\x00new", 2) != tok {
		t.Fatal("get ignores the generation")
	}
	for i := range maxNarrowed + 10 {
		nc.put(fmt.Sprintf("n%d\x00v", i), fmt.Sprintf("n%d", i), 1, tok)
	}
	if nc.len() != maxNarrowed {
		t.Fatalf("%d kept, want %d", nc.len(), maxNarrowed)
	}
}

// TestGitHubAppRefusals: GitHub's 401 (the App's key is not the one it knows), 403
// (installation suspended) and 404 (uninstalled) mark the credential needs_reauth with
// the reason, and access/ answers 403 saying what to fix.
func TestGitHubAppRefusals(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		breakIt func(*githubtest.Server)
		reason  string
		fix     string // the field the refusal tells a person to patch
	}{
		{"unauthorized", func(s *githubtest.Server) { s.Key = &fixtures.NewKey("rsa2048").(*rsa.PrivateKey).PublicKey }, oauth.CodeGitHubUnauthorized, "private_key"},
		{"suspended", func(s *githubtest.Server) { s.Suspend(7890) }, oauth.CodeGitHubForbidden, "installation_id"},
		{"uninstalled", func(s *githubtest.Server) { s.Uninstall(7890) }, oauth.CodeGitHubInstallationNotFound, "installation_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newGitHubFixture(t)
			f.create(t, "gh", nil)
			c.breakIt(f.gh)
			code, msg := accessErr(t, f.b, f.s, "gh")
			if code != http.StatusForbidden || !strings.Contains(msg, c.reason) || strings.Contains(msg, "BEGIN") ||
				!strings.Contains(msg, "credentials/gh "+c.fix+"=") {
				t.Fatalf("access: %d %s", code, msg)
			}
			cred, err := f.b.credentials.get(context.Background(), f.s, "gh")
			if err != nil || cred.State.Status != lifecycle.StatusNeedsReauth || string(cred.State.Reason) != c.reason {
				t.Fatalf("state %+v %v", cred.State, err)
			}
		})
	}
}

// TestGitHubAppRateLimits: GitHub's rate-limit answers (403 or 429 with retry-after,
// 403 with x-ratelimit-remaining 0 until x-ratelimit-reset) are transient: 502, the
// credential stays active, and no request is made before the time GitHub named.
func TestGitHubAppRateLimits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		fault func(*githubtest.Server, time.Time)
		wait  time.Duration
	}{
		{"secondary 403 retry-after", func(s *githubtest.Server, _ time.Time) {
			s.Fail(githubtest.Fault{Status: 403, Header: map[string]string{"Retry-After": "120"}, Body: `{"message":"You have exceeded a secondary rate limit"}`})
		}, 120 * time.Second},
		{"429 retry-after", func(s *githubtest.Server, _ time.Time) {
			s.Fail(githubtest.Fault{Status: 429, Header: map[string]string{"Retry-After": "90"}})
		}, 90 * time.Second},
		{"primary exhausted", func(s *githubtest.Server, now time.Time) { s.Exhaust(now.Add(300 * time.Second)) }, 300 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newGitHubFixture(t)
			f.create(t, "gh", nil)
			now := f.clock.Now()
			c.fault(f.gh, now)
			code, msg := accessErr(t, f.b, f.s, "gh")
			if code != http.StatusBadGateway || !strings.Contains(msg, oauth.CodeRateLimited) {
				t.Fatalf("access: %d %s", code, msg)
			}
			cred, _ := f.b.credentials.get(context.Background(), f.s, "gh")
			if cred.State.Status != lifecycle.StatusActive {
				t.Fatalf("status %s after a rate limit", cred.State.Status)
			}
			if at := f.b.tokens.brokerOf().RetryAt("gh"); at.Before(now.Add(c.wait)) {
				t.Fatalf("next attempt at %s, before GitHub's %s", at, now.Add(c.wait))
			}
			sent := len(f.gh.Requests())
			f.clock.Advance(c.wait - time.Second)
			if code, _ := accessErr(t, f.b, f.s, "gh"); code != http.StatusBadGateway || len(f.gh.Requests()) != sent {
				t.Fatalf("within the backoff: %d, %d requests (was %d)", code, len(f.gh.Requests()), sent)
			}
			// Past the wait and the spread the backoff adds to it.
			f.clock.Advance(2*time.Second + oauth.RetryAfterSpread(c.wait))
			if resp, code := f.access(t, "gh", nil); code != 0 {
				t.Fatalf("after the backoff: %d %s", code, outcome(resp, nil))
			}
		})
	}
}

// TestGitHubAppVerify: verify asks GET /app with the App JWT, then the installation,
// then mints.
func TestGitHubAppVerify(t *testing.T) {
	t.Parallel()
	f := newGitHubFixture(t)
	f.create(t, "gh", nil)
	resp := mustOK(t, f.b, f.s, logical.UpdateOperation, "credentials/gh/verify", nil)
	if resp.Data["result"] != lifecycle.VerifyOK {
		t.Fatalf("verify: %v", resp.Data)
	}
	var paths []string
	for _, r := range f.gh.Requests() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	if want := []string{"GET /app", "GET /app/installations/7890", "POST /app/installations/7890/access_tokens"}; !slices.Equal(paths, want) {
		t.Fatalf("verify requests %v, want %v", paths, want)
	}
	f.gh.Uninstall(7890)
	resp = mustOK(t, f.b, f.s, logical.UpdateOperation, "credentials/gh/verify", nil)
	if resp.Data["result"] != lifecycle.VerifyFailed || !strings.Contains(fmt.Sprint(resp.Data["detail"]), oauth.CodeGitHubInstallationNotFound) {
		t.Fatalf("verify of an uninstalled App: %v", resp.Data)
	}
}

// TestGitHubAppKeyNeverShown: the private key appears in no management read.
func TestGitHubAppKeyNeverShown(t *testing.T) {
	t.Parallel()
	f := newGitHubFixture(t)
	f.create(t, "gh", nil)
	body := fixtures.GitHubAppKeyPEM()
	line := strings.Split(body, "\n")[2]
	resp := mustOK(t, f.b, f.s, logical.ReadOperation, "credentials/gh", nil)
	if out := fmt.Sprint(resp.Data); strings.Contains(out, line) {
		t.Fatal("credentials/gh shows the private key")
	}
	if fmt.Sprint(resp.Data["secret_fields"]) != "[private_key]" {
		t.Fatalf("secret_fields %v", resp.Data["secret_fields"])
	}
}

// TestGitHubAppNarrowingsShareTheBucket: distinct narrowings are requests of one
// credential: together they stay within its request bucket (oauth.RequestBurst), so
// varying the narrowing cannot multiply the requests to GitHub.
func TestGitHubAppNarrowingsShareTheBucket(t *testing.T) {
	t.Parallel()
	var repos []string
	for i := range oauth.RequestBurst + 1 {
		repos = append(repos, fmt.Sprintf("r%d", i))
	}
	f := newGitHubFixture(t, &githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: repos,
		Permissions: map[string]string{"contents": "read"}})
	f.create(t, "gh", nil)
	for i, r := range repos {
		resp, err := request(f.b, f.s, logical.ReadOperation, "access/gh", map[string]any{"repositories": r})
		if i < oauth.RequestBurst {
			if err != nil {
				t.Fatalf("narrowing %d: %s", i, outcome(resp, err))
			}
			continue
		}
		var ce logical.HTTPCodedError
		if !errors.As(err, &ce) || ce.Code() != http.StatusTooManyRequests {
			t.Fatalf("narrowing %d beyond the burst: %s, want 429", i, outcome(resp, err))
		}
	}
	if n := f.gh.TokenRequests(); n != oauth.RequestBurst {
		t.Fatalf("%d token requests, want %d", n, oauth.RequestBurst)
	}
}

// TestGitHubAppRefreshAhead: a read in the installation token's refresh window is
// served the current token and starts one background mint; the next read gets the new
// token without waiting, and no further request is made.
func TestGitHubAppRefreshAhead(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	gh := githubtest.New(testAppID, "Iv23liTestClient", &fixtures.GitHubAppKey().PublicKey,
		&githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: []string{"a"}, Permissions: map[string]string{"contents": "read"}})
	gh.Now = clock.Now
	srv := httptest.NewServer(gh.Handler())
	t.Cleanup(srv.Close)
	gh.SetBaseURL(srv.URL)
	f := &gitHubFixture{b: b, s: s, clock: clock, gh: gh, url: srv.URL}
	f.create(t, "gh", nil)
	first, _ := f.access(t, "gh", nil)
	// An hour-long token with the default 60 s buffer: the window opens 13 minutes
	// before expiry (refreshLead), at 47 minutes.
	clock.Advance(50 * time.Minute)
	during, code := f.access(t, "gh", nil)
	if code != 0 || during.Data["token"] != first.Data["token"] {
		t.Fatalf("a read in the window was not served the current token: %d", code)
	}
	settle(b)
	if n := gh.TokenRequests(); n != 2 {
		t.Fatalf("%d token requests after the window opened, want 2 (one background mint)", n)
	}
	after, _ := f.access(t, "gh", nil)
	if after.Data["token"] == first.Data["token"] || !gh.Valid(after.Data["token"].(string)) || gh.TokenRequests() != 2 {
		t.Fatalf("after the background mint: token %v, %d requests", after.Data["token"], gh.TokenRequests())
	}
}
