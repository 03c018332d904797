package backend

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// A refresh token the provider issued is never lost to a routine edit (issue 21): with
// a provider that rotates refresh tokens and retires the old one, each path that
// refreshes is held at the provider while an edit that keeps the destination and the
// client lands; once the provider answers, the rotated refresh token is the stored
// one, and the next read refreshes from it without a new consent. Before the fix the
// engine discarded the whole answer because the generation moved, storage kept the
// retired token, and the next read got invalid_grant (needs_reauth).

// refreshPath starts one way the engine refreshes a token of credential "ac" and
// returns a function that waits for it to end. The token is stale for the path when
// it starts (each path advances the clock as it needs).
type refreshPath struct {
	name  string
	setup map[string]any // engine config written before the consent
	start func(t *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock) (wait func())
}

// routineEdit is a change of a credential that keeps its destination and client.
type routineEdit struct {
	name string
	run  func(t *testing.T, b *integrationsBackend, s logical.Storage)
	undo func(t *testing.T, b *integrationsBackend, s logical.Storage) // nil: nothing to undo before reading
}

func refreshPaths() []refreshPath {
	asyncRequest := func(b *integrationsBackend, s logical.Storage, op logical.Operation, path string) func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = request(b, s, op, path, nil) // the outcome is judged from storage and the provider
		}()
		return func() { <-done }
	}
	asyncTick := func(b *integrationsBackend, s logical.Storage, wait func()) func() {
		done := make(chan error, 1)
		go func() { done <- b.periodic(context.Background(), &logical.Request{Storage: s}) }()
		return func() {
			if err := <-done; err != nil {
				panic(err) // surfaces in the test binary's output; the tick never fails here
			}
			wait()
		}
	}
	return []refreshPath{
		{name: "access", start: func(_ *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock) func() {
			clock.Advance(time.Hour)
			return asyncRequest(b, s, logical.ReadOperation, "access/ac")
		}},
		{name: "verify", start: func(_ *testing.T, b *integrationsBackend, s logical.Storage, _ *testClock) func() {
			return asyncRequest(b, s, logical.UpdateOperation, "credentials/ac/verify")
		}},
		{name: "refresh_ahead", setup: map[string]any{"refresh_ahead": true}, start: func(t *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock) func() {
			clock.Advance(inWindow)
			accessOK(t, b, s, "ac", nil) // served the current token; the refresh runs behind
			return func() { settle(b) }
		}},
		{name: "keepalive", start: func(_ *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock) func() {
			clock.Advance(week + time.Hour)
			return asyncTick(b, s, b.keepalives.Wait)
		}},
		{name: "verify_schedule", setup: map[string]any{"verify_interval": "1h"}, start: func(_ *testing.T, b *integrationsBackend, s logical.Storage, clock *testClock) func() {
			clock.Advance(2 * time.Hour)
			return asyncTick(b, s, b.verifier.Wait)
		}},
	}
}

func routineEdits() []routineEdit {
	patch := func(data map[string]any) func(t *testing.T, b *integrationsBackend, s logical.Storage) {
		return func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.PatchOperation, "credentials/ac", data)
		}
	}
	return []routineEdit{
		{name: "description", run: patch(map[string]any{"description": "edited while refreshing"})},
		{name: "tags", run: patch(map[string]any{"tags": "prod,crm"})},
		{name: "scopes", run: patch(map[string]any{"scopes": "offline_access,read,write"})},
		{name: "verify_interval", run: patch(map[string]any{"verify_interval": "24h"})},
		{name: "used_by", run: patch(map[string]any{"used_by": "billing-sync"})},
		{name: "suspend", run: func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/suspend", nil)
		}, undo: func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/unsuspend", nil)
		}},
		{name: "default_token_lifetime", run: func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"default_token_lifetime": 600})
		}},
	}
}

func TestRotatedRefreshTokenSurvivesRoutineEdits(t *testing.T) {
	t.Parallel()
	for _, path := range refreshPaths() {
		for _, edit := range routineEdits() {
			t.Run(path.name+"/"+edit.name, func(t *testing.T) {
				t.Parallel()
				p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
				b, s, clock := oauthBackend(t)
				if path.setup != nil {
					mustOK(t, b, s, logical.UpdateOperation, "config", path.setup)
				}
				authorizeCode(t, b, s, p, "ac")
				consented := p.lastIssued(t).refresh

				arrived, release := blockTokens(t, p)
				wait := path.start(t, b, s, clock)
				waitArrived(t, arrived, path.name)
				clock.Advance(time.Second) // the edit is later than the request
				edit.run(t, b, s)
				release()
				wait()

				rotated := p.lastIssued(t).refresh
				if rotated == "" || rotated == consented {
					t.Fatalf("the held refresh did not rotate (%d requests)", p.requests.Load())
				}
				if got := storedTokenOf(t, s, "ac").RefreshToken; got != rotated {
					t.Fatalf("stored refresh token: the consented one %v, the rotated one %v; want the rotated one",
						got == consented, got == rotated)
				}
				p.SetFault(nil)
				if edit.undo != nil {
					edit.undo(t, b, s)
				}
				clock.Advance(2 * time.Hour) // whatever is cached is stale: the read refreshes
				accessOK(t, b, s, "ac", nil)
				if sent := p.LastRefreshToken(); sent != rotated {
					t.Fatalf("the next refresh sent the consented token %v, want the rotated one", sent == consented)
				}
				if st, reason := credStatus(t, b, s, "ac"); st != "active" {
					t.Fatalf("status %s (%s) after the edit, want active without a new consent", st, reason)
				}
			})
		}
	}
}

// A repoint, a new client_id or a delete during a refresh forgets the answer's refresh
// token with everything else: it belongs to the old destination or client.
func TestRefreshTokenForgottenOnRepointClientChangeDelete(t *testing.T) {
	t.Parallel()
	attacker := newTestProvider(t, providerConfig{})
	for _, change := range []struct {
		name string
		run  func(t *testing.T, b *integrationsBackend, s logical.Storage)
	}{
		{"repoint", func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{
				"token_url": attacker.tokenURL(), "client_secret": oauthtest.ClientSecret})
		}},
		{"client_id", func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"client_id": "another-client"})
		}},
		{"delete", func(t *testing.T, b *integrationsBackend, s logical.Storage) {
			mustOK(t, b, s, logical.DeleteOperation, "credentials/ac", nil)
		}},
	} {
		t.Run(change.name, func(t *testing.T) {
			t.Parallel()
			p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
			b, s, clock := oauthBackend(t)
			authorizeCode(t, b, s, p, "ac")
			arrived, release := blockTokens(t, p)
			clock.Advance(time.Hour)
			done := accessAsync(b, s, "ac")
			waitArrived(t, arrived, "access")
			clock.Advance(time.Second)
			change.run(t, b, s)
			release()
			if r := waitRead(t, done, "access"); r.err == nil && r.resp != nil && !r.resp.IsError() {
				t.Fatalf("the read was served a token minted for settings that went: %s", outcome(r.resp, nil))
			}
			if storageHas(t, s, tokenPrefix+"ac") {
				t.Fatalf("after a %s the old grant's token state is stored", change.name)
			}
			if b.tokens.unsavedN.Load() != 0 {
				t.Fatal("the old grant's token state is held in memory")
			}
		})
	}
}

// A client_id change forgets the refresh token held, as a repoint does, without asking
// for the secrets again; any other edit keeps it.
func TestClientIDChangeForgetsTheRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	if !storageHas(t, s, tokenPrefix+"ac") {
		t.Fatal("the consent stored no token")
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"client_id": "another-client"})
	if storageHas(t, s, tokenPrefix+"ac") {
		t.Fatal("the refresh token of the old client survived a client_id change")
	}
	if code, msg := accessErr(t, b, s, "ac"); code != http.StatusForbidden || !strings.Contains(msg, "awaiting consent") || !strings.Contains(msg, "/authorize") {
		t.Fatalf("access after a client_id change: %d %q, want 403 asking for a consent", code, msg)
	}
}

// A storage error while a rotated refresh token is stored loses nothing, even with an
// edit landing meanwhile: the new token is kept in memory and no request is made with
// the retired one (the read answers 503); the sweep's tick stores it once storage
// recovers, and the next read refreshes from it.
func TestRotatedRefreshTokenKeptAcrossStorageFailure(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	consented := p.lastIssued(t).refresh
	clock.Advance(time.Hour)
	failPut(s, tokenPrefix+"ac")
	if code, _ := accessErr(t, b, s, "ac"); code == http.StatusOK {
		t.Fatal("access handed out a token whose refresh token could not be stored")
	}
	rotated := p.lastIssued(t).refresh
	if rotated == consented || p.requests.Load() != 2 {
		t.Fatalf("%d requests, rotated %v: want the exchange and one rotating refresh", p.requests.Load(), rotated != consented)
	}
	// An edit bumps the generation and drops every cached copy: the Broker's last
	// token goes with it. The unsaved state must not.
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"description": "edited"})
	for i := range 3 {
		code, msg := accessErr(t, b, s, "ac")
		if code != http.StatusServiceUnavailable || !strings.Contains(msg, "could not be stored") {
			t.Fatalf("read %d while storage refuses: %d %q, want 503 saying the token state is not stored", i, code, msg)
		}
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests while the rotated token was unsaved, want none beyond the 2", n)
	}
	if got := storedTokenOf(t, s, "ac").RefreshToken; got != consented {
		t.Fatal("the stored token changed although storage refused")
	}
	failPut(s, "")
	tick(t, b, s) // the sweep stores it, whether or not anyone reads
	if got := storedTokenOf(t, s, "ac").RefreshToken; got != rotated {
		t.Fatal("the tick did not store the rotated refresh token")
	}
	accessOK(t, b, s, "ac", nil)
	if sent := p.LastRefreshToken(); sent != rotated {
		t.Fatalf("the read after recovery refreshed with the consented (retired) token: %v", sent == consented)
	}
	if st, _ := credStatus(t, b, s, "ac"); st != "active" {
		t.Fatalf("status %s, want active", st)
	}
}

// An answer to an older grant never overwrites a newer one: a refresh held at the
// provider while a person imports a new refresh token stores nothing over the import.
func TestRefreshAnswerNeverOverwritesAnImport(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	imported := p.IssueRefreshToken(t, callbackURL)
	arrived, release := blockTokens(t, p)
	clock.Advance(time.Hour)
	done := accessAsync(b, s, "ac")
	waitArrived(t, arrived, "access")
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"refresh_token": imported})
	release()
	waitRead(t, done, "access")
	if got := storedTokenOf(t, s, "ac").RefreshToken; got != imported {
		t.Fatal("the answer to the old grant overwrote the imported refresh token")
	}
}

// A default_token_lifetime change during a refresh whose answer states no lifetime
// (so its expiry rests on the old default) discards the access token but keeps the
// rotated refresh token.
func TestRotatedRefreshTokenSurvivesDefaultLifetimeChange(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	const rotated = "RT-rotated-without-expires-in"
	gate, arrived := make(chan struct{}), make(chan struct{}, 1)
	p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		arrived <- struct{}{}
		<-gate
		oauthtest.WriteJSON(w, http.StatusOK, `{"access_token":"AT-assumed","token_type":"Bearer","refresh_token":"`+rotated+`"}`)
		return true
	})
	clock.Advance(time.Hour)
	done := accessAsync(b, s, "ac")
	waitArrived(t, arrived, "access")
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"default_token_lifetime": 600})
	close(gate)
	if r := waitRead(t, done, "access"); r.err == nil && !r.resp.IsError() {
		t.Fatalf("served a token whose lifetime rests on a replaced default: %s", outcome(r.resp, nil))
	}
	stored := storedTokenOf(t, s, "ac")
	if stored.RefreshToken != rotated || stored.AccessToken != "" {
		t.Fatalf("stored: the rotated refresh token %v, an access token %v; want only the rotated refresh token",
			stored.RefreshToken == rotated, stored.AccessToken != "")
	}
}

// A read that arrives after an edit while the refresh the edit detached is still at
// the provider does not send the refresh token that refresh is spending (review of
// issue 21): it waits for it, then refreshes from what it stored. Before, the edit's
// Forget let the read start a second request with the same refresh token; the
// provider refused the retired token, the credential went to needs_reauth, and a
// provider with reuse detection revoked the grant.
func TestReadAfterAnEditWaitsForTheDetachedRefresh(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	consented := p.lastIssued(t).refresh
	arrived, release := blockTokens(t, p)
	clock.Advance(time.Hour)
	first := accessAsync(b, s, "ac")
	waitArrived(t, arrived, "the first read's refresh")
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"description": "edited"})
	second := accessAsync(b, s, "ac")
	// The second read must now be ordered behind the first request, or at the
	// provider (what the defect did): wait for whichever happens.
	for b.tokens.brokerOf().Ordered() == 0 {
		select {
		case <-arrived:
			release()
			waitRead(t, second, "second read")
			t.Fatalf("a second refresh reached the provider while the first was in flight (sent the consented token: %v)",
				p.LastRefreshToken() == consented)
		default:
			runtime.Gosched()
		}
	}
	release()
	waitRead(t, first, "first read")
	if r := waitRead(t, second, "second read"); r.err != nil || r.resp.IsError() {
		t.Fatalf("the read after the edit: %v %v", r.resp, r.err)
	}
	if st, reason := credStatus(t, b, s, "ac"); st != "active" {
		t.Fatalf("status %s (%s), want active", st, reason)
	}
	if p.requests.Load() != 3 || p.LastRefreshToken() == consented {
		t.Fatalf("%d requests, last sent the consented token %v: want the exchange and two refreshes, the second from the rotated token",
			p.requests.Load(), p.LastRefreshToken() == consented)
	}
}

// A code exchange in flight while a person imports a refresh token does not overwrite
// the import: the import is the newer grant (review of issue 21).
func TestExchangeNeverOverwritesAnImport(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	imported := p.IssueRefreshToken(t, callbackURL)
	arrived, release := blockTokens(t, p)
	page := make(chan int, 1)
	go func() {
		data := map[string]any{}
		for k := range loc.Query() {
			data[k] = loc.Query().Get(k)
		}
		resp, _ := request(b, s, logical.ReadOperation, callbackPath, data)
		status, _ := resp.Data[logical.HTTPStatusCode].(int)
		page <- status
	}()
	waitArrived(t, arrived, "the code exchange")
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"refresh_token": imported})
	release()
	if status := <-page; status == http.StatusOK {
		t.Fatal("the exchange reported success although a newer refresh token was imported meanwhile")
	}
	if got := storedTokenOf(t, s, "ac").RefreshToken; got != imported {
		t.Fatal("the code exchange overwrote the imported refresh token")
	}
}

// A consent whose tokens storage refuses still stands: the credential is
// re-authorized, the tokens are held in memory and stored by the next tick, and the
// unauthenticated page never shows a storage error (review of issue 21).
func TestConsentKeptAcrossStorageFailure(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour, rotate: true})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	failPut(s, tokenPrefix+"ac")
	start := startAuthorization(t, b, s, "ac")
	status, page := callback(t, b, s, p.consent(t, start["auth_url"].(string)).Query())
	if status != http.StatusOK || strings.Contains(page, "storage") {
		t.Fatalf("callback while storage refuses the tokens: %d %s", status, page)
	}
	consented := p.lastIssued(t).refresh
	failPut(s, "")
	tick(t, b, s)
	if got := storedTokenOf(t, s, "ac").RefreshToken; got != consented {
		t.Fatal("the tick did not store the consented refresh token")
	}
	accessOK(t, b, s, "ac", nil)

	// Storage refusing the credential's own write: a fixed page, no storage text.
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac2", authCodeFields(p))
	start = startAuthorization(t, b, s, "ac2")
	failPut(s, credentialPrefix+"ac2")
	status, page = callback(t, b, s, p.consent(t, start["auth_url"].(string)).Query())
	if status != http.StatusInternalServerError || strings.Contains(page, "storage unavailable") {
		t.Fatalf("callback while storage refuses the credential: %d %s", status, page)
	}
}

// failPut makes s refuse every write of key ("" for none).
func failPut(s *countingStorage, key string) {
	s.mu.Lock()
	s.failPut = key
	s.mu.Unlock()
}
