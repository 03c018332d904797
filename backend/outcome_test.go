package backend

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// outcome summarises a response for a failure message without its values: the
// status, the error, and the names of the fields. A test that fails on an access/
// answer prints this, never the answer, so a failing run does not print secrets.
func outcome(resp *logical.Response, err error) string {
	var parts []string
	if err != nil {
		var coded logical.HTTPCodedError
		if errors.As(err, &coded) {
			parts = append(parts, fmt.Sprintf("status %d", coded.Code()))
		}
		parts = append(parts, "error: "+err.Error())
	}
	switch {
	case resp == nil:
		parts = append(parts, "no response")
	case resp.IsError():
		parts = append(parts, "error response: "+resp.Error().Error())
	default:
		if code, ok := resp.Data[logical.HTTPStatusCode]; ok {
			parts = append(parts, fmt.Sprintf("status %v", code))
		}
		parts = append(parts, fmt.Sprintf("fields %v", slices.Sorted(maps.Keys(resp.Data))))
	}
	return strings.Join(parts, "; ")
}

// differingFields names, sorted, the fields whose values differ between got and want
// (or that only one has), for a failure message that shows no value.
func differingFields(got, want map[string]any) []string {
	var out []string
	for k := range got {
		if w, ok := want[k]; !ok || !reflect.DeepEqual(got[k], w) {
			out = append(out, k)
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestOutcomeShowsNoValues: outcome names the fields of an answer, its status and
// error, and none of its values.
func TestOutcomeShowsNoValues(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-value"
	got := outcome(&logical.Response{Data: map[string]any{"password": secret, "username": "svc-" + secret}}, nil)
	if strings.Contains(got, secret) || got != "fields [password username]" {
		t.Errorf("outcome of an answer: %q, want the field names only", got)
	}
	got = outcome(nil, logical.CodedError(502, "the provider refused"))
	if got != "status 502; error: the provider refused; no response" {
		t.Errorf("outcome of a coded error: %q", got)
	}
	got = outcome(logical.ErrorResponse("field \"x\": bad"), nil)
	if got != `error response: field "x": bad` {
		t.Errorf("outcome of an error response: %q", got)
	}
	diff := differingFields(map[string]any{"a": secret, "b": "x", "c": 1}, map[string]any{"a": secret, "b": "y", "d": 2})
	if !slices.Equal(diff, []string{"b", "c", "d"}) {
		t.Errorf("differingFields: %v, want [b c d]", diff)
	}
}
