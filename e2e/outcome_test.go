//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

// outcome summarises an API answer for a failure message without its values: the
// status and error, and the names of the fields. A test that fails on an access/
// answer prints this, never the answer, so a failing run does not print secrets.
func outcome(sec *api.Secret, err error) string {
	var parts []string
	if err != nil {
		if code := statusCode(err); code != 0 {
			parts = append(parts, fmt.Sprintf("status %d", code))
		}
		parts = append(parts, "error: "+err.Error())
	}
	if sec == nil {
		parts = append(parts, "no answer")
	} else {
		names := make([]string, 0, len(sec.Data))
		for k := range sec.Data {
			names = append(names, k)
		}
		slices.Sort(names)
		parts = append(parts, fmt.Sprintf("fields %v", names))
	}
	return strings.Join(parts, "; ")
}

// fieldNames is outcome for an answer already decoded into its data.
func fieldNames(data map[string]any) string {
	return outcome(&api.Secret{Data: data}, nil)
}

// TestOutcomeShowsNoValues: outcome names an answer's fields and its error, none of
// its values (no server needed).
func TestOutcomeShowsNoValues(t *testing.T) {
	const secret = "s3cret-value"
	if got := outcome(&api.Secret{Data: map[string]any{"password": secret, "username": "u"}}, nil); got != "fields [password username]" {
		t.Errorf("outcome of an answer: %q, want the field names only", got)
	}
	if got := outcome(nil, fmt.Errorf("refused")); got != "error: refused; no answer" {
		t.Errorf("outcome of an error: %q", got)
	}
}
