package backend

import (
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// TestThousandFailingReads: 1,000 reads in a row of a credential whose provider fails
// leave no goroutine and no heap behind, and ask the provider only as often as the
// backoff allows: with the clock standing still, once. (The same through a real Vault,
// counting provider requests, is e2e's TestProviderFaults.)
func TestThousandFailingReads(t *testing.T) {
	// Not parallel: it counts the goroutines and the heap of the whole process.
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(oauthtest.Fail(http.StatusInternalServerError))
	// One read first, so connections, the Broker and the usage entry exist before the
	// figures are taken.
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
		t.Fatalf("first read: %d, want 502", code)
	}
	owners, goroutines, heap := backendOwners(), runtime.NumGoroutine(), liveHeap()
	const reads = 1000
	for i := range reads {
		if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
			t.Fatalf("read %d: %d, want 502", i, code)
		}
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests for %d failing reads inside one backoff window, want 1", n, reads+1)
	}
	// The window passes once: one more request, whatever the number of reads.
	clock.Advance(backoffCeiling)
	for range reads {
		accessErr(t, b, s, "cc")
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests after one backoff window, want 2", n)
	}
	if err := b.flushUsage(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	waitNoNewOwners(t, owners)
	afterG, afterH := runtime.NumGoroutine(), liveHeap()
	t.Logf("%d failing reads: goroutines %d -> %d, heap %d KiB -> %d KiB, %d provider requests",
		2*reads, goroutines, afterG, heap>>10, afterH>>10, p.requests.Load())
	// The usage log is capped (log_size events), so the heap may move by what the
	// runtime and the event log's fill take, never by what 2,000 reads would hold.
	const slack = 2 << 20
	if afterH > heap+slack {
		t.Errorf("heap grew from %d KiB to %d KiB", heap>>10, afterH>>10)
	}
}

// backoffCeiling is more than the first backoff window after a failure (one second,
// with jitter under it).
const backoffCeiling = 2 * time.Second

// backendOwners counts the goroutines backendGoroutines lists (those running code of
// this package outside its tests) by owner: the first of this package's functions on
// the stack, arguments cut. Goroutines of the runtime, net/http or the testing
// package are not counted, so the figure does not move with connections closing or
// timers firing elsewhere; a goroutine the backend starts and leaves behind is.
func backendOwners() map[string]int {
	const pkg = "vault-plugin-secrets-integrations/backend."
	owners := map[string]int{}
	for _, g := range backendGoroutines() {
		for _, line := range strings.Split(g, "\n")[1:] {
			if strings.Contains(line, pkg) && !strings.HasPrefix(line, "created by") {
				if i := strings.LastIndexByte(line, '('); i > 0 {
					line = line[:i]
				}
				owners[line]++
				break
			}
		}
	}
	return owners
}

// extraOwners is what after holds beyond before: each owner with more goroutines
// than it had.
func extraOwners(before, after map[string]int) []string {
	var extra []string
	for owner, n := range after {
		if n > before[owner] {
			extra = append(extra, fmt.Sprintf("%s: %d, was %d", owner, n, before[owner]))
		}
	}
	sort.Strings(extra)
	return extra
}

// waitNoNewOwners waits for the exact condition that no owner runs more goroutines
// than it did in before (goroutines that are ending, a request's own, end), and
// fails the test naming the owners that still do after 10 s.
func waitNoNewOwners(t *testing.T, before map[string]int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		extra := extraOwners(before, backendOwners())
		if len(extra) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines of the backend left behind (owner: now, before):\n%s", strings.Join(extra, "\n"))
			return
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, not a quiet period
	}
}

// liveHeap is the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
