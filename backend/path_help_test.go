package backend

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Every path's help ends with an example command, rendered by examples, and vault
// path-help shows it.
func TestEveryPathHelpShowsAnExample(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, p := range b.Paths {
		if !strings.Contains(p.HelpDescription, "\n\nExample") || !strings.Contains(p.HelpDescription, "\n    $ ") {
			t.Errorf("path %s: help shows no example:\n%s", p.Pattern, p.HelpDescription)
		}
	}
	resp := mustOK(t, b, s, logical.HelpOperation, "access/x", nil)
	if help, _ := resp.Data["help"].(string); !strings.Contains(help, "$ vault read integrations/access/") {
		t.Fatalf("path-help of access/ shows no example:\n%s", help)
	}
}

// An update that omits a required field says why it is required again and points to
// vault patch; a create that omits one says only the rule, and nothing is stored.
func TestUpdateMissingRequiredFieldHintsAtPatch(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/db", basicCredential())
	before := credStorageSnapshot(t, s)
	credWant400(t, b, s, logical.UpdateOperation, "credentials/db", map[string]any{"password": "n3w-secret"},
		"username", "is required", "send username again", "vault patch integrations/credentials/db password=… to change only password")
	if after := credStorageSnapshot(t, s); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused update changed storage")
	}
	resp := credWantStatus(t, b, s, logical.CreateOperation, "credentials/fresh", map[string]any{"type": "basic", "password": "x-secret"}, 400)
	if msg := resp.Error().Error(); !strings.Contains(msg, `"username"`) || strings.Contains(msg, "vault patch") {
		t.Fatalf("create without username: %q", msg)
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/db", map[string]any{"password": "n3w-secret"})
}

// An update that changes tags only is told that username is missing and why, and how
// to change only tags: never to patch username, which it did not mean to change.
func TestUpdateOfTagsOnlyNamesTheMissingFieldAndPatchOfTags(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ticketing", basicCredential())
	resp := credWantStatus(t, b, s, logical.UpdateOperation, "credentials/ticketing", map[string]any{"tags": "prod"}, 400)
	want := `an update (vault write) replaces every non-secret field: send username again, or use vault patch integrations/credentials/ticketing tags=… to change only tags`
	if msg := resp.Error().Error(); !strings.Contains(msg, `"username"`) || !strings.Contains(msg, want) || strings.Contains(msg, "username=") {
		t.Fatalf("update of tags only: %q, want %q", msg, want)
	}
	// cas is a parameter of the write, not a field to change: the hint leaves it out.
	resp = credWantStatus(t, b, s, logical.UpdateOperation, "credentials/ticketing", map[string]any{"tags": "prod", "cas": 1}, 400)
	if msg := resp.Error().Error(); !strings.Contains(msg, want) || strings.Contains(msg, "cas") {
		t.Fatalf("update of tags only with cas: %q, want %q", msg, want)
	}
}

// An unknown field one edit away from exactly one field of the type is told its
// name; one that is not is told only that it is not a field.
func TestUnknownFieldSuggestsTheNearField(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	credWant400(t, b, s, logical.CreateOperation, "credentials/db",
		map[string]any{"type": "basic", "username": "svc", "passwrod": "s3cret-value"},
		"passwrod", "did you mean password?")
	// A field of another type, one edit away from a field of this one.
	credWant400(t, b, s, logical.CreateOperation, "credentials/db",
		map[string]any{"type": "basic", "username": "svc", "password": "s3cret-value", "token": "x"},
		"token", "is not a field of type basic")
	credWant400(t, b, s, logical.CreateOperation, "credentials/db",
		map[string]any{"type": "bearer", "tokne": "s3cret-value"},
		"tokne", "did you mean token?")
	resp := credWantStatus(t, b, s, logical.CreateOperation, "credentials/db",
		map[string]any{"type": "basic", "username": "svc", "password": "s3cret-value", "hostname": "x"}, 400)
	if msg := resp.Error().Error(); !strings.Contains(msg, `"hostname"`) || strings.Contains(msg, "did you mean") {
		t.Fatalf("hostname on basic: %q", msg)
	}
}
