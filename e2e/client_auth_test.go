//go:build e2e

package e2e

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/fositetest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// clientAuthCase is one client-authentication style, run against a fosite provider of
// its own (e2e/internal/fositetest), which verifies what Vault sends.
type clientAuthCase struct {
	name   string
	keyAlg string         // the key made for the credential (fositetest.NewKey)
	alg    string         // the assertion's alg the provider insists on; "" for tls_client_auth
	fields map[string]any // the type and style fields
	kid    string         // client_key_id, "" for none
	mtls   bool           // tls_client_auth: the mutual-TLS endpoint, the certificate bound
	x5t    bool           // Entra: client_certificate set, its thumbprints required
}

var clientAuthCases = []clientAuthCase{
	{name: "rsa-rs256", keyAlg: fositetest.RS256, alg: fositetest.RS256, kid: "kid-rsa",
		fields: map[string]any{"type": "oauth2_client_credentials", "auth_style": "private_key_jwt", "scopes": []string{"read"}}},
	{name: "rsa-ps256", keyAlg: fositetest.PS256, alg: fositetest.PS256,
		fields: map[string]any{"type": "oauth2_client_credentials", "auth_style": "private_key_jwt", "client_assertion_algorithm": "PS256"}},
	{name: "ec-p256", keyAlg: fositetest.ES256, alg: fositetest.ES256, kid: "kid-p256",
		fields: map[string]any{"type": "oauth2_client_credentials", "auth_style": "private_key_jwt"}},
	{name: "ec-p384", keyAlg: fositetest.ES384, alg: fositetest.ES384,
		fields: map[string]any{"type": "oauth2_client_credentials", "auth_style": "private_key_jwt"}},
	{name: "ed25519", keyAlg: fositetest.EdDSA, alg: fositetest.EdDSA, kid: "kid-ed",
		fields: map[string]any{"type": "oauth2_client_credentials", "auth_style": "private_key_jwt"}},
	{name: "tls-client-auth", keyAlg: fositetest.ES256, mtls: true,
		fields: map[string]any{"type": "oauth2_client_credentials", "auth_style": "tls_client_auth"}},
	{name: "m365-certificate", keyAlg: fositetest.RS256, alg: fositetest.RS256, x5t: true,
		fields: map[string]any{"type": "m365", "tenant": "contoso.onmicrosoft.com", "auth_style": "private_key_jwt"}},
	// The other presets that take a client assertion, their token endpoint overridden
	// (Zoom's Server-to-Server apps authenticate with their secret only).
	{name: "servicenow-jwt", keyAlg: fositetest.ES256, alg: fositetest.ES256,
		fields: map[string]any{"type": "servicenow_oauth", "instance": "dev12345", "auth_style": "private_key_jwt"}},
	{name: "cisco-jwt", keyAlg: fositetest.RS256, alg: fositetest.RS256, kid: "kid-cisco",
		fields: map[string]any{"type": "cisco_client_credentials", "auth_url": "https://id.cisco.com/oauth2/default/v1/token", "auth_style": "private_key_jwt"}},
}

// TestClientAuthFosite: every client-authentication style mints through a real Vault
// against fosite, over TLS trusted only through ca_certificate, with a fresh assertion
// (distinct jti) per mint; a wrong key and a wrong audience are refused by the server
// and leave the credential needs_reauth, as does a client certificate the mutual-TLS
// handshake refuses; no key material shows anywhere.
func TestClientAuthFosite(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	vc := noRetryClient(t, shared)
	for _, tc := range clientAuthCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runClientAuthCase(t, vc, mount, tc)
		})
	}
}

func runClientAuthCase(t *testing.T, vc *api.Client, mount string, tc clientAuthCase) {
	p := fositetest.New(t, fositetest.Options{})
	key, wrong := fositetest.NewKey(tc.keyAlg), fositetest.NewKey(tc.keyAlg)
	clientID := "client-" + tc.name
	cert, wrongCert := p.IssueClientCertificate(t, clientID, key), p.IssueClientCertificate(t, clientID, wrong)
	reg := fositetest.Client{ID: clientID, Algorithm: tc.alg, KeyID: tc.kid, PublicKey: key.Public()}
	fields := maps(tc.fields, map[string]any{"client_id": clientID, "client_key": fixtures.KeyPEM(key),
		"ca_certificate": p.CACertificatePEM(), "token_url": p.TokenURL()})
	if tc.kid != "" {
		fields["client_key_id"] = tc.kid
	}
	switch {
	case tc.mtls:
		reg = fositetest.Client{ID: clientID, Method: fositetest.TLSClientAuth, Certificate: cert}
		fields["token_url"] = p.MTLSTokenURL()
		fields["client_certificate"] = fositetest.CertificatePEM(cert)
	case tc.x5t:
		reg.Certificate, reg.RequireX5T = cert, true
		fields["client_certificate"] = fositetest.CertificatePEM(cert)
	}
	p.Register(t, reg)
	// A certificate from no CA the mutual-TLS endpoint trusts.
	stranger := fixtures.SelfSigned(wrong, clientID, time.Now().AddDate(1, 0, 0))
	public := []string{fositetest.CertificatePEM(cert), fositetest.CertificatePEM(wrongCert), stranger}
	secrets := append(pemSecrets(fixtures.KeyPEM(key), public...), pemSecrets(fixtures.KeyPEM(wrong), public...)...)
	var names []string
	write := func(name string, f map[string]any) {
		t.Helper()
		names = append(names, name)
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/" + name}, cliArgs(t, f)...)...)
	}
	access := func(name string) (*api.Secret, error) { return vc.Logical().Read(mount + "/access/" + name) }

	// Without ca_certificate the handshake fails: the provider's CA is in no trust
	// store, and no request reaches its token endpoint.
	noCA := maps(fields, nil)
	delete(noCA, "ca_certificate")
	write(tc.name+"-no-ca", noCA)
	if _, err := access(tc.name + "-no-ca"); err == nil || p.Requests() != 0 {
		t.Fatalf("access without ca_certificate: %v, %d requests at the provider (want a failure before any)", err, p.Requests())
	} else {
		t.Logf("without ca_certificate: %v", err)
		noSecretIn(t, "the error", err.Error(), secrets)
	}

	// With it: a token, minted by the server from what it verified.
	write(tc.name, fields)
	first := mintThrough(t, p, access, tc.name)
	checkClientAuth(t, first, tc, clientID, fields["token_url"].(string), cert)
	// An update makes the cached token stale: the next read mints with a new assertion.
	shared.mustCLI(t, "patch", mount+"/credentials/"+tc.name, "description=second mint")
	second := mintThrough(t, p, access, tc.name)
	checkClientAuth(t, second, tc, clientID, fields["token_url"].(string), cert)
	if !tc.mtls && first.Assertion.JTI() == second.Assertion.JTI() {
		t.Fatalf("two mints carried the same jti %q", first.Assertion.JTI())
	}

	// Refused, classified permanent: needs_reauth for reason, and no further request.
	// invalid_client is the token endpoint's answer to one request; any other reason
	// is a refusal in the TLS handshake, before a request reaches it.
	refusal := func(name string, f map[string]any, reason string) fositetest.Request {
		t.Helper()
		write(name, f)
		before := p.Requests()
		_, err := access(name)
		if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), reason) {
			t.Fatalf("access of %s: %v, want 403 naming %s", name, err, reason)
		}
		noSecretIn(t, "the error", err.Error(), secrets)
		var last fositetest.Request
		if reason != "invalid_client" {
			if p.Requests() != before {
				t.Fatalf("%s: a request reached the token endpoint", name)
			}
		} else if last = p.LastRequest(t); p.Requests() != before+1 || last.Error != reason || last.Status != http.StatusUnauthorized {
			t.Fatalf("%s: %d requests, the server answered %d %q; want one refused with %s", name, p.Requests()-before, last.Status, last.Error, reason)
		}
		read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name)).Data
		if read["status"] != "needs_reauth" || read["status_reason"] != reason {
			t.Fatalf("%s after the refusal: status %v (%v), want needs_reauth (%s)", name, read["status"], read["status_reason"], reason)
		}
		after := p.Requests()
		if _, err := access(name); statusCode(err) != http.StatusForbidden || p.Requests() != after {
			t.Fatalf("%s again: %v after %d requests, want 403 without asking the server", name, err, p.Requests()-after)
		}
		return last
	}
	wrongKey := maps(fields, nil)
	wrongKey["client_key"] = fixtures.KeyPEM(wrong)
	if _, ok := fields["client_certificate"]; ok {
		// The certificate must match the key (the engine checks): another pair. With
		// tls_client_auth it is from the same client CA, so TLS accepts it and the
		// server's binding to the client_id refuses it.
		wrongKey["client_certificate"] = fositetest.CertificatePEM(wrongCert)
	}
	refusal(tc.name+"-wrong-key", wrongKey, "invalid_client")
	if tc.mtls {
		refusal(tc.name+"-foreign-ca", maps(fields, map[string]any{"client_key": fixtures.KeyPEM(wrong), "client_certificate": stranger}), "tls_client_refused")
	} else {
		const elsewhere = "https://elsewhere.example/oauth2/token"
		wrongAud := maps(fields, nil)
		wrongAud["client_assertion_audience"] = elsewhere
		if got := refusal(tc.name+"-wrong-aud", wrongAud, "invalid_client"); got.Assertion == nil || !slices.Contains(audience(got.Assertion), elsewhere) {
			t.Fatalf("the refused assertion's aud is %v, want %s", got.Assertion, elsewhere)
		}
	}
	for _, name := range names {
		assertNothingShows(t, shared, mount, name, secrets...)
	}
}

// mintThrough reads access/<name>, which must mint exactly one token at p, and returns
// the request that minted it.
func mintThrough(t *testing.T, p *fositetest.Provider, access func(string) (*api.Secret, error), name string) fositetest.Request {
	t.Helper()
	before := p.Requests()
	s, err := access(name)
	if err != nil {
		t.Fatalf("access %s: %v", name, err)
	}
	got := p.LastRequest(t)
	if p.Requests() != before+1 || got.AccessToken == "" || s.Data["access_token"] != got.AccessToken {
		t.Fatalf("access %s: %d requests, the server answered %d %q; want the one token it issued", name, p.Requests()-before, got.Status, got.Error)
	}
	return got
}

// checkClientAuth checks the client authentication of a request the server accepted
// against what the issue asks of it (the server verified the rest).
func checkClientAuth(t *testing.T, req fositetest.Request, tc clientAuthCase, clientID, aud string, cert *x509.Certificate) {
	t.Helper()
	if req.Form.Has("client_secret") || (tc.mtls && req.Form.Get("client_id") != clientID) {
		t.Fatalf("form has client_id %q and a client_secret %v: want client_id and no secret", req.Form.Get("client_id"), req.Form.Has("client_secret"))
	}
	if tc.mtls {
		if req.Assertion != nil || req.PeerCertificate == nil || !req.PeerCertificate.Equal(cert) {
			t.Fatalf("tls_client_auth: assertion %v, client certificate presented %v", req.Assertion != nil, req.PeerCertificate != nil)
		}
		return
	}
	a := req.Assertion
	if a == nil || req.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		t.Fatalf("no client assertion (client_assertion_type %q)", req.Form.Get("client_assertion_type"))
	}
	if a.Header["alg"] != tc.alg || (a.Header["kid"] != nil || tc.kid != "") && a.Header["kid"] != tc.kid {
		t.Fatalf("header %v: want alg %s, kid %q", a.Header, tc.alg, tc.kid)
	}
	if tc.x5t {
		x5t, s256 := fositetest.Thumbprints(cert)
		if a.Header["x5t"] != x5t || a.Header["x5t#S256"] != s256 {
			t.Fatalf("header %v: want the certificate's x5t and x5t#S256", a.Header)
		}
	}
	if a.Claims["iss"] != clientID || a.Claims["sub"] != clientID || !slices.Equal(audience(a), []string{aud}) || a.JTI() == "" {
		t.Fatalf("claims %v: want iss = sub = %s, aud %s, a jti", a.Claims, clientID, aud)
	}
	iat, nbf, exp := claimTime(a, "iat"), claimTime(a, "nbf"), claimTime(a, "exp")
	if iat.IsZero() || nbf.IsZero() || exp.Sub(iat) > 5*time.Minute || !exp.After(time.Now()) {
		t.Fatalf("claims %v: want iat, nbf, and exp in the future at most 5 minutes after iat", a.Claims)
	}
}

// audience is an assertion's aud as a list (a string or an array, RFC 7519 §4.1.3).
func audience(a *fositetest.Assertion) []string {
	switch aud := a.Claims["aud"].(type) {
	case string:
		return []string{aud}
	case []any:
		var out []string
		for _, v := range aud {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// claimTime is a NumericDate claim, the zero time when it is absent or not a number.
func claimTime(a *fositetest.Assertion, name string) time.Time {
	n, ok := a.Claims[name].(json.Number)
	if !ok {
		return time.Time{}
	}
	sec, err := n.Float64()
	if err != nil {
		return time.Time{}
	}
	return time.Unix(int64(sec), 0)
}

// pemSecrets are the strings by which a private key PEM would be recognised in an
// output: the whole block and each line of its base64 body, since an output may
// escape or re-wrap the newlines. A line found in one of the public PEMs (the
// certificates, shown in reads) is left out: PKCS#8 carries the public key too, and
// its base64 can line up with the certificate's.
func pemSecrets(keyPEM string, public ...string) []string {
	out := []string{keyPEM}
	for _, line := range strings.Split(keyPEM, "\n") {
		if len(line) < 32 || strings.HasPrefix(line, "-----") || slices.ContainsFunc(public, func(p string) bool {
			return strings.Contains(strings.ReplaceAll(p, "\n", ""), line)
		}) {
			continue
		}
		out = append(out, line)
	}
	return out
}

// noSecretIn fails t when out shows a secret or the provider's error text.
func noSecretIn(t *testing.T, what, out string, secrets []string) {
	t.Helper()
	if strings.Contains(out, fositetest.Marker) {
		t.Errorf("%s shows the provider's error text", what)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s shows key material (%d characters)", what, len(s))
		}
	}
}
