//go:build e2e

package e2e

import (
	"context"

	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

const constPluginName = "vault-plugin-constant"

// BenchmarkAccessThroughVault measures access/<name> reads of a cached static
// credential through a real Vault server, next to the same reads of a baseline plugin
// that answers a constant from memory (e2e/constplugin). docs/ARCHITECTURE.md's target is a
// throughput within 10% of the baseline. Run with `make bench`.
func BenchmarkAccessThroughVault(b *testing.B) {
	constBin := filepath.Join(pluginDir(), constPluginName)
	if _, err := os.Stat(constBin); err != nil {
		b.Skipf("baseline plugin not built (%v): run `make bench`", err)
	}
	sum, err := fileSHA256(constBin)
	if err != nil {
		b.Fatal(err)
	}
	c := shared.client
	if err := c.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: constPluginName, Type: api.PluginTypeSecrets, Command: constPluginName, SHA256: sum,
	}); err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct{ path, typ string }{{"bench-const", constPluginName}} {
		if err := c.Sys().Mount(m.path, &api.MountInput{Type: m.typ}); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Sys().Unmount(m.path) }() // cleanup: the server goes away with the test
	}
	if err := c.Sys().Mount("bench-int", &api.MountInput{Type: pluginName, Config: api.MountConfigInput{PluginVersion: os.Getenv("PLUGIN_VERSION")}}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Sys().Unmount("bench-int") }() // cleanup: the server goes away with the test
	if _, err := c.Logical().Write("bench-int/credentials/svc", map[string]any{
		"type": "basic", "username": "svc-user", "password": "pw-0123456789",
	}); err != nil {
		b.Fatal(err)
	}
	for _, target := range []struct{ name, path string }{
		{"constant-plugin", "bench-const/access/svc"},
		{"integrations", "bench-int/access/svc"},
	} {
		b.Run(target.name, func(b *testing.B) {
			rate := hammer(b, c, target.path, b.N)
			b.ReportMetric(rate, "req/s")
		})
	}
}

// hammer reads path n times from 16 workers over keep-alive connections and returns
// the rate. Every answer is checked, so an error can't pass for speed.
func hammer(b *testing.B, c *api.Client, path string, n int) float64 {
	const workers = 16
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				s, err := c.Logical().ReadWithContext(context.Background(), path)
				if err != nil || s == nil || s.Data["password"] != "pw-0123456789" {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d reads of %s failed", f, n, path)
	}
	return float64(n) / elapsed.Seconds()
}
