// client_secret_overlap: how long a credential keeps its previous client secret (or
// pasted client key) after a write replaces it, so a new secret the provider has not
// yet accepted everywhere (Microsoft Entra replicates it for minutes) costs no failed
// read. The backend keeps the previous value (backend/secret_overlap.go); the catalog
// owns the field, its rule and which fields make up the client's authentication.

package credtype

import (
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
)

// FieldSecretOverlap is the field every OAuth type takes for the overlap.
const FieldSecretOverlap = "client_secret_overlap"

// Bounds of client_secret_overlap: unset is DefaultSecretOverlap, 0 is off.
const (
	DefaultSecretOverlap = time.Hour
	MaxSecretOverlap     = 7 * 24 * time.Hour
)

const ruleSecretOverlap = `a duration in seconds, or such as "1h" or "30m", from 0 (off) to 7 days; unset: 1 hour` //nolint:gosec // G101: a rule, not a credential

// overlapNames are the OAuth fields of this file, added to every OAuth type beside
// oauthNames (addOAuthFields).
var overlapNames = defineOverlap()

func defineOverlap() []string {
	define(Field{Name: FieldSecretOverlap, Type: FieldString, check: checkSecretOverlap, maxLen: maxShort,
		Rule: ruleSecretOverlap,
		Description: "After client_secret (or a pasted client_key) changes without a repoint or a client_id change, the previous one is kept this long (never shown) and tried once when the new one is refused with invalid_client; " +
			"health is then yellow with the alert new_client_secret_refused. The first token the new one obtains, or the end of the overlap, forgets the previous one."})
	return []string{FieldSecretOverlap}
}

// checkSecretOverlap parses the overlap as Vault parses durations and stores it in
// Go's form ("1h0m0s", "0s"), which SecretOverlap reads back.
func checkSecretOverlap(s string) (string, error) {
	d, err := parseutil.ParseDurationSecond(s)
	if err != nil || d < 0 || d > MaxSecretOverlap {
		return "", ruleError(ruleSecretOverlap)
	}
	return d.String(), nil
}

// SecretOverlap is the client_secret_overlap of v (a credential's values): the
// default when unset, 0 when off.
func SecretOverlap(v *Values) time.Duration {
	s := v.Str(FieldSecretOverlap)
	if s == "" {
		return DefaultSecretOverlap
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return DefaultSecretOverlap // not written by checkSecretOverlap: cannot happen
	}
	return min(d, MaxSecretOverlap)
}

// RotatedClientAuth are the fields whose change starts an overlap (the client secret
// and a pasted client key), and ClientAuthMaterial those kept with them, since a new
// key comes with its own key id, certificate and algorithm: the previous client is
// tried with all of them as they were.
var (
	RotatedClientAuth  = []string{"client_secret", "client_key"}
	ClientAuthMaterial = []string{"client_secret", "client_key", "client_key_id", "client_certificate", "client_assertion_algorithm"}
)
