package oauth

import (
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// BenchmarkGrantAssertion is what the JWT-bearer grant adds to one token request, per
// key type: building the assertion from the stored key PEM (parsing it, preparing the
// signer) and signing it (GrantAssertion). google_key_file adds what a Google
// credential does first: reading the key file (Type.JWTAssertion).
func BenchmarkGrantAssertion(b *testing.B) {
	for _, kind := range []string{"rsa2048", "p256", "p384", "ed25519"} {
		a := &credtype.Assertion{Issuer: "svc", Subject: "user", Audience: "https://idp.example/token",
			Key: fixtures.KeyPEM(fixtures.NewKey(kind)), KeyID: "k", Lifetime: 5 * time.Minute, ScopeClaim: true}
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := GrantAssertion(a, []string{"read", "write"}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	typ, _ := credtype.Lookup("google_service_account")
	values := map[string]any{"service_account_key": fixtures.ServiceAccountKey(fixtures.RSAKey(), "sa@p.iam.gserviceaccount.com", "kid-1", "https://oauth2.googleapis.com/token")}
	b.Run("google_key_file", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := typ.JWTAssertion(values)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := GrantAssertion(a, []string{"https://www.googleapis.com/auth/cloud-platform"}, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
