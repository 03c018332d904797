package backend

import (
	"net/http"
	"runtime"
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
	goroutines, heap := settledFigures()
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
	afterG, afterH := settledFigures()
	t.Logf("%d failing reads: goroutines %d -> %d, heap %d KiB -> %d KiB, %d provider requests",
		2*reads, goroutines, afterG, heap>>10, afterH>>10, p.requests.Load())
	if afterG > goroutines {
		t.Errorf("goroutines grew from %d to %d", goroutines, afterG)
	}
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

// settledFigures is the goroutine count and live heap once goroutines that are
// ending (a connection being closed, a timer's) have ended: it polls, for at most
// 10 s, until the count stops falling.
func settledFigures() (goroutines int, heap uint64) {
	n := runtime.NumGoroutine()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling the count, not synchronising
		m := runtime.NumGoroutine()
		if m >= n {
			break
		}
		n = m
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return n, ms.HeapAlloc
}
