package backend

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkCreateRate is the in-process create rate of bearer credentials: through
// credentials-batch (an op is one batch of maxBatchItems) and through single creates
// of credentials/<name> (an op is one create), on the in-memory storage and on one
// whose every Get and Put takes 200µs (a stand-in for the plugin's round trip into Vault).
// creds/s is the figure; storage-ops/cred counts the storage calls per credential.
func BenchmarkCreateRate(b *testing.B) {
	for _, delay := range []time.Duration{0, 200 * time.Microsecond} {
		for _, mode := range []string{"batch", "single"} {
			b.Run(fmt.Sprintf("%s/storage-delay=%s", mode, delay), func(b *testing.B) {
				cs := newCountingStorage()
				be, _, _ := newBackendWith(b, backendOptions{storage: cs, initialize: true})
				s := &slowStorage{Storage: cs, delay: delay} // bench_flush_test.go's: Get and Put wait
				cs.reset()
				ctx := context.Background()
				n := 0
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if mode == "single" {
						resp, err := be.HandleRequest(ctx, &logical.Request{Operation: logical.CreateOperation, Storage: s,
							Path: fmt.Sprintf("credentials/c-%d", n), Data: map[string]any{"type": "bearer", "token": "tok", "tags": "bench"}})
						if err != nil || resp.IsError() {
							b.Fatal(err, resp)
						}
						n++
						continue
					}
					items := make([]any, maxBatchItems)
					for j := range items {
						items[j] = map[string]any{"name": fmt.Sprintf("c-%d", n), "type": "bearer", "token": "tok", "tags": "bench"}
						n++
					}
					resp, err := be.HandleRequest(ctx, &logical.Request{Operation: logical.CreateOperation, Storage: s,
						Path: batchPath, Data: map[string]any{"items": items}})
					if err != nil || resp.IsError() || resp.Data["failed_count"] != 0 {
						b.Fatal(err, resp)
					}
				}
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(n)/elapsed.Seconds(), "creds/s")
				b.ReportMetric(float64(cs.total())/float64(n), "storage-ops/cred")
			})
		}
	}
}
