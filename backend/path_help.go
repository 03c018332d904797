package backend

import "strings"

// examples renders the example commands that end a path's help (vault path-help
// integrations/<path>), so every path shows its examples the same way. The commands
// assume the engine is mounted at integrations/.
func examples(commands ...string) string {
	var b strings.Builder
	b.WriteString("\n\nExample")
	if len(commands) > 1 {
		b.WriteString("s")
	}
	b.WriteString(" (mounted at integrations/):\n")
	for _, c := range commands {
		b.WriteString("\n    $ ")
		b.WriteString(c)
	}
	return b.String()
}
