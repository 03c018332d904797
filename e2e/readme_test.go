//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// TestREADMECommands runs README.md as written: it starts `make dev`'s server by running
// scripts/dev.sh (Vault and the local OAuth provider, on free ports), then runs every
// command of the README's ```sh blocks in order with bash, as an operator pastes them,
// then every example command of every path's help (vault path-help of each path of the
// mount's OpenAPI document). Each
// must succeed, unless readmeTable says why it is not run or which error it is expected
// to fail with; a table entry that matches no command fails the test too, so the table
// cannot outlive the README.
//
// What the test changes before running a command: the addresses of make dev's defaults
// (127.0.0.1:8200 and :8300) become the free ports it chose; readmePlaceholders fill
// the README's "…" and <…> placeholders; readmeURLs point the example providers at the
// local OAuth provider. Commands run in a scratch directory with bin/ and bootstrap/
// linked from the repository and the files the README passes with @ made there.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missingPrerequisite(t, tool+" is not installed: the README's commands use it")
		}
	}
	readme := parseREADME(t, filepath.Join("..", "README.md"))
	// A plugin directory of its own: the Versions section upgrades the binary in it.
	plugins := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(pluginDir(), pluginName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, pluginName), b, 0o755); err != nil {
		t.Fatal(err)
	}
	dev := startMakeDev(t, plugins)
	work := readmeWorkdir(t, dev, plugins)
	fill := readmeFiller(t, dev)
	used := map[string]bool{}

	for _, c := range readme {
		dev.run(t, work, fill, used, fmt.Sprintf("README.md:%d", c.line), c.key, c.text)
	}
	// The Versions section's upgrade took: make dev's mount runs the next version.
	if mounts, err := dev.client.Sys().ListMounts(); err != nil || mounts["integrations/"] == nil || mounts["integrations/"].RunningVersion != nextVersion {
		t.Errorf("after the README's upgrade, integrations/ does not run %s: %v %+v", nextVersion, err, mounts["integrations/"])
	}
	// The quick start's Vault Agent rendered an access token of the local provider.
	if b, err := os.ReadFile(filepath.Join(work, ".cache", "agent", "dev-api-token")); err != nil || !strings.HasPrefix(string(b), "ory_at_") {
		t.Errorf("the quick start's vault agent rendered no access token of the local provider (%d bytes, %v)", len(b), err)
	}

	// The path-help examples start from the engine's defaults and the credentials they
	// name: the README's hardening section closed loopback, where the local provider is.
	if _, err := dev.client.Logical().Delete("integrations/config"); err != nil {
		t.Fatalf("resetting config: %v", err)
	}
	if _, err := dev.client.Logical().Write("integrations/config", map[string]any{"callback_base_url": "http://" + dev.vaultAddr}); err != nil {
		t.Fatalf("setting callback_base_url back as make dev does: %v", err)
	}
	for _, g := range pathHelpExamples(t, dev.client) {
		dev.exampleCredentials(t)
		for _, c := range g.commands {
			dev.run(t, work, fill, used, "path-help "+g.path, c.key, c.text)
		}
	}

	for key, e := range readmeTable {
		if !used[key] {
			t.Errorf("readmeTable entry %q (%s) matches no command of the README or of a path's help: remove it", key, e.reason)
		}
	}
}

// readmeEntry says how the test treats one command, keyed by its text (continuation lines
// joined with one space; "#2" appended for its second occurrence, and so on).
type readmeEntry struct {
	// skip: the command is not run, for reason.
	skip bool
	// before runs before the command: what the README says the operator did first.
	before func(*testing.T, *makeDev)
	// fails: the command must fail, its output containing this text.
	fails string
	// reason says why. "TODO(other fix)" marks a README command that fails today for
	// a bug another change fixes: remove the entry with that fix.
	reason string
}

var readmeTable = map[string]readmeEntry{
	// Not vault commands: the test does what they do itself.
	"make dev":   {skip: true, reason: "the test runs scripts/dev.sh, what make dev runs, on free ports"},
	"make dev#2": {skip: true, reason: "the test runs scripts/dev.sh, what make dev runs, on free ports"},
	"make test":  {skip: true, reason: "the whole suite, this test included"},
	`export VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root PATH="$PWD/.cache/bin:$PATH"`: {skip: true, reason: "the test sets VAULT_ADDR, VAULT_TOKEN and PATH for every command"},
	"export VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root":                              {skip: true, reason: "the test sets VAULT_ADDR and VAULT_TOKEN for every command"},
	`export PATH="$PWD/.cache/bin:$PATH"`:                                                   {skip: true, reason: "the test puts VAULT_BIN on the PATH as vault"},

	// Terraform: TestTerraformBesideMakeDev runs this recipe (init, apply and destroy with
	// dev.tfvars beside a mount on the same plugin version), TestTerraformLifecycle the
	// configuration on a Vault of its own.
	"make tfprovider":        {skip: true, reason: "TestTerraformBesideMakeDev (scripts/test.sh builds TF_MIRROR)"},
	"cd bootstrap/terraform": {skip: true, reason: "TestTerraformBesideMakeDev"},
	"export TF_CLI_CONFIG_FILE=$PWD/dev.tfrc VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root": {skip: true, reason: "TestTerraformBesideMakeDev"},
	"terraform init":                         {skip: true, reason: "TestTerraformBesideMakeDev"},
	"terraform apply -var-file=dev.tfvars":   {skip: true, reason: "TestTerraformBesideMakeDev"},
	"terraform destroy -var-file=dev.tfvars": {skip: true, reason: "TestTerraformBesideMakeDev"},
	"terraform apply -var plugin_sha256=$(sha256sum ../../bin/vault-plugin-secrets-integrations | cut -d' ' -f1)": {skip: true, reason: "TestTerraformLifecycle"},

	// private_key_jwt at Microsoft Entra and Okta: the writes run, but the local
	// provider's client authenticates with a secret; e2e/client_auth_test.go mints with
	// these assertions at ory/fosite.
	"vault read integrations/access/graph#2":   {skip: true, reason: "private_key_jwt at login.microsoftonline.com: client_auth_test.go"},
	"vault read integrations/access/okta-mgmt": {skip: true, reason: "private_key_jwt at Okta: client_auth_test.go"},
	// Keys the engine generates, at Okta (jwks_uri) and Entra (a generated certificate):
	// the writes, the key set and the rotations run; client_keys_test.go mints with
	// them at ory/fosite, which fetches jwks/<name>.
	"vault read integrations/access/okta-api":   {skip: true, reason: "private_key_jwt at Okta with a generated key: client_keys_test.go"},
	"vault read integrations/access/graph-cert": {skip: true, reason: "private_key_jwt at login.microsoftonline.com with a generated key: client_keys_test.go"},
	// Rotating a client secret: by then graph is the private_key_jwt credential at
	// Microsoft; e2e/secret_overlap_test.go runs the rotation against ory/fosite.
	"vault write -f integrations/credentials/graph/verify": {skip: true, reason: "private_key_jwt at login.microsoftonline.com: secret_overlap_test.go"},

	// auth_style=federated at Microsoft Entra: the config and credential writes, the
	// documents and oidc/rotate run; TestFederatedIssuer mints through a verifier of the
	// assertions (go-oidc) instead of login.microsoftonline.com.
	"vault read integrations/access/graph-fed": {skip: true, reason: "a federated assertion at login.microsoftonline.com: federated_test.go"},
	// oidc/rotate's help example runs after the README reset the config (issuer unset).
	"vault write -f integrations/oidc/rotate": {before: setIssuer, reason: "the README's config issuer, as the federated credentials section sets it"},

	// JWT-bearer grants at Google and Salesforce: the writes and reads run; the tokens
	// are minted by e2e/jwtbearer_test.go against servers following their contracts.
	"vault read -field=access_token integrations/access/workspace-directory": {skip: true, reason: "Google's token endpoint: TestGoogleServiceAccount"},
	"vault read integrations/access/crm-salesforce":                          {skip: true, reason: "Salesforce's token endpoint: TestSalesforceJWT"},

	// Token exchange: make dev's provider (ory/fosite) has no RFC 8693 grant, so it
	// refuses the exchange (never marking the credential); e2e/exchange_test.go runs
	// these against zitadel/oidc's op. The path-help examples' crm-api has no
	// exchange_audiences: exchange is off for it.
	"vault read integrations/exchange/partner-api audience=https://orders.partner.example": {
		fails: "the provider refused", reason: "fosite has no token exchange: exchange_test.go"},
	"vault write integrations/exchange/partner-api resource=https://billing.partner.example/ scope=invoices.read": {
		fails: "the provider refused", reason: "fosite has no token exchange: exchange_test.go"},
	"vault read integrations/exchange/crm-api audience=https://orders.example.com": {
		fails: "token exchange is off", reason: "the example credential has no exchange_audiences; exchange_test.go exchanges"},
	`vault write integrations/exchange/crm-api resource=https://api.example.com/ scope="orders.read"`: {
		fails: "token exchange is off", reason: "the example credential has no exchange_audiences; exchange_test.go exchanges"},

	// Device authorization at Microsoft Entra and GitHub: the writes run; the device
	// authorization request would go to their hosts. e2e/device_test.go runs the flow
	// at oidc-provider.
	"vault write -f integrations/credentials/graph-device/authorize":  {skip: true, reason: "device authorization at login.microsoftonline.com: device_test.go"},
	"vault write -f integrations/credentials/github-device/authorize": {skip: true, reason: "device authorization at github.com: device_test.go"},
	"vault read -field=access_token integrations/access/graph-device": {fails: "cannot be used", reason: "nobody consented: awaiting_consent (device_test.go consents at oidc-provider)"},

	// GitHub App: the commands reach GitHub (api.github.com); TestGitHubApp types their forms
	// write (a key file with @, owner, repositories, permissions pairs), the narrowed read
	// and verify through the CLI against the suite's GitHub server.
	"vault write integrations/credentials/ci-bot type=github_app app_id=123456 private_key=@ci-bot.2026-12-06.private-key.pem owner=octo-org repositories=octo-repo permissions=contents=write permissions=metadata=read": {skip: true, reason: "GitHub: TestGitHubApp"},
	"vault read integrations/access/ci-bot":                           {skip: true, reason: "GitHub: TestGitHubApp"},
	"vault read integrations/access/ci-bot permissions=contents=read": {skip: true, reason: "GitHub: TestGitHubApp"},
	"vault write -f integrations/credentials/ci-bot/verify":           {skip: true, reason: "GitHub: TestGitHubApp"},

	// Installing a release: the release's files are made by scripts/release.sh (for
	// linux/amd64) in the work directory first; /etc/vault/plugins is make dev's plugin
	// directory (readmeFiller).
	"sha256sum -c --ignore-missing SHA256SUMS": {before: releaseV020, reason: "the release's files, as an operator downloads them"},
	"vault secrets enable -path=integrations -plugin-version=v0.2.0 -allowed-response-headers=Retry-After -allowed-response-headers=Cache-Control vault-plugin-secrets-integrations": {
		fails: "path is already in use at integrations/", reason: "make dev mounted integrations/ already (the section is for a Vault of your own)"},

	// Versions: make dev has registered and mounted the plugin already.
	"vault secrets enable -path=integrations -plugin-version=v0.2.0 -allowed-response-headers=Retry-After -allowed-response-headers=Cache-Control vault-plugin-secrets-integrations#2": {
		fails: "path is already in use at integrations/", reason: "make dev mounted integrations/ already (the section is for a Vault of your own)"},

	// Versions: "put the new binary in the plugin directory" comes first.
	"vault plugin register -sha256=… -version=" + nextVersion + " secret vault-plugin-secrets-integrations": {before: buildNext, reason: "the new binary, built to report " + nextVersion},
}

// readmeCommand is one command of a ```sh block, or one path-help example.
type readmeCommand struct {
	line int
	key  string // the readmeTable key
	text string
}

var trailingComment = regexp.MustCompile(`\s{2,}#.*$`)

// parseREADME returns the commands of README.md's ```sh blocks in order: comment lines
// and blank lines dropped, a line ending in \ joined with the next, a trailing comment
// (two spaces or more, then #) cut off. It fails on what it does not understand (a
// heredoc, an unterminated block or continuation).
func parseREADME(t *testing.T, path string) []readmeCommand {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeCommand
	seen := map[string]int{}
	in, cont := false, ""
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !in && line == "```sh":
			in = true
			continue
		case in && line == "```":
			if cont != "" {
				t.Fatalf("README.md:%d: a ```sh block ends inside a continued command", n)
			}
			in = false
			continue
		case !in:
			continue
		}
		trimmed := strings.TrimSpace(line)
		if cont == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.Contains(line, "<<") {
			t.Fatalf("README.md:%d: a heredoc in a ```sh block: the test runs one line per command", n)
		}
		if cont == "" {
			start = n
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cont += strings.TrimSpace(s) + " "
			continue
		}
		text := cont + trimmed
		cont = ""
		if loc := trailingComment.FindStringIndex(text); loc != nil {
			text = text[:loc[0]]
		}
		seen[text]++
		key := text
		if seen[text] > 1 {
			key = fmt.Sprintf("%s#%d", text, seen[text])
		}
		out = append(out, readmeCommand{line: start, key: key, text: text})
	}
	if in {
		t.Fatal("README.md: a ```sh block is not closed")
	}
	if len(out) < 40 {
		t.Fatalf("README.md: only %d commands in ```sh blocks: the parser is lost", len(out))
	}
	return out
}

// makeDev is the server scripts/dev.sh started.
type makeDev struct {
	vaultAddr, providerAddr string // host:port
	client                  *api.Client
	env                     []string
	plugins                 string // its plugin directory
	work                    string // where the README's commands run
	// placeholders are the README's "…" values, by the field they stand for.
	placeholders map[string]string
}

// startMakeDev runs scripts/dev.sh on free ports until it says it is ready, and stops it
// (Ctrl-C, as an operator does) when the test ends.
func startMakeDev(t *testing.T, plugins string) *makeDev {
	t.Helper()
	vp, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	pp, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	d := &makeDev{vaultAddr: fmt.Sprintf("127.0.0.1:%d", vp), providerAddr: fmt.Sprintf("127.0.0.1:%d", pp), plugins: plugins}
	cmd := exec.Command("bash", "scripts/dev.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), fmt.Sprintf("VAULT_DEV_PORT=%d", vp), fmt.Sprintf("DEV_PROVIDER_PORT=%d", pp), "VAULT_DEV_ROOT_TOKEN=root", "DEV_PLUGIN_DIR="+plugins)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan bool, 1)
	var printed strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
			if !said && strings.Contains(sc.Text(), "Press Ctrl-C to stop") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited: //nolint:errcheck // its exit status after Ctrl-C is not what the test checks
		case <-time.After(30 * time.Second):
			t.Errorf("scripts/dev.sh did not stop within 30s of Ctrl-C")
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("scripts/dev.sh stopped before it was ready:\n%s\n%s", printed.String(), stderr.String())
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("scripts/dev.sh was not ready after 5 minutes:\n%s", stderr.String())
	}
	// What make dev prints is what the README tells people to expect.
	for _, want := range []string{"export VAULT_ADDR=http://" + d.vaultAddr + " VAULT_TOKEN=root", "token_url=http://" + d.providerAddr + "/oauth2/token client_id=dev-client client_secret=dev-client-secret"} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("make dev does not print %q:\n%s", want, printed.String())
		}
	}
	d.client, err = api.NewClient(&api.Config{Address: "http://" + d.vaultAddr})
	if err != nil {
		t.Fatal(err)
	}
	d.client.SetToken("root")
	return d
}

// readmeWorkdir is the directory commands run in, with the vault CLI on the PATH.
func readmeWorkdir(t *testing.T, d *makeDev, plugins string) string {
	t.Helper()
	work := t.TempDir()
	d.work = work
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "bootstrap"), filepath.Join(work, "bootstrap")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(plugins, filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(work, ".path")
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(os.Getenv("VAULT_BIN"), filepath.Join(path, "vault")); err != nil {
		t.Fatal(err)
	}
	cert, key := fixtures.Certificate(time.Now().Add(90 * 24 * time.Hour))
	files := map[string]string{
		"client.crt":            cert,
		"client.key":            key,
		"crm-refresh-token.txt": providerRefreshToken(t, d.providerAddr),
		"new-refresh-token.txt": providerRefreshToken(t, d.providerAddr),
		// The list the credentials-batch path-help examples send (CLI and curl).
		"items.json": `{"items": [{"name": "batch-example-1", "type": "bearer", "token": "example-token"}]}`,
		// The key file the Google walkthrough downloads from the Cloud console.
		"sa-key.json": fixtures.ServiceAccountKey(fixtures.RSAKey(), "directory-sync@project-1.iam.gserviceaccount.com", "1f2e3d4c5b6a", "https://oauth2.googleapis.com/token"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.env = append(os.Environ(),
		"VAULT_ADDR=http://"+d.vaultAddr, "VAULT_TOKEN=root", "VAULT_FORMAT=", "VAULT_NAMESPACE=",
		"PATH="+path+string(os.PathListSeparator)+os.Getenv("PATH"))
	return work
}

// readmeFiller returns the text a command runs as: make dev's addresses moved to the
// test's ports, the example providers to the local one, the placeholders filled.
func readmeFiller(t *testing.T, d *makeDev) func(string) string {
	t.Helper()
	dp := "http://" + d.providerAddr
	d.placeholders = map[string]string{
		"client_id":            "dev-client",
		"client_secret":        "dev-client-secret",
		"password":             "readme-Passw0rd",
		"private_key_password": "readme-key-password",
		// sha256: set by buildV020, the only command that has it.
	}
	// The README's <…> placeholders.
	angle := map[string]string{
		"<application (client) ID>": "00000000-0000-0000-0000-000000000001",
		"<client ID>":               "0oa-readme-client",
		"<KID>":                     "readme-kid",
		"<consumer key>":            "3MVG9-readme-consumer-key",
	}
	// Providers the README names that do not exist, and those the test cannot reach:
	// the local provider stands in (its client is dev-client).
	urls := map[string]string{
		"https://auth.partner.example/oauth/token": dp + "/oauth2/token",
		"https://crm.example/oauth/authorize":      dp + "/oauth2/auth",
		"https://crm.example/oauth/token":          dp + "/oauth2/token",
	}
	placeholder := regexp.MustCompile(`([A-Za-z0-9_]+)=…`)
	return func(text string) string {
		text = strings.ReplaceAll(text, "127.0.0.1:8200", d.vaultAddr)
		text = strings.ReplaceAll(text, "127.0.0.1:8300", d.providerAddr)
		text = strings.ReplaceAll(text, "/etc/vault/plugins/", d.plugins+"/")
		for from, to := range urls {
			text = strings.ReplaceAll(text, from, to)
		}
		for from, to := range angle {
			text = strings.ReplaceAll(text, from, to)
		}
		text = placeholder.ReplaceAllStringFunc(text, func(m string) string {
			field := strings.TrimSuffix(m, "=…")
			v, ok := d.placeholders[field]
			if !ok {
				t.Errorf("no value for the placeholder %q: add it to readmeFiller's table", m)
			}
			return field + "=" + v
		})
		// The m365 preset's token endpoint is Microsoft's: the first graph credential
		// (a client secret) mints at the local provider instead.
		if strings.HasPrefix(text, "vault write integrations/credentials/graph type=m365 tenant=contoso.onmicrosoft.com client_id=dev-client client_secret=") {
			text += " token_url=" + dp + "/oauth2/token"
		}
		return text
	}
}

// run runs one command (or skips it, or expects it to fail) as readmeTable says.
func (d *makeDev) run(t *testing.T, work string, fill func(string) string, used map[string]bool, where, key, text string) {
	t.Helper()
	e, listed := readmeTable[key]
	if listed {
		used[key] = true
	}
	if e.skip {
		t.Logf("%s: not run (%s): %s", where, e.reason, text)
		return
	}
	if e.before != nil {
		e.before(t, d)
	}
	cmd := fill(text)
	// A curl to oauth/callback exits 0 whatever the page says: it must say it completed.
	mustSay := ""
	if strings.Contains(cmd, "<state>") {
		code, state := d.consent(t, "crm-api")
		cmd = strings.NewReplacer("<code>", code, "<state>", state).Replace(cmd)
		if strings.HasPrefix(cmd, "curl ") {
			mustSay = "Authorization complete"
		}
	}
	if strings.Contains(cmd, "…") {
		t.Errorf("%s: a placeholder is left in %q", where, cmd)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", cmd)
	c.Dir, c.Env, c.Stdin = work, d.env, strings.NewReader("")
	out, err := c.CombinedOutput()
	switch {
	case e.fails != "" && err == nil:
		t.Errorf("%s: %q succeeded; the table expects it to fail with %q (%s): remove the entry\n%s", where, cmd, e.fails, e.reason, out)
	case e.fails != "" && !strings.Contains(string(out), e.fails):
		t.Errorf("%s: %q failed, but not with %q (%s):\n%s", where, cmd, e.fails, e.reason, out)
	case e.fails == "" && err != nil:
		t.Errorf("%s: %q failed (%v):\n%s", where, cmd, err, out)
	case !strings.Contains(string(out), mustSay):
		t.Errorf("%s: %q does not say %q:\n%s", where, cmd, mustSay, out)
	}
}

// nextVersion is the version the README's upgrade passage moves to: the one after
// VERSION (make dev registers VERSION).
const nextVersion = "v0.3.0"

// buildNext builds the plugin reporting nextVersion over the binary in make dev's plugin
// directory, as an operator installs a new version, and fills the README's -sha256=….
func buildNext(t *testing.T, d *makeDev) {
	t.Helper()
	dst := filepath.Join(d.plugins, pluginName)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags",
		"-s -w -X github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend.Version="+nextVersion,
		"-o", dst+".new", "./cmd/"+pluginName)
	cmd.Dir, cmd.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin as %s: %v\n%s", nextVersion, err, out)
	}
	if err := os.Rename(dst+".new", dst); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(dst)
	if err != nil {
		t.Fatal(err)
	}
	d.placeholders["sha256"] = sum
}

// releaseV020 makes the release files the README's install starts from: scripts/release.sh
// builds v0.2.0 for linux/amd64 (no SBOM: internal/release's test checks those), and its
// binary and SHA256SUMS go into the directory the commands run in.
// setIssuer writes the README's config issuer (the federated credentials section).
func setIssuer(t *testing.T, d *makeDev) {
	t.Helper()
	if _, err := d.client.Logical().Write("integrations/config", map[string]any{"issuer": "https://vault.example.com/v1/integrations/oidc"}); err != nil {
		t.Fatalf("setting config issuer: %v", err)
	}
}

func releaseV020(t *testing.T, d *makeDev) {
	t.Helper()
	dist := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/release.sh", "0.2.0")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DIST="+dist, "PLATFORMS=linux/amd64", "SBOM=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh 0.2.0: %v\n%s", err, out)
	}
	for _, name := range []string{pluginName + "_0.2.0_linux_amd64", "SHA256SUMS"} {
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.work, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// exampleGroup is the examples of one path's help, in the order the help lists them.
type exampleGroup struct {
	path     string
	commands []readmeCommand
}

// pathHelpExamples returns the example commands every path's help ends with (what
// `vault path-help` shows): the paths from the mount's OpenAPI document, each read with
// its parameters filled ({name} billing-db, {type} basic).
func pathHelpExamples(t *testing.T, c *api.Client) []exampleGroup {
	t.Helper()
	r := c.NewRequest(http.MethodGet, "/v1/integrations/")
	r.Params.Set("help", "1")
	resp, err := c.RawRequest(r) //nolint:staticcheck // SA1019: the raw OpenAPI answer of ?help=1, read as `vault path-help` does
	if err != nil {
		t.Fatalf("reading the mount's OpenAPI document: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI struct {
			Paths map[string]json.RawMessage `json:"paths"`
		} `json:"openapi"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{"name": "billing-db", "type": "basic"}
	param := regexp.MustCompile(`\{([a-z_]+)\}`)
	example := regexp.MustCompile(`(?m)^\s*\$ (.+)$`)
	var groups []exampleGroup
	seen := map[string]bool{}
	total := 0
	for path := range doc.OpenAPI.Paths {
		concrete := param.ReplaceAllStringFunc(path, func(m string) string {
			v, ok := params[strings.Trim(m, "{}")]
			if !ok {
				t.Fatalf("path %s: no value for its parameter %s: add one to pathHelpExamples", path, m)
			}
			return v
		})
		help, err := c.Help("integrations" + concrete)
		if err != nil {
			t.Fatalf("vault path-help integrations%s: %v", concrete, err)
		}
		g := exampleGroup{path: path}
		for _, m := range example.FindAllStringSubmatch(help.Help, -1) {
			text := strings.TrimSpace(m[1])
			if loc := trailingComment.FindStringIndex(text); loc != nil {
				text = text[:loc[0]]
			}
			if seen[text] { // the same help on two paths (a list path with and without /)
				continue
			}
			seen[text] = true
			g.commands = append(g.commands, readmeCommand{key: text, text: text})
		}
		if len(g.commands) > 0 {
			groups = append(groups, g)
			total += len(g.commands)
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].path < groups[j].path })
	if total < 15 {
		t.Fatalf("only %d path-help examples: the parser is lost", total)
	}
	return groups
}

// exampleCredentials (re)creates the credentials the path-help examples name, so each
// path's examples start from the same state whatever the one before deleted.
func (d *makeDev) exampleCredentials(t *testing.T) {
	t.Helper()
	dp := "http://" + d.providerAddr
	creds := map[string]map[string]any{
		"billing-db": {"type": "basic", "username": "svc", "password": "s3cret"},
		"crm-api": {"type": "oauth2_authorization_code", "auth_url": dp + "/oauth2/auth", "token_url": dp + "/oauth2/token",
			"client_id": "dev-client", "client_secret": "dev-client-secret", "scopes": "offline_access,read",
			"refresh_token": providerRefreshToken(t, d.providerAddr)},
		// Nothing listens on port 1: verify records a failure, which is an answer.
		"crm-sftp": {"type": "sftp_password", "host": "sftp://127.0.0.1:1/", "host_key_fingerprint": fixtures.HostKeyFingerprint(),
			"username": "svc", "password": "s3cret"},
	}
	// alerts lists something: an empty list is Vault's 404.
	creds["idle-db"] = map[string]any{"type": "basic", "username": "svc", "password": "s3cret"}
	for name, data := range creds {
		if _, err := d.client.Logical().Write("integrations/credentials/"+name, data); err != nil {
			t.Fatalf("writing %s for the path-help examples: %v", name, err)
		}
	}
	if _, err := d.client.Logical().Write("integrations/credentials/idle-db/suspend", nil); err != nil {
		t.Fatalf("suspending idle-db for the alerts examples: %v", err)
	}
}

// consent starts an authorization of credential name and consents at the local provider
// as a browser would, without following its redirect to Vault: the code and state an
// example then completes the authorization with.
func (d *makeDev) consent(t *testing.T, name string) (code, state string) {
	t.Helper()
	s, err := d.client.Logical().Write("integrations/credentials/"+name+"/authorize", nil)
	if err != nil || s == nil {
		t.Fatalf("authorize %s: %v", name, err)
	}
	authURL, _ := s.Data["auth_url"].(string)
	noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") == "" {
		t.Fatalf("the local provider's consent answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code"), loc.Query().Get("state")
}

// providerRefreshToken consents at the local OAuth provider as a browser would (it
// consents at once) and exchanges the code: a refresh token of dev-client.
func providerRefreshToken(t *testing.T, providerAddr string) string {
	t.Helper()
	base := "http://" + providerAddr
	redirect := "http://127.0.0.1/v1/integrations/oauth/callback"
	verifier := rand.Text() + rand.Text()
	challenge := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {"dev-client"}, "redirect_uri": {redirect},
		"state": {rand.Text()}, "scope": {"offline_access read"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(challenge[:])}, "code_challenge_method": {"S256"},
	}
	noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/oauth2/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("the local provider's authorization endpoint answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {redirect}}
	req, err := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("dev-client", "dev-client-secret")
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.RefreshToken == "" {
		t.Fatalf("the local provider's code exchange answered %d without a refresh token (%v)", resp.StatusCode, err)
	}
	return tok.RefreshToken
}
