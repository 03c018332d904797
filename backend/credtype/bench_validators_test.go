package credtype

import (
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// BenchmarkValidate measures each type's validator on the example values of
// internal/fixtures (a certificate's PEMs parsed, an SSH key decrypted, and so on).
func BenchmarkValidate(b *testing.B) {
	for _, typ := range All() {
		values := fixtures.Values(typ.Name, "BENCHMARKER", "https://idp.example.com/token")
		b.Run(typ.Name, func(b *testing.B) {
			if _, err := typ.Validate(values); err != nil {
				b.Fatalf("the fixture for %s does not validate: %v", typ.Name, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := typ.Validate(values); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
