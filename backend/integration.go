// The integration label: who an access/ read (and a logs filter) names as the caller,
// its rule, and the label taken from the caller's Vault identity when none is given.

package backend

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/logical"
)

// maxIntegration bounds the integration label of access/ and of the logs filter: it is
// stored in every usage event, so an unbounded one would fill the log.
const maxIntegration = 128

// integrationRule is the rule of the integration label, quoted in its refusals.
const integrationRule = "at most 128 printable characters (letters, digits, punctuation, symbols and spaces; no control or format characters)"

// validIntegration reports whether s follows integrationRule.
func validIntegration(s string) bool {
	if len(s) > utf8.UTFMax*maxIntegration || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxIntegration {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// integrationLabel is who a request is logged as: the explicit label, refused unless it
// follows integrationRule, else the caller's Vault identity (requestIntegration).
func integrationLabel(req *logical.Request, explicit string) (string, error) {
	if explicit != "" {
		if !validIntegration(explicit) {
			return "", fieldErr("integration", "must be "+integrationRule)
		}
		return explicit, nil
	}
	return requestIntegration(req), nil
}

// clampIntegration makes s follow integrationRule: unprintable runes (and invalid
// UTF-8) become '?', and only the first maxIntegration characters are kept.
func clampIntegration(s string) string {
	if validIntegration(s) {
		return s
	}
	var out strings.Builder
	n := 0
	for _, r := range s {
		if n == maxIntegration {
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		out.WriteRune(r)
		n++
	}
	return out.String()
}

// requestIntegration names who is calling, for the usage log: the caller's Vault
// display name, else its entity, made to follow integrationRule. Vault sets the display
// name from a role or token name, which the caller may have chosen.
func requestIntegration(req *logical.Request) string {
	who := req.DisplayName
	if who == "" {
		who = req.EntityID
	}
	return clampIntegration(who)
}
