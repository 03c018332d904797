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

// slowStorage adds a fixed latency to every storage call, as the gRPC round trip to
// Vault does for an external plugin.
type slowStorage struct {
	logical.Storage
	delay time.Duration
}

func (s *slowStorage) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	time.Sleep(s.delay) // the simulated round trip, not synchronisation
	return s.Storage.Get(ctx, k)
}

func (s *slowStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	time.Sleep(s.delay)
	return s.Storage.Put(ctx, e)
}

// BenchmarkFlushBurst: the flush of 1,000 credentials that were each accessed once
// (what Clean, and so a plugin reload, waits for after a burst), over a storage with
// a 200 µs round trip. One op is one whole flush.
func BenchmarkFlushBurst(b *testing.B) {
	const n = 1000
	clock := newTestClock()
	mem := &logical.InmemStorage{}
	names := lcSeed(b, mem, clock, "burst-", n, time.Hour)
	slow := &slowStorage{Storage: mem, delay: 200 * time.Microsecond}
	be, s, _ := newBackendWith(b, backendOptions{storage: slow, clock: clock})
	ctx := context.Background()
	for _, name := range names {
		if _, err := be.credentials.get(ctx, s, name); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		now := clock.Now()
		for _, name := range names {
			be.activity.recorder.Access(name, now, "bench", true, "")
		}
		clock.Advance(2 * time.Minute)
		b.StartTimer()
		if err := be.flushUsage(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "credentials/flush")
}

// BenchmarkCleanPending measures Clean with n credentials' usage pending (each read once
// since the last flush, its inactivity window due for renewal) over a storage whose
// writes take 3 ms, as a single Raft node's. "direct" is Clean before the budget (the
// last flush writes every credential, as on e7ce1c0); "budget" is this build (usage/<name>
// directly for cleanFlushBudget, the rest handed off). writes/op is the storage writes
// Clean made, handed-off/op the credentials it handed off. One op is one Clean.
// BENCH_CLEAN_PENDING (comma-separated) sets the sizes, 1,000 by default: 100,000 direct
// takes over a minute an op, so only make bench asks for it (scripts/bench.sh).
func BenchmarkCleanPending(bm *testing.B) {
	sizes := []int{1000}
	if env := os.Getenv("BENCH_CLEAN_PENDING"); env != "" {
		sizes = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				bm.Fatalf("BENCH_CLEAN_PENDING=%q: want positive sizes, comma-separated", env)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		for _, mode := range []string{"direct", "budget"} {
			bm.Run(fmt.Sprintf("%d/%s", n, mode), func(bm *testing.B) {
				var handed int
				for range bm.N {
					bm.StopTimer()
					clock := newTestClock()
					st := newWriteLatencyStorage()
					st.delay = 0
					names := lcSeed(bm, st, clock, "c", n, time.Hour)
					b, _, _ := newBackendWith(bm, backendOptions{storage: st, clock: clock, initialize: true})
					if mode == "direct" {
						b.activity.cleanStop = func() (<-chan struct{}, func()) { return nil, func() {} }
					}
					for _, name := range names {
						b.activity.recorder.Access(name, clock.Now(), "bench", true, "")
					}
					st.delay = 3 * time.Millisecond
					st.writes.Store(0)
					bm.StartTimer()
					b.Clean(context.Background())
					bm.StopTimer()
					bm.ReportMetric(float64(st.writes.Load()), "writes/op")
					st.delay = 0
					handed = 0
					for _, key := range handoffKeys(bm, st) {
						e, err := st.Get(context.Background(), usageHandoffPrefix+key)
						if err != nil || e == nil {
							bm.Fatal(err)
						}
						var h storedHandoff
						if err := e.DecodeJSON(&h); err != nil {
							bm.Fatal(err)
						}
						handed += len(h.Usage)
					}
					bm.StartTimer()
				}
				bm.ReportMetric(float64(handed), "handed-off/op")
			})
		}
	}
}
