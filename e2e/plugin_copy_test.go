//go:build e2e

package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestReloadAfterPluginRebuild: a server started on its own copy of the plugin binary
// (ownPluginCopy, as the scale benchmark runs) reloads its mount and serves access/
// after the binary in the directory it was started from is rebuilt. Vault checks the
// registered checksum at every plugin start: on the file itself, the reload fails with
// "checksums did not match" and so does every later request to the mount, which is
// what a scale run saw as "no access/ served within 10 minutes of the reload" when
// make build-heapprof rebuilt its PLUGIN_DIR during the run.
func TestReloadAfterPluginRebuild(t *testing.T) {
	src := filepath.Join(t.TempDir(), "plugins")
	if err := copyExecutable(filepath.Join(pluginDir(), pluginName), filepath.Join(src, pluginName)); err != nil {
		t.Fatal(err)
	}
	v := newVault(t, serverOptions{pluginDir: src, ownPluginCopy: true})
	mountPlugin(t, v, "rebuilt")
	if _, _, err := vaultDo(v, http.MethodPost, "rebuilt/credentials/c", map[string]any{"type": "basic", "username": "u", "password": "p"}); err != nil {
		t.Fatal(err)
	}
	// The rebuild: another binary at the same path, a new file renamed over the old one
	// as go build leaves it.
	rebuilt := filepath.Join(t.TempDir(), pluginName)
	if err := copyExecutable(filepath.Join(src, pluginName), rebuilt); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(rebuilt, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("rebuilt")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(rebuilt, filepath.Join(src, pluginName)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{"rebuilt/"}}); err != nil {
		t.Fatalf("reloading the mount after the rebuild: %v", err)
	}
	out, _, err := vaultDo(v, http.MethodGet, "rebuilt/access/c", nil)
	if err != nil {
		t.Fatalf("access/ after the reload: %v", err)
	}
	if data, _ := out["data"].(map[string]any); data["password"] != "p" {
		t.Fatalf("access/ after the reload answered %v", out["data"])
	}
}
