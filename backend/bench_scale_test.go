package backend

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// benchScaleSizes are the mount sizes of the scale figures in BENCHMARKS.md:
// BENCH_SCALE (comma-separated, e.g. 1000,10000) or 1k, 10k and 100k.
func benchScaleSizes(b *testing.B) []int {
	env := os.Getenv("BENCH_SCALE")
	if env == "" {
		return []int{1000, 10000, 100000}
	}
	var sizes []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 {
			b.Fatalf("BENCH_SCALE=%q: want sizes of at least 100, comma-separated", env)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// BenchmarkSweepScale measures one periodic sweep of a mount of 1k, 10k and 100k
// credentials with nothing due and with 1% due (their 90-day warning). A due sweep
// changes what is due, so each of its iterations gets a freshly seeded, freshly
// initialised backend (set up with the timer stopped): run it with a small fixed
// -benchtime such as 3x, as scripts/bench.sh does. storage-ops/op counts every Get,
// List, Put and Delete of the sweep.
func BenchmarkSweepScale(b *testing.B) {
	for _, n := range benchScaleSizes(b) {
		for _, duePct := range []int{0, 1} {
			b.Run(fmt.Sprintf("n=%d/due=%d%%", n, duePct), func(b *testing.B) {
				due := n * duePct / 100
				var ops, writes int64
				setup := func() (*integrationsBackend, *logical.Request, *countingStorage, *testClock) {
					cs := newCountingStorage()
					clock := newTestClock()
					lcSeed(b, cs, clock, "idle-", n-due, 0)
					if due > 0 {
						lcSeed(b, cs, clock, "due-", due, 95*day)
					}
					be, s, _ := newBackendWith(b, backendOptions{storage: cs, clock: clock, initialize: true})
					return be, &logical.Request{Storage: s}, cs, clock
				}
				ctx := context.Background()
				b.ReportAllocs()
				if due == 0 {
					be, req, cs, clock := setup()
					if err := be.periodic(ctx, req); err != nil { // warm
						b.Fatal(err)
					}
					cs.reset()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						clock.Advance(time.Millisecond) // nothing falls due, however large b.N
						if err := be.periodic(ctx, req); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					ops, writes = cs.reads()+cs.writes(), cs.writes()
				} else {
					b.StopTimer()
					for i := 0; i < b.N; i++ {
						be, req, cs, _ := setup()
						cs.reset()
						b.StartTimer()
						if err := be.periodic(ctx, req); err != nil {
							b.Fatal(err)
						}
						b.StopTimer()
						ops += cs.reads() + cs.writes()
						writes += cs.writes()
					}
				}
				b.ReportMetric(float64(ops)/float64(b.N), "storage-ops/op")
				b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
				if due == 0 && writes != 0 {
					b.Fatalf("an idle sweep wrote storage %d times", writes)
				}
				if due > 0 && writes < int64(due)*int64(b.N) {
					b.Fatalf("%d writes in %d sweeps with %d due each: the due credentials were not acted on", writes, b.N, due)
				}
			})
		}
	}
}

// BenchmarkManagementRead measures credentials/<name> (the management read, secrets
// redacted) for a basic credential through the framework request path.
func BenchmarkManagementRead(b *testing.B) {
	cs := newCountingStorage()
	be, _ := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
	ctx := context.Background()
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", credWithType("basic", map[string]any{
		"username": "svc-integration", "password": "correct horse battery staple",
	}))
	mustOK(b, be, cs, logical.ReadOperation, "credentials/bench", nil) // warm
	start := cs.total()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := be.HandleRequest(ctx, &logical.Request{
				Operation: logical.ReadOperation, Path: "credentials/bench", Storage: cs, DisplayName: "bench",
			})
			if err != nil || resp == nil || resp.Data["type"] != "basic" {
				b.Errorf("management read: %v %v", resp, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cs.total()-start)/float64(b.N), "storage-ops/op")
}

// latencyStorage adds a fixed delay to every Get, as the plugin's storage connection
// does (a gRPC round trip to Vault and its storage backend for each read).
type latencyStorage struct {
	logical.Storage
	delay time.Duration
}

func (s latencyStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	time.Sleep(s.delay) // the simulated round trip, not synchronisation
	return s.Storage.Get(ctx, key)
}

// BenchmarkIndexScan times the index scan (buildIndex) of a mount of 5,000 stored
// credentials whose every storage read takes 200 µs, with the scan's reads one at a
// time (workers=1, as before issue 28) and with indexScanWorkers in parallel: what
// bounds the scan after a reload is the round trips, not the decoding.
func BenchmarkIndexScan(b *testing.B) {
	const n = 5000
	clock := newTestClock()
	seeded := logical.NewStorageView(&logical.InmemStorage{}, "")
	lcSeed(b, seeded, clock, "cred-", n, 0)
	s := latencyStorage{Storage: seeded, delay: 200 * time.Microsecond}
	for _, workers := range []int{1, indexScanWorkers} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			defer func(w int) { indexScanWorkers = w }(indexScanWorkers)
			indexScanWorkers = workers
			be, _, _ := newBackendWith(b, backendOptions{storage: s, clock: clock})
			for b.Loop() {
				if err := be.buildIndex(context.Background(), s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/credential")
		})
	}
}
