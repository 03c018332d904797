package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

// federatedServer verifies federated client assertions on every request of every
// grant, and the device authorization request: RS256 by the issuer key whose kid the
// header names, iss, sub, aud api://AzureADTokenExchange, no secret.
type federatedServer struct {
	t    *testing.T
	srv  *httptest.Server
	keys func() []ownedkeys.Key
	now  func() time.Time

	mu     sync.Mutex
	grants []string
	kids   []string
}

const (
	testFederatedIssuer  = "https://vault.example.com/v1/integrations/oidc"
	testFederatedSubject = "integrations:integrations_abc:fed"
)

func (s *federatedServer) serve(w http.ResponseWriter, r *http.Request) {
	refuse := func(why string) {
		s.t.Errorf("refused %s: %s", r.URL.Path, why)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
	}
	_ = r.ParseForm()
	if _, _, basic := r.BasicAuth(); basic || r.Form.Has("client_secret") || r.Form.Get("client_assertion_type") != ClientAssertionType || r.Form.Get("client_id") != "app-1" {
		refuse("client authentication")
		return
	}
	tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		refuse("parse")
		return
	}
	kid := tok.Headers[0].KeyID
	i := slices.IndexFunc(s.keys(), func(k ownedkeys.Key) bool { return k.ID == kid })
	if i < 0 {
		refuse("kid " + kid)
		return
	}
	var c jwt.Claims
	if err := tok.Claims(s.keys()[i].Public(), &c); err != nil {
		refuse("signature")
		return
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: testFederatedIssuer, Subject: testFederatedSubject,
		AnyAudience: jwt.Audience{credtype.FederatedAudience}, Time: s.now()}, 0); err != nil || c.ID == "" {
		refuse("claims")
		return
	}
	s.mu.Lock()
	s.grants = append(s.grants, r.URL.Path+" "+r.Form.Get("grant_type"))
	s.kids = append(s.kids, kid)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/device" {
		_, _ = w.Write([]byte(`{"device_code":"dc-1234567890","user_code":"ABCD-EFGH","verification_uri":"https://idp.example/device","expires_in":600,"interval":5}`))
		return
	}
	answer := map[string]any{"access_token": "at-" + c.ID, "token_type": "Bearer", "expires_in": 3600}
	if r.Form.Get("grant_type") == GrantTokenExchange {
		answer["issued_token_type"] = TokenTypeAccessToken
	}
	_ = json.NewEncoder(w).Encode(answer)
}

// TestFederatedEveryGrant: with auth_style federated every request that authenticates
// the client (client credentials, refresh, code exchange, password, device
// authorization and polls, token exchange) carries an assertion signed by the issuer
// key signing at that moment, with the issuer, subject and Entra's audience; after a
// rotation the next request is signed by the new key.
func TestFederatedEveryGrant(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	ctx := context.Background()
	var mu sync.Mutex
	var set ownedkeys.Set
	first, err := ownedkeys.Generate(ctx, ownedkeys.RSA2048, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	set.Add(first)
	s := &federatedServer{t: t, now: clock.Now, keys: func() []ownedkeys.Key { mu.Lock(); defer mu.Unlock(); return set.Published(clock.Now()) }}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	fed := &Federation{Issuer: testFederatedIssuer, Subject: testFederatedSubject, Key: func(_ context.Context, now time.Time) (ownedkeys.Key, error) {
		mu.Lock()
		defer mu.Unlock()
		k, _ := set.Signing(now)
		return k, nil
	}}
	base := Config{TokenURL: s.srv.URL + "/token", ClientID: "app-1", ClientSecret: "never-sent", AuthStyle: AuthStyleFederated, Federation: fed}
	c := newTestClient(clock)

	cc := base
	cc.Grant = GrantClientCredentials
	if _, err := c.Mint(ctx, cc, ""); err != nil {
		t.Fatal("client_credentials:", err)
	}
	code := base
	code.Grant, code.AuthURL = GrantAuthorizationCode, "https://idp.example/authorize"
	if _, err := c.Mint(ctx, code, "rt-1"); err != nil {
		t.Fatal("refresh:", err)
	}
	if _, err := c.Exchange(ctx, code, "the-code", NewVerifier()); err != nil {
		t.Fatal("exchange:", err)
	}
	// The issuer key rotates: the next requests are signed by the new one.
	next, err := ownedkeys.Generate(ctx, ownedkeys.RSA2048, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	set.Rotate(next, clock.Now(), clock.Now(), 10*time.Minute)
	mu.Unlock()
	pw := base
	pw.Grant, pw.Username, pw.Password = GrantPassword, "alice", "pw"
	if _, err := c.Mint(ctx, pw, ""); err != nil {
		t.Fatal("password:", err)
	}
	dev := base
	dev.Grant, dev.DeviceAuthorizationURL = GrantDeviceCode, s.srv.URL+"/device"
	da, err := c.DeviceAuthorize(ctx, dev)
	if err != nil {
		t.Fatal("device authorization:", err)
	}
	if _, err := c.PollDevice(ctx, dev, da.DeviceCode); err != nil {
		t.Fatal("device poll:", err)
	}
	if _, err := c.TokenExchange(ctx, cc, "subject-token", ExchangeRequest{Audiences: []string{"api-a"}}); err != nil {
		t.Fatal("token exchange:", err)
	}
	want := []string{"/token client_credentials", "/token refresh_token", "/token authorization_code", "/token password",
		"/device ", "/token " + string(GrantDeviceCode), "/token " + GrantTokenExchange}
	if !slices.Equal(s.grants, want) {
		t.Errorf("requests = %q, want %q", s.grants, want)
	}
	wantKids := []string{first.ID, first.ID, first.ID, next.ID, next.ID, next.ID, next.ID}
	if !slices.Equal(s.kids, wantKids) {
		t.Errorf("signed by %v, want %v", s.kids, wantKids)
	}
}

// TestFederatedWithoutIssuer: a federated Config without its Federation (config issuer
// unset) sends nothing and is refused as a configuration error saying so.
func TestFederatedWithoutIssuer(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: "app-1", AuthStyle: AuthStyleFederated}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a federated Config is valid without a key: %v", err)
	}
	_, err := newTestClient(clock).Mint(context.Background(), cfg, "")
	e := wantError(t, err, Permanent, CodeInvalidConfig)
	if !strings.Contains(e.Error(), "config issuer") || hits.Load() != 0 {
		t.Errorf("error %q after %d requests; want one naming config issuer, and none sent", e.Error(), hits.Load())
	}
	if s := (Config{AuthStyle: AuthStyleFederated, Federation: &Federation{Issuer: testFederatedIssuer, Subject: testFederatedSubject}}).String(); !strings.Contains(s, testFederatedSubject) {
		t.Errorf("String = %s", s)
	}
}
