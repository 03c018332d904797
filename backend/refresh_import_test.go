package backend

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// importedFields are an authorization-code credential's fields with a refresh token
// obtained outside Vault.
func importedFields(p *testProvider, refreshToken string) map[string]any {
	d := authCodeFields(p)
	d["refresh_token"] = refreshToken
	return d
}

// importBackend starts a parallel test with a provider and an OAuth backend.
func importBackend(t *testing.T) (*testProvider, *integrationsBackend, *countingStorage, *testClock) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	return p, b, s, clock
}

// wantStatus fails unless name's status (and reason, when one is given) are these.
func wantStatus(t *testing.T, b *integrationsBackend, s logical.Storage, name, status, reason, when string) {
	t.Helper()
	if st, r := credStatus(t, b, s, name); st != status || (reason != "" && r != reason) {
		t.Fatalf("%s: status %s (%s), want %s (%s)", when, st, r, status, reason)
	}
}

func secretFieldsOf(t *testing.T, b *integrationsBackend, s logical.Storage, name string) []string {
	t.Helper()
	return mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data["secret_fields"].([]string)
}

// rawEntry is a stored entry's JSON, "" when there is none.
func rawEntry(t *testing.T, s logical.Storage, key string) string {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if e == nil {
		return ""
	}
	return string(e.Value)
}

func TestImportedRefreshTokenMintsWithoutConsent(t *testing.T) {
	p, b, s, _ := importBackend(t)
	rt := p.IssueRefreshToken(t, callbackURL, "offline_access")
	before := p.requests.Load()

	resp := mustOK(t, b, s, logical.CreateOperation, "credentials/imp", importedFields(p, rt))
	if got := resp.Data["secret_fields"].([]string); !strings.Contains(fmt.Sprint(got), "refresh_token") || !strings.Contains(fmt.Sprint(got), "client_secret") {
		t.Errorf("secret_fields after the create %v, want refresh_token and client_secret", got)
	}
	if strings.Contains(fmt.Sprint(resp.Data), rt) {
		t.Fatal("the create's answer shows the refresh token")
	}
	if p.requests.Load() != before {
		t.Error("importing asked the provider: it must only store the token")
	}
	// Stored as token state under the destination, not among the credential's fields.
	if cred := rawEntry(t, s, credentialPrefix+"imp"); strings.Contains(cred, rt) || strings.Contains(cred, "refresh_token") {
		t.Errorf("the credential entry holds the refresh token: %s", cred)
	}
	c, _ := b.credentials.get(t.Context(), s, "imp")
	if st, _ := b.tokens.cached(t.Context(), s, "imp"); st == nil || st.RefreshToken != rt || st.Destination != destination(c) || st.AccessToken != "" {
		t.Fatalf("token state %v, want the imported refresh token under the credential's destination", st)
	}
	if got := secretFieldsOf(t, b, s, "imp"); !strings.Contains(fmt.Sprint(got), "refresh_token") {
		t.Errorf("secret_fields %v lack refresh_token", got)
	}

	tok := accessOK(t, b, s, "imp", nil).Data["access_token"]
	if f := p.LastRequest(t).Form; f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != rt {
		t.Fatalf("the first access asked with %v, want the imported refresh token", f)
	}
	if tok != p.lastIssued(t).access {
		t.Fatalf("access/ served %v, not the token the provider issued", tok)
	}
	wantStatus(t, b, s, "imp", "active", "", "after minting")
}

func TestImportOnUpdateReplacesTheTokenState(t *testing.T) {
	p, b, s, clock := importBackend(t)
	authorizeCode(t, b, s, p, "ac")
	if got := secretFieldsOf(t, b, s, "ac"); !strings.Contains(fmt.Sprint(got), "refresh_token") {
		t.Errorf("secret_fields after consent %v lack refresh_token", got)
	}
	old := accessOK(t, b, s, "ac", nil).Data["access_token"]
	consented := storedTokenOf(t, s, "ac").RefreshToken

	rt := p.IssueRefreshToken(t, callbackURL)
	clock.Advance(week) // later: the update is dated after the consent
	for _, op := range []logical.Operation{logical.PatchOperation, logical.UpdateOperation} {
		data := map[string]any{"refresh_token": rt}
		if op == logical.UpdateOperation {
			data = importedFields(p, rt)
			delete(data, "type")
		}
		mustOK(t, b, s, op, "credentials/ac", data)
		if st := storedTokenOf(t, s, "ac"); st.RefreshToken != rt || st.AccessToken != "" {
			t.Fatalf("%s: token state %v, want only the imported refresh token", op, st)
		}
		n := p.requests.Load()
		got := accessOK(t, b, s, "ac", nil).Data["access_token"]
		if got == old || p.requests.Load() != n+1 || p.LastRequest(t).Form.Get("refresh_token") != rt {
			t.Fatalf("%s: access served %v after %d requests (refresh token sent %q); want a new token minted through the imported %q, not the consented %q",
				op, got, p.requests.Load()-n, p.LastRequest(t).Form.Get("refresh_token"), rt, consented)
		}
		old = got
	}
}

func TestImportClearsNeedsReauth(t *testing.T) {
	p, b, s, _ := importBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/bad", importedFields(p, "not-a-token-the-provider-issued"))
	code, msg := accessErr(t, b, s, "bad")
	if code != http.StatusForbidden || !strings.Contains(msg, "invalid_grant") {
		t.Fatalf("an unknown refresh token: %d %q, want 403 invalid_grant", code, msg)
	}
	wantStatus(t, b, s, "bad", "needs_reauth", "invalid_grant", "an unknown refresh token")
	// Importing a good one is a re-authorization: active at once, and it mints.
	mustOK(t, b, s, logical.PatchOperation, "credentials/bad", map[string]any{"refresh_token": p.IssueRefreshToken(t, callbackURL)})
	wantStatus(t, b, s, "bad", "active", "", "after importing a refresh token")
	accessOK(t, b, s, "bad", nil)
}

func TestRepointForgetsImportedRefreshToken(t *testing.T) {
	p, b, s, _ := importBackend(t)
	other := newTestProvider(t, providerConfig{})
	rt := p.IssueRefreshToken(t, callbackURL)
	mustOK(t, b, s, logical.CreateOperation, "credentials/imp", importedFields(p, rt))

	moved := map[string]any{"token_url": other.tokenURL(), "client_secret": oauthtest.ClientSecret}
	mustOK(t, b, s, logical.PatchOperation, "credentials/imp", moved)
	if got := secretFieldsOf(t, b, s, "imp"); strings.Contains(fmt.Sprint(got), "refresh_token") {
		t.Errorf("secret_fields after a repoint %v still list refresh_token", got)
	}
	if raw := rawEntry(t, s, tokenPrefix+"imp"); raw != "" {
		t.Fatalf("the token state survived a repoint: %s", raw)
	}
	code, _ := accessErr(t, b, s, "imp")
	if code != http.StatusForbidden || other.requests.Load() != 0 {
		t.Fatalf("after a repoint: %d with %d requests to the new endpoint; the old refresh token must never go there", code, other.requests.Load())
	}
	// A repoint may bring a refresh token of the new destination with it.
	rt2 := other.IssueRefreshToken(t, callbackURL)
	moved = map[string]any{"auth_url": other.authURL(), "client_secret": oauthtest.ClientSecret, "refresh_token": rt2}
	mustOK(t, b, s, logical.PatchOperation, "credentials/imp", moved)
	accessOK(t, b, s, "imp", nil)
	if f := other.LastRequest(t).Form; f.Get("refresh_token") != rt2 {
		t.Fatalf("minted with %q, want the refresh token sent with the repoint", f.Get("refresh_token"))
	}
}

// A write whose refresh token cannot be stored fails whole: the credential is as it
// was (or absent, for a create) and the token state it held still mints.
func TestFailedImportChangesNothing(t *testing.T) {
	p, b, s, clock := importBackend(t)
	rt := p.IssueRefreshToken(t, callbackURL)
	mustOK(t, b, s, logical.CreateOperation, "credentials/imp", importedFields(p, rt))
	before := mustOK(t, b, s, logical.ReadOperation, "credentials/imp", nil).Data

	s.failPutsUnder.Store(tokenPrefix)
	clock.Advance(week) // later: a changed updated_at would show
	data := importedFields(p, "a-new-one")
	delete(data, "type")
	data["scopes"] = "other"
	if resp, err := request(b, s, logical.UpdateOperation, "credentials/imp", data); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("an update whose refresh token could not be stored succeeded")
	}
	if resp, err := request(b, s, logical.CreateOperation, "credentials/new", importedFields(p, "x")); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("a create whose refresh token could not be stored succeeded")
	}
	// A repoint bringing its own refresh token: the old token state must survive too.
	other := newTestProvider(t, providerConfig{})
	moved := map[string]any{"token_url": other.tokenURL(), "client_secret": oauthtest.ClientSecret, "refresh_token": "for-the-new-place"}
	if resp, err := request(b, s, logical.PatchOperation, "credentials/imp", moved); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("a repoint whose refresh token could not be stored succeeded")
	}
	s.failPutsUnder.Store("")
	if !heldForKeepAlive(b, "imp") {
		t.Error("after the failed repoint the refresh token is no longer held for keep-alive")
	}

	after := mustOK(t, b, s, logical.ReadOperation, "credentials/imp", nil).Data
	for _, k := range []string{"scopes", "token_url", "updated_at", "secret_fields"} {
		if fmt.Sprint(after[k]) != fmt.Sprint(before[k]) {
			t.Errorf("%s changed by the failed write: %v -> %v", k, before[k], after[k])
		}
	}
	if st := storedTokenOf(t, s, "imp"); st.RefreshToken != rt {
		t.Errorf("the stored refresh token changed by the failed write")
	}
	accessOK(t, b, s, "imp", nil)
	if p.LastRequest(t).Form.Get("refresh_token") != rt {
		t.Error("after the failed write the credential minted with another refresh token")
	}
	if raw := rawEntry(t, s, credentialPrefix+"new"); raw != "" {
		t.Error("a create whose refresh token could not be stored left the credential behind")
	}
}

func TestRefreshTokenOnlyForTheCodeGrant(t *testing.T) {
	p, b, s, _ := importBackend(t)
	d := clientCredentials(p, "header")
	d["refresh_token"] = "rt"
	resp, _ := request(b, s, logical.CreateOperation, "credentials/cc", d)
	wantFieldError(t, resp, "refresh_token")
	d = importedFields(p, "bad\x01token")
	resp, _ = request(b, s, logical.CreateOperation, "credentials/ac", d)
	wantFieldError(t, resp, "refresh_token")
	if strings.Contains(resp.Error().Error(), "bad\x01token") {
		t.Error("the refusal echoes the value")
	}
}
