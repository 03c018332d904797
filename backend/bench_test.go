package backend

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkAccessStatic measures access/<name> for a cached basic credential through
// the full framework request path, from every P at once. The target (docs/ARCHITECTURE.md) is no
// storage operation per access: storage-ops/op must be 0.
func BenchmarkAccessStatic(b *testing.B) {
	cs := newCountingStorage()
	// The background flush writes usage by design; a long interval keeps it out of
	// the measurement.
	be, _ := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", credWithType("basic", map[string]any{
		"username": "svc-integration", "password": "correct horse battery staple",
	}))
	mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil) // warm-up: decode and cache
	benchCachedAccess(b, be, cs, "authorization")
}

// benchCachedAccess reads access/bench from every benchmark goroutine, expecting the
// answer to carry key, reports storage operations per read, and fails unless there
// were none: a cached credential or token is served from memory.
func benchCachedAccess(b *testing.B, be *integrationsBackend, cs *countingStorage, key string) {
	ctx := context.Background()
	start := cs.total()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := be.HandleRequest(ctx, &logical.Request{
				Operation: logical.ReadOperation, Path: "access/bench", Storage: cs, DisplayName: "bench",
			})
			if err != nil || resp == nil || resp.Data[key] == nil {
				b.Errorf("access: %s", outcome(resp, err))
				return
			}
		}
	})
	b.StopTimer()
	ops := cs.total() - start
	b.ReportMetric(float64(ops)/float64(b.N), "storage-ops/op")
	if ops != 0 {
		b.Fatalf("%d storage operations in %d cached accesses (%s)", ops, b.N, cs)
	}
}

// BenchmarkList10k measures listing a mount of 10,000 credentials, paging through
// all of them 1,000 at a time (one op = the whole pass), unfiltered and filtered.
func BenchmarkList10k(b *testing.B) {
	const n = 10000
	s := &logical.InmemStorage{}
	be, _ := newBackendOver(b, s, map[string]any{"usage_flush_interval": "1h"})
	for i := range n {
		data := credWithType("basic", map[string]any{"username": "u", "password": "p"})
		if i%10 == 0 {
			data["tags"] = "tenth"
		}
		mustOK(b, be, s, logical.CreateOperation, fmt.Sprintf("credentials/cred-%05d", i), data)
	}
	for _, bc := range []struct {
		name    string
		filters map[string]any
		want    int
	}{
		{"all", nil, n},
		{"tag-filter", map[string]any{"tag": "tenth"}, n / 10},
		{"name-filter", map[string]any{"filter": "-00"}, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			listAllCredentials(b, be, s, bc.filters, 1000) // warm the caches
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if names, _ := listAllCredentials(b, be, s, bc.filters, 1000); len(names) != bc.want {
					b.Fatalf("listed %d names, want %d", len(names), bc.want)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/stored-credential")
		})
	}
}
