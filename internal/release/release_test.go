package release

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	plugin  = "vault-plugin-secrets-integrations"
	module  = "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations"
	version = "9.8.7-reprotest"
	binName = plugin + "_" + version + "_linux_amd64"
)

// TestReleaseIsReproducible builds the linux/amd64 release twice with
// scripts/release.sh and requires the same bytes: once from this checkout with the
// usual build cache, once from a copy of the tree at another path (no .git there) with
// an empty GOCACHE, so nothing is a cache hit and any path, VCS stamp or build ID that
// reaches the binary shows. The first build's SHA256SUMS must pass `sha256sum -c` (the
// README's first install step) and its SBOM must list what the binary links.
func TestReleaseIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin twice, once with a cold cache")
	}
	for _, tool := range []string{"bash", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	distA := filepath.Join(tmp, "dist-a")
	release(t, root, distA, "SBOM=1")

	other := filepath.Join(tmp, "elsewhere", "checkout")
	copyTree(t, root, other)
	distB := filepath.Join(tmp, "dist-b")
	cold := filepath.Join(tmp, "gocache")
	release(t, other, distB, "SBOM=0", "GOCACHE="+cold)

	a, err := os.ReadFile(filepath.Join(distA, binName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(distB, binName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("the two builds differ: %d and %d bytes, first difference at byte %d; build info:\n%s\n---\n%s",
			len(a), len(b), firstDiff(a, b), info(filepath.Join(distA, binName)), info(filepath.Join(distB, binName)))
	} else {
		t.Logf("linux/amd64: %d bytes, identical from %s (warm cache) and %s (cold cache)", len(a), root, other)
	}

	// What the binary says about its build: the fixed flags, and nothing of the checkout.
	bi, err := buildinfo.ReadFile(filepath.Join(distA, binName))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
		if strings.HasPrefix(s.Key, "vcs") {
			t.Errorf("the release carries the VCS stamp %s=%s: the checkout leaks into it", s.Key, s.Value)
		}
	}
	for k, want := range map[string]string{"-trimpath": "true", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64"} {
		if settings[k] != want {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
		}
	}
	// -trimpath keeps -ldflags out of the build info: look at what they did instead.
	if !bytes.Contains(a, []byte("v"+version)) {
		t.Errorf("the binary does not carry its version v%s (-X …/backend.Version)", version)
	}
	if id, err := exec.Command("go", "tool", "buildid", filepath.Join(distA, binName)).CombinedOutput(); err != nil || len(bytes.TrimSpace(id)) != 0 {
		t.Errorf("go tool buildid: %q (%v), want an empty build ID (-buildid=)", id, err)
	}

	// The README's first step of an install.
	c := exec.Command("sha256sum", "-c", "SHA256SUMS")
	c.Dir = distA
	if out, err := c.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
	} else if n := strings.Count(string(out), ": OK"); n != 2 {
		t.Errorf("sha256sum -c SHA256SUMS checked %d files, want 2 (the binary and its SBOM):\n%s", n, out)
	}

	checkSBOM(t, filepath.Join(distA, binName+".cdx.json"), bi)
}

// release runs scripts/release.sh of the tree at dir for linux/amd64 into dist.
func release(t *testing.T, dir, dist string, env ...string) {
	t.Helper()
	c := exec.Command("bash", "scripts/release.sh", version)
	c.Dir = dir
	c.Env = append(os.Environ(), append([]string{"DIST=" + dist, "PLATFORMS=linux/amd64"}, env...)...)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh in %s: %v\n%s", dir, err, out)
	}
}

// checkSBOM requires a CycloneDX document for the binary that lists each module the
// binary's build info names, at its version.
func checkSBOM(t *testing.T, path string, bi *buildinfo.BuildInfo) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the SBOM is not JSON: %v", err)
	}
	if doc.BOMFormat != "CycloneDX" {
		t.Errorf("bomFormat %q, want CycloneDX", doc.BOMFormat)
	}
	if doc.Metadata.Component.Name != module || doc.Metadata.Component.Version != "v"+version {
		t.Errorf("the SBOM describes %s %s, want %s v%s", doc.Metadata.Component.Name, doc.Metadata.Component.Version, module, version)
	}
	listed := map[string]string{}
	for _, c := range doc.Components {
		listed[c.Name] = c.Version
	}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		if v, ok := listed[m.Path]; !ok || v != m.Version {
			t.Errorf("the SBOM lists %s at %q; the binary links %s", m.Path, v, m.Version)
		}
	}
	t.Logf("SBOM: %d components for the %d modules the binary links", len(doc.Components), len(bi.Deps))
}

// copyTree copies the module at src to dst, less what is built or cached there.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	skip := map[string]bool{".git": true, ".cache": true, "bin": true, "bin-race": true, "dist": true, ".terraform": true, "node_modules": true}
	// Files are read through a root at src, so a symlink swapped in meanwhile cannot
	// lead the copy outside the tree.
	root, err := os.OpenRoot(src)
	if err != nil {
		t.Fatalf("opening the tree: %v", err)
	}
	defer root.Close()
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() && skip[d.Name()] {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := root.ReadFile(rel)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil // symlinks and the like: nothing the build reads
	})
	if err != nil {
		t.Fatalf("copying the tree: %v", err)
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func info(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no build info: %v)", err)
	}
	return bi.String()
}
