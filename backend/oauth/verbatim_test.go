package oauth

import (
	"context"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// TestSecretsReachProviderVerbatim: a password with leading and trailing spaces (the
// catalog keeps passwords "used exactly as given") and the stored client secret reach
// the token endpoint byte for byte, through FromFields and Mint.
func TestSecretsReachProviderVerbatim(t *testing.T) {
	t.Parallel()
	const password = " \t" + oauthtest.Password + "  "
	const secret = " " + oauthtest.ClientSecret + " "
	for _, tc := range []struct {
		typ    string
		fields func(tokenURL string) map[string]any
	}{
		{"oauth2_password", func(u string) map[string]any {
			return map[string]any{"token_url": u, "client_id": oauthtest.ClientID, "client_secret": secret,
				"username": oauthtest.Username, "password": password, "auth_style": AuthStyleBody}
		}},
		{"servicenow_oauth", func(u string) map[string]any {
			return map[string]any{"instance": "dev1", "token_url": u, "client_id": oauthtest.ClientID, "client_secret": secret,
				"username": oauthtest.Username, "password": password, "auth_style": AuthStyleBody}
		}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			// A provider of its own: a request another subtest sent cannot stand in
			// for this one's.
			p := newProvider(t, providerOptions{clientAuth: AuthStyleBody})
			cfg, err := FromFields(tc.typ, tc.fields(p.TokenURL()))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Password != password || cfg.ClientSecret != secret {
				t.Fatalf("FromFields changed the secrets: password %v, client_secret %v", cfg.Password == password, cfg.ClientSecret == secret)
			}
			// The provider refuses these secrets (they are not its own); what matters
			// is what it received, so the refusal must come from the provider: one
			// request arrived, and Mint reports the refusal.
			_, err = newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
			if got := p.Requests(); got != 1 {
				t.Fatalf("provider received %d token requests, want 1 (Mint error: %v)", got, err)
			}
			if err == nil {
				t.Fatal("Mint succeeded with secrets the provider does not know")
			}
			form := p.last(t).Form
			if got := form.Get("password"); got != password {
				t.Errorf("provider received password %q, want %q", got, password)
			}
			if got := form.Get("client_secret"); got != secret {
				t.Errorf("provider received client_secret %q, want %q", got, secret)
			}
		})
	}
}
