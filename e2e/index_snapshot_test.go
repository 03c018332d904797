//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// snapshotChunk is the engine's chunk of a credential name (backend/index_snapshot.go:
// FNV-32a mod 2048).
func snapshotChunk(name string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprint(h.Sum32() % 2048)
}

// TestIndexSnapshotReload: a plugin reload unloads the mount cleanly (Clean writes the
// index snapshot and its marker) and the new plugin loads the index from it, deleting
// the marker first; a credential changed behind the engine's back (as a release that
// knows nothing of the snapshot would) is repaired by the verifying scan, and its chunk
// is written again by the next Clean; after SIGKILL there is no marker and the restart
// scans.
func TestIndexSnapshotReload(t *testing.T) {
	t.Parallel()
	v := newVault(t, serverOptions{persistent: true})
	m := v.mount(t)
	c := noRetryClient(t, v)
	const n = 120
	for i := range n {
		tag := "even"
		if i%2 == 1 {
			tag = "odd"
		}
		if _, err := c.Logical().Write(fmt.Sprintf("%s/credentials/snap-%03d", m, i),
			map[string]any{"type": "basic", "username": "u", "password": "snapshot-secret", "tags": tag}); err != nil {
			t.Fatal(err)
		}
	}
	reload := func() {
		t.Helper()
		if _, err := v.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{m + "/"}}); err != nil {
			t.Fatal(err)
		}
	}
	// listTag pages through the credentials carrying tag (waiting out "incomplete").
	listTag := func(tag string) []string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			sec, err := c.Logical().ReadWithData(m+"/credentials", map[string][]string{"list": {"true"}, "tag": {tag}, "limit": {"1000"}})
			if err == nil {
				var names []string
				if sec != nil && sec.Data["keys"] != nil {
					for _, k := range sec.Data["keys"].([]any) {
						names = append(names, fmt.Sprint(k))
					}
				}
				return names
			}
			if time.Now().After(deadline) {
				t.Fatalf("list tag=%s: %v", tag, err)
			}
			time.Sleep(50 * time.Millisecond) // the mount is being reloaded
		}
	}
	loadedLines := func() int {
		b, err := os.ReadFile(v.logPath)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "the index is loaded from the index snapshot")
	}
	// waitLog waits for the count'th line of the load or of the verifying scan's end.
	waitLog := func(line string, count int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			b, _ := os.ReadFile(v.logPath)
			if strings.Count(string(b), line) >= count {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q (%d) in the server log:\n%s", line, count, v.logTail())
			}
			time.Sleep(50 * time.Millisecond) // the server writes its log
		}
	}
	const verified = "the verifying scan after the index snapshot's load ended"

	// The first start of the mount scanned (nothing to load); the reload loads.
	if loadedLines() != 0 {
		t.Fatal("a new mount loaded a snapshot")
	}
	start := time.Now()
	reload()
	waitLog("the index is loaded from the index snapshot", 1)
	t.Logf("reload → index loaded: %s", time.Since(start).Round(time.Millisecond))
	if keys := v.rawKeys(t, m, "index/"); slices.Contains(keys, "clean") {
		t.Fatalf("the marker is still stored after the load: %v", keys)
	}
	if chunks := v.rawKeys(t, m, "index/chunks/"); len(chunks) == 0 {
		t.Fatal("no chunks stored")
	}
	if got := listTag("odd"); len(got) != n/2 {
		t.Fatalf("tag odd after the load: %d names", len(got))
	}
	waitLog(verified, 1)

	// Behind the engine's back: snap-007 (odd) retagged in storage.
	uuid := v.mountUUID(t, m)
	sec, err := v.client.Logical().Read("sys/raw/logical/" + uuid + "/credentials/snap-007")
	if err != nil || sec == nil {
		t.Fatalf("sys/raw read: %v", err)
	}
	var cred map[string]any
	if err := json.Unmarshal([]byte(sec.Data["value"].(string)), &cred); err != nil {
		t.Fatal(err)
	}
	cred["tags"] = []string{"moved"}
	raw, _ := json.Marshal(cred)
	if _, err := v.client.Logical().Write("sys/raw/logical/"+uuid+"/credentials/snap-007", map[string]any{"value": string(raw)}); err != nil {
		t.Fatal(err)
	}
	reload()
	waitLog("the index is loaded from the index snapshot", 2)
	waitLog(verified, 2) // the verifying scan has filed what storage holds
	if got := listTag("moved"); !slices.Equal(got, []string{"snap-007"}) {
		t.Fatalf("tag moved after the verifying scan: %v", got)
	}
	if got := listTag("odd"); slices.Contains(got, "snap-007") {
		t.Fatal("snap-007 still listed under its old tag after the verifying scan")
	}
	// The repaired chunk is stored again (by the job or at the next Clean).
	reload()
	waitLog("the index is loaded from the index snapshot", 3)
	sec, err = v.client.Logical().Read("sys/raw/logical/" + uuid + "/index/chunks/" + snapshotChunk("snap-007"))
	if err != nil || sec == nil || !strings.Contains(sec.Data["value"].(string), `"moved"`) {
		t.Fatalf("the chunk of snap-007 after the repair: %v %v", sec, err)
	}

	// SIGKILL: no Clean, so no marker; the restart scans, and the index is right.
	waitLog(verified, 3)
	v.crash(t)
	if got := listTag("moved"); !slices.Equal(got, []string{"snap-007"}) {
		t.Fatalf("tag moved after the crash: %v", got)
	}
	if loadedLines() != 3 {
		t.Fatalf("a start after SIGKILL loaded the snapshot (%d loads logged)", loadedLines())
	}
}
