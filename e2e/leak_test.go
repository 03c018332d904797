//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/youmark/pkcs8"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/zitadeltest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/githubtest"
)

// oauthAccess is what docs/API.md says an OAuth type's access/ returns that can carry a
// secret: the access token, alone and as an Authorization header value.
var oauthAccess = map[string][]string{"access_token": {"access_token"}, "authorization": {"access_token"}}

// accessFields is docs/API.md's credential-type table, "access/<name> returns" column:
// for each type, the fields of an access/ answer that may carry a secret, and which of
// the credential's secrets (by kind) each may carry. Nothing else of any secret may
// appear in any answer, log or notification.
var accessFields = map[string]map[string][]string{
	"basic":                     {"password": {"password"}, "authorization": {"password"}},
	"bearer":                    {"token": {"token"}, "authorization": {"token"}},
	"api_key":                   {"key": {"key"}},
	"certificate":               {"private_key": {"private_key (decrypted)"}},
	"sftp_password":             {"password": {"password"}},
	"sftp_ssh_key":              {"private_key": {"private_key"}, "passphrase": {"passphrase"}},
	"webhook":                   {"url": {"url"}},
	"device_account":            {"password": {"password"}},
	"oauth2_client_credentials": oauthAccess,
	"oauth2_password":           oauthAccess,
	"oauth2_authorization_code": oauthAccess,
	"oauth2_device_code":        oauthAccess,
	"m365":                      oauthAccess,
	"zoom":                      oauthAccess,
	"servicenow_oauth":          oauthAccess,
	"cisco_client_credentials":  oauthAccess,
	"oauth2_jwt_bearer":         oauthAccess,
	"google_service_account":    oauthAccess,
	"salesforce_jwt":            oauthAccess,
	"slack":                     {"token": {"token"}, "authorization": {"token"}},
	"pagerduty":                 {"routing_key": {"routing_key"}},
	"okta":                      {"token": {"token"}, "authorization": {"token"}},
	"github_app":                {"token": {"access_token"}, "authorization": {"access_token"}},
}

// receiver is a notification target on loopback that answers every POST with status
// and keeps what it was sent.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	status int
}

func newReceiver(t *testing.T, status int) *receiver {
	rc := &receiver{status: status}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, b)
		rc.mu.Unlock()
		w.WriteHeader(rc.status)
		fmt.Fprint(w, `{"ok":false}`)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() [][]byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.bodies)
}

// encryptedCertificate is a self-signed certificate with its private key as an
// encrypted PKCS#8 PEM (PBES2, PBKDF2), and the same key unencrypted, PKCS#8.
func encryptedCertificate(t *testing.T, password string) (certPEM, encryptedKey, plainKey string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:   pkix.Name{CommonName: "leak-scan.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := pkcs8.MarshalPrivateKey(key, []byte(password), nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: plain}))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestLeakScan makes a credential of every type the server lists, with recognisable
// secrets, mints real tokens (an authorization-code credential goes through authorize
// and the callback), calls every operation of the mount's OpenAPI document with valid
// and failing input, fails a notification delivery and meets providers that echo
// what they are sent, all with a file audit device on. It then looks for every
// secret, in every encoding, in every answer, the server log, the audit log and the
// notifications, and finds them only in access/ answers of their own credential, in
// the fields docs/API.md's table names.
func TestLeakScan(t *testing.T) {
	t.Parallel()
	began := time.Now()
	v := newVault(t, serverOptions{})
	auditLog := filepath.Join(v.dir, "audit.log")
	if err := v.client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditLog},
	}); err != nil {
		t.Fatalf("enabling the file audit device: %v", err)
	}
	mount := v.mount(t)
	r := newRecorder(t, v, mount)

	var secMu sync.Mutex
	var secrets []*secret
	addSecret := func(s ...*secret) {
		secMu.Lock()
		secrets = append(secrets, s...)
		secMu.Unlock()
	}
	allSecrets := func() []*secret {
		secMu.Lock()
		defer secMu.Unlock()
		return slices.Clone(secrets)
	}
	r.redact = redactor(allSecrets)
	credType := map[string]string{} // credential name -> type, for every credential made
	seq := 0
	newMarker := func() string { seq++; return fmt.Sprintf("LK%02d%s", seq, randomHex(4)) }

	// The catalog, from the server: every type and its sensitive fields.
	typesList := r.must(r.do("LIST", "types", nil, nil), 200)
	r.must(r.do(http.MethodGet, "types", url.Values{"list": {"true"}}, nil), 200)
	var typeNames []string
	for _, k := range typesList.data()["keys"].([]any) {
		typeNames = append(typeNames, k.(string))
	}
	sensitive := map[string][]string{}
	for _, typ := range typeNames {
		c := r.must(r.do(http.MethodGet, "types/"+typ, nil, nil), 200)
		// The sensitive list (catalog order) and the per-field flags must agree.
		for _, name := range c.data()["sensitive"].([]any) {
			sensitive[typ] = append(sensitive[typ], name.(string))
		}
		flagged := 0
		for name, f := range c.data()["fields"].(map[string]any) {
			if f.(map[string]any)["sensitive"] == true {
				flagged++
				if !slices.Contains(sensitive[typ], name) {
					t.Errorf("types/%s: field %s is sensitive but not in the sensitive list", typ, name)
				}
			}
		}
		if flagged != len(sensitive[typ]) {
			t.Errorf("types/%s: sensitive list %v, %d fields flagged", typ, sensitive[typ], flagged)
		}
		if _, ok := accessFields[typ]; !ok {
			t.Errorf("the server lists type %s, which docs/API.md's table (accessFields here) does not", typ)
		}
	}
	r.want(r.do(http.MethodGet, "types/carrier_pigeon", nil, nil), 404)
	r.want(r.do(http.MethodGet, "types/a..b", nil, nil), 400, 404)

	// Engine settings: reset, refused ones, then the callback base for the consent flow.
	r.must(r.do(http.MethodGet, "config", nil, nil), 200)
	r.must(r.do(http.MethodDelete, "config", nil, nil), 200, 204)
	r.want(r.do(http.MethodPost, "config", nil, map[string]any{"suspend_after": "-5"}), 400)
	r.want(r.do(http.MethodPost, "config", nil, map[string]any{"notify_credential": "lk-missing"}), 400)
	r.must(r.do(http.MethodPost, "config", nil, map[string]any{"callback_base_url": v.addr}), 200, 204)

	// A notification target that always fails: the webhook credential points at it.
	hook := newReceiver(t, http.StatusInternalServerError)

	// Providers: a real one per OAuth credential, with secrets of its own, and a
	// hostile one that echoes whatever it is sent.
	providers := map[string]*oauthtest.Provider{}
	issuers := map[string]interface{ Issued() []string }{} // the JWT-bearer types' servers
	gitHubs := map[string]*githubtest.Server{}
	hostileAccess, hostileRefresh := "hat-"+randomHex(12), "hrt-"+randomHex(12)
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_ = req.ParseForm()
		echo := "form " + req.PostForm.Encode() + " client_secret " + req.PostForm.Get("client_secret") +
			" authorization " + req.Header.Get("Authorization")
		answer := func(status int, v map[string]any) {
			b, _ := json.Marshal(v)
			oauthtest.WriteJSON(w, status, string(b))
		}
		switch req.URL.Path {
		case "/echo400":
			answer(http.StatusBadRequest, map[string]any{"error": "invalid_client", "error_description": "refused: " + echo})
		case "/echo500":
			w.Header().Set("X-Debug", echo)
			http.Error(w, "upstream failed: "+echo, http.StatusInternalServerError)
		case "/echo200":
			answer(http.StatusOK, map[string]any{"access_token": hostileAccess, "token_type": "Bearer", "expires_in": 3600,
				"refresh_token": hostileRefresh, "scope": "read", "debug": echo, "id_token": echo})
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(hostile.Close)

	type credSpec struct {
		name, typ string
		values    map[string]any
		pems      map[string]bool // sensitive fields holding PEM
	}
	var specs []credSpec
	for _, typ := range typeNames {
		m := newMarker()
		name := "lk-" + typ
		totp := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte(m + randomHex(6)))
		var values map[string]any
		pems := map[string]bool{}
		oauth := func(extra map[string]any) map[string]any {
			p := oauthtest.New(t, oauthtest.Options{ForcePKCE: true, Domain: v.addr, Rotate: true,
				ClientSecret: "cs-" + m, Password: "pw-" + m})
			providers[name] = p
			out := map[string]any{"client_id": oauthtest.ClientID, "client_secret": "cs-" + m, "token_url": p.TokenURL(),
				// Stored beside the secret (auth_style stays the secret's): a client key
				// must not leak either.
				"client_key": fixtures.KeyPEM(fixtures.NewKey("p256"))}
			pems["client_key"] = true
			for k, x := range extra {
				out[k] = x
			}
			if _, ok := out["auth_url"]; ok && typ == "cisco_client_credentials" {
				out["auth_url"] = p.TokenURL()
				delete(out, "token_url")
			}
			if typ == "oauth2_authorization_code" {
				out["auth_url"] = p.AuthURL()
			}
			return out
		}
		switch typ {
		case "basic":
			values = map[string]any{"username": "svc-user", "password": "pw-" + m, "totp_secret": totp}
		case "bearer", "okta", "slack":
			values = fixtures.Values(typ, m, "")
		case "api_key", "pagerduty":
			values = fixtures.Values(typ, m, "")
		case "certificate":
			cert, enc, plain := encryptedCertificate(t, "kp-"+m)
			values = map[string]any{"certificate": cert, "private_key": enc, "private_key_password": "kp-" + m}
			pems["private_key"] = true
			addSecret(newPEMSecret(name, "private_key (decrypted)", m, plain))
		case "sftp_password":
			values = fixtures.Values(typ, m, "")
			values["totp_secret"] = totp
		case "sftp_ssh_key":
			values = fixtures.Values(typ, m, "")
			values["private_key"], values["passphrase"] = fixtures.SSHKey("pp-"+m), "pp-"+m
			pems["private_key"] = true
		case "webhook":
			values = map[string]any{"url": hook.URL + "/services/T0/B0/wh-" + m}
		case "device_account":
			values = fixtures.Values(typ, m, "")
			values["totp_secret"] = totp
		case "oauth2_client_credentials", "m365", "oauth2_authorization_code":
			values = oauth(nil)
			if typ == "m365" {
				values["tenant"] = "contoso.onmicrosoft.com"
			}
			if typ == "oauth2_authorization_code" {
				values["scopes"] = []string{"offline_access", "read"}
				// Imported, and unknown to the provider: refused at the first access
				// (needs_reauth) until the consent below.
				values["refresh_token"] = "rt-" + m
			}
		case "oauth2_password", "servicenow_oauth":
			values = oauth(map[string]any{"username": oauthtest.Username, "password": "pw-" + m, "totp_secret": totp})
			if typ == "servicenow_oauth" {
				values["instance"] = "dev12345"
			}
		case "oauth2_device_code":
			// The scan's provider has no device authorization endpoint: authorize is
			// refused (400, its code only) and the credential awaits consent.
			values = oauth(nil)
			values["device_authorization_url"] = values["token_url"]
			values["scopes"] = []string{"offline_access", "read"}
		case "zoom":
			values = oauth(map[string]any{"account_id": oauthtest.AccountID})
		case "cisco_client_credentials":
			values = oauth(map[string]any{"auth_url": ""})
		case "oauth2_jwt_bearer", "google_service_account", "salesforce_jwt":
			// JWT-bearer grants (jwtbearer_test.go): each against a server of its own, its
			// key trusted there; the key and the tokens it is issued are secrets.
			var keyPEM string
			values, keyPEM = jwtBearerLeakValues(t, typ, m, issuers, name)
			if typ == "google_service_account" {
				addSecret(newPEMSecret(name, "service_account_key (private_key)", m, keyPEM))
			} else {
				pems["client_key"] = true
			}
		case "github_app":
			// The suite's GitHub; the key's body lines are the secret (the marker rides in
			// a PEM header, which the engine keeps with the key).
			gh := githubtest.New(123456, "Iv23liLeakScan", &fixtures.GitHubAppKey().PublicKey,
				&githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: []string{"octo-repo"}, Permissions: map[string]string{"contents": "write"}})
			srv := httptest.NewServer(gh.Handler())
			t.Cleanup(srv.Close)
			gh.SetBaseURL(srv.URL)
			gitHubs[name] = gh
			values = fixtures.Values(typ, m, srv.URL)
			pems["private_key"] = true
		default:
			t.Errorf("type %s: the leak scan has no example values; add them", typ)
			continue
		}
		// The secrets: what the server's catalog marks sensitive, and what docs/API.md's
		// table says access/ hands out (so a field the catalog forgets is still looked for).
		secretFields := slices.Clone(sensitive[typ])
		for _, kinds := range accessFields[typ] {
			for _, k := range kinds {
				if _, isField := values[k]; isField && !slices.Contains(secretFields, k) {
					secretFields = append(secretFields, k)
				}
			}
		}
		for _, f := range secretFields {
			val, ok := values[f].(string)
			if !ok || val == "" {
				t.Errorf("type %s: the leak scan sets no value for its sensitive field %s; add one", typ, f)
				continue
			}
			var s *secret
			if pems[f] {
				s = newPEMSecret(name, f, m, val)
			} else {
				s = newSecret(name, f, m, val)
			}
			if f == "password" && values["username"] != nil {
				s.withBasic(values["username"].(string), val)
			}
			if f == "client_secret" {
				s.withBasic(values["client_id"].(string), val)
			}
			addSecret(s)
		}
		specs = append(specs, credSpec{name, typ, values, pems})
	}
	// Credentials whose provider is hostile: it echoes the secret it is sent.
	for _, h := range []struct{ name, path, style string }{
		{"lk-echo400", "/echo400", "body"}, {"lk-echo500", "/echo500", "header"}, {"lk-echo200", "/echo200", "header"},
	} {
		m := newMarker()
		values := map[string]any{"token_url": hostile.URL + h.path, "client_id": "hostile-client", "client_secret": "cs-" + m, "auth_style": h.style}
		addSecret(newSecret(h.name, "client_secret", m, "cs-"+m).withBasic("hostile-client", "cs-"+m))
		specs = append(specs, credSpec{h.name, "oauth2_client_credentials", values, nil})
	}
	addSecret(newSecret("lk-echo200", "access_token", "hat-", hostileAccess), newSecret("lk-echo200", "refresh_token", "hrt-", hostileRefresh))
	for _, s := range specs {
		credType[s.name] = s.typ
	}

	// Create them all, after two refused writes that carry the same secrets.
	for _, s := range specs {
		body := map[string]any{"type": s.typ, "description": "leak scan", "tags": []string{"leak-scan"}}
		for k, x := range s.values {
			body[k] = x
		}
		unknown := maps(body, map[string]any{"colour": "blue"})
		r.want(r.do(http.MethodPost, "credentials/"+s.name, nil, unknown), 400)
		for _, f := range sensitive[s.typ] {
			if val, ok := body[f].(string); ok && !s.pems[f] {
				// A control character: refused, or at least never echoed.
				r.do(http.MethodPost, "credentials/lkbad-"+s.name, nil, maps(body, map[string]any{f: val + "\n\x07"}))
				break
			}
		}
		r.must(r.do(http.MethodPost, "credentials/"+s.name, nil, body), 200, 204)
	}
	// Notifications go to the failing webhook; a basic credential cannot take them.
	r.want(r.do(http.MethodPost, "config", nil, map[string]any{"notify_credential": "lk-basic"}), 400)
	r.must(r.do(http.MethodPost, "config", nil, map[string]any{"notify_credential": "lk-webhook"}), 200, 204)
	r.must(r.do(http.MethodGet, "config", nil, nil), 200)

	// Listing, with every filter, and refused filters.
	r.must(r.do("LIST", "credentials", nil, nil), 200)
	for _, q := range []url.Values{
		{"list": {"true"}, "type": {"basic"}}, {"list": {"true"}, "tag": {"leak-scan"}}, {"list": {"true"}, "status": {"active"}},
		{"list": {"true"}, "filter": {"lk-"}, "limit": {"3"}, "after": {"lk-b"}},
	} {
		r.want(r.do(http.MethodGet, "credentials", q, nil), 200)
	}
	for _, q := range []url.Values{{"limit": {"-5"}}, {"status": {"bogus"}}, {"type": {"nope"}}, {"limit": {"abc"}}} {
		q.Set("list", "true")
		r.want(r.do(http.MethodGet, "credentials", q, nil), 400)
	}

	// Every credential through every per-credential operation: updates first (an
	// update resends the secrets), then reads, access, logs and lifecycle actions.
	longLabel := strings.Repeat("i", 300)
	hourAgo := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, s := range specs {
		n := s.name
		body := map[string]any{}
		for k, x := range s.values {
			body[k] = x
		}
		r.want(r.do(http.MethodPost, "credentials/"+n, nil, body), 200, 204)
		r.want(r.do(http.MethodPatch, "credentials/"+n, nil, map[string]any{"description": "patched by the leak scan"}), 200, 204)
		other := "bearer"
		if s.typ == other {
			other = "basic"
		}
		r.want(r.do(http.MethodPatch, "credentials/"+n, nil, map[string]any{"type": other}), 400)
		r.want(r.do(http.MethodGet, "credentials/"+n, nil, nil), 200)
		if s.typ != "oauth2_authorization_code" {
			r.want(r.do(http.MethodPost, "credentials/"+n+"/authorize", nil, map[string]any{}), 400)
		}
		switch {
		case s.typ == "oauth2_authorization_code":
			r.want(r.do(http.MethodGet, "access/"+n, nil, nil), 403) // its imported refresh token is refused: needs_reauth
		case s.typ == "oauth2_device_code":
			r.want(r.do(http.MethodGet, "access/"+n, nil, nil), 403) // awaiting consent
		case strings.HasPrefix(n, "lk-echo4"):
			r.want(r.do(http.MethodGet, "access/"+n, nil, nil), 403)
		case strings.HasPrefix(n, "lk-echo5"):
			r.want(r.do(http.MethodGet, "access/"+n, nil, nil), 502)
		default:
			r.want(r.do(http.MethodGet, "access/"+n, nil, nil), 200)
			r.want(r.do(http.MethodGet, "access/"+n, url.Values{"integration": {"leak-scan"}}, nil), 200)
		}
		if s.typ == "github_app" {
			// A narrowed token, and narrowings refused (more than the credential allows).
			r.want(r.do(http.MethodGet, "access/"+n, url.Values{"permissions": {"metadata=read"}}, nil), 200, 400)
			r.want(r.do(http.MethodGet, "access/"+n, url.Values{"permissions": {"contents=admin"}}, nil), 400)
			r.want(r.do(http.MethodGet, "access/"+n, url.Values{"repositories": {"other-repo"}}, nil), 400)
		}
		if long := r.do(http.MethodGet, "access/"+n, url.Values{"integration": {longLabel}}, nil); n == "lk-basic" && long.Status != 400 {
			// docs/API.md: the integration label is at most 128 printable characters.
			t.Errorf("%s with a %d-character integration label: want 400", long, len(longLabel))
		}
		r.want(r.do(http.MethodGet, "access/"+n, url.Values{"minimum_seconds": {"abc"}}, nil), 400)
		// exchange/: a static type has nothing to exchange (400), an OAuth one without
		// exchange_audiences has exchange off (403); neither answer names a secret.
		r.want(r.do(http.MethodGet, "exchange/"+n, url.Values{"audience": {"leak-scan"}}, nil), 400, 403)
		if verifiesLocally(s.typ) && !strings.HasPrefix(n, "lk-echo") {
			// The answer's detail (and the verify event in the logs) are scanned too.
			r.want(r.do(http.MethodPost, "credentials/"+n+"/verify", nil, nil), 200)
		}
		r.want(r.do(http.MethodGet, "credentials/"+n+"/logs", nil, nil), 200)
		r.want(r.do(http.MethodGet, "credentials/"+n+"/logs", url.Values{"status": {"failure"}, "limit": {"5"}, "since": {hourAgo}}, nil), 200)
		r.want(r.do(http.MethodGet, "credentials/"+n+"/logs", url.Values{"since": {"yesterday"}}, nil), 400)
		r.want(r.do(http.MethodPost, "credentials/"+n+"/suspend", nil, nil), 200, 204)
		r.want(r.do(http.MethodGet, "access/"+n, nil, nil), 403)
		r.want(r.do(http.MethodPost, "credentials/"+n+"/unsuspend", nil, nil), 200, 204, 400)
		r.want(r.do(http.MethodPost, "credentials/"+n+"/reset-inactivity", nil, nil), 200, 204)
	}

	// The authorization-code credential: refused completions, consent through the
	// provider and Vault's unauthenticated callback, then a completion by hand.
	ac := "lk-oauth2_authorization_code"
	acp := providers[ac]
	r.want(r.do(http.MethodPost, "credentials/"+ac+"/authorize", nil, map[string]any{"code": "not-a-code", "state": "not-the-state"}), 400)
	r.want(r.anon(http.MethodGet, "oauth/callback", nil), 400)
	r.want(r.anon(http.MethodGet, "oauth/callback", url.Values{"state": {"unknown-state"}, "code": {"x"}}), 400)
	startAuth := func() string {
		c := r.must(r.do(http.MethodPost, "credentials/"+ac+"/authorize", nil, map[string]any{}), 200)
		return c.data()["auth_url"].(string)
	}
	denied := startAuth()
	du, _ := url.Parse(denied)
	r.want(r.anon(http.MethodGet, "oauth/callback", url.Values{"state": {du.Query().Get("state")}, "error": {"access_denied"}}), 400, 403)
	loc := acp.Authorize(t, startAuth())
	r.must(r.anon(http.MethodGet, "oauth/callback", loc.Query()), 200)
	r.want(r.anon(http.MethodGet, "oauth/callback", loc.Query()), 400) // single use
	r.want(r.do(http.MethodGet, "access/"+ac, nil, nil), 200)
	r.do(http.MethodGet, "access/"+ac, url.Values{"minimum_seconds": {"7300"}}, nil) // longer than the token lives: a refresh
	// In a callback URI of the audit log: the control of the form_post check below.
	queryCode := loc.Query().Get("code")
	loc = acp.Authorize(t, startAuth())
	r.want(r.do(http.MethodPost, "credentials/"+ac+"/authorize", nil, map[string]any{"code": loc.Query().Get("code"), "state": loc.Query().Get("state")}), 200)
	r.want(r.do(http.MethodGet, "access/"+ac, nil, nil), 200)
	// response_mode form_post: the provider's page POSTs the code to the callback as a
	// form, which the audit log HMACs. Every code the provider exchanged is a secret of
	// the scan (below); the callback URIs' exemption does not cover a posted one.
	r.must(r.do(http.MethodPatch, "credentials/"+ac, nil, map[string]any{"response_mode": "form_post"}), 200, 204)
	action, posted := acp.AuthorizeFormPost(t, startAuth())
	if want := v.addr + "/v1/" + mount + "/oauth/callback"; action.String() != want {
		t.Errorf("form_post page posts to %s, want %s", action, want)
	}
	postedCode := posted.Get("code")
	r.must(r.anonForm("oauth/callback", posted), 200)
	r.want(r.anonForm("oauth/callback", posted), 400) // single use
	r.want(r.do(http.MethodGet, "access/"+ac, nil, nil), 200)

	// Token exchange: a credential of its own at a real RFC 8693 server (zitadel/oidc's
	// op), exchanged by a read and by a write (every answer scanned like the others).
	zp := zitadeltest.New(t, zitadeltest.Options{Audiences: []string{"api-a"}})
	r.must(r.do(http.MethodPost, "credentials/lk-exchange", nil, map[string]any{"type": "oauth2_client_credentials", "token_url": zp.TokenURL(),
		"client_id": zitadeltest.ClientID, "client_secret": zitadeltest.ClientSecret, "exchange_audiences": "api-a"}), 200, 204)
	r.want(r.do(http.MethodGet, "exchange/lk-exchange", url.Values{"audience": {"api-a"}}, nil), 200)
	r.want(r.do(http.MethodPost, "exchange/lk-exchange", nil, map[string]any{"audience": "api-a", "scope": "openid"}), 200)
	r.want(r.do(http.MethodPost, "exchange/lk-exchange", nil, map[string]any{"audience": "api-b"}), 400)

	// Device accounts: upserts (one refused) and lookups.
	dm := newMarker()
	dev := r.must(r.do(http.MethodPost, "device-accounts", nil, map[string]any{"hostname": "web07.example.com", "ip": "192.0.2.77", "username": "admin", "password": "pw-" + dm}), 200)
	devName, _ := dev.data()["name"].(string)
	if devName == "" {
		t.Fatalf("device-accounts upsert named no account: %s", dev.Body)
	}
	credType[devName] = "device_account"
	addSecret(newSecret(devName, "password", dm, "pw-"+dm).withBasic("admin", "pw-"+dm))
	r.want(r.do(http.MethodPost, "device-accounts", nil, map[string]any{"hostname": "web07.example.com", "ip": "192.0.2.77", "username": "admin", "notes": "again"}), 200)
	bm := newMarker()
	addSecret(newSecret("refused-upsert", "password", bm, "pw-"+bm))
	r.want(r.do(http.MethodPost, "device-accounts", nil, map[string]any{"ip": "192.0.2.78", "username": "admin", "password": "pw-" + bm}), 400)
	r.want(r.do(http.MethodGet, "lookup", url.Values{"hostname": {"web07.example.com"}, "ip": {"192.0.2.77"}, "username": {"admin"}}, nil), 200)
	r.want(r.do(http.MethodGet, "lookup", url.Values{"hostname": {"web07.example.com"}, "username": {"admin"}}, nil), 400)
	r.want(r.do(http.MethodGet, "lookup", url.Values{"hostname": {"nowhere"}, "ip": {"192.0.2.1"}, "username": {"x"}}, nil), 404)
	r.want(r.do(http.MethodGet, "access/"+devName, nil, nil), 200)

	// Keys generated inside the engine (issue 27): the scan never knows them, so every
	// answer about them (create, read, list, rotation, jwks/ with and without a token,
	// refusals), the server log and their audit entries are searched for any PRIVATE
	// KEY block and any JWK private parameter.
	generated := map[string]any{"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/oauth2/token",
		"client_id": "lk-generated-client", "auth_style": "private_key_jwt", "generate_client_key": "rsa-2048",
		"generate_client_certificate": true, "publish_jwks": true, "client_key_overlap": "1m"}
	r.must(r.do(http.MethodPost, "credentials/lk-generated", nil, generated), 200, 204)
	r.want(r.do(http.MethodPost, "credentials/lk-generated", nil, maps(generated, map[string]any{"client_key_id": "refused"})), 400)
	r.must(r.do(http.MethodGet, "credentials/lk-generated", nil, nil), 200)
	r.must(r.do(http.MethodPost, "credentials/lk-generated/rotate-client-key", nil, nil), 200)
	r.must(r.do(http.MethodPost, "credentials/lk-generated/rotate-client-key", nil, map[string]any{"activate": true, "generate_client_key": "ec-p384"}), 200)
	r.want(r.do(http.MethodPost, "credentials/lk-generated/rotate-client-key", nil, map[string]any{"generate_client_key": "rsa-512"}), 400)
	r.must(r.do(http.MethodGet, "jwks/lk-generated", nil, nil), 200)
	r.must(r.anon(http.MethodGet, "jwks/lk-generated", nil), 200)
	r.want(r.anon(http.MethodGet, "jwks/lk-basic", nil), 404)
	r.must(r.do(http.MethodGet, "credentials/lk-generated/logs", nil, nil), 200)

	// Every operation with a path parameter, at names that do not exist and that
	// storage cannot hold; a write there carries a secret that must not come back.
	ops := mountOps(t, v, mount)
	bad := newMarker()
	addSecret(newSecret("a..b", "password", bad, "pw-"+bad))
	for _, o := range ops {
		if !strings.Contains(o.Template, "{") {
			continue
		}
		for _, name := range []string{"lk-missing", "a..b"} {
			path := o.Template
			for _, p := range o.Params {
				path = strings.ReplaceAll(path, "{"+p+"}", name)
			}
			var body any
			switch o.Method {
			case "post", "patch":
				body = map[string]any{}
				if name == "a..b" && o.Template == "credentials/{name}" {
					body = map[string]any{"type": "basic", "username": "u", "password": "pw-" + bad}
				}
			}
			method := strings.ToUpper(o.Method)
			c := r.do(method, path, nil, body)
			switch {
			case name == "a..b" && (c.Status < 400 || c.Status >= 500):
				// docs/API.md: names hold no "..", refused by the name rule (a 400), or
				// not found; never a server error, never a success.
				t.Errorf("%s at a name storage cannot hold (a..b): %d, want a 4xx; answer: %.200s", o, c.Status, r.redact(c.errorText()))
			case name == "lk-missing" && c.Status < 400 && method != http.MethodDelete:
				t.Errorf("%s at a name that does not exist: %d, want a 4xx", o, c.Status)
			}
		}
	}
	r.want(r.do(http.MethodGet, "alerts", nil, nil), 200)
	// The metrics after every access above, as JSON and as the exposition: counts only,
	// scanned like any answer.
	r.want(r.do(http.MethodGet, "metrics", nil, nil), 200)
	r.want(r.do(http.MethodGet, "metrics", url.Values{"format": {"prometheus"}}, nil), 200)
	r.want(r.do(http.MethodGet, "metrics", url.Values{"format": {"xml"}}, nil), 400)

	// The hostile provider's invalid_client made lk-echo400 need re-authorization,
	// which is announced to the webhook; the webhook answers 500 and is retried.
	waitFor(t, time.Minute, "two delivery attempts at the failing webhook", func() bool { return len(hook.received()) >= 2 })
	waitFor(t, 30*time.Second, "the failed delivery in the server log", func() bool {
		b, _ := os.ReadFile(v.logPath)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "lk-webhook") && strings.Contains(strings.ToLower(line), "notif") {
				return true
			}
		}
		return false
	})

	// Delete everything, then see that it is gone.
	list := r.must(r.do("LIST", "credentials", url.Values{"limit": {"1000"}}, nil), 200)
	for _, k := range list.data()["keys"].([]any) {
		r.want(r.do(http.MethodDelete, "credentials/"+k.(string), nil, nil), 200, 204)
	}
	r.want(r.do(http.MethodGet, "credentials/lk-basic", nil, nil), 404)
	r.want(r.do(http.MethodGet, "access/lk-basic", nil, nil), 404)
	r.want(r.do(http.MethodGet, "alerts", nil, nil), 200)

	// What the providers saw and issued: tokens, refresh tokens, PKCE verifiers and
	// authorization codes.
	for name, p := range providers {
		for _, tok := range p.Issued() {
			addSecret(newSecret(name, "access_token", tok.Access[:6], tok.Access))
			if tok.Refresh != "" {
				addSecret(newSecret(name, "refresh_token", tok.Refresh[:6], tok.Refresh))
			}
		}
		for _, req := range p.Received() {
			if cv := req.Form.Get("code_verifier"); cv != "" {
				addSecret(newSecret(name, "code_verifier", cv[:6], cv))
			}
			if code := req.Form.Get("code"); code != "" {
				addSecret(newSecret(name, "authorization_code", code[:6], code))
			}
		}
	}
	for name, p := range issuers {
		for _, tok := range p.Issued() {
			addSecret(newSecret(name, "access_token", tok[:6], tok))
		}
	}
	for name, gh := range gitHubs {
		for _, tok := range gh.Issued() {
			addSecret(newSecret(name, "access_token", tok[:6], tok))
		}
		for _, req := range gh.Requests() {
			// The App JWT is a secret too: signed by the key, good for 10 minutes.
			if jwt, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok && len(jwt) > 40 {
				addSecret(newSecret(name, "app_jwt", jwt[:6], jwt))
			}
		}
	}
	grants := map[string]int{}
	for _, req := range providers[ac].Received() {
		grants[req.Form.Get("grant_type")]++
	}
	if grants["authorization_code"] != 3 {
		t.Errorf("the authorization-code provider saw %v, want three code exchanges (callback, by hand, form_post)", grants)
	}
	t.Logf("authorization-code provider: token requests by grant %v", grants)

	// The scan.
	all := allSecrets()
	calls := r.all()
	var leaks []hit
	type seenKey struct{ name, field string }
	seen := map[seenKey]bool{}
	served := map[string]bool{}
	for _, c := range calls {
		name, isAccess := strings.CutPrefix(c.Path, "access/")
		typ := credType[name]
		if !isAccess || c.Method != http.MethodGet || c.Status != 200 || typ == "" {
			leaks = append(leaks, find(all, string(c.Body)+"\n"+headerText(c.Header), c.String())...)
			continue
		}
		served[name] = true
		var envelope map[string]any
		if err := json.Unmarshal(c.Body, &envelope); err != nil {
			t.Errorf("%s: not JSON: %v", c, err)
			continue
		}
		data, _ := envelope["data"].(map[string]any)
		for field, kinds := range accessFields[typ] {
			val, ok := data[field]
			if !ok {
				continue
			}
			text, isString := val.(string)
			if !isString {
				b, _ := json.Marshal(val)
				text = string(b)
			}
			for _, h := range find(all, text, fmt.Sprintf("%s field %s", c, field)) {
				if h.s.Owner == name && slices.Contains(kinds, h.s.Kind) {
					seen[seenKey{name, field}] = true
				} else {
					leaks = append(leaks, h)
				}
			}
			delete(data, field)
		}
		rest, _ := json.Marshal(envelope)
		leaks = append(leaks, find(all, string(rest)+"\n"+headerText(c.Header), c.String()+" outside the fields docs/API.md lists")...)
	}
	// The scan can see: every field that should carry a secret did, in some answer.
	for name := range served {
		for field := range accessFields[credType[name]] {
			if !seen[seenKey{name, field}] {
				t.Errorf("access/%s: field %s never carried the credential's secret (%v): access is broken or the scan is blind",
					name, field, accessFields[credType[name]][field])
			}
		}
	}
	for _, s := range specs {
		// The scan's provider has no device flow: the device-code credential awaits consent
		// throughout (its tokens' scan is TestDeviceAuthorizationGrant's, at oidc-provider).
		if !served[s.name] && !strings.HasPrefix(s.name, "lk-echo4") && !strings.HasPrefix(s.name, "lk-echo5") && s.typ != "oauth2_device_code" {
			t.Errorf("access/%s never answered 200", s.name)
		}
	}
	for i, b := range hook.received() {
		leaks = append(leaks, find(all, string(b), fmt.Sprintf("notification %d posted to the webhook", i+1))...)
	}
	serverLog, err := os.ReadFile(v.logPath)
	if err != nil {
		t.Fatal(err)
	}
	leaks = append(leaks, findLines(all, string(serverLog), "server log")...)
	audit, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	// Vault itself writes each request's request_uri to the audit log unhashed; the
	// provider's redirect to oauth/callback carries the authorization code in its query
	// (RFC 6749 §4.1.2) unless the credential's response_mode is form_post. That code
	// is single-use, already spent, and worthless without the PKCE verifier, which is
	// looked for everywhere. Only those URIs are left out; the form-posted code is not.
	callbackURI := regexp.MustCompile(`"request_uri":"/v1/` + regexp.QuoteMeta(mount) + `/oauth/callback\?[^"]*"`)
	// The control: a query-mode code does stand in clear in the audit log (so the scan
	// can see a code there), which is what response_mode form_post avoids.
	if !strings.Contains(string(audit), queryCode) {
		t.Errorf("control: the query-mode authorization code is not in the audit log in clear; the form_post check sees nothing")
	}
	if strings.Contains(string(audit), postedCode) {
		t.Errorf("the form_post authorization code stands in clear in the audit log")
	}
	leaks = append(leaks, findLines(all, callbackURI.ReplaceAllString(string(audit), `"request_uri":"(callback)"`), "audit log")...)
	// The generated keys: no PRIVATE KEY block and no JWK private parameter in any
	// answer about them, in the server log or in their audit entries.
	privateJWK := regexp.MustCompile(`\\?"(d|p|q|dp|dq|qi)\\?"\s*:\s*\\?"`)
	privateIn := func(what, text string) {
		if strings.Contains(text, "PRIVATE KEY") || privateJWK.MatchString(text) {
			t.Errorf("LEAK: %s holds a private key block or a JWK private parameter", what)
		}
	}
	nGenerated := 0
	for _, c := range calls {
		if strings.Contains(c.Path, "lk-generated") || strings.HasPrefix(c.Path, "jwks/") {
			nGenerated++
			privateIn(c.String(), string(c.Body)+"\n"+headerText(c.Header))
		}
	}
	if nGenerated < 8 {
		t.Errorf("only %d answers about the generated keys were scanned", nGenerated)
	}
	privateIn("the server log", string(serverLog))
	for i, line := range strings.Split(string(audit), "\n") {
		if strings.Contains(line, "lk-generated") || strings.Contains(line, "/jwks/") {
			privateIn(fmt.Sprintf("audit log line %d", i+1), line)
		}
	}
	sort.Slice(leaks, func(i, j int) bool { return leaks[i].String() < leaks[j].String() })
	for _, h := range leaks {
		t.Errorf("LEAK: %s", h)
	}

	// The audit log holds the access answers, HMAC'd.
	checkAudit(t, string(audit), mount, served, credType)

	coverage := checkCoverage(t, ops, calls)
	nForms := 0
	for _, s := range all {
		nForms += len(s.forms)
	}
	t.Logf("%d OpenAPI operations on %d credentials (%d types); %d calls; %d secrets in %d forms; %d leaks; %s\n%s",
		len(ops), len(credType), len(typeNames), len(calls), len(all), nForms, len(leaks), time.Since(began).Round(time.Millisecond), coverage)
}

// maps is a copy of a with b's entries added.
func maps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// checkAudit fails unless the audit log is non-empty and holds, for every credential
// access/ served, a response entry whose secret-carrying fields are HMAC'd.
func checkAudit(t *testing.T, audit, mount string, served map[string]bool, credType map[string]string) {
	t.Helper()
	if strings.TrimSpace(audit) == "" {
		t.Fatal("the audit log is empty")
	}
	hmacd := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSpace(audit), "\n") {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
			Response struct {
				Data map[string]any `json:"data"`
			} `json:"response"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("audit log line %d is not JSON: %v", i+1, err)
			continue
		}
		name, ok := strings.CutPrefix(e.Request.Path, mount+"/access/")
		if e.Type != "response" || !ok || !served[name] || e.Response.Data == nil {
			continue
		}
		all := true
		for field := range accessFields[credType[name]] {
			s, isString := e.Response.Data[field].(string)
			if !isString || !strings.HasPrefix(s, "hmac-sha256:") {
				all = false
			}
		}
		if all {
			hmacd[name] = true
		}
	}
	for name := range served {
		if !hmacd[name] {
			t.Errorf("audit log: no response entry for access/%s with its secret fields as hmac-sha256:", name)
		}
	}
}

// verifiesLocally says whether verify of the scan's credential of type typ stays on
// this machine: the OAuth types (the scan's providers), certificates (dates) and the
// types verify does not support. The others would call the example hosts their
// fixtures name (and slack.com); the authorization-code credential is verified by
// neither, as its consent is part of the scan.
func verifiesLocally(typ string) bool {
	switch typ {
	case "bearer", "api_key", "okta", "slack", "sftp_password", "sftp_ssh_key", "oauth2_authorization_code", "oauth2_device_code":
		return false
	}
	return true
}
