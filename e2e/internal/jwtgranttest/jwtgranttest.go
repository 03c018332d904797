// Package jwtgranttest runs, on loopback, token endpoints that follow two vendors'
// documented contracts for the JWT-bearer grant (RFC 7523 §2.1), for tests of the
// engine's google_service_account and salesforce_jwt types:
//
//   - Google, "Using OAuth 2.0 for Server to Server Applications": the assertion is
//     RS256, its kid names the service account key, iss is the service account's
//     email, aud the token endpoint, scope the space-separated scopes (required), sub
//     a user to act as (domain-wide delegation, when the account has it), iat and exp
//     at most an hour apart; the answer is access_token, expires_in (3599) and
//     token_type; refusals are the documented error codes (invalid_grant with
//     "Invalid JWT Signature.", a failed audience check or a token that is not
//     short-lived; invalid_scope for an empty scope; unauthorized_client when the
//     account may not act as the user).
//   - Salesforce, "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration": POST
//     /services/oauth2/token; RS256 only; iss the connected app's consumer key, sub a
//     pre-authorized username, aud https://login.salesforce.com (or
//     https://test.salesforce.com for a sandbox), exp no more than three minutes ahead;
//     the answer is access_token, scope, instance_url, id, token_type, issued_at and
//     signature, without expires_in; refusals are invalid_client_id, invalid_grant
//     ("invalid assertion", "audience is invalid", "expired authorization code",
//     "user hasn't approved this consumer").
//
// The signature is verified with go-jose against the public key the test registered.
// Both record every request. Both error descriptions carry Marker, so a test can
// check that no provider text reaches a caller. For tests only.
package jwtgranttest

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GrantType is the grant_type of RFC 7523 §2.1.
const GrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Marker is put into every error description.
const Marker = "JWTGRANT-BODY-MARKER-do-not-leak"

// skew is the clock leeway both servers allow on iat and exp.
const skew = 5 * time.Second

// Request is one token request as received, with the answer given.
type Request struct {
	Form url.Values
	// Header and Claims are the assertion's, decoded unverified; nil when it did not
	// parse.
	Header map[string]any
	Claims map[string]any
	// Authorization is the request's Authorization header ("" for none).
	Authorization string
	Status        int
	Error         string
	AccessToken   string
}

// recorder keeps the requests of one server.
type recorder struct {
	requests atomic.Int64
	mu       sync.Mutex
	received []Request
}

func (r *recorder) record(rec Request) {
	r.mu.Lock()
	r.received = append(r.received, rec)
	r.mu.Unlock()
}

// Requests is the number of token requests received.
func (r *recorder) Requests() int64 { return r.requests.Load() }

// Received is every request answered, oldest first.
func (r *recorder) Received() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.received...)
}

// LastRequest is the most recent request; it fails t when there was none.
func (r *recorder) LastRequest(t testing.TB) Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.received) == 0 {
		t.Fatal("the server received no token request")
	}
	return r.received[len(r.received)-1]
}

// Issued is every access token issued, oldest first.
func (r *recorder) Issued() []string {
	var out []string
	for _, q := range r.Received() {
		if q.AccessToken != "" {
			out = append(out, q.AccessToken)
		}
	}
	return out
}

// refusal is an error answer.
type refusal struct {
	status int
	code   string
	desc   string
}

func (e *refusal) Error() string { return e.code + ": " + e.desc }

func refuse(status int, code, desc string) *refusal {
	return &refusal{status: status, code: code, desc: desc}
}

// parsed is a token request's assertion, parsed but not verified.
type parsed struct {
	tok    *jwt.JSONWebToken
	header map[string]any
	claims map[string]any
}

// read parses a token request: a POST form with grant_type and one assertion that is
// a compact JWS of one signature.
func read(w http.ResponseWriter, r *http.Request, rec *Request, badRequest func(string) *refusal) (*parsed, *refusal) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		return nil, badRequest("the request must be a POST of a form")
	}
	rec.Form, rec.Authorization = r.PostForm, r.Header.Get("Authorization")
	if g := r.PostForm.Get("grant_type"); g != GrantType {
		return nil, refuse(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+g)
	}
	raw := r.PostForm["assertion"]
	if len(raw) != 1 {
		return nil, badRequest("one assertion is required")
	}
	p := &parsed{}
	var err error
	p.tok, err = jwt.ParseSigned(raw[0], []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA, jose.HS256})
	if err != nil || len(p.tok.Headers) != 1 {
		return nil, refuse(http.StatusBadRequest, "invalid_grant", "invalid assertion")
	}
	p.header, p.claims = peek(raw[0])
	rec.Header, rec.Claims = p.header, p.claims
	return p, nil
}

// peek decodes a compact JWS's header and payload without verifying it.
func peek(raw string) (header, claims map[string]any) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil
	}
	dec := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		var m map[string]any
		if d.Decode(&m) != nil {
			return nil
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

// answer writes JSON with status.
func answer(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func randomToken(prefix string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// verify checks the assertion's signature with pub.
func verify(p *parsed, pub crypto.PublicKey) (jwt.Claims, error) {
	var c jwt.Claims
	err := p.tok.Claims(pub, &c)
	return c, err
}

// newServer starts handler on loopback for the length of t.
func newServer(t testing.TB, path string, handler http.HandlerFunc) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc(path, handler)
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func fail(w http.ResponseWriter, rec *Request, rr *recorder, e *refusal) {
	rec.Status, rec.Error = e.status, e.code
	rr.record(*rec)
	answer(w, e.status, map[string]string{"error": e.code, "error_description": fmt.Sprintf("%s %s", e.desc, Marker)})
}
