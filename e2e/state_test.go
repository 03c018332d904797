//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// TestPatchedSecretWorksAgain: with the real vault CLI, a client_credentials
// credential whose secret the local OAuth provider does not know is refused
// (invalid_client, 403) and told to patch its client_secret, not to authorize; a
// `vault patch … client_secret=…` makes access/ hand out a token again.
func TestPatchedSecretWorksAgain(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	p := newIDP(t, oauthtest.Options{})
	shared.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret=not-the-secret")
	out, err := shared.cli("read", mount+"/access/cc")
	if err == nil || !strings.Contains(err.Error(), "Code: 403") || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("access with a secret the provider does not know: %v\n%s", err, out)
	}
	fix := "vault patch " + mount + "/credentials/cc client_secret="
	if !strings.Contains(err.Error(), fix) || strings.Contains(err.Error(), "/authorize") {
		t.Fatalf("the refusal does not say %q (or says authorize): %v", fix, err)
	}
	if strings.Contains(err.Error(), oauthtest.ClientSecret) || strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("the refusal shows a secret: %v", err)
	}
	read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/cc")).Data
	if read["status"] != "needs_reauth" || read["status_reason"] != "invalid_client" {
		t.Fatalf("after the refusal: status %v (%v)", read["status"], read["status_reason"])
	}

	shared.mustCLI(t, "patch", mount+"/credentials/cc", "client_secret="+oauthtest.ClientSecret)
	if st := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/cc")).Data["status"]; st != "active" {
		t.Fatalf("after the patch: status %v, want active", st)
	}
	if got := readAccess(t, shared, mount, "cc"); got["access_token"] != p.LastIssued(t).Access {
		t.Fatalf("access after the patch: %v, want the token the provider issued", got["access_token"])
	}
}

// TestCheckAndSetThroughCLI: cas through the real vault CLI, as KV v2 has it. Reads
// show version; cas=0 creates and then refuses to overwrite (the 400 names cas in KV
// v2's words, and the credential keeps its description and tags); cas=<version>
// applies once; of parallel CLI writers sending the same cas, exactly one applies.
func TestCheckAndSetThroughCLI(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	path := mount + "/credentials/ticketing"
	read := func() map[string]any {
		t.Helper()
		return decode(t, shared.mustCLI(t, "read", "-format=json", path)).Data
	}
	shared.mustCLI(t, "write", path, "cas=0", "type=basic", "username=svc", "password=pw-1",
		"description=ITSM account", "tags=prod")
	if v := read()["version"]; fmt.Sprint(v) != "1" {
		t.Fatalf("version after create = %v, want 1", v)
	}
	_, err := shared.cli("write", path, "cas=0", "type=basic", "username=other", "password=pw-2")
	if err == nil || !strings.Contains(err.Error(), "Code: 400") ||
		!strings.Contains(err.Error(), `field "cas": check-and-set parameter did not match the current version`) {
		t.Fatalf("cas=0 over an existing credential: %v", err)
	}
	if d := read(); d["username"] != "svc" || d["description"] != "ITSM account" || fmt.Sprint(d["version"]) != "1" {
		t.Fatalf("a refused cas changed the credential: %v", d)
	}
	shared.mustCLI(t, "patch", path, "cas=1", "description=ITSM service account")
	if _, err := shared.cli("patch", path, "cas=1", "description=stale"); err == nil || !strings.Contains(err.Error(), "Code: 400") {
		t.Fatalf("a stale cas applied: %v", err)
	}
	if d := read(); d["description"] != "ITSM service account" || fmt.Sprint(d["version"]) != "2" {
		t.Fatalf("after one cas=1 patch: %v", d)
	}

	// Parallel writers through the CLI, all with cas=2: one applies.
	const writers = 6
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = shared.cli("patch", path, "cas=2", fmt.Sprintf("description=writer %d", i))
		}()
	}
	wg.Wait()
	var won []int
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, i)
		case !strings.Contains(err.Error(), "check-and-set parameter did not match the current version"):
			t.Errorf("writer %d refused for another reason: %v", i, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d writers with cas=2 applied (%v), want exactly one", len(won), writers, won)
	}
	if d := read(); d["description"] != fmt.Sprintf("writer %d", won[0]) || fmt.Sprint(d["version"]) != "3" {
		t.Fatalf("stored %v at version %v, want writer %d's at 3", d["description"], d["version"], won[0])
	}
}
