//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/githubcontract"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/githubtest"
)

// gitHubDescription is GitHub's OpenAPI description, from E2E_GITHUB_OPENAPI_DIR
// (scripts/lib.sh github_openapi_dir: @octokit/openapi by npm ci), loaded once; without
// it the test fails under CI=true and skips elsewhere.
var gitHubDescription = sync.OnceValues(func() (*githubcontract.Contract, error) {
	return githubcontract.Load(os.Getenv("E2E_GITHUB_OPENAPI_DIR"))
})

func gitHubContract(t *testing.T) *githubcontract.Contract {
	t.Helper()
	if os.Getenv("E2E_GITHUB_OPENAPI_DIR") == "" {
		missingPrerequisite(t, "GitHub's OpenAPI description is not installed (E2E_GITHUB_OPENAPI_DIR unset): run the e2e tests through scripts/test.sh, which installs @octokit/openapi with npm ci (github_openapi_dir in scripts/lib.sh)")
	}
	c, err := gitHubDescription()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gitHubServer is the e2e suite's GitHub: internal/githubtest behind the contract
// checker, on loopback.
type gitHubServer struct {
	*githubtest.Server
	checker *githubcontract.Checker
	url     string
}

func newGitHubServer(t *testing.T, installs ...*githubtest.Installation) *gitHubServer {
	t.Helper()
	gh := githubtest.New(123456, "Iv23liE2eClient", &fixtures.GitHubAppKey().PublicKey, installs...)
	checker := gitHubContract(t).Wrap(gh.Handler())
	srv := httptest.NewServer(checker)
	t.Cleanup(srv.Close)
	gh.SetBaseURL(srv.URL)
	return &gitHubServer{Server: gh, checker: checker, url: srv.URL}
}

// conforms fails t for every exchange outside GitHub's description, and when no
// exchange answered one of the statuses the test means to have checked.
func (g *gitHubServer) conforms(t *testing.T, statuses ...int) {
	t.Helper()
	seen := map[int]bool{}
	ops := g.checker.Checked()
	for _, op := range ops {
		seen[op.Status] = true
		for _, p := range op.Problems {
			t.Errorf("%s %s → %d is outside GitHub's description: %s", op.Method, op.Template, op.Status, p)
		}
	}
	for _, s := range statuses {
		if !seen[s] {
			t.Errorf("no exchange answered %d: the contract check did not see it", s)
		}
	}
	t.Logf("%d exchanges checked against GitHub's OpenAPI description", len(ops))
}

// TestGitHubAppAgainstGitHubsDescription: the engine's GitHub App client and the
// suite's GitHub server, every exchange checked against GitHub's OpenAPI description:
// the owner lookup, a verification (GET /app and the installation), narrowed and whole
// token requests, each refusal the server gives, and that the check catches a request
// the description refuses.
func TestGitHubAppAgainstGitHubsDescription(t *testing.T) {
	t.Parallel()
	gh := newGitHubServer(t,
		&githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: []string{"a", "b"},
			Permissions: map[string]string{"contents": "write", "metadata": "read"}},
		&githubtest.Installation{ID: 7891, Account: "other-org", Selection: "all", Repositories: []string{"x"},
			Permissions: map[string]string{"issues": "read"}})
	client := oauth.NewClient(oauth.ClientOptions{})
	cfg := func(g oauth.GitHubApp) oauth.Config {
		g.Issuer, g.PrivateKey, g.BaseURL = "123456", fixtures.GitHubAppKeyPEM(), gh.url
		return oauth.Config{Grant: oauth.GrantGitHubApp, TokenURL: gh.url, ClientID: "123456", GitHub: &g}
	}
	ctx := context.Background()
	for _, g := range []oauth.GitHubApp{
		{Owner: "octo-org", Check: true},
		{InstallationID: "7890", Check: true, Repositories: []string{"a"}, Permissions: map[string]string{"contents": "read"}},
		{InstallationID: "7891"},
	} {
		if _, err := client.Mint(ctx, cfg(g), ""); err != nil {
			t.Fatalf("mint %+v: %v", g, err)
		}
	}
	for _, bad := range []oauth.GitHubApp{
		{InstallationID: "7890", Repositories: []string{"zzz"}},
		{InstallationID: "7890", Permissions: map[string]string{"issues": "write"}},
		{InstallationID: "4242"},
	} {
		if _, err := client.Mint(ctx, cfg(bad), ""); err == nil {
			t.Fatalf("mint %+v succeeded", bad)
		}
	}
	gh.Suspend(7891)
	if _, err := client.Mint(ctx, cfg(oauth.GitHubApp{InstallationID: "7891"}), ""); err == nil {
		t.Fatal("a suspended installation minted")
	}
	gh.Exhaust(time.Now().Add(time.Minute))
	_, err := client.Mint(ctx, cfg(oauth.GitHubApp{InstallationID: "7890"}), "")
	if e, ok := err.(*oauth.Error); !ok || e.Code != oauth.CodeRateLimited || e.RetryAfter <= 0 {
		t.Fatalf("rate limited: %v", err)
	}
	gh.conforms(t, 200, 201, 403, 404, 422)

	// The check can fail: a request the description refuses (contents has no "admin"
	// level) is reported.
	before := len(gh.checker.Checked())
	_, _ = client.Mint(ctx, cfg(oauth.GitHubApp{InstallationID: "7890", Permissions: map[string]string{"contents": "admin"}}), "")
	after := gh.checker.Checked()[before:]
	if len(after) != 1 || len(after[0].Problems) == 0 || !strings.HasPrefix(after[0].Problems[0], "request") {
		t.Fatalf("a request outside the description was not reported: %+v", after)
	}
}

// TestGitHubApp: a github_app credential through a real Vault server against the
// suite's GitHub: the App's key written from a file as GitHub issues it, access/ (the
// token GitHub issued, its grant, the authorization header, ttl), the cache, a
// caller's narrowing through the CLI and a refused one, verify, a rate limit
// (transient: 502, still active) and an uninstalled App (needs_reauth, 403). Every
// exchange follows GitHub's OpenAPI description.
func TestGitHubApp(t *testing.T) {
	t.Parallel()
	gh := newGitHubServer(t, &githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: []string{"octo-repo", "docs"},
		Permissions: map[string]string{"contents": "write", "issues": "write", "metadata": "read"}})
	mount := shared.mount(t)
	keyFile := filepath.Join(t.TempDir(), "app.private-key.pem")
	if err := os.WriteFile(keyFile, []byte(fixtures.GitHubAppKeyPEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	shared.mustCLI(t, "write", mount+"/credentials/ci-bot", "type=github_app", "app_id=123456", "private_key=@"+keyFile,
		"owner=octo-org", "repositories=octo-repo,docs", "permissions=contents=write", "permissions=issues=read", "base_url="+gh.url)
	vc := noRetryClient(t, shared)

	sec, err := vc.Logical().Read(mount + "/access/ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := sec.Data["token"].(string)
	if !gh.Valid(tok) || sec.Data["authorization"] != "Bearer "+tok {
		t.Fatalf("access: token %q not GitHub's, authorization %v", tok, sec.Data["authorization"])
	}
	if fmt.Sprint(sec.Data["rotation_period"]) != "3600" || sec.Data["ttl"] == nil || sec.Data["last_vault_rotation"] == nil || sec.Data["expires_at"] == nil {
		t.Fatalf("access answer %v", sec.Data)
	}
	if repos := stringsOf(sec.Data["repositories"]); !slices.Equal(repos, []string{"octo-repo", "docs"}) {
		t.Fatalf("repositories %v", repos)
	}
	if perms, _ := sec.Data["permissions"].(map[string]any); perms["contents"] != "write" || perms["issues"] != "read" || len(perms) != 2 {
		t.Fatalf("permissions %v", sec.Data["permissions"])
	}
	for range 3 {
		again, err := vc.Logical().Read(mount + "/access/ci-bot")
		if err != nil || again.Data["token"] != tok {
			t.Fatalf("cached read: %v", err)
		}
	}
	if n := gh.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests after four reads, want 1", n)
	}

	// A caller's narrowing, as an operator types it, then one asking for more.
	out := shared.mustCLI(t, "read", "-format=json", mount+"/access/ci-bot", "repositories=docs", "permissions=contents=read")
	if !strings.Contains(out, `"docs"`) || strings.Contains(out, `"octo-repo"`) || !strings.Contains(out, `"contents": "read"`) || strings.Contains(out, tok) {
		t.Fatalf("narrowed read: %s", out)
	}
	if _, err := vc.Logical().ReadWithData(mount+"/access/ci-bot", map[string][]string{"permissions": {"contents=admin"}}); statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "permissions") {
		t.Fatalf("a narrowing asking for more: %v", err)
	}
	if _, err := vc.Logical().ReadWithData(mount+"/access/ci-bot", map[string][]string{"repositories": {"secret-repo"}}); statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "repositories") {
		t.Fatalf("a repository outside the credential's: %v", err)
	}

	// verify: GET /app with the App JWT, then the installation (found by owner), then a mint.
	before := len(gh.Requests())
	ver, err := vc.Logical().Write(mount+"/credentials/ci-bot/verify", nil)
	if err != nil || ver.Data["result"] != "ok" {
		t.Fatalf("verify: %v %v", ver, err)
	}
	var paths []string
	for _, r := range gh.Requests()[before:] {
		paths = append(paths, r.Method+" "+r.Path)
	}
	if want := []string{"GET /app", "GET /app/installations", "POST /app/installations/7890/access_tokens"}; !slices.Equal(paths, want) {
		t.Fatalf("verify asked %v, want %v", paths, want)
	}

	// A secondary rate limit: transient, the credential stays active, and GitHub's
	// Retry-After holds the next request back.
	shared.mustCLI(t, "write", mount+"/credentials/limited", "type=github_app", "app_id=123456", "private_key=@"+keyFile,
		"installation_id=7890", "base_url="+gh.url)
	gh.Fail(githubtest.Fault{Status: 403, Header: map[string]string{"Retry-After": "3600"},
		Body: `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}`})
	if _, err := vc.Logical().Read(mount + "/access/limited"); statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), "rate_limited") {
		t.Fatalf("rate limited: %v", err)
	}
	sent := gh.TokenRequests()
	if _, err := vc.Logical().Read(mount + "/access/limited"); statusCode(err) != http.StatusBadGateway || gh.TokenRequests() != sent {
		t.Fatalf("within GitHub's Retry-After: %v, %d token requests (was %d)", err, gh.TokenRequests(), sent)
	}
	if c, _ := vc.Logical().Read(mount + "/credentials/limited"); c.Data["status"] != "active" {
		t.Fatalf("after a rate limit: status %v", c.Data["status"])
	}

	// The App uninstalled: needs_reauth with the reason, and 403 from then on.
	gh.Uninstall(7890)
	shared.mustCLI(t, "patch", mount+"/credentials/ci-bot", "description=uninstalled") // an edit: the next read asks GitHub
	if _, err := vc.Logical().Read(mount + "/access/ci-bot"); statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), oauth.CodeGitHubInstallationNotFound) {
		t.Fatalf("uninstalled: %v", err)
	}
	c, _ := vc.Logical().Read(mount + "/credentials/ci-bot")
	if c.Data["status"] != "needs_reauth" || c.Data["status_reason"] != oauth.CodeGitHubInstallationNotFound {
		t.Fatalf("after the uninstall: %v", c.Data)
	}
	if keyLine := strings.Split(fixtures.GitHubAppKeyPEM(), "\n")[2]; strings.Contains(fmt.Sprint(c.Data), keyLine) ||
		!slices.Equal(stringsOf(c.Data["secret_fields"]), []string{"private_key"}) {
		t.Fatalf("the management read: secret_fields %v, or it shows the key", c.Data["secret_fields"])
	}
	// By installation_id, GitHub's own 404.
	shared.mustCLI(t, "write", mount+"/credentials/gone", "type=github_app", "app_id=123456", "private_key=@"+keyFile,
		"installation_id=7890", "base_url="+gh.url)
	if _, err := vc.Logical().Read(mount + "/access/gone"); statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), oauth.CodeGitHubInstallationNotFound) {
		t.Fatalf("uninstalled, by installation_id: %v", err)
	}
	gh.conforms(t, 200, 201, 403, 404)
}

func stringsOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
