//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/api"
)

// TestReloadHandsOffUsage: with more credentials read since the last flush than Clean
// flushes itself, a plugin reload hands their usage off in usage-handoff/ entries and
// the reloaded mount counts every read, on a single Raft node.
func TestReloadHandsOffUsage(t *testing.T) {
	const n = 40
	v := newVault(t, serverOptions{raftNode: "solo"})
	mount := v.mount(t)
	v.mustCLI(t, "write", mount+"/config", "usage_flush_interval=3600")
	c := noRetryClient(t, v)
	for i := range n {
		v.mustCLI(t, "write", fmt.Sprintf("%s/credentials/h%02d", mount, i), "type=basic", "username=u", "password=handoff-secret")
	}
	for i := range n {
		if sec, err := c.Logical().Read(fmt.Sprintf("%s/access/h%02d", mount, i)); err != nil || sec == nil {
			t.Fatalf("access/h%02d: %s", i, outcome(sec, err))
		}
	}
	if _, err := v.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{mount + "/"}}); err != nil {
		t.Fatal(err)
	}
	// Clean wrote no usage/<name>: the reads are in the handoff.
	if got := v.storedCount(t, mount, "h00"); got != 0 {
		t.Errorf("usage/h00 holds %d after the reload: flushed one by one, not handed off", got)
	}
	sec, err := v.client.Logical().List("sys/raw/logical/" + v.mountUUID(t, mount) + "/usage-handoff/")
	if err != nil || sec == nil || len(sec.Data["keys"].([]any)) == 0 {
		t.Fatalf("no usage-handoff/ entry after the reload: %s", outcome(sec, err))
	}
	for i := range n {
		name := fmt.Sprintf("h%02d", i)
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
