// Package federatedtest runs, on loopback, a token endpoint that verifies federated
// client assertions the way Microsoft Entra does for an app registration's federated
// identity credential (client_credentials with client_assertion_type
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer):
//
//   - the assertion is verified by github.com/coreos/go-oidc/v3 against the issuer the
//     credential names: OIDC discovery (issuer + /.well-known/openid-configuration,
//     whose issuer must equal it exactly), the JWKS at its jwks_uri (cached, fetched
//     again on an unknown kid, as Entra does), the signature (RS256), iss, aud and exp;
//   - then what go-oidc leaves to the relying party, as Entra does: sub must equal the
//     federated credential's subject, and a jti is accepted once (a replay is refused);
//   - refusals are invalid_client (AADSTS700211-, 700213-, 700024-like descriptions
//     carrying Marker, which no caller may see).
//
// It records what it accepted (by kid) and refused. For tests only.
package federatedtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// ClientAssertionType is RFC 7523 §2.2's client_assertion_type.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Marker is put into every error description.
const Marker = "FEDERATED-BODY-MARKER-do-not-leak"

// Credential is a federated identity credential of an app registration: the
// assertions the app accepts in place of a secret.
type Credential struct {
	Issuer   string
	Subject  string
	Audience string // Entra's default: api://AzureADTokenExchange
}

// Server is the token endpoint.
type Server struct {
	srv *httptest.Server
	// apps are the registered apps: client_id -> its federated credentials.
	apps map[string][]Credential

	mu        sync.Mutex
	providers map[string]*oidc.Provider // by issuer: discovery once, keys cached
	jtis      map[string]bool
	accepted  map[string]int // by kid
	refused   []string
	raw       []string // every assertion received
	issued    []string
}

// New starts a token endpoint for apps, stopped when the test ends.
func New(t testing.TB, apps map[string][]Credential) *Server {
	s := &Server{apps: apps, providers: map[string]*oidc.Provider{}, jtis: map[string]bool{}, accepted: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.token))
	t.Cleanup(s.srv.Close)
	return s
}

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.srv.URL + "/oauth2/v2.0/token" }

// Accepted is how many assertions were accepted, by kid.
func (s *Server) Accepted() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.accepted))
	for k, v := range s.accepted {
		out[k] = v
	}
	return out
}

// Refused are the reasons of every refusal, in order.
func (s *Server) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

// Assertions are the assertions received, in order.
func (s *Server) Assertions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.raw...)
}

// Issued are the access tokens issued.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

func (s *Server) refuse(w http.ResponseWriter, code, why string) {
	s.mu.Lock()
	s.refused = append(s.refused, why)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": why + " " + Marker})
	_, _ = w.Write(b)
}

// provider is the issuer's discovery, made once (Entra caches it too); its key set
// fetches the JWKS again when an assertion names a kid it does not hold.
func (s *Server) provider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	s.mu.Lock()
	p := s.providers[issuer]
	s.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, http.DefaultClient), issuer)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.providers[issuer]; q != nil {
		return q, nil
	}
	s.providers[issuer] = p
	return p, nil
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		s.refuse(w, "invalid_request", "not a form POST")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		s.refuse(w, "unsupported_grant_type", "grant "+r.PostForm.Get("grant_type"))
		return
	}
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Has("client_secret") {
		s.refuse(w, "invalid_request", "a secret was sent beside the assertion")
		return
	}
	if r.PostForm.Get("client_assertion_type") != ClientAssertionType {
		s.refuse(w, "invalid_request", "AADSTS7000216: client_assertion_type")
		return
	}
	raw := r.PostForm.Get("client_assertion")
	s.mu.Lock()
	s.raw = append(s.raw, raw)
	s.mu.Unlock()
	creds, ok := s.apps[r.PostForm.Get("client_id")]
	if !ok {
		s.refuse(w, "unauthorized_client", "AADSTS700016: unknown client_id")
		return
	}
	// The issuer is read from the assertion (unverified) only to pick the federated
	// credential; go-oidc then verifies it against that credential's issuer.
	unverified, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(unverified.Signatures) != 1 {
		s.refuse(w, "invalid_client", "AADSTS50027: not a JWS signed RS256")
		return
	}
	var peek struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(unverified.UnsafePayloadWithoutVerification(), &peek)
	var candidates []Credential
	for _, c := range creds {
		if c.Issuer == peek.Iss {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		s.refuse(w, "invalid_client", "AADSTS700211: no matching federated identity record for the issuer")
		return
	}
	p, err := s.provider(r.Context(), peek.Iss)
	if err != nil {
		s.refuse(w, "invalid_client", "AADSTS50166: discovery failed: "+err.Error())
		return
	}
	// go-oidc checks the signature (the issuer's JWKS), iss and exp; the audience and
	// subject are matched against the app's federated credentials below, as Entra does.
	tok, err := p.Verifier(&oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: []string{oidc.RS256}}).Verify(r.Context(), raw)
	if err != nil {
		s.refuse(w, "invalid_client", "AADSTS700024: "+err.Error())
		return
	}
	matched := false
	for _, c := range candidates {
		if c.Subject == tok.Subject && slices.Contains(tok.Audience, c.Audience) {
			matched = true
		}
	}
	if !matched {
		s.refuse(w, "invalid_client", "AADSTS700213: no matching federated identity record for the subject and audience")
		return
	}
	var claims struct {
		JTI string `json:"jti"`
		IAT int64  `json:"iat"`
	}
	if err := tok.Claims(&claims); err != nil || claims.JTI == "" {
		s.refuse(w, "invalid_client", "no jti")
		return
	}
	if time.Until(tok.Expiry) > time.Hour {
		s.refuse(w, "invalid_client", "AADSTS700025: the assertion lives longer than an hour")
		return
	}
	kid := unverified.Signatures[0].Header.KeyID
	s.mu.Lock()
	if s.jtis[claims.JTI] {
		s.mu.Unlock()
		s.refuse(w, "invalid_client", "AADSTS700021: the assertion's jti was already used")
		return
	}
	s.jtis[claims.JTI] = true
	s.accepted[kid]++
	access := "fed-" + random()
	s.issued = append(s.issued, access)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3599}`, access)
}

// Replay sends assertion to the token endpoint again for clientID and returns the
// HTTP status and the error code.
func (s *Server) Replay(clientID, assertion string) (int, string, error) {
	form := strings.NewReader("grant_type=client_credentials&client_id=" + clientID +
		"&client_assertion_type=" + ClientAssertionType + "&client_assertion=" + assertion)
	resp, err := http.Post(s.TokenURL(), "application/x-www-form-urlencoded", form) //nolint:noctx // a test's one request
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error, nil
}

func random() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
