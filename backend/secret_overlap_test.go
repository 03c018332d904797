package backend

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// secretServer is a token endpoint (client credentials) whose accepted client secrets
// the test sets, recording the secret each request came with.
type secretServer struct {
	*httptest.Server
	mu       sync.Mutex
	accepted map[string]bool
	sent     []string
}

const (
	overlapOld = "old-secret-0123456789"
	overlapNew = "new-secret-9876543210"
)

func newSecretServer(t *testing.T, accepted ...string) *secretServer {
	t.Helper()
	ss := &secretServer{}
	ss.accept(accepted...)
	ss.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		ss.mu.Lock()
		ss.sent = append(ss.sent, secret)
		good := id == "app" && ss.accepted[secret]
		n := len(ss.sent)
		ss.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !good {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = fmt.Fprintf(w, `{"access_token":"at-%d","token_type":"Bearer","expires_in":600}`, n)
	}))
	t.Cleanup(ss.Close)
	return ss
}

func (ss *secretServer) accept(secrets ...string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.accepted = map[string]bool{}
	for _, s := range secrets {
		ss.accepted[s] = true
	}
}

// took returns the secrets sent since the last call.
func (ss *secretServer) took() []string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := ss.sent
	ss.sent = nil
	return out
}

func overlapCred(ss *secretServer, style, secret string) map[string]any {
	return map[string]any{"type": "oauth2_client_credentials", "token_url": ss.URL + "/token", "client_id": "app",
		"client_secret": secret, "auth_style": style}
}

func wantSent(t *testing.T, ss *secretServer, step string, want ...string) {
	t.Helper()
	if got := ss.took(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: secrets sent %v, want %v", step, got, want)
	}
}

// credView reads credentials/<name> and checks that no client secret appears in it.
func credView(t *testing.T, b *integrationsBackend, s logical.Storage, name string) map[string]any {
	t.Helper()
	data := mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data
	raw, _ := json.Marshal(data)
	for _, secret := range []string{overlapOld, overlapNew} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("credentials/%s shows a client secret: %s", name, raw)
		}
	}
	return data
}

func TestSecretOverlapServesThroughThePreviousSecret(t *testing.T) {
	t.Parallel()
	for _, style := range []string{"header", "body"} {
		t.Run(style, func(t *testing.T) {
			t.Parallel()
			ss := newSecretServer(t, overlapOld)
			events := logical.NewMockEventSender()
			b, s, clock := newBackendWith(t, backendOptions{events: events})
			mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, style, overlapOld))
			lcAccess(t, b, s, "cc")
			wantSent(t, ss, "first read", overlapOld)

			clock.Advance(time.Minute)
			rotatedAt := clock.Now()
			mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", overlapCred(ss, style, overlapNew))
			view := credView(t, b, s, "cc")
			if want := rotatedAt.Add(time.Hour).UTC().Format(time.RFC3339); view["previous_client_secret_until"] != want {
				t.Fatalf("previous_client_secret_until = %v, want %s", view["previous_client_secret_until"], want)
			}
			if fmt.Sprint(view["secret_fields"]) != "[client_secret]" {
				t.Fatalf("secret_fields = %v", view["secret_fields"])
			}

			// The provider does not know the new secret yet: the previous one serves.
			clock.Advance(time.Minute)
			lcAccess(t, b, s, "cc")
			wantSent(t, ss, "read after the rotation", overlapNew, overlapOld)
			view = credView(t, b, s, "cc")
			if view["status"] != "active" || view["health"] != lifecycle.HealthYellow {
				t.Fatalf("after the refusal: status %v health %v, want active yellow", view["status"], view["health"])
			}
			refused := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNewSecretRefused)
			if len(refused) != 1 || refused[0]["severity"] != lifecycle.HealthYellow {
				t.Fatalf("alerts: %v", lcAlerts(t, b, s))
			}
			if n := countEvents(events, "integrations/credential-"+eventNewSecretRefused); n != 1 {
				t.Fatalf("%d new_client_secret_refused events, want 1", n)
			}

			// Still refused at the next mint: served again, announced once.
			clock.Advance(11 * time.Minute)
			lcAccess(t, b, s, "cc")
			wantSent(t, ss, "second mint", overlapNew, overlapOld)
			if n := countEvents(events, "integrations/credential-"+eventNewSecretRefused); n != 1 {
				t.Fatalf("%d new_client_secret_refused events after the second refusal, want 1", n)
			}

			// The provider accepts the new secret: the first token it obtains forgets
			// the previous one.
			ss.accept(overlapOld, overlapNew)
			clock.Advance(11 * time.Minute)
			lcAccess(t, b, s, "cc")
			wantSent(t, ss, "accepted", overlapNew)
			view = credView(t, b, s, "cc")
			if _, kept := view["previous_client_secret_until"]; kept || view["health"] != lifecycle.HealthGreen {
				t.Fatalf("after the new secret worked: %v", view)
			}
			if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNewSecretRefused); len(got) != 0 {
				t.Fatalf("alert stays: %v", got)
			}
			entry, err := s.Get(context.Background(), "credentials/cc")
			if err != nil || strings.Contains(string(entry.Value), overlapOld) {
				t.Fatalf("the stored credential still holds the previous secret (%v)", err)
			}

			// Forgotten: when the provider refuses the new one again, nothing falls back.
			ss.accept(overlapOld)
			clock.Advance(11 * time.Minute)
			if _, err := lcDo(b, s, logical.ReadOperation, "access/cc", "", nil); err == nil {
				t.Fatal("access succeeded through a forgotten secret")
			}
			wantSent(t, ss, "after forgetting", overlapNew)
		})
	}
}

func countEvents(events *logical.MockEventSender, kind string) int {
	events.Lock()
	defer events.Unlock()
	n := 0
	for _, e := range events.Events {
		if string(e.Type) == kind {
			n++
			if strings.Contains(e.Event.String(), overlapOld) || strings.Contains(e.Event.String(), overlapNew) {
				panic("an event carries a client secret")
			}
		}
	}
	return n
}

func TestSecretOverlapEndsAtTheSweep(t *testing.T) {
	t.Parallel()
	ss := newSecretServer(t, overlapOld)
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, "header", overlapOld))
	data := overlapCred(ss, "header", overlapNew)
	data["client_secret_overlap"] = "30m"
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", data)
	lcAccess(t, b, s, "cc")
	wantSent(t, ss, "within the overlap", overlapNew, overlapOld)

	// A sweep before the end keeps it.
	clock.Advance(29 * time.Minute)
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	if _, kept := credView(t, b, s, "cc")["previous_client_secret_until"]; !kept {
		t.Fatal("forgotten before the overlap ended")
	}
	clock.Advance(2 * time.Minute)
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	entry, err := s.Get(context.Background(), "credentials/cc")
	if err != nil || strings.Contains(string(entry.Value), overlapOld) {
		t.Fatalf("the sweep left the previous secret stored (%v)", err)
	}
	view := credView(t, b, s, "cc")
	if _, kept := view["previous_client_secret_until"]; kept {
		t.Fatalf("still kept after the overlap: %v", view)
	}
	if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNewSecretRefused); len(got) != 0 {
		t.Fatalf("alert after the overlap: %v", got)
	}
	// The token minted through the previous secret expires; the new one is refused.
	clock.Advance(10 * time.Minute)
	if _, err := lcDo(b, s, logical.ReadOperation, "access/cc", "", nil); err == nil {
		t.Fatal("access succeeded after the overlap")
	}
	wantSent(t, ss, "after the overlap", overlapNew)
	if st, reason := credStatus(t, b, s, "cc"); st != "needs_reauth" || reason != "invalid_client" {
		t.Fatalf("status %s %s", st, reason)
	}
}

// The previous secret is not used past the overlap even when no sweep ran.
func TestSecretOverlapEndsWithoutASweep(t *testing.T) {
	t.Parallel()
	ss := newSecretServer(t, overlapOld)
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, "body", overlapOld))
	mustOK(t, b, s, logical.UpdateOperation, "credentials/cc", overlapCred(ss, "body", overlapNew))
	clock.Advance(time.Hour)
	if _, err := lcDo(b, s, logical.ReadOperation, "access/cc", "", nil); err == nil {
		t.Fatal("access succeeded through an expired overlap")
	}
	wantSent(t, ss, "at the end of the overlap", overlapNew)
}

func TestSecretOverlapNotKept(t *testing.T) {
	t.Parallel()
	ss := newSecretServer(t, overlapOld)
	other := newSecretServer(t, overlapOld)
	cases := map[string]map[string]any{
		"overlap off":   {"client_secret": overlapNew, "client_secret_overlap": "0"},
		"new client_id": {"client_secret": overlapNew, "client_id": "app2"},
		"repoint":       {"client_secret": overlapNew, "token_url": other.URL + "/token"},
		"same secret":   {"client_secret": overlapOld, "description": "edited"},
		"secret unset":  {"auth_style": "private_key_jwt", "client_secret": nil, "client_key": fixtures.KeyPEM(fixtures.NewKey("p256"))},
	}
	// A secret the provider refused already is not kept when a new one replaces it.
	{
		refused := newSecretServer(t, overlapNew)
		b, s, _ := newBackendWith(t, backendOptions{})
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(refused, "header", overlapOld))
		if _, err := lcDo(b, s, logical.ReadOperation, "access/cc", "", nil); err == nil {
			t.Fatal("a refused secret minted")
		}
		mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": overlapNew})
		if v, kept := credView(t, b, s, "cc")["previous_client_secret_until"]; kept {
			t.Errorf("a refused secret is kept until %v", v)
		}
	}
	for name, change := range cases {
		b, s, _ := newBackendWith(t, backendOptions{})
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, "header", overlapOld))
		mustOK(t, b, s, logical.PatchOperation, "credentials/cc", change)
		if v, kept := credView(t, b, s, "cc")["previous_client_secret_until"]; kept {
			t.Errorf("%s: previous secret kept until %v", name, v)
		}
	}
	ss.took()

	// Off: a refused new secret is a refusal.
	b, s, _ := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, "header", overlapOld))
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": overlapNew, "client_secret_overlap": "0s"})
	if _, err := lcDo(b, s, logical.ReadOperation, "access/cc", "", nil); err == nil {
		t.Fatal("access succeeded with the overlap off")
	}
	wantSent(t, ss, "overlap off", overlapNew)

	// A client_id change after a rotation forgets the previous secret too.
	b, s, _ = newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, "header", overlapOld))
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": overlapNew})
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"description": "kept"})
	if _, kept := credView(t, b, s, "cc")["previous_client_secret_until"]; !kept {
		t.Fatal("an edit that rotates nothing forgot the previous secret")
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_id": "app2"})
	if _, kept := credView(t, b, s, "cc")["previous_client_secret_until"]; kept {
		t.Fatal("a new client_id kept the previous secret")
	}
}

func TestSecretOverlapField(t *testing.T) {
	t.Parallel()
	ss := newSecretServer(t, overlapOld)
	b, s, _ := newBackendWith(t, backendOptions{})
	for _, bad := range []string{"8d", "-1h", "soon"} {
		data := overlapCred(ss, "header", overlapOld)
		data["client_secret_overlap"] = bad
		resp := call(t, b, s, logical.CreateOperation, "credentials/bad", data)
		wantFieldError(t, resp, "client_secret_overlap")
		if strings.Contains(resp.Error().Error(), bad) {
			t.Errorf("the refusal echoes the value: %v", resp.Error())
		}
	}
	data := overlapCred(ss, "header", overlapOld)
	data["client_secret_overlap"] = "7200"
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", data)
	if got := credView(t, b, s, "cc")["client_secret_overlap"]; got != "2h0m0s" {
		t.Fatalf("client_secret_overlap = %v", got)
	}
}

// keyServer is a private_key_jwt token endpoint accepting assertions signed by the keys
// the test sets, recording the kid of each assertion.
type keyServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys map[string]crypto.PublicKey // by kid
	kids []string
}

func newKeyServer(t *testing.T) *keyServer {
	t.Helper()
	ks := &keyServer{keys: map[string]crypto.PublicKey{}}
	ks.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		kid := ""
		if err == nil && len(tok.Headers) == 1 {
			kid = tok.Headers[0].KeyID
		}
		ks.mu.Lock()
		ks.kids = append(ks.kids, kid)
		pub, known := ks.keys[kid]
		ks.mu.Unlock()
		var c jwt.Claims
		w.Header().Set("Content-Type", "application/json")
		if err != nil || !known || tok.Claims(pub, &c) != nil || c.Subject != "svc-app" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"jwt-minted","token_type":"Bearer","expires_in":600}`))
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) accept(keys map[string]crypto.PublicKey) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.keys = keys
}

func (ks *keyServer) took() []string {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out := ks.kids
	ks.kids = nil
	return out
}

// A pasted client_key that changes follows the same rule: the previous key, with its
// key id and certificate as they were, serves while the provider does not know the new
// one, and is forgotten once the new one is accepted.
func TestSecretOverlapClientKey(t *testing.T) {
	t.Parallel()
	oldKey, newKey := fixtures.NewKey("p256"), fixtures.NewKey("p256")
	ks := newKeyServer(t)
	ks.accept(map[string]crypto.PublicKey{"k1": oldKey.Public()})
	b, s, clock := newBackendWith(t, backendOptions{})
	notAfter := time.Now().AddDate(0, 6, 0)
	mustOK(t, b, s, logical.CreateOperation, "credentials/jwt", map[string]any{
		"type": "oauth2_client_credentials", "token_url": ks.URL + "/token", "client_id": "svc-app", "auth_style": "private_key_jwt",
		"client_key": fixtures.KeyPEM(oldKey), "client_key_id": "k1", "client_certificate": fixtures.SelfSigned(oldKey, "svc-app", notAfter),
	})
	lcAccess(t, b, s, "jwt")
	if got := ks.took(); fmt.Sprint(got) != "[k1]" {
		t.Fatalf("first mint: kids %v", got)
	}
	clock.Advance(time.Minute)
	mustOK(t, b, s, logical.PatchOperation, "credentials/jwt", map[string]any{
		"client_key": fixtures.KeyPEM(newKey), "client_key_id": "k2", "client_certificate": fixtures.SelfSigned(newKey, "svc-app", notAfter),
	})
	clock.Advance(time.Minute)
	lcAccess(t, b, s, "jwt")
	if got := ks.took(); fmt.Sprint(got) != "[k2 k1]" {
		t.Fatalf("after the rotation: kids %v, want the new key refused, then the previous one", got)
	}
	view := mustOK(t, b, s, logical.ReadOperation, "credentials/jwt", nil).Data
	if view["status"] != "active" || view["health"] != lifecycle.HealthYellow || view["previous_client_secret_until"] == nil {
		t.Fatalf("after the refusal: %v", view)
	}
	raw, _ := json.Marshal(view)
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Fatal("the read shows a client key")
	}

	ks.accept(map[string]crypto.PublicKey{"k1": oldKey.Public(), "k2": newKey.Public()})
	clock.Advance(11 * time.Minute)
	lcAccess(t, b, s, "jwt")
	if got := ks.took(); fmt.Sprint(got) != "[k2]" {
		t.Fatalf("new key accepted: kids %v", got)
	}
	view = mustOK(t, b, s, logical.ReadOperation, "credentials/jwt", nil).Data
	if view["previous_client_secret_until"] != nil || view["health"] != lifecycle.HealthGreen {
		t.Fatalf("after the new key worked: %v", view)
	}
}

// The previous secret is stored with the credential: a backend started again on the
// same storage (a restart, another node after a step-down) still falls back to it.
func TestSecretOverlapSurvivesARestart(t *testing.T) {
	t.Parallel()
	ss := newSecretServer(t, overlapOld)
	clock := newTestClock()
	storage := &logical.InmemStorage{}
	b, s, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", overlapCred(ss, "body", overlapOld))
	mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"client_secret": overlapNew})
	b.Clean(context.Background())

	b2, s2, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	clock.Advance(time.Minute)
	lcAccess(t, b2, s2, "cc")
	wantSent(t, ss, "after the restart", overlapNew, overlapOld)
	if h := credView(t, b2, s2, "cc")["health"]; h != lifecycle.HealthYellow {
		t.Fatalf("health %v, want yellow", h)
	}
}

// The refresh_token grant of an authorization-code credential goes through the
// overlap as the client-credentials grant does: the held refresh token is sent with
// the previous secret when the new one is refused.
func TestSecretOverlapRefreshGrant(t *testing.T) {
	t.Parallel()
	ss := newSecretServer(t, overlapOld)
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", map[string]any{
		"type": "oauth2_authorization_code", "auth_url": ss.URL + "/authorize", "token_url": ss.URL + "/token",
		"client_id": "app", "client_secret": overlapOld, "auth_style": "body", "refresh_token": "rt-imported-0123456789",
	})
	lcAccess(t, b, s, "ac")
	wantSent(t, ss, "first refresh", overlapOld)
	clock.Advance(time.Minute)
	mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"client_secret": overlapNew})
	if st, _ := credStatus(t, b, s, "ac"); st != "active" {
		t.Fatalf("a new client_secret left status %s (the refresh token is the same client's)", st)
	}
	clock.Advance(time.Minute)
	lcAccess(t, b, s, "ac")
	wantSent(t, ss, "refresh after the rotation", overlapNew, overlapOld)
	if h := credView(t, b, s, "ac")["health"]; h != lifecycle.HealthYellow {
		t.Fatalf("health %v, want yellow", h)
	}
}

// codeOverlapProvider is the stdlib test provider (internal/oauthtest) for the
// authorization-code grant, registered with overlapOld, behind a fault that decides
// which client secrets it accepts: an accepted one is passed on as the registered one,
// any other is refused with invalid_client before the server sees the request (so a
// refused code stays unspent, as RFC 6749 §4.1.3 has it). It records the secret of
// every token request, the refresh_token grant's included.
type codeOverlapProvider struct {
	*oauthtest.Provider
	mu       sync.Mutex
	accepted map[string]bool
	sent     []string
}

func newCodeOverlapProvider(t *testing.T, accepted ...string) *codeOverlapProvider {
	t.Helper()
	cp := &codeOverlapProvider{Provider: oauthtest.New(t, oauthtest.Options{
		Domain: tpCallbackBase, AccessTTL: 10 * time.Minute, Rotate: true, ForcePKCE: true, ClientSecret: overlapOld,
	})}
	cp.accept(accepted...)
	cp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		id, secret, basic := r.BasicAuth()
		if !basic {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		cp.mu.Lock()
		cp.sent = append(cp.sent, secret)
		good := id == oauthtest.ClientID && cp.accepted[secret]
		cp.mu.Unlock()
		if !good {
			oauthtest.WriteJSON(w, http.StatusUnauthorized, `{"error":"invalid_client"}`)
			return true
		}
		if basic {
			r.SetBasicAuth(id, overlapOld)
		} else {
			r.Form.Set("client_secret", overlapOld)
			r.PostForm.Set("client_secret", overlapOld)
		}
		return false
	})
	return cp
}

func (cp *codeOverlapProvider) accept(secrets ...string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.accepted = map[string]bool{}
	for _, s := range secrets {
		cp.accepted[s] = true
	}
}

func (cp *codeOverlapProvider) took() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := cp.sent
	cp.sent = nil
	return out
}

func wantCodeSent(t *testing.T, cp *codeOverlapProvider, step string, want ...string) {
	t.Helper()
	if got := cp.took(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: secrets sent %v, want %v", step, got, want)
	}
}

func codeOverlapCred(cp *codeOverlapProvider, style, secret string) map[string]any {
	return map[string]any{
		"type": "oauth2_authorization_code", "auth_url": cp.AuthURL(), "token_url": cp.TokenURL(),
		"client_id": oauthtest.ClientID, "client_secret": secret, "auth_style": style, "scopes": "offline_access,read",
	}
}

// rotateCodeSecret creates credentials/ac with overlapOld and replaces it with
// overlapNew, by a patch or by a full update, and checks the previous one is kept.
func rotateCodeSecret(t *testing.T, b *integrationsBackend, s logical.Storage, cp *codeOverlapProvider, style string, patch bool) {
	t.Helper()
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", codeOverlapCred(cp, style, overlapOld))
	if patch {
		mustOK(t, b, s, logical.PatchOperation, "credentials/ac", map[string]any{"client_secret": overlapNew})
	} else {
		mustOK(t, b, s, logical.UpdateOperation, "credentials/ac", codeOverlapCred(cp, style, overlapNew))
	}
	if _, kept := credView(t, b, s, "ac")["previous_client_secret_until"]; !kept {
		t.Fatal("the rotation kept no previous secret")
	}
}

// The authorization-code exchange goes through the overlap: a consent completed while
// the provider knows only the previous secret exchanges its code with it, stores the
// tokens and leaves the credential active and yellow (new_client_secret_refused),
// never needs_reauth; the first token the new secret obtains forgets the previous one.
func TestSecretOverlapCodeExchange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		style string
		patch bool
	}{{"header", true}, {"body", false}} {
		t.Run(tc.style, func(t *testing.T) {
			t.Parallel()
			cp := newCodeOverlapProvider(t, overlapOld)
			events := logical.NewMockEventSender()
			b, s, clock := newBackendWith(t, backendOptions{events: events})
			mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
			rotateCodeSecret(t, b, s, cp, tc.style, tc.patch)
			clock.Advance(time.Minute)

			start := mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", nil).Data
			loc := cp.Authorize(t, start["auth_url"].(string))
			if status, page := callback(t, b, s, loc.Query()); status != http.StatusOK || !strings.Contains(page, "Authorization complete") {
				t.Fatalf("callback: %d %s", status, page)
			}
			wantCodeSent(t, cp, "code exchange", overlapNew, overlapOld)
			issued := cp.LastIssued(t)
			stored := storedTokenOf(t, s, "ac")
			if issued.Refresh == "" || stored.RefreshToken != issued.Refresh {
				t.Fatalf("the consented refresh token is not stored (issued one: %v)", issued.Refresh != "")
			}
			if got := lcAccess(t, b, s, "ac").Data["access_token"]; got != issued.Access {
				t.Fatalf("access after the consent: %v, want the exchanged token", got)
			}
			wantCodeSent(t, cp, "access after the consent")
			view := credView(t, b, s, "ac")
			if view["status"] != "active" || view["health"] != lifecycle.HealthYellow || view["status_reason"] != "" {
				t.Fatalf("after the exchange: status %v (%v) health %v, want active yellow", view["status"], view["status_reason"], view["health"])
			}
			if _, kept := view["previous_client_secret_until"]; !kept {
				t.Fatal("the previous secret was forgotten by the token it obtained")
			}
			refused := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNewSecretRefused)
			if len(refused) != 1 || refused[0]["severity"] != lifecycle.HealthYellow {
				t.Fatalf("alerts: %v", lcAlerts(t, b, s))
			}
			if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNeedsReauth); len(got) != 0 {
				t.Fatalf("needs_reauth alert: %v", got)
			}
			if n := countEvents(events, "integrations/credential-"+eventNewSecretRefused); n != 1 {
				t.Fatalf("%d new_client_secret_refused events, want 1", n)
			}

			// The provider accepts the new secret: the next mint (a refresh) obtains
			// its token with it and forgets the previous one.
			cp.accept(overlapOld, overlapNew)
			clock.Advance(11 * time.Minute)
			lcAccess(t, b, s, "ac")
			wantCodeSent(t, cp, "refresh once the new secret is accepted", overlapNew)
			view = credView(t, b, s, "ac")
			if _, kept := view["previous_client_secret_until"]; kept || view["status"] != "active" || view["health"] != lifecycle.HealthGreen {
				t.Fatalf("after the new secret worked: %v", view)
			}
			if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNewSecretRefused); len(got) != 0 {
				t.Fatalf("alert stays: %v", got)
			}
			entry, err := s.Get(context.Background(), "credentials/ac")
			if err != nil || entry == nil || strings.Contains(string(entry.Value), overlapOld) {
				t.Fatalf("the stored credential still holds the previous secret (%v)", err)
			}
		})
	}
}

// A provider that knows neither secret refuses the code exchange as it would without
// the overlap: the consent fails, nothing is stored, the credential still awaits
// consent, and the refusal raises no new_client_secret_refused.
func TestSecretOverlapCodeExchangeBothRefused(t *testing.T) {
	t.Parallel()
	cp := newCodeOverlapProvider(t, "some-other-secret-000")
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{events: events})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"callback_base_url": tpCallbackBase})
	rotateCodeSecret(t, b, s, cp, "body", true)
	clock.Advance(time.Minute)

	// Through the callback.
	start := mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", nil).Data
	loc := cp.Authorize(t, start["auth_url"].(string))
	if status, page := callback(t, b, s, loc.Query()); status != http.StatusBadRequest || !strings.Contains(page, "Authorization failed") {
		t.Fatalf("callback: %d %s", status, page)
	}
	wantCodeSent(t, cp, "callback exchange", overlapNew, overlapOld)

	// By hand.
	start = mustOK(t, b, s, logical.UpdateOperation, "credentials/ac/authorize", nil).Data
	loc = cp.Authorize(t, start["auth_url"].(string))
	resp, err := request(b, s, logical.UpdateOperation, "credentials/ac/authorize", map[string]any{
		"code": loc.Query().Get("code"), "state": loc.Query().Get("state"),
	})
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "invalid_client") {
		t.Fatalf("completion by hand: %v %v", resp, err)
	}
	for _, secret := range []string{overlapOld, overlapNew} {
		if strings.Contains(resp.Error().Error(), secret) {
			t.Fatal("the refusal shows a client secret")
		}
	}
	wantCodeSent(t, cp, "exchange by hand", overlapNew, overlapOld)

	if e, err := s.Get(context.Background(), tokenPrefix+"ac"); err != nil || e != nil {
		t.Fatalf("a token is stored after a refused exchange (%v)", err)
	}
	if len(cp.Issued()) != 0 {
		t.Fatalf("the provider issued %d tokens", len(cp.Issued()))
	}
	if pending, _ := b.authorizations.load(context.Background(), s, "ac"); pending != nil {
		t.Fatal("a refused exchange left the authorization pending")
	}
	view := credView(t, b, s, "ac")
	if view["status"] != "awaiting_consent" {
		t.Fatalf("status %v (%v), want awaiting_consent", view["status"], view["status_reason"])
	}
	if got := alertsOf(lcAlerts(t, b, s), lifecycle.AlertNewSecretRefused); len(got) != 0 {
		t.Fatalf("new_client_secret_refused after both secrets were refused: %v", got)
	}
	if n := countEvents(events, "integrations/credential-"+eventNewSecretRefused); n != 0 {
		t.Fatalf("%d new_client_secret_refused events, want 0", n)
	}
	if _, err := lcDo(b, s, logical.ReadOperation, "access/ac", "", nil); err == nil {
		t.Fatal("access succeeded without a consent")
	}
	wantCodeSent(t, cp, "access without a consent")
}
