//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestReloadFlushesUsageWithinBudget: a plugin reload with 40 credentials read since the
// last flush (more than a round of the flush's workers) writes every count to
// usage/<name> within Clean's time budget, on a single Raft node: no usage-handoff/
// entry (an older release, after a downgrade, would not read it), and the reloaded
// mount counts every read.
func TestReloadFlushesUsageWithinBudget(t *testing.T) {
	const n = 40
	v := newVault(t, serverOptions{raftNode: "solo"})
	mount := v.mount(t)
	v.mustCLI(t, "write", mount+"/config", "usage_flush_interval=3600")
	c := noRetryClient(t, v)
	for i := range n {
		v.mustCLI(t, "write", fmt.Sprintf("%s/credentials/h%02d", mount, i), "type=basic", "username=u", "password=reload-secret")
	}
	for i := range n {
		if sec, err := c.Logical().Read(fmt.Sprintf("%s/access/h%02d", mount, i)); err != nil || sec == nil {
			t.Fatalf("access/h%02d: %s", i, outcome(sec, err))
		}
	}
	if got := v.storedCount(t, mount, "h00"); got != 0 {
		t.Fatalf("usage/h00 holds %d before the reload: flushed early (usage_flush_interval is an hour)", got)
	}
	start := time.Now()
	if _, err := v.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{mount + "/"}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("the reload returned after %s", time.Since(start).Round(time.Millisecond))
	sec, err := v.client.Logical().List("sys/raw/logical/" + v.mountUUID(t, mount) + "/usage-handoff/")
	if err != nil {
		t.Fatalf("listing usage-handoff/: %v", err)
	}
	if sec != nil && len(sec.Data["keys"].([]any)) > 0 {
		t.Fatalf("usage-handoff/ entries after a reload of %d credentials' usage: %v", n, sec.Data["keys"])
	}
	for i := range n {
		name := fmt.Sprintf("h%02d", i)
		if got := v.storedCount(t, mount, name); got != 1 {
			t.Errorf("usage/%s holds %d after the reload, want 1 (written by Clean)", name, got)
		}
		sec, err = c.Logical().Read(mount + "/credentials/" + name)
		var got json.Number
		if err == nil && sec != nil {
			got, _ = sec.Data["access_count"].(json.Number)
		}
		if got.String() != "1" {
			t.Errorf("%s: access_count %q after the reload, want 1 (%s)", name, got, outcome(sec, err))
		}
	}
}
