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
	p := newProvider(t, providerOptions{clientAuth: AuthStyleBody})
	const password = " \t" + oauthtest.Password + "  "
	const secret = " " + oauthtest.ClientSecret + " "
	for _, tc := range []struct {
		typ    string
		fields map[string]any
	}{
		{"oauth2_password", map[string]any{"token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": secret,
			"username": oauthtest.Username, "password": password, "auth_style": AuthStyleBody}},
		{"servicenow_oauth", map[string]any{"instance": "dev1", "token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": secret,
			"username": oauthtest.Username, "password": password, "auth_style": AuthStyleBody}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			cfg, err := FromFields(tc.typ, tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Password != password || cfg.ClientSecret != secret {
				t.Fatalf("FromFields changed the secrets: password %v, client_secret %v", cfg.Password == password, cfg.ClientSecret == secret)
			}
			// The provider refuses these secrets (they are not its own); what matters
			// is what it received.
			_, _ = newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
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
