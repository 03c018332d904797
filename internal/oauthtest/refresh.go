package oauthtest

import (
	"context"
	"testing"

	"golang.org/x/oauth2"
)

// IssueRefreshToken obtains a refresh token from the provider the way a tool outside
// Vault would: a consent through the authorization endpoint (with PKCE) and a code
// exchange by a client of its own, redirecting to redirectURL (which must be under the
// provider's Domain). It is what a test imports into a credential as refresh_token.
func (p *Provider) IssueRefreshToken(t testing.TB, redirectURL string, scopes ...string) string {
	t.Helper()
	cfg := &oauth2.Config{
		ClientID: ClientID, ClientSecret: p.clientSecret, RedirectURL: redirectURL, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: p.AuthURL(), TokenURL: p.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader},
	}
	verifier := oauth2.GenerateVerifier()
	loc := p.Authorize(t, cfg.AuthCodeURL("outside-vault-state", oauth2.S256ChallengeOption(verifier)))
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, p.Client())
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging the code outside Vault: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("the provider issued no refresh token")
	}
	return tok.RefreshToken
}
