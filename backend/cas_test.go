package backend

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// casMismatch is KV v2's wording of a refused check-and-set.
const casMismatch = "check-and-set parameter did not match the current version"

// wantCASRefused fails unless resp is a 400 naming cas in KV v2's words.
func wantCASRefused(t *testing.T, resp *logical.Response, err error, what string) {
	t.Helper()
	if err != nil || resp == nil || !resp.IsError() {
		t.Fatalf("%s: applied (%v, %v), want a 400", what, resp, err)
	}
	if msg := resp.Error().Error(); !strings.HasPrefix(msg, `field "cas": `) || !strings.Contains(msg, casMismatch) {
		t.Fatalf("%s: %q, want the cas field and %q", what, msg, casMismatch)
	}
}

func credVersion(t *testing.T, b logical.Backend, s logical.Storage, name string) any {
	t.Helper()
	return mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data["version"]
}

// TestCheckAndSet: cas on credentials/<name> as KV v2 has it. Reads show version (1
// at create, one more per update or patch); cas=0 creates only; cas=N applies only at
// version N; a refusal is a 400 naming cas that changes nothing; no cas, no check.
func TestCheckAndSet(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	basic := func(desc string, cas any) map[string]any {
		d := map[string]any{"type": "basic", "username": "svc", "password": "pw-1", "description": desc}
		if cas != nil {
			d["cas"] = cas
		}
		return d
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/db", basic("first", 0))
	if v := credVersion(t, b, s, "db"); v != 1 {
		t.Fatalf("version after create = %v, want 1", v)
	}
	resp, err := request(b, s, logical.UpdateOperation, "credentials/db", basic("overwrite", 0))
	wantCASRefused(t, resp, err, "cas=0 on an existing name")
	if d := mustOK(t, b, s, logical.ReadOperation, "credentials/db", nil).Data; d["description"] != "first" || d["version"] != 1 {
		t.Fatalf("a refused cas changed the credential: %v", d)
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/db", basic("second", "1")) // the CLI sends a string
	if v := credVersion(t, b, s, "db"); v != 2 {
		t.Fatalf("version after an update = %v, want 2", v)
	}
	resp, err = request(b, s, logical.UpdateOperation, "credentials/db", basic("stale", 1))
	wantCASRefused(t, resp, err, "a stale cas")
	resp, err = request(b, s, logical.PatchOperation, "credentials/db", map[string]any{"tags": "x", "cas": 1})
	wantCASRefused(t, resp, err, "a patch with a stale cas")
	mustOK(t, b, s, logical.PatchOperation, "credentials/db", map[string]any{"tags": "x", "cas": 2})
	mustOK(t, b, s, logical.PatchOperation, "credentials/db", map[string]any{"tags": "y"}) // no cas: no check
	if v := credVersion(t, b, s, "db"); v != 4 {
		t.Fatalf("version after two patches = %v, want 4", v)
	}
	resp, err = request(b, s, logical.CreateOperation, "credentials/other", basic("new", 3))
	wantCASRefused(t, resp, err, "cas=3 on a name that does not exist")
	if got, _ := request(b, s, logical.ReadOperation, "credentials/other", nil); got != nil {
		t.Fatalf("a refused create stored the credential: %v", got.Data)
	}
	for _, bad := range []any{-1, "two"} {
		resp, err := request(b, s, logical.UpdateOperation, "credentials/db", basic("bad", bad))
		if err != nil || resp == nil || !resp.IsError() || !strings.HasPrefix(resp.Error().Error(), `field "cas": `) {
			t.Fatalf("cas=%v: %v, %v; want a 400 naming cas", bad, resp, err)
		}
	}
	if v := credVersion(t, b, s, "db"); v != 4 {
		t.Fatalf("refused writes moved the version to %v", v)
	}
}

// TestCheckAndSetParallelWriters: writers racing with the same cas (creates with
// cas=0, then updates with cas=1) are checked under the name's lock: exactly one of
// each round applies, and the stored credential is the winner's.
func TestCheckAndSetParallelWriters(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	const writers = 16
	race := func(op logical.Operation, cas int) (wins []string) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				desc := fmt.Sprintf("writer %d", i)
				resp, err := request(b, s, op, "credentials/race", map[string]any{
					"type": "basic", "username": "svc", "password": "pw", "description": desc, "cas": cas,
				})
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				if resp.IsError() {
					if !strings.Contains(resp.Error().Error(), casMismatch) {
						t.Errorf("writer %d refused for another reason: %v", i, resp.Error())
					}
					return
				}
				mu.Lock()
				wins = append(wins, desc)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return wins
	}
	for round, r := range []struct {
		op  logical.Operation
		cas int
	}{{logical.CreateOperation, 0}, {logical.UpdateOperation, 1}} {
		wins := race(r.op, r.cas)
		if len(wins) != 1 {
			t.Fatalf("round %d (cas=%d): %d writers applied %v, want exactly one", round, r.cas, len(wins), wins)
		}
		d := mustOK(t, b, s, logical.ReadOperation, "credentials/race", nil).Data
		if d["description"] != wins[0] || d["version"] != r.cas+1 {
			t.Fatalf("round %d: stored %v at version %v, want %q at %d", round, d["description"], d["version"], wins[0], r.cas+1)
		}
	}
}

// TestVersionOfEntryWithoutOne: an entry stored before versions were kept (no version
// key) reads as version 1, takes cas=1, and its next write makes it 2.
func TestVersionOfEntryWithoutOne(t *testing.T) {
	t.Parallel()
	b1, s, _ := newTestBackend(t)
	mustOK(t, b1, s, logical.CreateOperation, "credentials/old", map[string]any{"type": "basic", "username": "svc", "password": "pw"})
	entry, err := s.Get(t.Context(), "credentials/old")
	if err != nil || entry == nil {
		t.Fatalf("stored entry: %v, %v", entry, err)
	}
	var m map[string]any
	if err := json.Unmarshal(entry.Value, &m); err != nil {
		t.Fatal(err)
	}
	if m["version"] == nil {
		t.Fatalf("a new entry is stored without a version: %s", entry.Value)
	}
	delete(m, "version")
	delete(m, "record_version") // as stored before record versions too
	legacy, _ := json.Marshal(m)
	if err := s.Put(t.Context(), &logical.StorageEntry{Key: "credentials/old", Value: legacy, SealWrap: true}); err != nil {
		t.Fatal(err)
	}
	b2, _, _ := newBackendWith(t, backendOptions{storage: s, initialize: true})
	if v := credVersion(t, b2, s, "old"); v != 1 {
		t.Fatalf("an entry without a version reads as %v, want 1", v)
	}
	mustOK(t, b2, s, logical.PatchOperation, "credentials/old", map[string]any{"description": "d", "cas": 1})
	if v := credVersion(t, b2, s, "old"); v != 2 {
		t.Fatalf("after a cas=1 patch: version %v, want 2", v)
	}
}
