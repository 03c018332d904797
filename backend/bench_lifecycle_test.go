package backend

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkSweepNothingDue measures the periodic sweep of a mount holding 10,000
// credentials of which none has anything due: its cost must not follow their number.
// storage-ops/op counts every Get, List, Put and Delete the sweep makes.
func BenchmarkSweepNothingDue(b *testing.B) {
	const n = 10000
	cs := newCountingStorage()
	clock := newTestClock()
	lcSeed(b, cs, clock, "idle-", n, 0)
	be, s, _ := newBackendWith(b, backendOptions{storage: cs, clock: clock, initialize: true})
	if got := len(be.activity.index.Due(never, 0)); got != n {
		b.Fatalf("index holds %d credentials, want %d", got, n)
	}
	ctx := context.Background()
	req := &logical.Request{Storage: s}
	if err := be.periodic(ctx, req); err != nil { // warm
		b.Fatal(err)
	}
	cs.reset()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Time moves, but by so little that nothing falls due however large b.N gets.
		clock.Advance(time.Millisecond)
		if err := be.periodic(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cs.reads()+cs.writes())/float64(b.N), "storage-ops/op")
	if cs.writes() != 0 {
		b.Fatalf("an idle sweep wrote storage %d times", cs.writes())
	}
}
