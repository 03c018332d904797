//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// terraform runs the real terraform CLI in dir against v, with the Vault provider
// served from the project's filesystem mirror (the registry is out of reach).
type terraform struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func newTerraform(t *testing.T, v *vaultServer) *terraform {
	t.Helper()
	bin := toolPath(t, "E2E_TERRAFORM", "terraform", "scripts/test.sh builds it from the Go module proxy when the PATH has none (terraform_bin in scripts/lib.sh)")
	mirror := os.Getenv("TF_MIRROR")
	if mirror == "" {
		t.Fatal("TF_MIRROR is not set: run through `make test`, which builds the Vault provider")
	}
	dir := t.TempDir()
	src := filepath.Join("..", "bootstrap", "terraform")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tf") || strings.HasSuffix(e.Name(), ".tfvars") {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	rc := filepath.Join(dir, "cli.tfrc")
	cfg := fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/hashicorp/vault"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/vault"]
  }
}
`, mirror)
	if err := os.WriteFile(rc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(filepath.Join(pluginDir(), pluginName))
	if err != nil {
		t.Fatal(err)
	}
	return &terraform{t: t, bin: bin, dir: dir, env: append(os.Environ(),
		"TF_CLI_CONFIG_FILE="+rc,
		"CHECKPOINT_DISABLE=1",
		"TF_IN_AUTOMATION=1",
		"TF_INPUT=0",
		"VAULT_ADDR="+v.addr,
		"VAULT_TOKEN="+v.token,
		"TF_VAR_plugin_sha256="+sum,
		"TF_VAR_plugin_version="+os.Getenv("PLUGIN_VERSION"),
	)}
}

// run executes terraform and returns its exit code and combined output.
func (tf *terraform) run(args ...string) (int, string) {
	tf.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tf.bin, args...)
	cmd.Dir, cmd.Env = tf.dir, tf.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	default:
		tf.t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out.String())
		return -1, ""
	}
}

func (tf *terraform) mustRun(args ...string) string {
	tf.t.Helper()
	code, out := tf.run(args...)
	if code != 0 {
		tf.t.Fatalf("terraform %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestTerraformLifecycle registers, mounts and configures the engine with Terraform's
// Vault provider, creates credentials, reads an access path, checks that a second plan
// changes nothing, exercises the example policies, and destroys it all.
func TestTerraformLifecycle(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{unregistered: true})
	tf := newTerraform(t, v)
	tf.mustRun("init", "-no-color")
	tf.mustRun("apply", "-auto-approve", "-no-color")

	// The engine really is there, configured, with the credentials.
	c := v.client.Logical()
	cfg, err := c.Read("integrations/config")
	if err != nil || cfg == nil {
		t.Fatalf("reading config: %v", err)
	}
	if fmt.Sprint(cfg.Data["suspend_after"]) != "7776000" {
		t.Errorf("config not applied: %v", cfg.Data)
	}
	auth := tf.mustRun("output", "-raw", "ticketing_authorization")
	if auth != "Basic c3ZjLXRpY2tldGluZzpjaGFuZ2UtbWUtdGlja2V0aW5n" { // svc-ticketing:change-me-ticketing
		t.Errorf("access through the data source gave %q", auth)
	}
	mounts, err := v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts["integrations/"]; m == nil || m.RunningVersion != os.Getenv("PLUGIN_VERSION") {
		t.Errorf("mount missing or wrong version: %+v", m)
	}
	// Vault passes on the Retry-After of a 503 (key work busy) only where it is allowed.
	if m := mounts["integrations/"]; m == nil || !slices.Contains(m.Config.AllowedResponseHeaders, "Retry-After") {
		t.Errorf("the mount does not allow Retry-After: %+v", m)
	}

	// Secrets are never read back, so nothing may look changed.
	if code, out := tf.run("plan", "-detailed-exitcode", "-no-color"); code != 0 {
		t.Fatalf("second plan is not empty (exit %d):\n%s", code, out)
	}

	checkPolicies(t, v)

	tf.mustRun("destroy", "-auto-approve", "-no-color")
	mounts, err = v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts["integrations/"]; ok {
		t.Error("destroy left the mount behind")
	}
}

// TestTerraformBesideMakeDev applies and destroys the configuration with dev.tfvars, as
// the README's recipe does next to `make dev`, on a server where make dev's mount
// (integrations/) runs the same plugin version: Terraform mounts integrations-tf/ and
// does not register the version, so its destroy leaves the catalog alone, and after a
// plugin reload make dev's mount still answers. (With register_plugin = true, destroy
// deregisters the version and the reload leaves integrations/ with "plugin not found
// in the catalog".)
func TestTerraformBesideMakeDev(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{}) // registered, as make dev does
	v.mountAt(t, "integrations")
	v.mustCLI(t, "write", "integrations/credentials/demo", "type=basic", "username=svc", "password=s3cret")

	tf := newTerraform(t, v)
	tf.mustRun("init", "-no-color")
	tf.mustRun("apply", "-auto-approve", "-no-color", "-var-file=dev.tfvars")
	if auth := tf.mustRun("output", "-raw", "ticketing_authorization"); auth != "Basic c3ZjLXRpY2tldGluZzpjaGFuZ2UtbWUtdGlja2V0aW5n" {
		t.Errorf("access through the data source gave %q", auth)
	}
	mounts, err := v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts["integrations-tf/"]; m == nil || m.RunningVersion != os.Getenv("PLUGIN_VERSION") {
		t.Errorf("dev.tfvars: want the mount integrations-tf/ on %s, got %+v", os.Getenv("PLUGIN_VERSION"), m)
	}
	// Terraform's config went to its own mount, not make dev's.
	if cfg, err := v.client.Logical().Read("integrations/config"); err != nil || cfg == nil || fmt.Sprint(cfg.Data["suspend_after"]) == "7776000" {
		t.Errorf("make dev's config changed by the apply (or unreadable): %v %v", cfg, err)
	}

	tf.mustRun("destroy", "-auto-approve", "-no-color", "-var-file=dev.tfvars")
	mounts, err = v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts["integrations-tf/"]; ok {
		t.Error("destroy left integrations-tf/ behind")
	}
	if _, err := v.client.Sys().GetPluginWithContext(context.Background(), &api.GetPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Version: os.Getenv("PLUGIN_VERSION"),
	}); err != nil {
		t.Errorf("destroy deregistered the plugin version make dev uses: %v", err)
	}
	// A reload starts the mount's plugin afresh from the catalog.
	v.mustCLI(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	out, err := v.cli("read", "-field=password", "integrations/access/demo")
	if err != nil || out != "s3cret" {
		t.Errorf("make dev's mount after destroy and reload: %q %v", out, err)
	}
}

// checkPolicies: the integration's token reads its own access path and nothing else;
// the administrator's manages credentials but cannot pull secrets.
func checkPolicies(t *testing.T, v *vaultServer) {
	t.Helper()
	token := func(policy string) *api.Client {
		secret, err := v.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, NoDefaultPolicy: true})
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.client.Clone()
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(secret.Auth.ClientToken)
		return c
	}
	integration := token("integration-alert-forwarder").Logical()
	if s, err := integration.Read("integrations/access/ticketing"); err != nil || s == nil || s.Data["password"] != "change-me-ticketing" {
		t.Errorf("integration reading its own access path: %v %v", s, err)
	}
	for _, path := range []string{"integrations/access/monitoring", "integrations/credentials/ticketing", "integrations/config"} {
		if _, err := integration.Read(path); statusCode(err) != 403 {
			t.Errorf("integration read %s: want 403, got %v", path, err)
		}
	}
	if _, err := integration.Write("integrations/credentials/ticketing", map[string]any{"password": "x"}); statusCode(err) != 403 {
		t.Errorf("integration write: want 403, got %v", err)
	}

	admin := token("integrations-admin").Logical()
	if s, err := admin.Read("integrations/credentials/ticketing"); err != nil || s == nil {
		t.Errorf("admin read: %v", err)
	}
	if _, err := admin.Write("integrations/credentials/admin-made", map[string]any{"type": "webhook", "url": "https://h.example.com"}); err != nil {
		t.Errorf("admin create: %v", err)
	}
	if _, err := admin.Delete("integrations/credentials/admin-made"); err != nil {
		t.Errorf("admin delete: %v", err)
	}
	if _, err := admin.Read("integrations/access/ticketing"); statusCode(err) != 403 {
		t.Errorf("admin access read: want 403, got %v", err)
	}
}
