package oauth

import (
	"context"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// BenchmarkClientAssertion is what private_key_jwt adds to one token request:
// preparing the signer from the stored PEM (newAsserter) and signing one assertion.
func BenchmarkClientAssertion(b *testing.B) {
	for _, kind := range []string{"rsa2048", "p256", "p384", "ed25519"} {
		key := fixtures.NewKey(kind)
		cfg := Config{TokenURL: "https://idp.example/token", ClientID: "c", ClientKey: fixtures.KeyPEM(key),
			ClientCertificate: fixtures.SelfSigned(key, "c", time.Now().AddDate(0, 1, 0)), ClientKeyID: "k"}
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a, err := newAsserter(cfg, time.Now)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := a.assertion(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGitHubAppJWT is what a github_app token request adds before it is sent:
// parsing the App's stored key (GitHub's PKCS#1 PEM) and signing one App JWT (RS256).
func BenchmarkGitHubAppJWT(b *testing.B) {
	keyPEM := fixtures.GitHubAppKeyPEM()
	b.Run("parse+sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			key, err := credtype.GitHubAppKey(keyPEM)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := SignGitHubAppJWT(key, "123456", time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	key := fixtures.GitHubAppKey()
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := SignGitHubAppJWT(key, "123456", time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
