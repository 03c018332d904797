package tlsclient

import (
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// BenchmarkCacheHit is the cost a request with its own TLS pays once its transport
// is cached: fingerprinting the material and one locked map lookup.
func BenchmarkCacheHit(b *testing.B) {
	c := NewCache(nil, 0)
	m := Material{CACertificates: fixtures.NewCA("bench").PEM}
	if _, err := c.For(m); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.For(m); err != nil {
			b.Fatal(err)
		}
	}
}
