package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// blockTokens makes every token request to p wait until the returned release is
// called (at the latest when the test ends); arrived receives one value per request
// that reached the provider.
func blockTokens(t *testing.T, p *testProvider) (arrived <-chan struct{}, release func()) {
	t.Helper()
	in := make(chan struct{}, 16)
	gate := make(chan struct{})
	var released bool
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	p.SetFault(func(http.ResponseWriter, *http.Request) bool {
		in <- struct{}{}
		<-gate
		return false
	})
	t.Cleanup(release) // runs before the provider closes: it was registered later
	return in, release
}

// accessAsync reads access/<name> in the background.
func accessAsync(b *integrationsBackend, s logical.Storage, name string) <-chan accessResult {
	done := make(chan accessResult, 1)
	go func() {
		resp, err := request(b, s, logical.ReadOperation, "access/"+name, nil)
		done <- accessResult{resp, err}
	}()
	return done
}

type accessResult struct {
	resp *logical.Response
	err  error
}

func (r accessResult) token() any {
	if r.resp == nil {
		return nil
	}
	return r.resp.Data["access_token"]
}

func storageHas(t *testing.T, s logical.Storage, key string) bool {
	t.Helper()
	e, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return e != nil
}

// TestRepointNeverCarriesTheRefreshToken is the attack of issue 9: someone allowed to
// update an authorization-code credential, but not to read it, resends the client
// secret with a new token_url (a JSON merge patch) and waits for the next read to
// deliver the consented refresh token to their server. The repoint must forget the
// token, the refresh token and the pending authorization, in storage and memory.
func TestRepointNeverCarriesTheRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	attacker := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	refresh := p.lastIssued(t).refresh
	accessOK(t, b, s, "ac", nil) // cached in memory, in the Broker and in storage
	pending := startAuthorization(t, b, s, "ac")["state"].(string)
	clock.Advance(time.Second)

	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{
		"token_url": attacker.tokenURL(), "client_secret": oauthtest.ClientSecret,
	})
	for _, key := range []string{tokenPrefix + "ac", authorizationPrefix + "ac", oauthStatePrefix + pending} {
		if storageHas(t, s, key) {
			t.Fatalf("%s survived the repoint", key)
		}
	}
	code, msg := accessErr(t, b, s, "ac")
	if code != http.StatusForbidden || !strings.Contains(msg, "awaiting consent") || !strings.Contains(msg, "/authorize") {
		t.Fatalf("access after the repoint: %d %q, want 403 asking for a consent", code, msg)
	}
	if got := attacker.LastRefreshToken(); got != "" {
		t.Fatalf("the new token_url received a refresh token (the old one: %v)", got == refresh)
	}
	if n := attacker.requests.Load(); n != 0 {
		t.Fatalf("the new token_url received %d token requests before any authorization", n)
	}
	if st, _ := credStatus(t, b, s, "ac"); st != "awaiting_consent" {
		t.Fatalf("status %s after the repoint, want awaiting_consent", st)
	}
}

// TestRepointForgetsPublicClientsRefreshToken: a public client (no client_secret)
// has no secret to resend, but its refresh token is lost all the same.
func TestRepointForgetsPublicClientsRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	attacker := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	fields := authCodeFields(p)
	delete(fields, "client_secret")
	mustOK(t, b, s, logical.CreateOperation, "credentials/pub", fields)
	// The state a consent would have left: a stored token with its refresh token.
	const refresh = "RT-PUBLIC-CLIENT-must-not-travel"
	entry, err := logical.StorageEntryJSON(tokenPrefix+"pub", oauth.Token{
		AccessToken: "AT-old", RefreshToken: refresh, Expiry: clock.Now().Add(time.Hour), IssuedAt: clock.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/pub", map[string]any{"token_url": attacker.tokenURL()})
	if code, _ := accessErr(t, b, s, "pub"); code != http.StatusForbidden {
		t.Fatalf("access after the repoint: %d, want 403", code)
	}
	if got := attacker.LastRefreshToken(); got != "" || attacker.requests.Load() != 0 {
		t.Fatalf("the new token_url received %d requests, refresh token %q", attacker.requests.Load(), got)
	}
}

// TestUpdateKeepingTheDestinationKeepsTheRefreshToken: only a repoint forgets; new
// scopes get a new access token refreshed from the refresh token already held.
func TestUpdateKeepingTheDestinationKeepsTheRefreshToken(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	authorizeCode(t, b, s, p, "ac")
	refresh := p.lastIssued(t).refresh
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"scopes": "offline_access"})
	accessOK(t, b, s, "ac", nil)
	if got := p.LastRefreshToken(); got != refresh || p.requests.Load() != 2 {
		t.Fatalf("after a scopes update: %d requests, refreshed with the held token: %v", p.requests.Load(), got == refresh)
	}
}

// TestRepointOnAnotherNode: the node that did not take the write learns of it through
// Invalidate (the credential key changed, the token key was deleted) and forgets what
// it held in memory: its cached token and its Broker's last token.
func TestRepointOnAnotherNode(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	attacker := newTestProvider(t, providerConfig{})
	clock := newTestClock()
	storage := &logical.InmemStorage{}
	b1, s, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	mustOK(t, b1, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
	authorizeCode(t, b1, s, p, "ac")
	clock.Advance(time.Hour) // stale: the next read refreshes
	accessOK(t, b2, s, "ac", nil)
	if p.requests.Load() != 2 {
		t.Fatalf("%d requests, want the exchange and one refresh by the other node", p.requests.Load())
	}
	clock.Advance(time.Hour)
	mustOK(t, b1, s, logical.PatchOperation, "credentials/ac", map[string]any{
		"token_url": attacker.tokenURL(), "client_secret": oauthtest.ClientSecret,
	})
	for _, key := range []string{credentialPrefix + "ac", tokenPrefix + "ac"} {
		b2.InvalidateKey(context.Background(), key)
	}
	if code, _ := accessErr(t, b2, s, "ac"); code != http.StatusForbidden {
		t.Fatalf("the other node's access after the repoint: %d, want 403", code)
	}
	if got := attacker.LastRefreshToken(); got != "" || attacker.requests.Load() != 0 {
		t.Fatalf("the new token_url received %d requests from the other node", attacker.requests.Load())
	}
}

// TestInFlightMintDiscardedOnDelete: nothing outlives a delete, not even the answer
// to a token request that was in flight when the credential went.
func TestInFlightMintDiscardedOnDelete(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	arrived, release := blockTokens(t, p)
	done := accessAsync(b, s, "cc")
	<-arrived
	mustOK(t, b, s, logical.DeleteOperation, "credentials/cc", nil)
	release()
	if r := <-done; r.err == nil {
		t.Fatalf("the in-flight access succeeded after the delete: %v", r.token())
	}
	if storageHas(t, s, tokenPrefix+"cc") {
		t.Fatal("the token minted for a deleted credential was stored")
	}
	// A new credential under the name starts afresh.
	p.SetFault(nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	accessOK(t, b, s, "cc", nil)
	if p.requests.Load() != 2 {
		t.Fatalf("%d requests, want a new mint for the new credential", p.requests.Load())
	}
}

// TestInFlightMintDiscardedOnUpdate: a token requested under the old settings is not
// served as current, nor stored, after an update lands during the request.
func TestInFlightMintDiscardedOnUpdate(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	arrived, release := blockTokens(t, p)
	done := accessAsync(b, s, "cc")
	<-arrived
	clock.Advance(time.Second)
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"scopes": "read"})
	release()
	r := <-done
	if r.err == nil {
		t.Fatalf("the in-flight access was served a token of the old settings: %s", outcome(r.resp, nil))
	}
	if !strings.Contains(r.err.Error(), "changed while") {
		t.Fatalf("in-flight access error %q, want one saying the credential changed", r.err)
	}
	if storageHas(t, s, tokenPrefix+"cc") {
		t.Fatal("the token of the old settings was stored")
	}
	got := accessOK(t, b, s, "cc", nil).Data
	if got["scope"] != "read" || p.requests.Load() != 2 {
		t.Fatalf("after the update: scope %v after %d requests, want a new token for scope read", got["scope"], p.requests.Load())
	}
}

// TestConfigChangeKeepsBackoff: request_timeout changes nothing already learnt; in
// particular the Broker (its backoff, its requests in flight) is not rebuilt.
func TestConfigChangeKeepsBackoff(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	p.SetFault(oauthtest.Fail(http.StatusServiceUnavailable, "Retry-After", "60"))
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
		t.Fatalf("got %d, want 502", code)
	}
	broker := b.tokens.brokerOf()
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"request_timeout": 10, "default_token_lifetime": 7200, "log_size": 100})
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway || p.requests.Load() != 1 {
		t.Fatalf("after a config change, during Retry-After: %d after %d requests, want 502 after 1", code, p.requests.Load())
	}
	if b.tokens.brokerOf() != broker {
		t.Fatal("the Broker was rebuilt by a config change")
	}
}

// noExpiresIn answers every token request with a token and no expires_in, so its
// lifetime is the engine's default_token_lifetime.
func noExpiresIn(n *int) oauthtest.Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		*n++
		oauthtest.WriteJSON(w, http.StatusOK, fmt.Sprintf(`{"access_token":"AT-assumed-%d","token_type":"Bearer"}`, *n))
		return true
	}
}

// TestAssumedLifetimeFollowsDefaultTokenLifetime: a token whose expiry was assumed
// from default_token_lifetime is not served as current after that setting changes;
// one whose lifetime the provider stated is.
func TestAssumedLifetimeFollowsDefaultTokenLifetime(t *testing.T) {
	t.Parallel()
	assumed := newTestProvider(t, providerConfig{})
	stated := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	var minted int
	assumed.SetFault(noExpiresIn(&minted))
	mustOK(t, b, s, logical.CreateOperation, "credentials/assumed", clientCredentials(assumed, "header"))
	mustOK(t, b, s, logical.CreateOperation, "credentials/stated", clientCredentials(stated, "header"))
	first := accessOK(t, b, s, "assumed", nil).Data
	if first["access_token"] != "AT-assumed-1" || first["expires_in"] != int64(3600) {
		t.Fatalf("first token %v, want AT-assumed-1 for the default hour", first)
	}
	statedToken := accessOK(t, b, s, "stated", nil).Data["access_token"]
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"default_token_lifetime": 600})
	got := accessOK(t, b, s, "assumed", nil).Data
	if got["access_token"] != "AT-assumed-2" || got["expires_in"] != int64(600) {
		t.Fatalf("after default_token_lifetime changed: %v, want a new token for 10 minutes", got)
	}
	if accessOK(t, b, s, "stated", nil).Data["access_token"] != statedToken || stated.requests.Load() != 1 {
		t.Fatal("a token whose lifetime the provider stated was minted again")
	}
}

// TestAssumedLifetimeInFlightDiscarded: a token minted under the old
// default_token_lifetime while the setting changes is not stored.
func TestAssumedLifetimeInFlightDiscarded(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	gate, arrived := make(chan struct{}), make(chan struct{}, 4)
	var minted int
	answer := noExpiresIn(&minted)
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		arrived <- struct{}{}
		<-gate
		return answer(w, r)
	})
	done := accessAsync(b, s, "cc")
	<-arrived
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"default_token_lifetime": 600})
	close(gate)
	if r := <-done; r.err == nil {
		t.Fatalf("served a token whose lifetime rests on a replaced default: %s", outcome(r.resp, nil))
	}
	if storageHas(t, s, tokenPrefix+"cc") {
		t.Fatal("stored a token whose lifetime rests on a replaced default")
	}
	if got := accessOK(t, b, s, "cc", nil).Data; got["expires_in"] != int64(600) {
		t.Fatalf("next token %v, want the new default lifetime", got)
	}
}

// TestCallbackBaseChangeDropsPendingAuthorizations: a consent whose redirect_url came
// from callback_base_url cannot complete after that setting changes.
func TestCallbackBaseChangeDropsPendingAuthorizations(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	start := startAuthorization(t, b, s, "ac")
	loc := p.consent(t, start["auth_url"].(string))
	// request_timeout changes nothing already learnt.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"request_timeout": 20})
	if !storageHas(t, s, authorizationPrefix+"ac") {
		t.Fatal("a request_timeout change dropped a pending authorization")
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": "https://vault2.example.test"})
	if storageHas(t, s, authorizationPrefix+"ac") || storageHas(t, s, oauthStatePrefix+start["state"].(string)) {
		t.Fatal("the pending authorization survived a callback_base_url change")
	}
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusBadRequest {
		t.Fatalf("callback after callback_base_url changed: %d %s", status, page)
	}
	if p.requests.Load() != 0 {
		t.Fatal("the dropped authorization's code was exchanged")
	}
}

// TestHostileProviderErrorText: a provider's error response is data from a stranger.
// Only an error code that passes oauth.SafeCode is kept (else http_<status>); the
// description and body are never repeated: not in the caller's error, the stored
// status_reason, the credential's events, the server log, nor Vault events.
func TestHostileProviderErrorText(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	logs := &lcLogBuffer{}
	events := logical.NewMockEventSender()
	b, s, _ := newBackendWith(t, backendOptions{logs: logs, events: events, initialize: true})
	const desc = "HOSTILE-DESCRIPTION"
	hostile := []string{
		"invalid_grant\nINJECTED log line",
		"<script>alert(1)</script>",
		"<!channel> wake up",
		"<!here>",
		"invalid_grant\r\nX: y",
		strings.Repeat("A", 10<<10),
	}
	leaks := []string{"INJECTED", "<script", "alert(", "<!channel", "wake up", "<!here", "X: y", "AAAAAAAA", desc, oauthtest.Marker}
	for i, code := range hostile {
		name := fmt.Sprintf("c%d", i)
		body := fmt.Sprintf(`{"error":%q,"error_description":%q}`, code, desc+" "+oauthtest.Marker)
		p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
			oauthtest.WriteJSON(w, http.StatusBadRequest, body)
			return true
		})
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, clientCredentials(p, "header"))
		code, msg := accessErr(t, b, s, name)
		if code != http.StatusForbidden || !strings.Contains(msg, "http_400") {
			t.Fatalf("%s: %d %q, want 403 naming http_400", name, code, msg)
		}
		if st, reason := credStatus(t, b, s, name); st != "needs_reauth" || reason != "http_400" {
			t.Fatalf("%s: status %s reason %q, want needs_reauth http_400", name, st, reason)
		}
		for _, leak := range leaks {
			if strings.Contains(msg, leak) {
				t.Fatalf("%s: the caller's error repeats %q: %s", name, leak, msg)
			}
		}
	}
	// A multi-megabyte description: refused as too large, never read into anything.
	huge := `{"error":"invalid_grant","error_description":"` + desc + strings.Repeat("D", 3<<20) + `"}`
	p.SetFault(func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, http.StatusBadRequest, huge)
		return true
	})
	mustOK(t, b, s, logical.CreateOperation, "credentials/huge", clientCredentials(p, "header"))
	if _, msg := accessErr(t, b, s, "huge"); strings.Contains(msg, desc) || len(msg) > 512 {
		t.Fatalf("huge description: error %.200q (%d bytes)", msg, len(msg))
	}
	leaks = append(leaks, "DDDDDDDD")

	var stored []string
	for i := range hostile {
		name := fmt.Sprintf("c%d", i)
		r := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil)
		ev := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name+"/logs", nil)
		stored = append(stored, fmt.Sprint(r.Data), fmt.Sprint(ev.Data))
		e, err := s.Get(context.Background(), credentialPrefix+name)
		if err != nil || e == nil {
			t.Fatalf("%s not stored: %v", name, err)
		}
		stored = append(stored, string(e.Value))
	}
	events.Lock()
	stored = append(stored, fmt.Sprint(events.Events))
	events.Unlock()
	stored = append(stored, logs.String())
	for _, text := range stored {
		for _, leak := range leaks {
			if strings.Contains(text, leak) {
				i := strings.Index(text, leak)
				t.Fatalf("provider text %q reached stored state, events or logs: …%s…", leak, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	// No line of the log starts with anything but hclog's timestamp: no newline of
	// the provider's made it into a message.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "20") {
			t.Fatalf("a log line not written by hclog: %q", line)
		}
	}
	if !strings.Contains(logs.String(), "http_400") {
		t.Fatal("the needs_reauth notifications were not logged at all: the log check proves nothing")
	}
}

// TestShortLivedTokensAreNotMintedOnEveryRead: a demand (minimum_seconds, or
// expiry_buffer) longer than the provider's tokens live cannot be met by minting, so
// the token minted is served with a warning, and served again until it has less than
// expiry_buffer left (or, when expiry_buffer is itself too long, half its lifetime).
func TestShortLivedTokensAreNotMintedOnEveryRead(t *testing.T) {
	t.Parallel()
	t.Run("minimum_seconds", func(t *testing.T) {
		t.Parallel()
		p := newTestProvider(t, providerConfig{accessTTL: 2 * time.Minute})
		b, s, clock := oauthBackend(t)
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
		demand := map[string]any{"minimum_seconds": 600}
		first := accessOK(t, b, s, "cc", demand)
		if len(first.Warnings) != 1 || !strings.Contains(first.Warnings[0], "2m0s") {
			t.Fatalf("first read: warnings %q, want one naming the 2m lifetime", first.Warnings)
		}
		for range 6 { // 60 s: the token keeps at least expiry_buffer (60 s)
			clock.Advance(10 * time.Second)
			r := accessOK(t, b, s, "cc", demand)
			if r.Data["access_token"] != first.Data["access_token"] || len(r.Warnings) != 1 || p.requests.Load() != 1 {
				t.Fatalf("within its lifetime: token changed %v, warnings %q, %d requests, want the same token with a warning after 1",
					r.Data["access_token"] != first.Data["access_token"], r.Warnings, p.requests.Load())
			}
		}
		clock.Advance(time.Second) // 59 s left: within expiry_buffer
		if r := accessOK(t, b, s, "cc", demand); r.Data["access_token"] == first.Data["access_token"] || p.requests.Load() != 2 {
			t.Fatalf("within expiry_buffer of its expiry: %d requests, want a new token", p.requests.Load())
		}
		// A demand the tokens can meet gets no warning.
		if r := accessOK(t, b, s, "cc", map[string]any{"minimum_seconds": 90}); len(r.Warnings) != 0 {
			t.Fatalf("minimum_seconds=90 for 2-minute tokens: warnings %q", r.Warnings)
		}
	})
	t.Run("expiry_buffer", func(t *testing.T) {
		t.Parallel()
		p := newTestProvider(t, providerConfig{accessTTL: 2 * time.Minute})
		b, s, clock := oauthBackend(t)
		mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"expiry_buffer": 300})
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
		first := accessOK(t, b, s, "cc", nil)
		if len(first.Warnings) != 1 {
			t.Fatalf("first read: warnings %q, want one", first.Warnings)
		}
		clock.Advance(60 * time.Second) // half the lifetime left
		if r := accessOK(t, b, s, "cc", nil); r.Data["access_token"] != first.Data["access_token"] || p.requests.Load() != 1 {
			t.Fatalf("with half its lifetime left: %d requests, want the same token", p.requests.Load())
		}
		clock.Advance(time.Second)
		if accessOK(t, b, s, "cc", nil); p.requests.Load() != 2 {
			t.Fatalf("with less than half its lifetime left: %d requests, want a new token", p.requests.Load())
		}
	})
}

// TestExchangeHoldsNoLock: while a code exchange waits for the provider, other work
// on the credential (a suspend, an update) does not wait for it. The edits keep the
// destination and client, so the consent stands: its refresh token is stored, its
// access token (minted for the old scopes) is not, and the next read refreshes under
// the new scopes without another consent.
func TestExchangeHoldsNoLock(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	loc := p.consent(t, startAuthorization(t, b, s, "ac")["auth_url"].(string))
	arrived, release := blockTokens(t, p)
	exchanged := make(chan *logical.Response, 1)
	go func() {
		data := map[string]any{}
		for k := range loc.Query() {
			data[k] = loc.Query().Get(k)
		}
		resp, _ := request(b, s, logical.ReadOperation, callbackPath, data)
		exchanged <- resp
	}()
	<-arrived // the exchange is at the provider

	for _, op := range []struct {
		name string
		run  func() *logical.Response
	}{
		{"suspend", func() *logical.Response {
			return call(t, b, s, logical.UpdateOperation, "credentials/ac/suspend", nil)
		}},
		{"update", func() *logical.Response {
			clock.Advance(time.Second)
			return call(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"scopes": "read"})
		}},
	} {
		done := make(chan *logical.Response, 1)
		go func() { done <- op.run() }()
		select {
		case resp := <-done:
			if resp != nil && resp.IsError() {
				t.Fatalf("%s during the exchange: %v", op.name, resp.Error())
			}
		case <-exchanged:
			t.Fatalf("the exchange ended before it was released")
		case <-time.After(30 * time.Second): // detects a hang; the pass needs no waiting
			release()
			t.Fatalf("%s waited for the code exchange: a lock is held across the provider call", op.name)
		}
	}
	release()
	resp := <-exchanged
	page := string(resp.Data[logical.HTTPRawBody].([]byte))
	if resp.Data[logical.HTTPStatusCode] != http.StatusOK {
		t.Fatalf("the exchange did not complete across a suspend and a scopes update: %s", page)
	}
	consented := p.lastIssued(t)
	stored := storedTokenOf(t, s, "ac")
	if stored.RefreshToken != consented.refresh || stored.AccessToken != "" {
		t.Fatalf("stored refresh token is the consented one: %v; access token kept: %v (want only the refresh token)",
			stored.RefreshToken == consented.refresh, stored.AccessToken != "")
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/unsuspend", nil)
	got := accessOK(t, b, s, "ac", nil).Data
	if !strings.Contains(got["scope"].(string), "read") || p.LastRefreshToken() != consented.refresh || p.requests.Load() != 2 {
		t.Fatalf("after the edits: scope %v, refreshed with the consented token %v, %d requests; want scope read from one refresh",
			got["scope"], p.LastRefreshToken() == consented.refresh, p.requests.Load())
	}
}
