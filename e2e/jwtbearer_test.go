//go:build e2e

package e2e

import (
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/fositetest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/jwtgranttest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// grantAssertion is what the tests read of a JWT-bearer grant assertion: its header
// and claims as the server decoded them.
type grantAssertion struct {
	header, claims map[string]any
}

func (a grantAssertion) str(claim string) string { s, _ := a.claims[claim].(string); return s }

func (a grantAssertion) time(claim string) time.Time {
	n, ok := a.claims[claim].(json.Number)
	if !ok {
		return time.Time{}
	}
	sec, err := n.Int64()
	if err != nil {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// redactedData is an access answer's keys, for a failure message that must not
// print the token.
func redactedData(data map[string]any) []string {
	var keys []string
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkGrantAssertion checks the claims every grant assertion carries: iss, sub (when
// given), aud, a jti, iat, and exp in the future at most lifetime after iat.
func checkGrantAssertion(t *testing.T, a grantAssertion, alg, kid, iss, sub, aud string, lifetime time.Duration) {
	t.Helper()
	if a.header["alg"] != alg || (kid != "" || a.header["kid"] != nil) && a.header["kid"] != kid {
		t.Fatalf("header %v: want alg %s, kid %q", a.header, alg, kid)
	}
	gotAud := a.str("aud")
	if list, ok := a.claims["aud"].([]any); ok && len(list) == 1 {
		gotAud, _ = list[0].(string)
	}
	if a.str("iss") != iss || a.str("sub") != sub || gotAud != aud || a.str("jti") == "" {
		t.Fatalf("claims %v: want iss %s, sub %q, aud %s, a jti", a.claims, iss, sub, aud)
	}
	iat, exp := a.time("iat"), a.time("exp")
	if iat.IsZero() || exp.Sub(iat) > lifetime || !exp.After(time.Now()) {
		t.Fatalf("claims %v: want iat, and exp in the future at most %s after it", a.claims, lifetime)
	}
}

// refusedAs reads access/<name>, which the server refuses: 403 naming reason, the
// credential needs_reauth for it, the next read refused without a request (requests
// counts the server's), and no secret in the error.
func refusedAs(t *testing.T, vc *api.Client, mount, name, reason string, requests func() int64, secrets []string) {
	t.Helper()
	before := requests()
	_, err := vc.Logical().Read(mount + "/access/" + name)
	if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), reason) {
		t.Fatalf("access of %s: %v, want 403 naming %s", name, err, reason)
	}
	if requests() != before+1 {
		t.Fatalf("access of %s: %d requests at the server, want 1", name, requests()-before)
	}
	noSecretIn(t, "the error", err.Error(), secrets)
	if strings.Contains(err.Error(), jwtgranttest.Marker) {
		t.Errorf("the error of %s shows the provider's text", name)
	}
	read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name)).Data
	if read["status"] != "needs_reauth" || read["status_reason"] != reason {
		t.Fatalf("%s after the refusal: status %v (%v), want needs_reauth (%s)", name, read["status"], read["status_reason"], reason)
	}
	after := requests()
	if _, err := vc.Logical().Read(mount + "/access/" + name); statusCode(err) != http.StatusForbidden || requests() != after {
		t.Fatalf("%s again: %v after %d requests, want 403 without asking the server", name, err, requests()-after)
	}
}

// TestJWTBearerFosite: oauth2_jwt_bearer against ory/fosite's RFC 7523 handler, with
// the issuer's key trusted there: the engine posts a fresh assertion per mint (iss,
// sub, aud = token_url, iat, exp, jti, kid) that fosite verifies, the token is cached,
// and fosite's refusals — a wrong key, a wrong audience, an assertion expired by the
// time it is checked, a subject the key is not trusted for — leave the credential
// needs_reauth. A second provider also authenticates the client (private_key_jwt with
// the same key): the client-authentication fields work on this type too.
func TestJWTBearerFosite(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	vc := noRetryClient(t, shared)
	t.Run("assertion-only", func(t *testing.T) {
		t.Parallel()
		p := fositetest.New(t, fositetest.Options{JWTBearerWithoutClient: true})
		key, wrong := fositetest.NewKey(fositetest.RS256), fositetest.NewKey(fositetest.RS256)
		p.TrustIssuer(t, "svc-issuer", "svc-subject", "kid-1", key.Public(), fositetest.RS256, "read", "write")
		secrets := append(pemSecrets(fixtures.KeyPEM(key)), pemSecrets(fixtures.KeyPEM(wrong))...)
		fields := map[string]any{"type": "oauth2_jwt_bearer", "token_url": p.TokenURL(), "issuer": "svc-issuer",
			"subject": "svc-subject", "client_key": fixtures.KeyPEM(key), "client_key_id": "kid-1",
			"scopes": []string{"read"}, "ca_certificate": p.CACertificatePEM()}
		var names []string
		write := func(name string, f map[string]any) {
			t.Helper()
			names = append(names, name)
			shared.mustCLI(t, append([]string{"write", mount + "/credentials/" + name}, cliArgs(t, f)...)...)
		}
		access := func(name string) (*api.Secret, error) { return vc.Logical().Read(mount + "/access/" + name) }
		write("jb", fields)
		first := mintThrough(t, p, access, "jb")
		if first.Form.Get("grant_type") != fositetest.GrantJWTBearer || first.Form.Get("scope") != "read" ||
			first.Form.Has("client_id") || first.Form.Has("client_secret") || first.Grant == nil {
			t.Fatalf("form %v: want the JWT-bearer grant with scope read and no client", first.Form)
		}
		checkGrantAssertion(t, grantAssertion{first.Grant.Header, first.Grant.Claims}, "RS256", "kid-1", "svc-issuer", "svc-subject", p.TokenURL(), 5*time.Minute)
		// Cached: the next read asks nothing.
		before := p.Requests()
		if s, err := access("jb"); err != nil || s.Data["access_token"] != first.AccessToken || p.Requests() != before {
			t.Fatalf("second read: %v, %d requests; want the cached token", err, p.Requests()-before)
		}
		shared.mustCLI(t, "patch", mount+"/credentials/jb", "description=second mint")
		second := mintThrough(t, p, access, "jb")
		if second.Grant == nil || second.Grant.JTI() == first.Grant.JTI() {
			t.Fatal("two mints carried the same assertion")
		}

		write("jb-wrong-key", maps(fields, map[string]any{"client_key": fixtures.KeyPEM(wrong)}))
		refusedAs(t, vc, mount, "jb-wrong-key", "invalid_grant", p.Requests, secrets)
		write("jb-wrong-aud", maps(fields, map[string]any{"audience": "https://elsewhere.example/oauth2/token"}))
		refusedAs(t, vc, mount, "jb-wrong-aud", "invalid_grant", p.Requests, secrets)
		if got := p.LastRequest(t); got.Grant == nil || !slices.Contains(audience(got.Grant), "https://elsewhere.example/oauth2/token") {
			t.Fatalf("the refused assertion's aud is %v", got.Grant)
		}
		write("jb-wrong-sub", maps(fields, map[string]any{"subject": "someone-else"}))
		refusedAs(t, vc, mount, "jb-wrong-sub", "invalid_grant", p.Requests, secrets)
		for _, name := range names {
			assertNothingShows(t, shared, mount, name, secrets...)
		}
	})
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		// The shortest assertion lifetime the engine signs is 10 s: the provider holds
		// the request until that has passed, then fosite checks exp against its clock.
		p := fositetest.New(t, fositetest.Options{JWTBearerWithoutClient: true})
		key := fositetest.NewKey(fositetest.ES256)
		p.TrustIssuer(t, "svc-issuer", "svc-subject", "", key.Public(), fositetest.ES256)
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/jb-expired"}, cliArgs(t, map[string]any{
			"type": "oauth2_jwt_bearer", "token_url": p.TokenURL(), "issuer": "svc-issuer", "subject": "svc-subject",
			"client_key": fixtures.KeyPEM(key), "assertion_lifetime": "10s", "ca_certificate": p.CACertificatePEM()})...)...)
		arrived, release := p.Hold(t, fositetest.GrantJWTBearer)
		done := make(chan error, 1)
		go func() {
			_, err := vc.Logical().Read(mount + "/access/jb-expired")
			done <- err
		}()
		<-arrived
		time.Sleep(11 * time.Second) // wall time must pass for the assertion to expire at the server
		release()
		err := <-done
		if statusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("access with an expired assertion: %v, want 403 invalid_grant", err)
		}
		got := p.LastRequest(t)
		if got.Error != "invalid_grant" || got.Grant == nil || got.Grant.Claims["exp"] == nil {
			t.Fatalf("the server answered %q to %v", got.Error, got.Grant)
		}
		read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/jb-expired")).Data
		if read["status"] != "needs_reauth" || read["status_reason"] != "invalid_grant" {
			t.Fatalf("after the refusal: %v (%v)", read["status"], read["status_reason"])
		}
	})
	t.Run("client-authenticated", func(t *testing.T) {
		t.Parallel()
		p := fositetest.New(t, fositetest.Options{})
		key := fositetest.NewKey(fositetest.ES256)
		p.RegisterJWTBearerClient(t, fositetest.Client{ID: "jb-client", Algorithm: fositetest.ES256, KeyID: "kid-c", PublicKey: key.Public()})
		p.TrustIssuer(t, "svc-issuer", "svc-subject", "kid-c", key.Public(), fositetest.ES256)
		fields := map[string]any{"type": "oauth2_jwt_bearer", "token_url": p.TokenURL(), "issuer": "svc-issuer",
			"subject": "svc-subject", "client_key": fixtures.KeyPEM(key), "client_key_id": "kid-c",
			"client_id": "jb-client", "auth_style": "private_key_jwt", "ca_certificate": p.CACertificatePEM()}
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/jb-client"}, cliArgs(t, fields)...)...)
		got := mintThrough(t, p, func(n string) (*api.Secret, error) { return vc.Logical().Read(mount + "/access/" + n) }, "jb-client")
		if got.Assertion == nil || got.Grant == nil || got.Assertion.Claims["iss"] != "jb-client" || got.Grant.Claims["iss"] != "svc-issuer" {
			t.Fatalf("want a client assertion (iss jb-client) and the grant's (iss svc-issuer): %v / %v", got.Assertion, got.Grant)
		}
		// Without the client's authentication this server refuses the grant (fosite
		// answers invalid_request: no client_id).
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/jb-no-client"}, cliArgs(t, maps(fields, map[string]any{"auth_style": "body", "client_id": ""}))...)...)
		refusedAs(t, vc, mount, "jb-no-client", "invalid_request", p.Requests, pemSecrets(fixtures.KeyPEM(key)))
	})
}

// TestGoogleServiceAccount: google_service_account against a server that follows
// Google's server-to-server contract, with a key file made as Google makes them
// (RSA-2048, PKCS#8 in the JSON, token_uri pointed at the server): the assertion
// Google documents, the token served as every OAuth type's, client_email and
// private_key_id shown and the key never; refusals (a key Google does not know, a
// user the account may not act as) leave it needs_reauth; a key file of another kind
// is refused at write naming the field.
func TestGoogleServiceAccount(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	vc := noRetryClient(t, shared)
	g := jwtgranttest.NewGoogle(t)
	key, wrong := fixtures.NewKey("rsa2048").(*rsa.PrivateKey), fixtures.NewKey("rsa2048").(*rsa.PrivateKey)
	const email, kid = "sync@project-e2e.iam.gserviceaccount.com", "8f2a6c0e1d"
	g.Add(jwtgranttest.ServiceAccount{Email: email, Keys: map[string]crypto.PublicKey{kid: key.Public()}, Delegates: []string{"admin@example.com"}})
	keyFile := fixtures.ServiceAccountKey(key, email, kid, g.TokenURI())
	secrets := append(pemSecrets(fixtures.KeyPEM(key)), pemSecrets(fixtures.KeyPEM(wrong))...)
	scopes := []string{"https://www.googleapis.com/auth/admin.directory.user.readonly", "https://www.googleapis.com/auth/gmail.readonly"}
	write := func(name string, f map[string]any) {
		t.Helper()
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/" + name}, cliArgs(t, f)...)...)
	}
	write("gsa", map[string]any{"type": "google_service_account", "service_account_key": keyFile, "scopes": scopes, "subject": "admin@example.com"})
	s, err := vc.Logical().Read(mount + "/access/gsa")
	if err != nil {
		t.Fatal(err)
	}
	req := g.LastRequest(t)
	if s.Data["access_token"] != req.AccessToken || s.Data["token_type"] != "Bearer" || s.Data["authorization"] != "Bearer "+req.AccessToken ||
		jsonInt(s.Data["rotation_period"]) != 3599 {
		t.Fatalf("access answer %v", redactedData(s.Data))
	}
	if len(req.Form) != 2 || req.Authorization != "" {
		t.Fatalf("form %v, Authorization set %v: want grant_type and assertion only", req.Form, req.Authorization != "")
	}
	a := grantAssertion{req.Header, req.Claims}
	checkGrantAssertion(t, a, "RS256", kid, email, "admin@example.com", g.TokenURI(), time.Hour)
	if a.str("scope") != strings.Join(scopes, " ") {
		t.Fatalf("scope claim %q", a.str("scope"))
	}
	read := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/gsa")).Data
	if read["client_email"] != email || read["private_key_id"] != kid {
		t.Fatalf("read shows client_email %v, private_key_id %v", read["client_email"], read["private_key_id"])
	}
	before := g.Requests()
	if _, err := vc.Logical().Read(mount + "/access/gsa"); err != nil || g.Requests() != before {
		t.Fatalf("second read: %v, %d requests: want the cached token", err, g.Requests()-before)
	}

	write("gsa-wrong-key", map[string]any{"type": "google_service_account", "service_account_key": fixtures.ServiceAccountKey(wrong, email, kid, g.TokenURI()), "scopes": scopes})
	refusedAs(t, vc, mount, "gsa-wrong-key", "invalid_grant", g.Requests, secrets)
	write("gsa-not-delegated", map[string]any{"type": "google_service_account", "service_account_key": keyFile, "scopes": scopes, "subject": "ceo@example.com"})
	refusedAs(t, vc, mount, "gsa-not-delegated", "unauthorized_client", g.Requests, secrets)

	var other map[string]any
	_ = json.Unmarshal([]byte(keyFile), &other)
	other["type"] = "authorized_user"
	b, _ := json.Marshal(other)
	_, err = shared.cli(append([]string{"write", mount + "/credentials/gsa-user"}, cliArgs(t, map[string]any{"type": "google_service_account", "service_account_key": string(b) + "\n", "scopes": scopes})...)...)
	if err == nil || !strings.Contains(err.Error(), "service_account_key") || !strings.Contains(err.Error(), "authorized_user") || !strings.Contains(err.Error(), "Code: 400") {
		t.Fatalf("an authorized_user file: %v, want a 400 naming service_account_key", err)
	}
	noSecretIn(t, "the refusal", err.Error(), secrets)
	for _, name := range []string{"gsa", "gsa-wrong-key", "gsa-not-delegated"} {
		assertNothingShows(t, shared, mount, name, secrets...)
	}
}

// TestSalesforceJWT: salesforce_jwt against a server that follows Salesforce's JWT
// bearer flow: the assertion it documents (RS256, iss consumer key, sub username, aud
// the login server, exp within 3 minutes) posted to login_url, the answer's
// instance_url served with the token; a user not pre-authorized, an unknown consumer
// key, and a sandbox server (which expects aud https://test.salesforce.com; a login_url
// that is neither login nor test keeps the production aud, as for a My Domain) are
// refused and leave it needs_reauth; an EC key is refused at write.
func TestSalesforceJWT(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	vc := noRetryClient(t, shared)
	sf := jwtgranttest.NewSalesforce(t, jwtgranttest.SalesforceLogin, "https://acme.my.salesforce.com")
	sandbox := jwtgranttest.NewSalesforce(t, jwtgranttest.SalesforceTest, "https://acme--uat.sandbox.my.salesforce.com")
	key := fixtures.NewKey("rsa2048")
	for _, s := range []*jwtgranttest.Salesforce{sf, sandbox} {
		s.Add(jwtgranttest.ConnectedApp{ConsumerKey: "3MVG9-e2e-consumer", Key: key.Public(), Users: []string{"integration@acme.com"}})
	}
	secrets := pemSecrets(fixtures.KeyPEM(key))
	fields := map[string]any{"type": "salesforce_jwt", "login_url": sf.LoginURL(), "consumer_key": "3MVG9-e2e-consumer",
		"username": "integration@acme.com", "client_key": fixtures.KeyPEM(key)}
	write := func(name string, f map[string]any) {
		t.Helper()
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/" + name}, cliArgs(t, f)...)...)
	}
	write("sf", fields)
	s, err := vc.Logical().Read(mount + "/access/sf")
	if err != nil {
		t.Fatal(err)
	}
	req := sf.LastRequest(t)
	if s.Data["access_token"] != req.AccessToken || s.Data["instance_url"] != "https://acme.my.salesforce.com" || s.Data["token_type"] != "Bearer" {
		t.Fatalf("access answer %v", redactedData(s.Data))
	}
	if len(req.Form) != 2 || req.Authorization != "" {
		t.Fatalf("form %v: want grant_type and assertion only", req.Form)
	}
	checkGrantAssertion(t, grantAssertion{req.Header, req.Claims}, "RS256", "", "3MVG9-e2e-consumer", "integration@acme.com", jwtgranttest.SalesforceLogin, 3*time.Minute)
	if exp := (grantAssertion{req.Header, req.Claims}).time("exp"); exp.After(time.Now().Add(3 * time.Minute)) {
		t.Fatalf("exp %s is more than 3 minutes ahead", exp)
	}
	before := sf.Requests()
	if s2, err := vc.Logical().Read(mount + "/access/sf"); err != nil || sf.Requests() != before || s2.Data["instance_url"] != "https://acme.my.salesforce.com" {
		t.Fatalf("second read: %v, %d requests: want the cached token with its instance_url", err, sf.Requests()-before)
	}

	write("sf-unapproved", maps(fields, map[string]any{"username": "someone@acme.com"}))
	refusedAs(t, vc, mount, "sf-unapproved", "invalid_grant", sf.Requests, secrets)
	write("sf-unknown-app", maps(fields, map[string]any{"consumer_key": "3MVG9-unknown"}))
	refusedAs(t, vc, mount, "sf-unknown-app", "invalid_client_id", sf.Requests, secrets)
	write("sf-sandbox-host", maps(fields, map[string]any{"login_url": sandbox.LoginURL()}))
	refusedAs(t, vc, mount, "sf-sandbox-host", "invalid_grant", sandbox.Requests, secrets)

	_, err = shared.cli(append([]string{"write", mount + "/credentials/sf-ec"}, cliArgs(t, maps(fields, map[string]any{"client_key": fixtures.KeyPEM(fixtures.NewKey("p256"))}))...)...)
	if err == nil || !strings.Contains(err.Error(), "client_key") || !strings.Contains(err.Error(), "RS256") || !strings.Contains(err.Error(), "Code: 400") {
		t.Fatalf("an EC key: %v, want a 400 naming client_key", err)
	}
	for _, name := range []string{"sf", "sf-unapproved", "sf-unknown-app", "sf-sandbox-host"} {
		assertNothingShows(t, shared, mount, name, secrets...)
	}
}

// jwtBearerLeakValues are the leak scan's values for a JWT-bearer type (marker m),
// each against a server of its own whose issued tokens it registers in issuers, and
// the private key PEM they hold.
func jwtBearerLeakValues(t *testing.T, typ, m string, issuers map[string]interface{ Issued() []string }, name string) (map[string]any, string) {
	t.Helper()
	key := fixtures.NewKey("rsa2048").(*rsa.PrivateKey)
	keyPEM := fixtures.KeyPEM(key)
	switch typ {
	case "oauth2_jwt_bearer":
		p := fositetest.New(t, fositetest.Options{JWTBearerWithoutClient: true})
		p.TrustIssuer(t, "iss-"+m, "sub-"+m, "kid-"+m, key.Public(), fositetest.RS256, "read")
		issuers[name] = p
		return map[string]any{"token_url": p.TokenURL(), "issuer": "iss-" + m, "subject": "sub-" + m, "client_key": keyPEM,
			"client_key_id": "kid-" + m, "scopes": []string{"read"}, "ca_certificate": p.CACertificatePEM(),
			"client_id": "jb-" + m, "client_secret": "cs-" + m, "auth_style": "body"}, keyPEM
	case "google_service_account":
		g := jwtgranttest.NewGoogle(t)
		email := "sa-" + strings.ToLower(m) + "@p.iam.gserviceaccount.com"
		g.Add(jwtgranttest.ServiceAccount{Email: email, Keys: map[string]crypto.PublicKey{"kid-" + m: key.Public()}})
		issuers[name] = g
		return map[string]any{"service_account_key": fixtures.ServiceAccountKey(key, email, "kid-"+m, g.TokenURI()),
			"scopes": []string{"https://www.googleapis.com/auth/cloud-platform"}}, keyPEM
	default:
		sf := jwtgranttest.NewSalesforce(t, jwtgranttest.SalesforceLogin, "https://leak.my.salesforce.com")
		sf.Add(jwtgranttest.ConnectedApp{ConsumerKey: "ck-" + m, Key: key.Public(), Users: []string{"u@example.com"}})
		issuers[name] = sf
		return map[string]any{"login_url": sf.LoginURL(), "consumer_key": "ck-" + m, "username": "u@example.com", "client_key": keyPEM}, keyPEM
	}
}

// jwtBearerTargetNames are the load targets of the JWT-bearer types, in the order
// jwtBearerLoadTargets makes them.
var jwtBearerTargetNames = []string{
	"access/ cached JWT-bearer token (oauth2_jwt_bearer)",
	"access/ cached Google service account token",
	"access/ cached Salesforce token",
}

// jwtBearerLoadTarget is one cached JWT-bearer read of the load rounds.
type jwtBearerLoadTarget struct{ name, path, want string }

// jwtBearerLoadTargets writes one credential of each JWT-bearer type on the load-int
// mount, each minting from a server of its own (fosite's RFC 7523 handler, the Google
// and Salesforce contract servers), and returns their access/ reads.
func jwtBearerLoadTargets(t *testing.T, v *vaultServer) []jwtBearerLoadTarget {
	t.Helper()
	key := fixtures.RSAKey()
	p := fositetest.New(t, fositetest.Options{JWTBearerWithoutClient: true})
	p.TrustIssuer(t, "bench-issuer", "bench-subject", "", key.Public(), fositetest.RS256)
	g := jwtgranttest.NewGoogle(t)
	g.Add(jwtgranttest.ServiceAccount{Email: "bench@p.iam.gserviceaccount.com", Keys: map[string]crypto.PublicKey{"kid-bench": key.Public()}})
	sf := jwtgranttest.NewSalesforce(t, jwtgranttest.SalesforceLogin, "https://bench.my.salesforce.com")
	sf.Add(jwtgranttest.ConnectedApp{ConsumerKey: "3MVG9-bench", Key: key.Public(), Users: []string{"bench@example.com"}})
	mustDo(t, v, http.MethodPost, "load-int/credentials/jb", map[string]any{"type": "oauth2_jwt_bearer", "token_url": p.TokenURL(),
		"issuer": "bench-issuer", "subject": "bench-subject", "client_key": fixtures.KeyPEM(key), "ca_certificate": p.CACertificatePEM()})
	mustDo(t, v, http.MethodPost, "load-int/credentials/gsa", map[string]any{"type": "google_service_account",
		"service_account_key": fixtures.ServiceAccountKey(key, "bench@p.iam.gserviceaccount.com", "kid-bench", g.TokenURI()),
		"scopes":              []string{"https://www.googleapis.com/auth/cloud-platform"}})
	mustDo(t, v, http.MethodPost, "load-int/credentials/sf", map[string]any{"type": "salesforce_jwt", "login_url": sf.LoginURL(),
		"consumer_key": "3MVG9-bench", "username": "bench@example.com", "client_key": fixtures.KeyPEM(key)})
	return []jwtBearerLoadTarget{
		{jwtBearerTargetNames[0], "load-int/access/jb", "access_token"},
		{jwtBearerTargetNames[1], "load-int/access/gsa", "access_token"},
		{jwtBearerTargetNames[2], "load-int/access/sf", "instance_url"},
	}
}

// presentTargets are those of names that the report has load figures for.
func presentTargets(r *benchReport, names []string) []string {
	var out []string
	for _, n := range names {
		if r.load[n] != nil {
			out = append(out, n)
		}
	}
	return out
}
