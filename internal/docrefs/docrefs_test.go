package docrefs

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goFileRef is a name ending in .go, as comments and documents cite files.
var goFileRef = regexp.MustCompile(`[A-Za-z][A-Za-z0-9_./-]*\.go\b`)

// elsewhere are the Go files of other repositories that comments here cite, each
// with the repository or module its line must name, so that a reader can find it.
var elsewhere = map[string]string{
	"clientcredentials.go":                         "golang.org/x/oauth2",
	"controllers/vaultdynamicsecret_controller.go": "vault-secrets-operator",
}

// skipped are folders that hold no source of this repository.
var skipped = map[string]bool{".git": true, ".cache": true, "node_modules": true, "bin": true, "bin-race": true, "dist": true, "testdata": true}

// TestNamedGoFilesExist fails when a comment in a Go file, or a Markdown document,
// names a Go file that does not exist. In Go source a name is looked up beside the
// file and then in each folder above it, up to the repository's root (a comment in
// backend/credtype may say lifecycle/upstream.go); in a document, a path is looked
// up the same way and a bare name may be any file of the repository (the text around
// it says which package).
func TestNamedGoFilesExist(t *testing.T) {
	root := repoRoot(t)
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var sources, docs []string
	files := map[string]bool{} // every path suffix of every Go file

	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (skipped[d.Name()] || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go":
			if filepath.Dir(path) == self {
				return nil // this test's own examples
			}
			sources = append(sources, path)
			r, _ := filepath.Rel(root, path)
			r = filepath.ToSlash(r)
			for { // every path suffix: backend/credtype/types.go, credtype/types.go, types.go
				files[r] = true
				i := strings.IndexByte(r, '/')
				if i < 0 {
					break
				}
				r = r[i+1:]
			}
		case ".md":
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) < 50 || len(docs) < 3 {
		t.Fatalf("found %d Go files and %d documents under %s: not the repository", len(sources), len(docs), root)
	}
	checked := 0
	for _, path := range append(sources, docs...) {
		isDoc := filepath.Ext(path) == ".md"
		for _, r := range fileRefs(t, path) {
			checked++
			if repo, ok := elsewhere[r.name]; ok {
				if !strings.Contains(r.line, repo) {
					t.Errorf("%s:%d names %s, a file of %s, without naming %s on that line or the one before", rel(root, path), r.n, r.name, repo, repo)
				}
				continue
			}
			if resolves(root, filepath.Dir(path), r.name) || (isDoc && files[r.name]) {
				continue
			}
			t.Errorf("%s:%d names %s, which does not exist", rel(root, path), r.n, r.name)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d references checked: the scan is broken", checked)
	}
}

// TestFileRefsFindsWhatItShould pins the scanner on made-up lines: a missing file
// must be reported, so the test above can fail.
func TestFileRefsFindsWhatItShould(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a.go")
	body := "package a\n// see b.go and sub/c.go, not https://example.com/x/y.go\nvar s = \"_test.go\"\n// golang.org/x/oauth2's clientcredentials.go\n"
	if err := os.WriteFile(src, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range fileRefs(t, src) {
		names = append(names, r.name)
	}
	if got, want := strings.Join(names, " "), "b.go sub/c.go clientcredentials.go"; got != want {
		t.Fatalf("references %q, want %q", got, want)
	}
	if resolves(dir, dir, "b.go") {
		t.Fatal("b.go resolves, yet no such file exists")
	}
	if err := os.WriteFile(filepath.Join(dir, "b.go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !resolves(dir, dir, "b.go") {
		t.Fatal("b.go does not resolve beside a.go")
	}
}

type ref struct {
	name string
	line string // the line citing name, and the one before it
	n    int
}

// fileRefs lists the Go file names path cites: in a Go file, in its comments only.
func fileRefs(t *testing.T, path string) []ref {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	isGo := filepath.Ext(path) == ".go"
	var out []ref
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	prev := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		context := prev + "\n" + line
		prev = line
		text := line
		if isGo {
			i := strings.Index(line, "//")
			if i < 0 {
				continue
			}
			text = line[i+2:]
		}
		for _, loc := range goFileRef.FindAllStringIndex(text, -1) {
			if loc[0] > 0 && strings.ContainsAny(text[loc[0]-1:loc[0]], "/._:") {
				continue // part of a URL, a longer path or an identifier
			}
			out = append(out, ref{name: text[loc[0]:loc[1]], line: context, n: n})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// resolves reports whether name exists relative to dir or any folder above it, up
// to root.
func resolves(root, dir, name string) bool {
	for {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name))); err == nil {
			return true
		}
		if dir == root || len(dir) <= len(root) {
			return false
		}
		dir = filepath.Dir(dir)
	}
}

// repoRoot is the folder above this one holding VERSION and go.mod: the plugin's root.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, e1 := os.Stat(filepath.Join(dir, "VERSION"))
		_, e2 := os.Stat(filepath.Join(dir, "go.mod"))
		if e1 == nil && e2 == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no folder above holds VERSION and go.mod")
		}
		dir = parent
	}
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}

// TestFileMapListsEverySource fails when docs/ARCHITECTURE.md's file map misses a
// source file of the plugin (backend/ and cmd/, tests aside) or lists one that is
// gone: a newcomer reads the map to find what owns what.
func TestFileMapListsEverySource(t *testing.T) {
	root := repoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := mapSection(string(doc))
	if section == "" {
		t.Fatal(`docs/ARCHITECTURE.md has no "## File map" section`)
	}
	listed := map[string]bool{}
	for _, name := range goFileRef.FindAllString(section, -1) {
		listed[name] = true
	}
	var sources []string
	for _, dir := range []string{"backend", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && skipped[d.Name()] {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				r, _ := filepath.Rel(root, path)
				sources = append(sources, filepath.ToSlash(r))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sources {
		if !listed[s] {
			t.Errorf("the file map does not list %s", s)
		}
		delete(listed, s)
	}
	for name := range listed {
		t.Errorf("the file map lists %s, which is not a source file of backend/ or cmd/", name)
	}
}

// mapSection is the text of the "## File map" section of an architecture document, up
// to its next heading (the test map that follows is checked by TestNamedGoFilesExist).
func mapSection(doc string) string {
	_, after, ok := strings.Cut(doc, "\n## File map\n")
	if !ok {
		return ""
	}
	if i := strings.Index(after, "\n#"); i >= 0 {
		after = after[:i]
	}
	return after
}
