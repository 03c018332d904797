package jwtgranttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func sign(t *testing.T, key crypto.Signer, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	var k any = key
	if alg == jose.HS256 {
		k = []byte("a-shared-secret-of-thirty-two-bytes!")
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// post sends a JWT-bearer token request and returns the status and the error code
// ("" on success).
func post(t *testing.T, endpoint, assertion string) (int, string, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(endpoint, url.Values{"grant_type": {GrantType}, "assertion": {assertion}}) //nolint:gosec // G107: the test server's own loopback URL
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	code, _ := body["error"].(string)
	if code != "" && !strings.Contains(body["error_description"].(string), Marker) {
		t.Errorf("error description without the marker: %v", body)
	}
	return resp.StatusCode, code, body
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGoogleContract: the server issues a token for the documented assertion and
// refuses, with the documented codes, each thing Google documents refusing.
func TestGoogleContract(t *testing.T) {
	key, other := rsaKey(t), rsaKey(t)
	g := NewGoogle(t)
	const email = "sa@p.iam.gserviceaccount.com"
	g.Add(ServiceAccount{Email: email, Keys: map[string]crypto.PublicKey{"kid1": key.Public()}, Delegates: []string{"admin@example.com"}})
	now := time.Now().Unix()
	good := func() map[string]any {
		return map[string]any{"iss": email, "scope": "https://www.googleapis.com/auth/a", "aud": g.TokenURI(), "iat": now, "exp": now + 3600}
	}
	if st, code, body := post(t, g.TokenURI(), sign(t, key, jose.RS256, "kid1", good())); st != 200 || code != "" || body["expires_in"] == nil || body["token_type"] != "Bearer" {
		t.Fatalf("good assertion: %d %q %v", st, code, body)
	}
	with := func(k string, v any) map[string]any { c := good(); c[k] = v; return c }
	without := func(k string) map[string]any { c := good(); delete(c, k); return c }
	for name, tc := range map[string]struct {
		key    crypto.Signer
		alg    jose.SignatureAlgorithm
		kid    string
		claims map[string]any
		status int
		code   string
	}{
		"wrong key":         {other, jose.RS256, "kid1", good(), 400, "invalid_grant"},
		"unknown kid":       {key, jose.RS256, "kid2", good(), 400, "invalid_grant"},
		"PS256":             {key, jose.PS256, "kid1", good(), 400, "invalid_grant"},
		"HS256":             {key, jose.HS256, "kid1", good(), 400, "invalid_grant"},
		"unknown account":   {key, jose.RS256, "kid1", with("iss", "x@p.iam.gserviceaccount.com"), 400, "invalid_grant"},
		"wrong aud":         {key, jose.RS256, "kid1", with("aud", "https://oauth2.googleapis.com/token"), 400, "invalid_grant"},
		"exp over an hour":  {key, jose.RS256, "kid1", with("exp", now+3601), 400, "invalid_grant"},
		"expired":           {key, jose.RS256, "kid1", with("exp", now-60), 400, "invalid_grant"},
		"no iat":            {key, jose.RS256, "kid1", without("iat"), 400, "invalid_grant"},
		"no scope":          {key, jose.RS256, "kid1", without("scope"), 400, "invalid_scope"},
		"not a delegate":    {key, jose.RS256, "kid1", with("sub", "ceo@example.com"), 401, "unauthorized_client"},
		"delegate accepted": {key, jose.RS256, "kid1", with("sub", "admin@example.com"), 200, ""},
	} {
		if st, code, _ := post(t, g.TokenURI(), sign(t, tc.key, tc.alg, tc.kid, tc.claims)); st != tc.status || code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", name, st, code, tc.status, tc.code)
		}
	}
}

// TestSalesforceContract: likewise for Salesforce's JWT bearer flow.
func TestSalesforceContract(t *testing.T) {
	key, other := rsaKey(t), rsaKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sf := NewSalesforce(t, SalesforceLogin, "https://acme.my.salesforce.com")
	sf.Add(ConnectedApp{ConsumerKey: "ck", Key: key.Public(), Users: []string{"u@acme.com"}})
	endpoint := sf.LoginURL() + "/services/oauth2/token"
	now := time.Now().Unix()
	good := func() map[string]any {
		return map[string]any{"iss": "ck", "sub": "u@acme.com", "aud": SalesforceLogin, "exp": now + 170}
	}
	st, code, body := post(t, endpoint, sign(t, key, jose.RS256, "", good()))
	if st != 200 || code != "" || body["instance_url"] != "https://acme.my.salesforce.com" || body["expires_in"] != nil {
		t.Fatalf("good assertion: %d %q %v", st, code, body)
	}
	with := func(k string, v any) map[string]any { c := good(); c[k] = v; return c }
	for name, tc := range map[string]struct {
		key    crypto.Signer
		alg    jose.SignatureAlgorithm
		claims map[string]any
		code   string
	}{
		"wrong key":   {other, jose.RS256, good(), "invalid_grant"},
		"ES256":       {ec, jose.ES256, good(), "invalid_grant"},
		"unknown app": {key, jose.RS256, with("iss", "nope"), "invalid_client_id"},
		"sandbox aud": {key, jose.RS256, with("aud", SalesforceTest), "invalid_grant"},
		"exp too far": {key, jose.RS256, with("exp", now+600), "invalid_grant"},
		"expired":     {key, jose.RS256, with("exp", now-5), "invalid_grant"},
		"unapproved":  {key, jose.RS256, with("sub", "x@acme.com"), "invalid_grant"},
	} {
		if st, code, _ := post(t, endpoint, sign(t, tc.key, tc.alg, "", tc.claims)); st != 400 || code != tc.code {
			t.Errorf("%s: %d %q, want 400 %q", name, st, code, tc.code)
		}
	}
	if got := sf.Received(); len(got) != 8 || got[0].AccessToken == "" || len(sf.Issued()) != 1 {
		t.Errorf("recorded %d requests, %d tokens", len(got), len(sf.Issued()))
	}
}
