package backend

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// shellWords splits a command line as a POSIX shell would for the simple commands the
// examples are: words, '…' and "…" quoting (\ escapes in "…"), a # comment at the start
// of a word. It refuses what the shell would read as something else — a redirection
// (<, >), a pipe, a list or a subshell (|, &, ;, (, )), a command substitution — outside
// quotes: a <placeholder> must be quoted to be shell-safe.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated '")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				if line[i] == '`' {
					return nil, fmt.Errorf("command substitution")
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, fmt.Errorf(`unterminated "`)
			}
			inWord = true
		case strings.IndexByte("<>|&;()`\\", c) >= 0:
			return nil, fmt.Errorf("%q outside quotes", c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// vaultArgsError applies the vault CLI's argument rules to the words after "vault":
// flags come before the path (after it they are data, or too many arguments); list
// and path-help take exactly the path; read, write, patch and delete take key=value
// data after it (or "-" or "@file": a JSON object read from stdin or the file); write (and patch) without data need -f (-force), else "Must supply
// data or use -force".
func vaultArgsError(words []string) error {
	if len(words) == 0 {
		return fmt.Errorf("no subcommand")
	}
	cmd, rest := words[0], words[1:]
	force := false
	for len(rest) > 0 && strings.HasPrefix(rest[0], "-") && rest[0] != "-" {
		if rest[0] == "-f" || rest[0] == "-force" || rest[0] == "-force=true" {
			force = true
		}
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return fmt.Errorf("Not enough arguments (no path)")
	}
	path, data := rest[0], rest[1:]
	if !strings.HasPrefix(path, "integrations/") {
		return fmt.Errorf("path %q is not under the mount integrations/", path)
	}
	for _, d := range data {
		if strings.HasPrefix(d, "-") {
			return fmt.Errorf("flag %q after the path is taken as data", d)
		}
		// "-" (stdin) and "@file" are JSON objects of data (go-secure-stdlib/kv-builder).
		if d != "-" && !strings.HasPrefix(d, "@") && !strings.Contains(d, "=") {
			return fmt.Errorf("Failed to parse K=V data: %q", d)
		}
	}
	switch cmd {
	case "list", "path-help":
		if len(data) > 0 {
			return fmt.Errorf("Too many arguments (expected 1, got %d)", 1+len(data))
		}
	case "read", "delete":
	case "write", "patch":
		if len(data) == 0 && !force {
			return fmt.Errorf("Must supply data or use -force")
		}
	default:
		return fmt.Errorf("unknown subcommand %q", cmd)
	}
	return nil
}

// helpExamples is every example command of the paths' help.
func helpExamples(t *testing.T, b *integrationsBackend) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range b.Paths {
		for _, line := range strings.Split(p.HelpDescription, "\n") {
			if cmd, ok := strings.CutPrefix(line, "    $ "); ok {
				out[p.Pattern] = append(out[p.Pattern], cmd)
			}
		}
	}
	return out
}

// Every path-help example is a command the shell and the vault CLI accept as written:
// `vault list integrations/credentials type=basic …` ("Too many arguments") and an
// authorize without data or -f ("Must supply data or use -force") are refused here.
func TestPathHelpExamplesAreAcceptedByTheCLI(t *testing.T) {
	t.Parallel()
	b, _, _ := newTestBackend(t)
	n := 0
	for pattern, cmds := range helpExamples(t, b) {
		for _, cmd := range cmds {
			n++
			words, err := shellWords(cmd)
			if err != nil {
				t.Errorf("path %s: example %q is not shell-safe: %v", pattern, cmd, err)
				continue
			}
			switch words[0] {
			case "vault":
				if err := vaultArgsError(words[1:]); err != nil {
					t.Errorf("path %s: example %q: the vault CLI refuses it: %v", pattern, cmd, err)
				}
			case "curl":
			default:
				t.Errorf("path %s: example %q runs neither vault nor curl", pattern, cmd)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d examples found", n)
	}
}

// The rules themselves refuse what the CLI refuses.
func TestCLIArgumentRules(t *testing.T) {
	t.Parallel()
	for cmd, bad := range map[string]bool{
		"vault list integrations/credentials type=basic status=suspended limit=50": true,
		"vault read integrations/credentials list=true type=basic limit=50":        false,
		"vault write integrations/credentials/crm/authorize":                       true,
		"vault write -f integrations/credentials/crm/authorize":                    false,
		"vault read integrations/access/x -format=json":                            true,
		"vault list -detailed integrations/types":                                  false,
		"vault write integrations/credentials/crm/authorize code=<code>":           true,
		"vault write integrations/credentials/crm/authorize 'code=<code>'":         false,
		`curl "$VAULT_ADDR/v1/x?a=<b>&c=d"  # a comment (with parentheses)`:        false,
		"curl x (the browser does this)":                                           true,
	} {
		words, err := shellWords(cmd)
		if err == nil && words[0] == "vault" {
			err = vaultArgsError(words[1:])
		}
		if (err != nil) != bad {
			t.Errorf("%q: %v, want refused %v", cmd, err, bad)
		}
	}
}

// Every vault command of the README's shell blocks on the engine's paths (read, write,
// patch, delete, list, path-help) passes the same rules: none fails as printed for its
// arguments (an authorize without -f, a vault list with filters).
func TestREADMEVaultCommandsAreAcceptedByTheCLI(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inShell, n := false, 0
	var cmd strings.Builder
	for i, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "```") {
			inShell = line == "```sh" || line == "```shell" || line == "```bash"
			continue
		}
		if !inShell {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cmd.WriteString(more)
			continue
		}
		cmd.WriteString(line)
		full := strings.TrimSpace(cmd.String())
		cmd.Reset()
		words, err := shellWords(full)
		if err != nil || len(words) < 3 || words[0] != "vault" {
			continue // not a vault command (shell safety of the rest is not this test's)
		}
		switch words[1] {
		case "read", "write", "patch", "delete", "list", "path-help":
		default:
			continue
		}
		n++
		if err := vaultArgsError(words[1:]); err != nil {
			t.Errorf("README.md:%d: %q: the vault CLI refuses it: %v", i+1, full, err)
		}
	}
	if n < 30 {
		t.Fatalf("only %d vault commands found in the README", n)
	}
}
