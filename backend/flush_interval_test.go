package backend

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestLoweredFlushIntervalAppliesAtOnce: the flush loop started under the default
// usage_flush_interval (10 s) follows a config write that lowers it, instead of
// sleeping out the old interval first: what a kill may lose is bounded by the interval
// in force. (The loop runs on real time, so the test polls storage; the deadline is
// half the default interval, twice the new one.)
func TestLoweredFlushIntervalAppliesAtOnce(t *testing.T) {
	t.Parallel()
	b, s, _ := newBackendWith(t, backendOptions{initialize: true})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"usage_flush_interval": 1})
	lcCreateBasic(t, b, s, "svc", nil)
	mustOK(t, b, s, logical.ReadOperation, "access/svc", nil)
	deadline := time.Now().Add(defaultUsageFlushInterval / 2)
	for time.Now().Before(deadline) {
		if e, err := s.Get(context.Background(), usagePrefix+"svc"); err == nil && e != nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling storage for the loop's flush
	}
	t.Fatalf("no flush within %s of lowering usage_flush_interval to 1 s", defaultUsageFlushInterval/2)
}
