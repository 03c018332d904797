package fositetest

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// assertion is a client assertion built with go-jose directly, as RFC 7523 §3 describes
// it: iss = sub = clientID, aud, a fresh jti, exp five minutes ahead.
func assertion(t *testing.T, key crypto.Signer, alg, kid, clientID, aud string, header map[string]string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	for k, v := range header {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	now := time.Now()
	raw, err := josejwt.Signed(signer).Claims(josejwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: josejwt.Audience{aud}, ID: hex.EncodeToString(jti),
		IssuedAt: josejwt.NewNumericDate(now), NotBefore: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(5 * time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// post sends a client_credentials request to tokenURL and returns the status and the
// decoded answer.
func post(t *testing.T, c *http.Client, tokenURL string, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	resp, err := c.PostForm(tokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func assertionForm(clientID, raw string) url.Values {
	return url.Values{"client_id": {clientID}, "client_assertion_type": {jwtBearer}, "client_assertion": {raw}}
}

// refused fails t unless the answer is an invalid_client refusal carrying Marker.
func refused(t *testing.T, what string, status int, body map[string]any) {
	t.Helper()
	if status != http.StatusUnauthorized || body["error"] != "invalid_client" ||
		!strings.Contains(body["error_description"].(string), Marker) {
		t.Fatalf("%s: %d %v, want 401 invalid_client", what, status, body)
	}
}

// A correct assertion mints a token for every algorithm, over HTTPS trusted only
// through the provider's CA; the records show each assertion and token.
func TestAssertionMintsForEachAlgorithm(t *testing.T) {
	t.Parallel()
	p := New(t, Options{AccessTTL: 90 * time.Second})
	if _, err := http.Post(p.TokenURL(), "application/x-www-form-urlencoded", nil); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client with the system roots reached the provider: %v", err)
	}
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			key := NewKey(alg)
			id := "client-" + alg
			p.Register(t, Client{ID: id, Algorithm: alg, KeyID: "k1", PublicKey: key.Public()})
			raw := assertion(t, key, alg, "k1", id, p.TokenURL(), nil)
			status, body := post(t, p.HTTPClient(), p.TokenURL(), assertionForm(id, raw))
			// expires_in is whole seconds left, so a second may have begun.
			if exp, _ := body["expires_in"].(float64); status != http.StatusOK || body["access_token"] == "" || exp < 89 || exp > 90 {
				t.Fatalf("%d %v", status, body)
			}
			last := p.LastRequest(t)
			if last.AccessToken != body["access_token"] || last.Assertion == nil || last.Assertion.Header["alg"] != alg ||
				last.Assertion.Claims["sub"] != id || last.Assertion.JTI() == "" {
				t.Fatalf("recorded %+v", last)
			}
		})
	}
	// The attempt with the system roots ended in the handshake: it is not a request.
	if n, issued := p.Requests(), p.Issued(); n != int64(len(Algorithms)) || len(issued) != len(Algorithms) {
		t.Fatalf("%d requests, %d tokens issued; want %d of each", n, len(issued), len(Algorithms))
	}
	seen := map[string]bool{}
	for _, a := range p.Assertions() {
		if seen[a.JTI()] {
			t.Fatalf("jti %s recorded twice", a.JTI())
		}
		seen[a.JTI()] = true
	}
}

// A wrong key, a wrong audience and a replayed jti are refused, by fosite itself for
// RS256 and ES384 and by the EdDSA strategy the same way.
func TestAssertionRefusals(t *testing.T) {
	t.Parallel()
	p := New(t, Options{})
	for _, alg := range []string{RS256, ES384, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			key, other := NewKey(alg), NewKey(alg)
			id := "client-" + alg
			p.Register(t, Client{ID: id, Algorithm: alg, PublicKey: key.Public()})
			c := p.HTTPClient()
			status, body := post(t, c, p.TokenURL(), assertionForm(id, assertion(t, other, alg, "", id, p.TokenURL(), nil)))
			refused(t, "wrong key", status, body)
			status, body = post(t, c, p.TokenURL(), assertionForm(id, assertion(t, key, alg, "", id, "https://elsewhere.example/token", nil)))
			refused(t, "wrong audience", status, body)
			status, body = post(t, c, p.TokenURL(), assertionForm(id, assertion(t, key, alg, "", "client-other", p.TokenURL(), nil)))
			refused(t, "iss and sub of another client", status, body)

			good := assertion(t, key, alg, "", id, p.TokenURL(), nil)
			if status, body := post(t, c, p.TokenURL(), assertionForm(id, good)); status != http.StatusOK {
				t.Fatalf("correct assertion: %d %v", status, body)
			}
			if status, body := post(t, c, p.TokenURL(), assertionForm(id, good)); status != http.StatusBadRequest || body["error"] != "jti_known" {
				t.Fatalf("replayed assertion: %d %v, want 400 jti_known", status, body)
			}
			if last := p.LastRequest(t); last.Error != "jti_known" || last.AccessToken != "" {
				t.Fatalf("recorded %+v", last)
			}
		})
	}
}

// With RequireX5T an assertion must name the registered certificate in x5t and
// x5t#S256, as Entra demands.
func TestX5T(t *testing.T) {
	t.Parallel()
	p := New(t, Options{})
	key := NewKey(RS256)
	cert := p.IssueClientCertificate(t, "entra-app", key)
	p.Register(t, Client{ID: "entra", Algorithm: RS256, PublicKey: key.Public(), Certificate: cert, RequireX5T: true})
	x5t, s256 := Thumbprints(cert)
	other, _ := Thumbprints(p.IssueClientCertificate(t, "other", key))
	c := p.HTTPClient()
	for what, header := range map[string]map[string]string{
		"no thumbprints":     nil,
		"only x5t":           {"x5t": x5t},
		"another cert x5t":   {"x5t": other, "x5t#S256": s256},
		"only x5t#S256":      {"x5t#S256": s256},
		"hex, not base64url": {"x5t": hex.EncodeToString([]byte(x5t)), "x5t#S256": s256},
	} {
		status, body := post(t, c, p.TokenURL(), assertionForm("entra", assertion(t, key, RS256, "", "entra", p.TokenURL(), header)))
		refused(t, what, status, body)
	}
	both := map[string]string{"x5t": x5t, "x5t#S256": s256}
	if status, body := post(t, c, p.TokenURL(), assertionForm("entra", assertion(t, key, RS256, "", "entra", p.TokenURL(), both))); status != http.StatusOK {
		t.Fatalf("with both thumbprints: %d %v", status, body)
	}
}

// tls_client_auth: the bound certificate mints; another certificate from the client CA
// is refused with invalid_client; one from elsewhere, or none, fails the handshake.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	p := New(t, Options{})
	key := NewKey(ES256)
	bound := p.IssueClientCertificate(t, "mtls-client", key)
	p.Register(t, Client{ID: "mtls", Method: TLSClientAuth, Certificate: bound})
	pair := func(cert *x509.Certificate) tls.Certificate {
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}
	form := func() url.Values { return url.Values{"client_id": {"mtls"}} }

	status, body := post(t, p.HTTPClient(pair(bound)), p.MTLSTokenURL(), form())
	if status != http.StatusOK || body["access_token"] == "" {
		t.Fatalf("bound certificate: %d %v", status, body)
	}
	if last := p.LastRequest(t); last.PeerCertificate == nil || !last.PeerCertificate.Equal(bound) || last.Endpoint != p.MTLSTokenURL() {
		t.Fatalf("recorded %+v", last)
	}
	status, body = post(t, p.HTTPClient(pair(p.IssueClientCertificate(t, "mtls-client", key))), p.MTLSTokenURL(), form())
	refused(t, "another certificate of the client CA", status, body)
	// The bound certificate on the endpoint without client certificates: none arrives.
	status, body = post(t, p.HTTPClient(pair(bound)), p.TokenURL(), form())
	refused(t, "no client certificate", status, body)

	requests := p.Requests()
	stranger := issue(t, fixtures.NewCA("foreign"), "mtls-client", key)
	for what, c := range map[string]*http.Client{"foreign CA": p.HTTPClient(pair(stranger)), "none": p.HTTPClient()} {
		if _, err := c.PostForm(p.MTLSTokenURL(), form()); err == nil {
			t.Fatalf("client certificate %s: the handshake succeeded", what)
		}
	}
	if p.Requests() != requests {
		t.Fatal("a request without a trusted client certificate reached the token endpoint")
	}
}

// Registering clients and changing the token lifetime are safe while requests are
// served (run with -race) and take effect for the tokens issued afterwards.
func TestChangesUnderLoad(t *testing.T) {
	t.Parallel()
	p := New(t, Options{})
	key := NewKey(ES256)
	p.Register(t, Client{ID: "busy", Algorithm: ES256, PublicKey: key.Public()})
	c := p.HTTPClient()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if status, body := post(t, c, p.TokenURL(), assertionForm("busy", assertion(t, key, ES256, "", "busy", p.TokenURL(), nil))); status != http.StatusOK {
					t.Errorf("%d %v", status, body)
				}
			}
		})
	}
	for i := range 10 {
		p.SetAccessTTL(time.Duration(i+1) * time.Minute)
		p.Register(t, Client{ID: "idle", Algorithm: ES256, PublicKey: key.Public()})
	}
	wg.Wait()
	p.SetAccessTTL(42 * time.Second)
	if _, body := post(t, c, p.TokenURL(), assertionForm("busy", assertion(t, key, ES256, "", "busy", p.TokenURL(), nil))); body["expires_in"] != float64(41) && body["expires_in"] != float64(42) {
		t.Fatalf("expires_in %v after SetAccessTTL(42s)", body["expires_in"])
	}
}
