package oauth

import (
	"context"
	"crypto"
	"crypto/sha1" //nolint:gosec // x5t is SHA-1 by definition
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// assertionServer is a token endpoint that authenticates clients by private_key_jwt
// the way a provider does: it verifies the assertion's signature with the client's
// public key (go-jose), its claims and header, and refuses what does not hold with
// invalid_client. It records what each request carried.
type assertionServer struct {
	t        *testing.T
	srv      *httptest.Server
	clientID string
	pub      crypto.PublicKey
	alg      string
	kid      string
	leafDER  []byte // the certificate whose thumbprints the header must carry; nil for none
	audience string // "" for the token URL
	now      func() time.Time
	// refusing: refusals are what the test expects, not failures
	refusing bool

	mu     sync.Mutex
	jtis   []string
	grants []string
}

func newAssertionServer(t *testing.T, pub crypto.PublicKey, alg string, now func() time.Time) *assertionServer {
	s := &assertionServer{t: t, clientID: "client-jwt", pub: pub, alg: alg, now: now}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *assertionServer) tokenURL() string { return s.srv.URL + "/token" }

func (s *assertionServer) refuse(w http.ResponseWriter, why string) {
	if !s.refusing {
		s.t.Errorf("assertion refused: %s", why)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
}

func (s *assertionServer) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.refuse(w, "form: "+err.Error())
		return
	}
	if _, _, basic := r.BasicAuth(); basic || r.Form.Has("client_secret") {
		s.refuse(w, "a client secret was sent")
		return
	}
	if got := r.Form.Get("client_assertion_type"); got != ClientAssertionType {
		s.refuse(w, "client_assertion_type "+got)
		return
	}
	tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(s.alg)})
	if err != nil {
		s.refuse(w, "parse: "+err.Error())
		return
	}
	h := tok.Headers[0]
	if h.Algorithm != s.alg || h.KeyID != s.kid {
		s.refuse(w, fmt.Sprintf("header alg %q kid %q", h.Algorithm, h.KeyID))
		return
	}
	if s.leafDER != nil {
		s1, s256 := sha1.Sum(s.leafDER), sha256.Sum256(s.leafDER) //nolint:gosec
		if h.ExtraHeaders["x5t"] != base64.RawURLEncoding.EncodeToString(s1[:]) ||
			h.ExtraHeaders["x5t#S256"] != base64.RawURLEncoding.EncodeToString(s256[:]) {
			s.refuse(w, fmt.Sprintf("thumbprints %v", h.ExtraHeaders))
			return
		}
	} else if _, ok := h.ExtraHeaders["x5t"]; ok {
		s.refuse(w, "x5t without a certificate")
		return
	}
	var c jwt.Claims
	if err := tok.Claims(s.pub, &c); err != nil {
		s.refuse(w, "signature: "+err.Error())
		return
	}
	aud := s.audience
	if aud == "" {
		aud = s.tokenURL()
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: s.clientID, Subject: s.clientID, AnyAudience: jwt.Audience{aud}, Time: s.now()}, 0); err != nil {
		s.refuse(w, "claims: "+err.Error())
		return
	}
	if c.ID == "" || c.IssuedAt == nil || c.NotBefore == nil || c.Expiry == nil ||
		c.Expiry.Time().Sub(c.IssuedAt.Time()) > 5*time.Minute {
		s.refuse(w, fmt.Sprintf("jti/iat/nbf/exp: %+v", c))
		return
	}
	if id := r.Form.Get("client_id"); id != "" && id != s.clientID {
		s.refuse(w, "client_id "+id)
		return
	}
	s.mu.Lock()
	s.jtis = append(s.jtis, c.ID)
	s.grants = append(s.grants, r.Form.Get("grant_type"))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + c.ID, "token_type": "Bearer", "expires_in": 3600})
}

func certDER(t *testing.T, certPEM string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		t.Fatal("no certificate PEM")
	}
	return b.Bytes
}

// TestPrivateKeyJWTSignsEachAlgorithm: for every key kind and algorithm, each token
// request carries a fresh assertion the provider verifies with the public key —
// signature, iss/sub/aud, exp at most 5 minutes after iat, kid, x5t and x5t#S256 —
// and two requests carry distinct jti values. No secret is sent although one is
// configured.
func TestPrivateKeyJWTSignsEachAlgorithm(t *testing.T) {
	t.Parallel()
	cases := []struct{ key, asked, alg string }{
		{"rsa2048", "", "RS256"},
		{"rsa2048", "PS256", "PS256"},
		{"p256", "", "ES256"},
		{"p384", "", "ES384"},
		{"ed25519", "", "EdDSA"},
	}
	for _, tc := range cases {
		t.Run(tc.alg, func(t *testing.T) {
			t.Parallel()
			key := fixtures.NewKey(tc.key)
			clock := newFakeClock()
			s := newAssertionServer(t, key.Public(), tc.alg, clock.Now)
			s.kid = "kid-" + tc.alg
			certPEM := fixtures.SelfSigned(key, "client-jwt", time.Now().AddDate(0, 1, 0))
			s.leafDER = certDER(t, certPEM)
			cfg := Config{Grant: GrantClientCredentials, TokenURL: s.tokenURL(), ClientID: s.clientID,
				ClientSecret: "must-not-be-sent", AuthStyle: AuthStylePrivateKeyJWT,
				ClientKey: fixtures.KeyPEM(key), ClientKeyID: s.kid, ClientCertificate: certPEM,
				ClientAssertionAlgorithm: tc.asked}
			c := newTestClient(clock)
			for range 2 {
				if _, err := c.Mint(context.Background(), cfg, ""); err != nil {
					t.Fatal(err)
				}
			}
			if len(s.jtis) != 2 || s.jtis[0] == s.jtis[1] {
				t.Errorf("jti values %v: want two distinct", s.jtis)
			}
		})
	}
}

// TestPrivateKeyJWTEveryGrant: the refresh of an authorization-code credential, the
// code exchange and the password grant carry the assertion too, with the configured
// audience instead of the token URL, and without a certificate no x5t.
func TestPrivateKeyJWTEveryGrant(t *testing.T) {
	t.Parallel()
	key := fixtures.NewKey("p256")
	clock := newFakeClock()
	s := newAssertionServer(t, key.Public(), "ES256", clock.Now)
	s.audience = "https://issuer.example/oauth2/default"
	base := Config{TokenURL: s.tokenURL(), ClientID: s.clientID, AuthStyle: AuthStylePrivateKeyJWT,
		ClientKey: fixtures.KeyPEM(key), ClientAssertionAudience: s.audience}
	c := newTestClient(clock)
	code := base
	code.Grant, code.AuthURL = GrantAuthorizationCode, "https://idp.example/authorize"
	if _, err := c.Mint(context.Background(), code, "rt-1"); err != nil {
		t.Fatal("refresh:", err)
	}
	if _, err := c.Exchange(context.Background(), code, "the-code", NewVerifier()); err != nil {
		t.Fatal("exchange:", err)
	}
	pw := base
	pw.Grant, pw.Username, pw.Password = GrantPassword, "alice", "pw"
	if _, err := c.Mint(context.Background(), pw, ""); err != nil {
		t.Fatal("password:", err)
	}
	if want := []string{"refresh_token", "authorization_code", "password"}; strings.Join(s.grants, ",") != strings.Join(want, ",") {
		t.Errorf("grants = %v, want %v", s.grants, want)
	}
}

// TestPrivateKeyJWTRefusals: a key the provider does not know is refused as
// invalid_client (permanent), and a configuration whose algorithm does not fit its
// key never reaches the provider.
func TestPrivateKeyJWTRefusals(t *testing.T) {
	t.Parallel()
	known := fixtures.NewKey("p256")
	clock := newFakeClock()
	s := newAssertionServer(t, known.Public(), "ES256", clock.Now)
	s.refusing = true
	cfg := Config{Grant: GrantClientCredentials, TokenURL: s.tokenURL(), ClientID: s.clientID,
		AuthStyle: AuthStylePrivateKeyJWT, ClientKey: fixtures.KeyPEM(fixtures.NewKey("p256"))}
	_, err := newTestClient(clock).Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, "invalid_client")

	cfg.ClientKey, cfg.ClientAssertionAlgorithm = fixtures.KeyPEM(known), "RS256"
	_, err = newTestClient(clock).Mint(context.Background(), cfg, "")
	e := wantError(t, err, Permanent, CodeInvalidConfig)
	if e.Status != 0 || len(s.jtis) != 0 {
		t.Errorf("a misfit algorithm reached the provider (status %d, %d accepted)", e.Status, len(s.jtis))
	}
	if strings.Contains(cfg.String(), "PRIVATE KEY") {
		t.Errorf("Config.String shows the client key: %s", cfg)
	}
}

// mtlsServer is a token endpoint behind TLS that requires and verifies client
// certificates issued by ca, binding the certificate's subject to the client_id.
func mtlsServer(t *testing.T, ca *fixtures.CA) (*httptest.Server, *[]string) {
	var seen []string
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _, basic := r.BasicAuth()
		id := r.Form.Get("client_id")
		if basic || r.Form.Has("client_secret") || len(r.TLS.PeerCertificates) == 0 ||
			r.TLS.PeerCertificates[0].Subject.CommonName != id {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		mu.Lock()
		seen = append(seen, id)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"mtls-token","token_type":"Bearer","expires_in":600}`))
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.ServerCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &seen
}

// TestTLSClientAuth: the token request goes over mutual TLS with the client
// certificate, client_id in the body and no secret; a certificate from another CA
// is refused by the handshake, classified as permanent.
func TestTLSClientAuth(t *testing.T) {
	t.Parallel()
	ca := fixtures.NewCA("Test IdP CA")
	srv, seen := mtlsServer(t, ca)
	key := fixtures.NewKey("rsa2048")
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL + "/token", ClientID: "mtls-client",
		ClientSecret: "must-not-be-sent", AuthStyle: AuthStyleTLSClientAuth, CACertificate: ca.PEM,
		ClientKey: fixtures.KeyPEM(key), ClientCertificate: ca.Issue(key, "mtls-client", time.Now().AddDate(0, 1, 0))}
	c := newTestClient(newFakeClock())
	tok, err := c.Mint(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "mtls-token" || len(*seen) != 1 {
		t.Errorf("token %v, %d accepted", tok, len(*seen))
	}
	if _, err := c.Mint(context.Background(), cfg, ""); err != nil {
		t.Fatal(err)
	}
	if n := c.transports.Len(); n != 1 {
		t.Errorf("%d transports cached for one credential's TLS, want 1 (reused)", n)
	}

	other := fixtures.NewCA("Someone else")
	cfg.ClientCertificate = other.Issue(key, "mtls-client", time.Now().AddDate(0, 1, 0))
	_, err = c.Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, CodeTLSClientRefused)
}

// TestCACertificate: a token endpoint whose certificate comes from a private CA is
// refused without ca_certificate (TLS verification fails) and used with it; the
// system roots are not edited.
func TestCACertificate(t *testing.T) {
	t.Parallel()
	ca := fixtures.NewCA("Private CA")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"private-ca","token_type":"Bearer"}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerCertificate()}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL + "/token", ClientID: "c", ClientSecret: "s"}
	c := newTestClient(newFakeClock())
	_, err := c.Mint(context.Background(), cfg, "")
	e := wantError(t, err, Transient, netpolicy.KindTLS)
	if !strings.Contains(e.Error(), "certificate verification") {
		t.Errorf("without ca_certificate: %v, want a TLS verification failure", e)
	}
	cfg.CACertificate = ca.PEM
	if tok, err := c.Mint(context.Background(), cfg, ""); err != nil || tok.AccessToken != "private-ca" {
		t.Fatalf("with ca_certificate: %v, %v", tok, err)
	}
	cfg.CACertificate = fixtures.NewCA("Another").PEM
	_, err = c.Mint(context.Background(), cfg, "")
	wantError(t, err, Transient, netpolicy.KindTLS)
}

// TestClientAuthKeepsBounds: the client a credential with its own TLS or assertion
// gets keeps the shared client's bounds: no redirect to another host (the assertion
// would follow it), and the response size cap.
func TestClientAuthKeepsBounds(t *testing.T) {
	t.Parallel()
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere++ }))
	t.Cleanup(other.Close)
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+"/token", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	key := fixtures.NewKey("ed25519")
	cfg := Config{Grant: GrantClientCredentials, TokenURL: redirector.URL + "/token", ClientID: "c",
		AuthStyle: AuthStylePrivateKeyJWT, ClientKey: fixtures.KeyPEM(key)}
	_, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, CodeRedirectRefused)
	if elsewhere != 0 {
		t.Error("the assertion followed a redirect to another host")
	}

	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 4096) + `"}`))
	}))
	t.Cleanup(big.Close)
	cfg.TokenURL = big.URL + "/token"
	_, err = NewClient(ClientOptions{MaxResponseBytes: 1024}).Mint(context.Background(), cfg, "")
	wantError(t, err, Transient, CodeResponseTooLarge)
}
