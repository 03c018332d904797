package oauth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// grantRequest is what one JWT-bearer token request carried, the assertion
// verified with the test's public key.
type grantRequest struct {
	form       url.Values
	basicUser  string
	basic      bool
	header     jose.Header
	claims     jwt.Claims
	raw        map[string]any
	verifyErr  error
	assertions int
}

// grantServer is a token endpoint for the JWT-bearer grant that records each
// request and answers answer (status and JSON body).
type grantServer struct {
	t      *testing.T
	srv    *httptest.Server
	pub    crypto.PublicKey
	status int
	answer map[string]any

	mu   sync.Mutex
	reqs []grantRequest
}

func newGrantServer(t *testing.T, pub crypto.PublicKey) *grantServer {
	s := &grantServer{t: t, pub: pub, status: http.StatusOK,
		answer: map[string]any{"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *grantServer) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	g := grantRequest{form: r.Form}
	g.basicUser, _, g.basic = r.BasicAuth()
	g.assertions = len(r.Form["assertion"])
	tok, err := jwt.ParseSigned(r.Form.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA})
	if err == nil {
		g.header = tok.Headers[0]
		g.verifyErr = tok.Claims(s.pub, &g.claims, &g.raw)
	} else {
		g.verifyErr = err
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, g)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	_ = json.NewEncoder(w).Encode(s.answer)
}

func (s *grantServer) last(t *testing.T) grantRequest {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		t.Fatal("no token request")
	}
	g := s.reqs[len(s.reqs)-1]
	if g.verifyErr != nil {
		t.Fatalf("assertion does not verify: %v", g.verifyErr)
	}
	return g
}

func mustFromFields(t *testing.T, typ string, fields map[string]any) Config {
	t.Helper()
	ct, _ := credtype.Lookup(typ)
	v, err := ct.Validate(fields)
	if err != nil {
		t.Fatalf("validate %s: %v", typ, err)
	}
	cfg, err := FromFields(typ, v.Values)
	if err != nil {
		t.Fatalf("FromFields %s: %v", typ, err)
	}
	return cfg
}

// TestJWTBearerGenericAssertion: oauth2_jwt_bearer posts the grant_type and a fresh
// assertion per request, signed by client_key with the algorithm the key takes, kid
// client_key_id; iss, sub, aud (default token_url), iat, exp = iat +
// assertion_lifetime, a jti that differs each time, the extra claims; the scopes in
// the form (scope_in=form), the audience not as a form parameter; no client
// authentication when the credential has no client.
func TestJWTBearerGenericAssertion(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"rsa2048", "p256", "p384", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			key := fixtures.NewKey(kind)
			clock := newFakeClock()
			s := newGrantServer(t, key.Public())
			cfg := mustFromFields(t, "oauth2_jwt_bearer", map[string]any{
				"token_url": s.srv.URL + "/token", "issuer": "svc-1", "subject": "user-7",
				"client_key": fixtures.KeyPEM(key), "client_key_id": "k1", "scopes": []string{"read", "write"},
				"assertion_lifetime": "90s", "claims": map[string]any{"tenant": "t-1"},
			})
			c := newTestClient(clock)
			tok, err := c.Mint(context.Background(), cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "at-1" {
				t.Errorf("access token %q", tok.AccessToken)
			}
			g := s.last(t)
			first := g.claims.ID
			if got := g.form.Get("grant_type"); got != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
				t.Errorf("grant_type %q", got)
			}
			if g.form.Get("scope") != "read write" || g.form.Has("audience") || g.basic || g.form.Has("client_id") || g.form.Has("client_secret") || g.assertions != 1 {
				t.Errorf("form %v basic %v", g.form, g.basic)
			}
			if g.header.KeyID != "k1" || g.header.ExtraHeaders["typ"] != "JWT" {
				t.Errorf("header %+v", g.header)
			}
			now := clock.Now()
			c0 := g.claims
			if c0.Issuer != "svc-1" || c0.Subject != "user-7" || len(c0.Audience) != 1 || c0.Audience[0] != s.srv.URL+"/token" ||
				!c0.IssuedAt.Time().Equal(now.Truncate(time.Second)) || c0.Expiry.Time().Sub(c0.IssuedAt.Time()) != 90*time.Second || c0.ID == "" {
				t.Errorf("claims %+v", c0)
			}
			if g.raw["tenant"] != "t-1" || g.raw["scope"] != nil {
				t.Errorf("extra claims %v", g.raw)
			}
			if _, err := c.Mint(context.Background(), cfg, ""); err != nil {
				t.Fatal(err)
			}
			if s.last(t).claims.ID == first {
				t.Error("the second request reused the assertion's jti")
			}
		})
	}
}

// TestJWTBearerScopeClaimAudienceAndClient: scope_in=claim puts the scopes in the
// assertion and none in the form; audience is the assertion's aud; a client_id and
// client_secret authenticate the client as on every OAuth type (header).
func TestJWTBearerScopeClaimAudienceAndClient(t *testing.T) {
	t.Parallel()
	key := fixtures.NewKey("rsa2048")
	s := newGrantServer(t, key.Public())
	cfg := mustFromFields(t, "oauth2_jwt_bearer", map[string]any{
		"token_url": s.srv.URL + "/token", "issuer": "svc-1", "audience": "https://issuer.example/",
		"client_key": fixtures.KeyPEM(key), "scopes": []string{"a", "b"}, "scope_in": "claim",
		"client_id": "cid", "client_secret": "csecret", "auth_style": "header",
	})
	if _, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, ""); err != nil {
		t.Fatal(err)
	}
	g := s.last(t)
	if g.form.Has("scope") || g.raw["scope"] != "a b" || g.claims.Audience[0] != "https://issuer.example/" || g.form.Has("audience") {
		t.Errorf("form %v claims %v", g.form, g.raw)
	}
	if !g.basic || g.basicUser != "cid" {
		t.Errorf("client not authenticated by HTTP Basic: %v %q", g.basic, g.basicUser)
	}
	if _, ok := g.raw["sub"]; ok {
		t.Error("sub sent although subject is unset")
	}
}

// TestJWTBearerPrivateKeyJWTClient: with auth_style=private_key_jwt the same key signs
// a client assertion beside the grant's assertion.
func TestJWTBearerPrivateKeyJWTClient(t *testing.T) {
	t.Parallel()
	key := fixtures.NewKey("p256")
	s := newGrantServer(t, key.Public())
	cfg := mustFromFields(t, "oauth2_jwt_bearer", map[string]any{
		"token_url": s.srv.URL + "/token", "issuer": "svc-1", "client_key": fixtures.KeyPEM(key),
		"client_id": "cid", "auth_style": "private_key_jwt",
	})
	if _, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, ""); err != nil {
		t.Fatal(err)
	}
	g := s.last(t)
	if g.form.Get("client_assertion_type") != ClientAssertionType || g.form.Get("client_assertion") == "" || g.form.Get("client_id") != "cid" {
		t.Errorf("form %v", g.form)
	}
}

// TestJWTBearerRefusalsClassified: invalid_grant (a wrong key, audience or an expired
// assertion, as providers answer) is permanent, so the credential needs
// re-authorization; a 5xx is transient.
func TestJWTBearerRefusalsClassified(t *testing.T) {
	t.Parallel()
	key := fixtures.NewKey("rsa2048")
	for _, tc := range []struct {
		status int
		body   map[string]any
		class  Class
		code   string
	}{
		{400, map[string]any{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, Permanent, "invalid_grant"},
		{401, map[string]any{"error": "invalid_client"}, Permanent, "invalid_client"},
		{400, map[string]any{"error": "unauthorized_client"}, Permanent, "unauthorized_client"},
		{503, map[string]any{"error": "temporarily_unavailable"}, Transient, "temporarily_unavailable"},
	} {
		s := newGrantServer(t, key.Public())
		s.status, s.answer = tc.status, tc.body
		cfg := mustFromFields(t, "oauth2_jwt_bearer", map[string]any{
			"token_url": s.srv.URL + "/token", "issuer": "svc-1", "client_key": fixtures.KeyPEM(key)})
		_, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
		var e *Error
		if !errors.As(err, &e) || e.Class != tc.class || e.Code != tc.code {
			t.Errorf("%d %v: got %v, want class %v code %s", tc.status, tc.body, err, tc.class, tc.code)
		}
		if err != nil && strings.Contains(err.Error(), "BEGIN") {
			t.Error("the error quotes the key")
		}
	}
}

// TestGoogleServiceAccountAssertion follows Google's server-to-server contract: the
// token request goes to the key file's token_uri with grant_type and assertion only;
// the assertion is RS256 with kid = private_key_id, iss = client_email, aud =
// token_uri, sub = subject, the scopes space-separated in the scope claim, exp at
// most an hour after iat.
func TestGoogleServiceAccountAssertion(t *testing.T) {
	t.Parallel()
	key := fixtures.RSAKey()
	s := newGrantServer(t, key.Public())
	s.answer = map[string]any{"access_token": "ya29.x", "token_type": "Bearer", "expires_in": 3599}
	tokenURI := s.srv.URL + "/token"
	cfg := mustFromFields(t, "google_service_account", map[string]any{
		"service_account_key": fixtures.ServiceAccountKey(key, "sa@p.iam.gserviceaccount.com", "kid-42", tokenURI),
		"scopes":              []string{"https://www.googleapis.com/auth/a", "https://www.googleapis.com/auth/b"},
		"subject":             "admin@example.com",
	})
	if cfg.TokenURL != tokenURI {
		t.Fatalf("token URL %q, want the key's token_uri", cfg.TokenURL)
	}
	if strings.Contains(cfg.String(), "PRIVATE KEY") {
		t.Error("Config.String shows the key")
	}
	tok, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Expiry.Sub(tok.IssuedAt) != 3599*time.Second {
		t.Errorf("lifetime %s", tok.Expiry.Sub(tok.IssuedAt))
	}
	g := s.last(t)
	if len(g.form) != 2 || g.basic {
		t.Errorf("form %v (want grant_type and assertion only), basic %v", g.form, g.basic)
	}
	c := g.claims
	if g.header.Algorithm != "RS256" || g.header.KeyID != "kid-42" || c.Issuer != "sa@p.iam.gserviceaccount.com" ||
		c.Audience[0] != tokenURI || c.Subject != "admin@example.com" ||
		g.raw["scope"] != "https://www.googleapis.com/auth/a https://www.googleapis.com/auth/b" ||
		c.Expiry.Time().Sub(c.IssuedAt.Time()) > time.Hour || c.ID == "" {
		t.Errorf("header %+v claims %+v raw %v", g.header, c, g.raw)
	}
}

// TestSalesforceAssertionAndInstanceURL follows Salesforce's JWT bearer flow: the
// request goes to login_url's /services/oauth2/token; RS256; iss = consumer_key, sub =
// username, aud the login server (test.salesforce.com for sandboxes, also behind a
// sandbox My Domain), exp at most 3 minutes ahead; instance_url is kept from the
// answer, and an answer without a valid one is a bad response.
func TestSalesforceAssertionAndInstanceURL(t *testing.T) {
	t.Parallel()
	for login, aud := range map[string]string{
		"https://login.salesforce.com":                    "https://login.salesforce.com",
		"https://test.salesforce.com":                     "https://test.salesforce.com",
		"https://acme.my.salesforce.com":                  "https://login.salesforce.com",
		"https://acme--uat.sandbox.my.salesforce.com":     "https://test.salesforce.com",
		"https://ACME--UAT.SANDBOX.MY.SALESFORCE.COM:443": "https://test.salesforce.com",
	} {
		if got := credtype.SalesforceAudience(login); got != aud {
			t.Errorf("aud for %s = %s, want %s", login, got, aud)
		}
	}
	key := fixtures.RSAKey()
	s := newGrantServer(t, key.Public())
	s.answer = map[string]any{"access_token": "00Dxx!AQ", "token_type": "Bearer", "instance_url": "https://acme.my.salesforce.com",
		"id": "https://login.salesforce.com/id/00D/005", "scope": "api", "issued_at": "1700000000000", "signature": "x"}
	cfg := mustFromFields(t, "salesforce_jwt", map[string]any{
		"login_url": s.srv.URL, "consumer_key": "3MVG9ck", "username": "api@acme.com", "client_key": fixtures.KeyPEM(key)})
	if cfg.TokenURL != s.srv.URL+"/services/oauth2/token" {
		t.Fatalf("token URL %q", cfg.TokenURL)
	}
	tok, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra["instance_url"] != "https://acme.my.salesforce.com" {
		t.Errorf("extra %v", tok.Extra)
	}
	g := s.last(t)
	c := g.claims
	if len(g.form) != 2 || g.header.Algorithm != "RS256" || c.Issuer != "3MVG9ck" || c.Subject != "api@acme.com" ||
		c.Audience[0] != "https://login.salesforce.com" || c.Expiry.Time().Sub(c.IssuedAt.Time()) > 3*time.Minute {
		t.Errorf("form %v header %+v claims %+v", g.form, g.header, c)
	}
	for _, bad := range []any{nil, "", "http://acme.my.salesforce.com", "javascript:alert(1)", "https://" + strings.Repeat("a", 3000) + ".com", 42} {
		s.answer = map[string]any{"access_token": "00Dxx!AQ", "token_type": "Bearer"}
		if bad != nil {
			s.answer["instance_url"] = bad
		}
		_, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeBadResponse {
			t.Errorf("instance_url %v: got %v, want bad_response", bad, err)
		} else if s, ok := bad.(string); ok && s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("the error echoes the provider's instance_url")
		}
	}
}

// TestJWTBearerConfigRefusals: a Config built by hand without what the grant needs
// is refused before any request.
func TestJWTBearerConfigRefusals(t *testing.T) {
	t.Parallel()
	key := fixtures.KeyPEM(fixtures.NewKey("p256"))
	good := credtype.Assertion{Issuer: "i", Audience: "a", Key: key, Lifetime: time.Minute}
	for name, mut := range map[string]func(*Config){
		"no assertion":      func(c *Config) { c.Assertion = nil },
		"no issuer":         func(c *Config) { a := good; a.Issuer = ""; c.Assertion = &a },
		"no audience":       func(c *Config) { a := good; a.Audience = ""; c.Assertion = &a },
		"no key":            func(c *Config) { a := good; a.Key = ""; c.Assertion = &a },
		"lifetime too long": func(c *Config) { a := good; a.Lifetime = 2 * time.Hour; c.Assertion = &a },
		"secret, no client": func(c *Config) { c.ClientSecret = "s" },
	} {
		a := good
		cfg := Config{Grant: GrantJWTBearer, TokenURL: "https://idp.example/token", Assertion: &a}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("good config refused: %v", err)
		}
		mut(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
