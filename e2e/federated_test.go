//go:build e2e

package e2e

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/federatedtest"
)

// entraAudience is the audience Microsoft Entra's federated identity credentials
// expect, client_assertion_audience's default under auth_style=federated.
const entraAudience = "api://AzureADTokenExchange"

// TestFederatedIssuer: the engine as an OIDC issuer, verified by go-oidc over HTTP the
// way Entra verifies a federated identity credential (e2e/internal/federatedtest).
// Before config issuer is set the documents answer as a missing path; after, they are
// served without a token, with Cache-Control once the mount lets it through. An
// auth_style=federated credential mints through the endpoint (discovery, JWKS,
// signature, iss, aud, exp, the sub of the registered federated credential, jti once);
// a replayed assertion and a credential whose subject is not registered are refused;
// across two oidc/rotate under continuous mints no mint fails.
func TestFederatedIssuer(t *testing.T) {
	t.Parallel()
	began := time.Now()
	v := shared
	mount := v.mount(t)
	r := newRecorder(t, v, mount)
	issuer := v.addr + "/v1/" + mount + "/oidc"

	// Unset: the answer of a missing path, with and without a token.
	missing := r.do(http.MethodGet, "oidc/.well-known/nothing", nil, nil)
	for _, p := range []string{"oidc/.well-known/openid-configuration", "oidc/.well-known/keys"} {
		// Vault words the same error with its multierror wrapping for a missing path
		// and plainly for an unauthenticated one: the status and the error are the same.
		got := r.do(http.MethodGet, p, nil, nil)
		if got.Status != 404 || missing.Status != 404 || got.errorText() != "unsupported path" || !strings.Contains(missing.errorText(), "unsupported path") {
			t.Errorf("%s before issuer is set: %d %s, want what a missing path answers: %d %s", p, got.Status, got.Body, missing.Status, missing.Body)
		}
		r.want(r.anon(http.MethodGet, p, nil), 404)
	}
	r.want(r.do(http.MethodPost, "oidc/rotate", nil, map[string]any{}), 400)
	// auth_style=federated without an issuer: a 400 naming auth_style.
	fed := federatedtest.New(t, nil) // replaced below, once the subject is known
	create := map[string]any{"type": "oauth2_client_credentials", "client_id": "app-fed", "auth_style": "federated", "token_url": fed.TokenURL()}
	if c := r.do(http.MethodPost, "credentials/fed", nil, create); c.Status != 400 || !strings.Contains(c.errorText(), "auth_style") || !strings.Contains(c.errorText(), "issuer") {
		t.Errorf("federated without an issuer: %d %s, want a 400 naming auth_style and issuer", c.Status, c.errorText())
	}
	for _, bad := range []string{"http://vault.example.com/v1/x/oidc", issuer + "/", issuer + "?q=1"} {
		r.want(r.do(http.MethodPost, "config", nil, map[string]any{"issuer": bad}), 400)
	}
	r.must(r.do(http.MethodPost, "config", nil, map[string]any{"issuer": issuer}), 200, 204)

	// The documents, without a token; Cache-Control only once the mount lets it through.
	disc := r.must(r.anon(http.MethodGet, "oidc/.well-known/openid-configuration", nil), 200)
	var doc map[string]any
	if err := json.Unmarshal(disc.Body, &doc); err != nil || doc["issuer"] != issuer || doc["jwks_uri"] != issuer+"/.well-known/keys" {
		t.Fatalf("discovery: %s (%v)", disc.Body, err)
	}
	// Vault adds Cache-Control: no-store to every answer; the engine's own value joins
	// it only where the mount lets it through (a reverse proxy may replace both).
	if slices.Contains(disc.Header.Values("Cache-Control"), "public, max-age=300") {
		t.Errorf("Cache-Control passed without allowed_response_headers: %v", disc.Header.Values("Cache-Control"))
	}
	if err := v.client.Sys().TuneMountAllowNil(mount, apiTune("Cache-Control")); err != nil {
		t.Fatal(err)
	}
	keys := r.must(r.anon(http.MethodGet, "oidc/.well-known/keys", nil), 200)
	if cc := keys.Header.Values("Cache-Control"); !slices.Contains(cc, "public, max-age=300") {
		t.Errorf("keys Cache-Control = %q with allowed_response_headers=Cache-Control", cc)
	}
	first := publishedKIDs(t, keys.Body)
	if len(first) != 1 {
		t.Fatalf("keys after issuer is set: %v, want one", first)
	}

	// The credentials, their default subjects made of the mount accessor: eight, so
	// that the mints below stay within each credential's token request bucket
	// (oauth.RequestBurst, 10) and none waits or is throttled.
	mounts, err := v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	const creds, perRound, rounds = 8, 3, 3
	prefix := "integrations:" + mounts[mount+"/"].Accessor + ":"
	var registered []federatedtest.Credential
	for i := range creds {
		registered = append(registered, federatedtest.Credential{Issuer: issuer, Subject: prefix + fmt.Sprintf("fed-%d", i), Audience: entraAudience})
	}
	fed = federatedtest.New(t, map[string][]federatedtest.Credential{
		"app-fed": registered,
		// Registered for another subject: the engine's default is not it.
		"app-other": {{Issuer: issuer, Subject: "integrations:someone-else", Audience: entraAudience}},
	})
	create["token_url"] = fed.TokenURL()
	for i := range creds {
		name := fmt.Sprintf("fed-%d", i)
		r.must(r.do(http.MethodPost, "credentials/"+name, nil, create), 200, 204)
		if i == 0 {
			read := r.must(r.do(http.MethodGet, "credentials/"+name, nil, nil), 200)
			if got := read.data()["federated_subject"]; got != prefix+name {
				t.Fatalf("federated_subject = %v, want %s", got, prefix+name)
			}
		}
	}
	r.must(r.do(http.MethodPost, "credentials/other", nil, maps(create, map[string]any{"client_id": "app-other"})), 200, 204)
	if c := r.do(http.MethodGet, "access/other", nil, nil); c.Status < 400 || strings.Contains(string(c.Body), federatedtest.Marker) {
		t.Errorf("access/other with an unregistered subject: %d %s, want a refusal without the provider's text", c.Status, c.Body)
	}

	// Mints: verify makes a token request each time (access/ would serve the cached
	// token); the first one through access/.
	var mints, failures atomic.Int64
	var failMu sync.Mutex
	var failed []string
	mint := func(name string) {
		c := r.do(http.MethodPost, "credentials/"+name+"/verify", nil, map[string]any{})
		if c.Status != 200 || c.data()["result"] != "ok" {
			failures.Add(1)
			failMu.Lock()
			failed = append(failed, fmt.Sprintf("%s: %d %.200s", name, c.Status, c.Body))
			failMu.Unlock()
			return
		}
		mints.Add(1)
	}
	if c := r.do(http.MethodGet, "access/fed-0", nil, nil); c.Status != 200 || !strings.HasPrefix(fmt.Sprint(c.data()["access_token"]), "fed-") {
		t.Fatalf("the first federated mint failed: %s; the endpoint refused %v", c.Body, fed.Refused())
	}
	// A replayed assertion is refused: the endpoint checks jti as Entra does.
	as := fed.Assertions()
	if st, code, err := fed.Replay("app-fed", as[len(as)-1]); err != nil || st != 401 || code != "invalid_client" {
		t.Errorf("replayed assertion: %d %s %v, want 401 invalid_client", st, code, err)
	}

	// Every credential mints perRound times a round, concurrently; between rounds
	// (while the others still mint) oidc/rotate makes a new key sign at once.
	var wg sync.WaitGroup
	gates := make([]chan struct{}, rounds) // gates[k] opens once the k-th rotation was answered
	for k := range gates {
		gates[k] = make(chan struct{})
	}
	close(gates[0])
	for i := range creds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("fed-%d", i)
			for n := range perRound * rounds {
				<-gates[n/perRound]
				mint(name)
			}
		}()
	}
	waitMints := func(n int64) {
		t.Helper()
		waitFor(t, time.Minute, fmt.Sprintf("%d mints", n), func() bool { return mints.Load()+failures.Load() >= n })
	}
	var rotations []string
	for k := 1; k < rounds; k++ {
		waitMints(int64(k*creds*perRound - creds)) // most of this round done, the rest in flight
		rot := r.must(r.do(http.MethodPost, "oidc/rotate", nil, map[string]any{}), 200)
		kid, _ := rot.data()["signing_kid"].(string)
		rotations = append(rotations, kid)
		published := publishedKIDs(t, r.must(r.anon(http.MethodGet, "oidc/.well-known/keys", nil), 200).Body)
		if !slices.Contains(published, kid) || len(published) < 2 {
			t.Errorf("after oidc/rotate: published %v, want the new %s beside the previous", published, kid)
		}
		close(gates[k])
	}
	wg.Wait()

	accepted := fed.Accepted()
	for _, kid := range append(first, rotations...) {
		if accepted[kid] == 0 {
			t.Errorf("no assertion signed by %s was accepted (accepted by kid: %v)", kid, accepted)
		}
	}
	total := 0
	for _, n := range accepted {
		total += n
	}
	refused := fed.Refused()
	// The refusals expected: the unregistered subject and the replay.
	var unexpected []string
	for _, why := range refused {
		if !strings.Contains(why, "AADSTS700213") && !strings.Contains(why, "AADSTS700021") {
			unexpected = append(unexpected, why)
		}
	}
	if failures.Load() != 0 || len(unexpected) != 0 || mints.Load() != creds*perRound*rounds {
		t.Errorf("across the rotations: %d mints, %d failed (%v); the endpoint refused %v", mints.Load(), failures.Load(), failed, unexpected)
	}
	t.Logf("federated mints across 2 oidc/rotate: %d mints (and 1 by access/), %d assertions accepted (by kid %v), %d mints failed, %d unexpected refusals; %s",
		mints.Load(), total, accepted, failures.Load(), len(unexpected), time.Since(began).Round(time.Millisecond))

	// Every answer of the test: no private key of the issuer's anywhere.
	var texts []string
	for _, c := range r.all() {
		texts = append(texts, string(c.Body)+"\n"+headerText(c.Header))
	}
	kids := publishedKIDs(t, r.must(r.anon(http.MethodGet, "oidc/.well-known/keys", nil), 200).Body)
	if leaked := issuerKeyLeaks(strings.Join(texts, "\n"), append(kids, rotations...)); len(leaked) > 0 {
		t.Errorf("issuer private keys in answers: %v", leaked)
	}
	// The control: the scan does find a private key, escaped in JSON or as a JWK.
	control, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(control)
	escaped, _ := json.Marshal(map[string]string{"k": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: control})
	tp, _ := (&jose.JSONWebKey{Key: control.Public()}).Thumbprint(crypto.SHA256)
	if got := issuerKeyLeaks(string(escaped)+" "+string(jwk), []string{base64.RawURLEncoding.EncodeToString(tp)}); len(got) != 2 {
		t.Errorf("control: the issuer key scan found %v in a PEM in JSON and a JWK, want both", got)
	}
}

// apiTune is a mount tune that lets headers through (allowed_response_headers).
func apiTune(headers ...string) api.TuneMountConfigInput {
	return api.TuneMountConfigInput{AllowedResponseHeaders: &headers}
}

// publishedKIDs are the kids of a JWKS document.
func publishedKIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("not a JWKS: %s", body)
	}
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Errorf("the JWKS holds a private key (kid %s)", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	return kids
}

var (
	pemPrivate = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----(?:\\n|\\r|\s|[A-Za-z0-9+/=])+-----END [A-Z ]*PRIVATE KEY-----`)
	jwkPrivate = regexp.MustCompile(`\{[^{}]*"d"\s*:\s*"[A-Za-z0-9_-]+"[^{}]*\}`)
)

// issuerKeyLeaks finds every private key in text, as a PEM block (escaped or not) or
// a private JWK, and returns the thumbprints of those whose public half is one of the
// issuer keys kids: the issuer's private keys are never known to a test, so the scan
// looks for any private key and checks whose it is.
func issuerKeyLeaks(text string, kids []string) []string {
	var leaked []string
	check := func(pub crypto.PublicKey, where string) {
		if pub == nil {
			return
		}
		tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		if err != nil {
			return
		}
		kid := base64.RawURLEncoding.EncodeToString(tp)
		if slices.Contains(kids, kid) {
			leaked = append(leaked, kid+" as "+where)
		}
	}
	for _, block := range pemPrivate.FindAllString(text, -1) {
		block = strings.NewReplacer(`\n`, "\n", `\r`, "").Replace(block)
		b, _ := pem.Decode([]byte(block))
		if b == nil {
			continue
		}
		var key any
		var err error
		if key, err = x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				continue
			}
		}
		if s, ok := key.(crypto.Signer); ok {
			check(s.Public(), "PEM")
		}
	}
	for _, obj := range jwkPrivate.FindAllString(text, -1) {
		var k jose.JSONWebKey
		if json.Unmarshal([]byte(obj), &k) == nil && !k.IsPublic() {
			check(k.Public().Key, "JWK")
		}
	}
	return leaked
}
