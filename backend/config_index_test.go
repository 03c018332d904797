package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestConfigChangeRebuildsIndex: a config write or delete starts the index scan under
// the new config at once (not at the next sweep, up to a minute later), so alerts read
// once it has run carry no "still being built" warning and judge by the new windows.
func TestConfigChangeRebuildsIndex(t *testing.T) {
	t.Parallel()
	b, s, _ := newBackendWith(t, backendOptions{initialize: true})
	lcCreateBasic(t, b, s, "svc", nil)
	lcAccess(t, b, s, "svc")
	alertsWarning := func() string {
		t.Helper()
		return strings.Join(mustOK(t, b, s, logical.ReadOperation, "alerts", nil).Warnings, " ")
	}
	if w := alertsWarning(); w != "" {
		t.Fatalf("alerts once the first scan ran: warning %q", w)
	}
	for _, change := range []struct {
		what string
		op   logical.Operation
		data map[string]any
	}{
		{"write", logical.UpdateOperation, map[string]any{"suspend_after": "2400h"}},
		{"delete", logical.DeleteOperation, nil},
	} {
		scans := b.indexScan.Starts()
		if resp, err := request(b, s, change.op, "config", change.data); err != nil || (resp != nil && resp.IsError()) {
			t.Fatalf("config %s: %v %v", change.what, resp, err)
		}
		if n := b.indexScan.Starts() - scans; n != 1 {
			t.Fatalf("config %s started %d index scans, want 1", change.what, n)
		}
		waitIndexBuilt(t, b)
		if w := alertsWarning(); w != "" {
			t.Fatalf("alerts after config %s and its scan: warning %q", change.what, w)
		}
	}
}

// A config write that races the unload (clean has stopped the scan) starts no scan on
// the unloaded backend.
func TestConfigWriteAfterCleanStartsNoScan(t *testing.T) {
	t.Parallel()
	b, s, _ := newBackendWith(t, backendOptions{initialize: true})
	lcCreateBasic(t, b, s, "svc", nil)
	waitIndexBuilt(t, b)
	b.Cleanup(t.Context())
	scans := b.indexScan.Starts()
	if resp, err := request(b, s, logical.UpdateOperation, "config", map[string]any{"suspend_after": "2400h"}); err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("config write: %v %v", resp, err)
	}
	if n := b.indexScan.Starts() - scans; n != 0 {
		t.Fatalf("config write after clean started %d index scans, want 0", n)
	}
}
