package backend

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestNamesStorageCannotHold: a name with ".." cannot exist (the name rule refuses it
// and Vault's storage refuses such keys), so every path that names a credential
// answers as for a missing one, or refuses the name, and never reaches storage with it
// (on a real server that was a 500 on logs, authorize, suspend, unsuspend and
// reset-inactivity).
func TestNamesStorageCannotHold(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, name := range []string{"a..b", "x...y", "_.._"} {
		for _, tc := range []struct {
			op   logical.Operation
			path string
			data map[string]any
			want int
		}{
			{logical.ReadOperation, "credentials/" + name, nil, http.StatusNotFound},
			{logical.ReadOperation, "access/" + name, nil, http.StatusNotFound},
			{logical.UpdateOperation, "credentials/" + name + "/suspend", nil, http.StatusNotFound},
			{logical.UpdateOperation, "credentials/" + name + "/unsuspend", nil, http.StatusNotFound},
			{logical.UpdateOperation, "credentials/" + name + "/reset-inactivity", nil, http.StatusNotFound},
			{logical.UpdateOperation, "credentials/" + name + "/authorize", nil, http.StatusNotFound},
			{logical.ReadOperation, "credentials/" + name + "/logs", nil, 0},
		} {
			resp, code := credReq(t, b, s, tc.op, tc.path, tc.data) // fails on a 500
			if tc.want != 0 && code != tc.want {
				t.Errorf("%s %s: status %d, want %d (%v)", tc.op, tc.path, code, tc.want, resp)
			}
			if code < 400 && code != 0 {
				t.Errorf("%s %s: status %d, want a refusal", tc.op, tc.path, code)
			}
		}
		// Deleting one is refused with the name rule, as creating one is.
		credWant400(t, b, s, logical.DeleteOperation, "credentials/"+name, nil, "name", "without '..'")
		credWant400(t, b, s, logical.CreateOperation, "credentials/"+name, map[string]any{"type": "slack", "token": "xoxb-1"}, "name", "without '..'")
	}
}

// TestAuthorizationInputBounded: the code and state of a completion by hand and of the
// unauthenticated callback are bounded and must have their form before anything is
// looked up with them.
func TestAuthorizationInputBounded(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	state := loc.Query().Get("state")

	credWant400(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{"code": strings.Repeat("c", 4097)}, "code", "4096")
	credWant400(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{"code": "abc\ndef"}, "code", "printable")
	credWant400(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{"code": "abc", "state": "../" + state[3:]}, "state", "43 base64url")

	for name, q := range map[string]url.Values{
		"dotted state":  {"state": {"a..b/" + state[5:]}, "code": {"x"}},
		"long state":    {"state": {state + state}, "code": {"x"}},
		"long code":     {"state": {state}, "code": {strings.Repeat("c", 5000)}},
		"control chars": {"state": {state}, "code": {"a\x00b"}},
	} {
		if status, page := callback(t, b, s, q); status != http.StatusBadRequest || !strings.Contains(page, "not recognised") {
			t.Errorf("%s: %d %s", name, status, page)
		}
	}
	if p.requests.Load() != 0 {
		t.Fatal("a malformed code or state reached the token endpoint")
	}
	// None of that spent the genuine authorization.
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK {
		t.Fatalf("the genuine redirect afterwards: %d %s", status, page)
	}
}

// TestMountLearntFromAnyRequest: notifications and callback URLs name the mount the
// engine is at, learnt from whatever request reaches it first, not only OAuth ones.
func TestMountLearntFromAnyRequest(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	if got := b.mountPath(); got != "integrations/" {
		t.Fatalf("before any request: %q", got)
	}
	if _, err := b.HandleRequest(t.Context(), &logical.Request{
		Operation: logical.ReadOperation, Path: "config", Storage: s, MountPoint: "secops/creds/",
	}); err != nil {
		t.Fatal(err)
	}
	if got := b.mountPath(); got != "secops/creds/" {
		t.Fatalf("after a config read at secops/creds/: %q", got)
	}
}
