package backend

import (
	"context"
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
