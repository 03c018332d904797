package backend

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkAccessCachedToken measures access/<name> for an OAuth credential whose
// token is cached, through the full framework request path, from every P at once:
// the hot path refresh ahead must not slow down. The token is read far from its
// refresh window ("steady"), and inside it once the background refresh has been
// started and is held at the provider ("in-window"), where every read only sees the
// refresh-started flag. Neither may touch storage.
func BenchmarkAccessCachedToken(b *testing.B) {
	p := newTestProvider(b, providerConfig{accessTTL: time.Hour})
	cs := newCountingStorage()
	be, clock := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", clientCredentials(p, "body"))
	mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil) // mint and cache
	run := func(b *testing.B) { benchCachedAccess(b, be, cs, "authorization") }
	b.Run("steady", run)
	// Into the refresh window (less than max(lifetime/5, ...) before the due point)
	// with the provider holding the refresh: every read serves the cached token.
	gate := make(chan struct{})
	b.Cleanup(func() { close(gate) })
	p.SetFault(func(_ http.ResponseWriter, _ *http.Request) bool { <-gate; return false })
	clock.Advance(50 * time.Minute)
	b.Run("in-window", run)
}

// BenchmarkTokenAccessCached is tokenAccess alone for a cached token (no framework
// routing, no usage recording), serially: where the refresh-ahead check sits.
func BenchmarkTokenAccessCached(b *testing.B) {
	p := newTestProvider(b, providerConfig{accessTTL: time.Hour})
	cs := newCountingStorage()
	be, _ := newBackendOver(b, cs, map[string]any{"usage_flush_interval": "1h"})
	ctx := context.Background()
	mustOK(b, be, cs, logical.CreateOperation, "credentials/bench", clientCredentials(p, "body"))
	mustOK(b, be, cs, logical.ReadOperation, "access/bench", nil)
	cfg, err := be.loadConfig(ctx, cs)
	if err != nil {
		b.Fatal(err)
	}
	c, err := be.credentials.get(ctx, cs, "bench")
	if err != nil || c == nil {
		b.Fatal(c, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if data, _, err := be.tokenAccess(ctx, cs, cfg, c, 0, be.now()); err != nil || data["access_token"] == "" {
			b.Fatal(err)
		}
	}
}
