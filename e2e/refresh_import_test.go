//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// TestImportedRefreshTokenSurvivesRestartAndRotates: a refresh token obtained from the
// provider outside Vault is imported with vault write and mints without any consent
// through Vault; the token state survives a restart of a Vault on integrated storage;
// and once the provider rotates refresh tokens, the engine refreshes with the new one
// (also after another restart) while the provider refuses the old one.
func TestImportedRefreshTokenSurvivesRestartAndRotates(t *testing.T) {
	v := newVault(t, serverOptions{raftNode: "refresh"})
	mount := v.mount(t)
	p := newIDP(t, oauthtest.Options{AccessTTL: 2 * time.Hour})
	rt := p.IssueRefreshToken(t, "http://127.0.0.1/callback", "offline_access")

	v.mustCLI(t, "write", mount+"/credentials/imported", "type=oauth2_authorization_code",
		"auth_url="+p.AuthURL(), "token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID,
		"client_secret="+oauthtest.ClientSecret, "scopes=offline_access", "refresh_token="+rt)
	read := decode(t, v.mustCLI(t, "read", "-format=json", mount+"/credentials/imported")).Data
	if fields := fmt.Sprint(read["secret_fields"]); !strings.Contains(fields, "refresh_token") {
		t.Fatalf("secret_fields %s lack refresh_token", fields)
	}
	before := p.Requests()
	token := readAccess(t, v, mount, "imported")["access_token"]
	if f := p.LastRequest(t).Form; p.Requests() != before+1 || f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != rt {
		t.Fatalf("the first access made %d requests, the last %v; want one refresh with the imported token", p.Requests()-before, f)
	}
	if token != p.LastIssued(t).Access {
		t.Fatalf("access/ served a token the provider did not issue")
	}

	v.restart(t)
	before = p.Requests()
	if got := readAccess(t, v, mount, "imported")["access_token"]; got != token || p.Requests() != before {
		t.Fatalf("after a restart: token changed %v, %d provider requests; want the stored token", got != token, p.Requests()-before)
	}

	// Rotation: verify forces a refresh; the provider answers with a new refresh
	// token and retires the old one.
	p.SetRotate(true)
	v.mustCLI(t, "write", "-force", mount+"/credentials/imported/verify")
	if f := p.LastRequest(t).Form; f.Get("refresh_token") != rt {
		t.Fatalf("the refresh after the restart sent %q, want the imported refresh token", f.Get("refresh_token"))
	}
	rotated := p.LastIssued(t).Refresh
	if rotated == "" || rotated == rt {
		t.Fatalf("the provider did not rotate the refresh token (%q)", rotated)
	}
	if status := refreshStatus(t, p, rt); status == http.StatusOK {
		t.Fatal("the provider still accepts the rotated-away refresh token")
	}

	v.restart(t)
	v.mustCLI(t, "write", "-force", mount+"/credentials/imported/verify")
	if f := p.LastRequest(t).Form; f.Get("refresh_token") != rotated {
		t.Fatalf("after rotation and a restart the engine refreshed with %q, want the rotated refresh token", f.Get("refresh_token"))
	}
	newest := p.LastIssued(t)
	if got := readAccess(t, v, mount, "imported")["access_token"]; got != newest.Access {
		t.Fatal("access/ does not serve the token of the last refresh")
	}
	read = decode(t, v.mustCLI(t, "read", "-format=json", mount+"/credentials/imported")).Data
	if read["status"] != "active" || !strings.Contains(fmt.Sprint(read["secret_fields"]), "refresh_token") {
		t.Fatalf("after rotation: status %v, secret_fields %v", read["status"], read["secret_fields"])
	}
	assertNothingShows(t, v, mount, "imported", rt, rotated, newest.Refresh, oauthtest.ClientSecret)
}

// refreshStatus is the provider's answer to a refresh_token grant with rt, made
// outside Vault as its client would.
func refreshStatus(t *testing.T, p *oauthtest.Provider, rt string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.TokenURL(), strings.NewReader(url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(oauthtest.ClientID, oauthtest.ClientSecret)
	resp, err := p.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
