package backend

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// jwtTokenEndpoint accepts a client_credentials request only with a client assertion
// signed by pub for clientID, and no secret.
func jwtTokenEndpoint(t *testing.T, clientID string, pub crypto.PublicKey) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _, basic := r.BasicAuth()
		tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		var c jwt.Claims
		if err == nil {
			err = tok.Claims(pub, &c)
		}
		if basic || r.Form.Has("client_secret") || err != nil || c.Subject != clientID ||
			r.Form.Get("client_assertion_type") != oauth.ClientAssertionType {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"jwt-minted","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestPrivateKeyJWTAccessMints: a private_key_jwt credential without a client secret
// mints on access/; its client_key is listed in secret_fields and appears in no
// management read or list, and a wrong key is refused upstream and marks the
// credential needs_reauth.
func TestPrivateKeyJWTAccessMints(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	key := fixtures.NewKey("p256")
	srv := jwtTokenEndpoint(t, "svc-app", key.Public())
	keyPEM := fixtures.KeyPEM(key)
	certPEM := fixtures.SelfSigned(key, "svc-app", time.Now().AddDate(0, 6, 0))
	mustOK(t, b, s, logical.CreateOperation, "credentials/jwt", map[string]any{
		"type": "oauth2_client_credentials", "token_url": srv.URL + "/token", "client_id": "svc-app",
		"auth_style": "private_key_jwt", "client_key": keyPEM, "client_key_id": "k1", "client_certificate": certPEM,
	})
	got := mustOK(t, b, s, logical.ReadOperation, "access/jwt", nil)
	if got.Data["access_token"] != "jwt-minted" {
		t.Fatalf("access/: not the minted token (%s)", outcome(got, nil))
	}
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/jwt", nil)
	if sf, _ := read.Data["secret_fields"].([]string); !slices.Equal(sf, []string{"client_key"}) {
		t.Errorf("secret_fields = %v, want [client_key]", read.Data["secret_fields"])
	}
	if read.Data["client_certificate"] == nil || read.Data["client_certificate_not_after"] == nil {
		t.Errorf("the read lacks the certificate or its not_after: %v", read.Data)
	}
	list := mustOK(t, b, s, logical.ListOperation, "credentials/", nil)
	keyBody := strings.Split(strings.TrimSpace(keyPEM), "\n")[1]
	for what, resp := range map[string]*logical.Response{"read": read, "list": list} {
		js, _ := json.Marshal(resp.Data)
		if strings.Contains(string(js), "PRIVATE KEY") || strings.Contains(string(js), keyBody) {
			t.Errorf("the %s shows the client key: %s", what, js)
		}
	}

	clock.Advance(time.Second) // the update is after the token: it is not served again
	other := fixtures.KeyPEM(fixtures.NewKey("p256"))
	// No overlap: the previous key is not tried (secret_overlap_test.go tries it).
	mustOK(t, b, s, logical.PatchOperation, "credentials/jwt", map[string]any{"client_key": other, "client_certificate": nil, "client_secret_overlap": "0"})
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "access/jwt", Storage: s})
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("a key the provider does not know minted: %s", outcome(resp, err))
	}
	if st := mustOK(t, b, s, logical.ReadOperation, "credentials/jwt", nil).Data["status"]; st != string(lifecycle.StatusNeedsReauth) {
		t.Errorf("status after invalid_client = %v, want needs_reauth", st)
	}
}

// TestRequiredWhenAgreesWithWrites: for every OAuth type, every field types/ shows
// with required_when, and every auth_style, a create without the field is refused
// exactly when types/ says it is required, with the rule types/ shows.
func TestRequiredWhenAgreesWithWrites(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	key := fixtures.NewKey("ed25519")
	keyPEM, certPEM := fixtures.KeyPEM(key), fixtures.SelfSigned(key, "c", time.Now().AddDate(1, 0, 0))
	styles := []string{"header", "body", "private_key_jwt", "tls_client_auth"}
	n, checked := 0, 0
	for _, typ := range credtype.All() {
		if typ.OAuth == nil {
			continue
		}
		for name, f := range typeFields(t, b, s, typ.Name) {
			rw, ok := f["required_when"].(map[string]any)
			if !ok {
				continue
			}
			values, _ := rw["values"].([]string)
			for _, style := range styles {
				data := fixtures.Values(typ.Name, "m1", "https://idp.example.com/token")
				data["type"] = typ.Name
				if !typ.OAuth.NoClientAuth { // salesforce_jwt: its own RSA client_key, no auth_style
					data["auth_style"], data["client_key"], data["client_certificate"] = style, keyPEM, certPEM
				}
				delete(data, name)
				n++
				resp := call(t, b, s, logical.CreateOperation, fmt.Sprintf("credentials/rw-%d", n), data)
				refused := resp != nil && resp.IsError()
				if want := rw["field"] == "" || (slices.Contains(values, style) && rw["field"] == "auth_style"); refused != want {
					t.Errorf("%s without %s, auth_style %s: refused=%v (%v), types/ says required=%v", typ.Name, name, style, refused, resp, want)
					continue
				}
				if refused {
					shown, _ := f["rule"].(string)
					msg := resp.Error().Error()
					cond, _, _ := strings.Cut(shown, ";")
					if !strings.Contains(msg, `"`+name+`"`) || !strings.Contains(msg, cond) {
						t.Errorf("%s: refusal %q does not name %s with the rule types/ shows (%q)", typ.Name, msg, name, cond)
					}
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("types/ shows no required_when")
	}
}

// privateCAServer is an https server whose certificate comes from a fresh private CA,
// answering 200 and handing each request to got.
func privateCAServer(t *testing.T) (*httptest.Server, *fixtures.CA, chan *http.Request) {
	ca := fixtures.NewCA("Private CA")
	got := make(chan *http.Request, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerCertificate()}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, ca, got
}

// TestCACertificateVerifyAndNotify: a verification GET and a notification delivery to
// a server with a private CA's certificate fail without ca_certificate and work with
// it.
func TestCACertificateVerifyAndNotify(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	srv, ca, got := privateCAServer(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/plain", map[string]any{"type": "bearer", "token": "t1", "verify_url": srv.URL})
	wantVerify(t, verifyResult(t, b, s, "plain"), lifecycle.VerifyFailed)
	mustOK(t, b, s, logical.CreateOperation, "credentials/trusted", map[string]any{"type": "bearer", "token": "t1", "verify_url": srv.URL, "ca_certificate": ca.PEM})
	wantVerify(t, verifyResult(t, b, s, "trusted"), lifecycle.VerifyOK, "HTTP 200")
	<-got

	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": srv.URL + "/notify", "ca_certificate": ca.PEM})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	lcCreateBasic(t, b, s, "svc", nil)
	clock.Advance(90 * day)
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.URL.Path != "/notify" {
			t.Errorf("delivered to %s", r.URL.Path)
		}
	case <-time.After(30 * time.Second): // a bound on a failure, not a wait for success
		t.Fatal("the notification never reached the private-CA server")
	}
}

// TestDestinationFingerprintKeptWithoutCACertificate: ca_certificate is a destination
// field added after tokens were fingerprinted by their destination; a credential
// without one keeps the fingerprint it had, so an upgrade does not forget its cached
// token and refresh token. Setting one changes it (a repoint).
func TestDestinationFingerprintKeptWithoutCACertificate(t *testing.T) {
	t.Parallel()
	typ, _ := credtype.Lookup("oauth2_authorization_code")
	values := map[string]any{"auth_url": "https://idp.example/authorize", "token_url": "https://idp.example/token", "client_id": "c"}
	c := &credential{Type: typ.Name, Values: typ.Compact(values)}
	// The fingerprint as it was computed before ca_certificate existed.
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", typ.Name)
	for _, f := range []string{"auth_url", "token_url", "redirect_url"} {
		v, _ := values[f].(string)
		fmt.Fprintf(h, "%s=%d:%s\x00", f, len(v), v)
	}
	if got, want := destination(c), hex.EncodeToString(h.Sum(nil)[:16]); got != want {
		t.Errorf("destination = %s, want the fingerprint stored tokens carry, %s", got, want)
	}
	values["ca_certificate"] = fixtures.NewCA("x").PEM
	if destination(&credential{Type: typ.Name, Values: typ.Compact(values)}) == destination(c) {
		t.Error("setting ca_certificate does not change the destination")
	}
}

// TestClientKeyRefusalsAre400s: a client key that breaks a rule is a 400 naming the
// field and the rule, and never quotes the key; nothing is stored.
func TestClientKeyRefusalsAre400s(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	weak := fixtures.KeyPEM(fixtures.NewKey("rsa1024"))
	p256 := fixtures.NewKey("p256")
	for _, tc := range []struct {
		extra       map[string]any
		field, rule string
		secret      string
	}{
		{map[string]any{"client_key": weak}, "client_key", "at least 2048 bits", weak},
		{map[string]any{"client_key": fixtures.KeyPEM(p256), "client_assertion_algorithm": "RS256"}, "client_assertion_algorithm", "must fit client_key", fixtures.KeyPEM(p256)},
		{map[string]any{"client_key": fixtures.KeyPEM(p256), "client_certificate": fixtures.SelfSigned(fixtures.NewKey("p256"), "x", time.Now().AddDate(0, 1, 0))},
			"client_key", "must match the public key of client_certificate", fixtures.KeyPEM(p256)},
		{map[string]any{}, "client_key", `is required when auth_style is "private_key_jwt" or "tls_client_auth"`, ""},
	} {
		data := map[string]any{"type": "oauth2_client_credentials", "token_url": "https://idp.example/token", "client_id": "c", "auth_style": "private_key_jwt"}
		for k, v := range tc.extra {
			data[k] = v
		}
		resp := call(t, b, s, logical.CreateOperation, "credentials/refused", data)
		wantFieldError(t, resp, tc.field)
		msg := resp.Error().Error()
		if !strings.Contains(msg, tc.rule) {
			t.Errorf("refusal %q lacks the rule %q", msg, tc.rule)
		}
		if tc.secret != "" && strings.Contains(msg, strings.Split(tc.secret, "\n")[1]) {
			t.Errorf("refusal quotes the key: %q", msg)
		}
		if got := call(t, b, s, logical.ReadOperation, "credentials/refused", nil); got != nil {
			t.Errorf("a refused write stored something: %v", got.Data)
		}
	}
}
