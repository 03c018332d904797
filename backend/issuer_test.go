package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

const testIssuer = "https://vault.example.com/v1/integrations/oidc"

// issuerRequest sends one request as Vault does for this mount, with its accessor.
func issuerRequest(b logical.Backend, s logical.Storage, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data, Storage: s, MountPoint: "integrations/", MountAccessor: "integrations_1a2b3c",
	})
}

// rawJSON decodes a raw answer's body, failing unless it is a 200 JSON answer.
func rawJSON(t *testing.T, resp *logical.Response, err error, into any) {
	t.Helper()
	if err != nil || resp == nil {
		t.Fatalf("no answer: %s", outcome(resp, err))
	}
	if resp.Data[logical.HTTPStatusCode] != http.StatusOK || resp.Data[logical.HTTPContentType] != "application/json" {
		t.Fatalf("not a 200 JSON answer: %v", resp.Data)
	}
	if err := json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), into); err != nil {
		t.Fatal(err)
	}
}

// publishedKids are the kids oidc/.well-known/keys answers now.
func publishedKids(t *testing.T, b logical.Backend, s logical.Storage) []string {
	t.Helper()
	resp, err := issuerRequest(b, s, logical.ReadOperation, issuerJWKSPath, nil)
	var set jose.JSONWebKeySet
	rawJSON(t, resp, err, &set)
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

// TestIssuerDocuments: before config issuer is set, both documents answer as a missing
// path does; after, discovery names the issuer exactly and the keys are one public
// RSA key (RS256, use sig, kid its thumbprint) with Cache-Control, made by the config
// write itself.
func TestIssuerDocuments(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	_, missing := issuerRequest(b, s, logical.ReadOperation, "oidc/.well-known/nothing", nil)
	if !errors.Is(missing, logical.ErrUnsupportedPath) {
		t.Fatalf("a missing path answers %v", missing)
	}
	for _, p := range []string{issuerDiscoveryPath, issuerJWKSPath} {
		resp, err := issuerRequest(b, s, logical.ReadOperation, p, nil)
		if resp != nil || !errors.Is(err, logical.ErrUnsupportedPath) {
			t.Errorf("%s before issuer is set: %s, want the missing path's answer", p, outcome(resp, err))
		}
	}
	if e, _ := s.Get(context.Background(), issuerKeysPath); e != nil {
		t.Fatal("a key exists before issuer is set")
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer})

	resp, err := issuerRequest(b, s, logical.ReadOperation, issuerDiscoveryPath, nil)
	var disc map[string]any
	rawJSON(t, resp, err, &disc)
	if disc["issuer"] != testIssuer || disc["jwks_uri"] != testIssuer+"/.well-known/keys" {
		t.Errorf("discovery = %v", disc)
	}
	for _, k := range []string{"id_token_signing_alg_values_supported", "response_types_supported", "subject_types_supported"} {
		if _, ok := disc[k].([]any); !ok {
			t.Errorf("discovery lacks %s: %v", k, disc)
		}
	}
	if got := resp.Headers["Cache-Control"]; !slices.Equal(got, []string{issuerCacheControl}) {
		t.Errorf("Cache-Control = %v", got)
	}
	resp, err = issuerRequest(b, s, logical.ReadOperation, issuerJWKSPath, nil)
	body := string(resp.Data[logical.HTTPRawBody].([]byte))
	var set jose.JSONWebKeySet
	rawJSON(t, resp, err, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("keys = %s, want one", body)
	}
	k := set.Keys[0]
	tp, _ := ownedkeys.Thumbprint(k.Key)
	if !k.IsPublic() || k.Algorithm != "RS256" || k.Use != "sig" || k.KeyID != tp {
		t.Errorf("published key: public %v alg %s use %s kid %s (thumbprint %s)", k.IsPublic(), k.Algorithm, k.Use, k.KeyID, tp)
	}
	for _, member := range []string{`"d"`, `"p"`, `"q"`, `"dp"`, `"dq"`, `"qi"`} {
		if strings.Contains(body, member) {
			t.Errorf("the keys document has the private member %s: %s", member, body)
		}
	}
	if got := resp.Headers["Cache-Control"]; !slices.Equal(got, []string{issuerCacheControl}) {
		t.Errorf("Cache-Control = %v", got)
	}
	// The paths are unauthenticated; the rest of oidc/ is not.
	if u := b.PathsSpecial.Unauthenticated; !slices.Contains(u, issuerDiscoveryPath) || !slices.Contains(u, issuerJWKSPath) || slices.Contains(u, issuerRotatePath) {
		t.Errorf("unauthenticated paths = %v", u)
	}
	if !slices.Contains(b.PathsSpecial.SealWrapStorage, issuerKeysPath) {
		t.Errorf("the issuer keys are not seal-wrapped: %v", b.PathsSpecial.SealWrapStorage)
	}
}

// TestIssuerConfigRules: issuer and issuer_key_rotation_period refuse what they must,
// naming the field.
func TestIssuerConfigRules(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, bad := range []string{"http://vault.example.com/v1/integrations/oidc", testIssuer + "/", testIssuer + "?a=b", testIssuer + "#f",
		"https://user:pw@vault.example.com/oidc", "vault.example.com/oidc", "https://vault.example.com/o idc", "ftp://vault.example.com/oidc"} {
		wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": bad}), "issuer")
	}
	for _, p := range []string{"59m", "366d"} {
		wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer_key_rotation_period": p}), "issuer_key_rotation_period")
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": "http://127.0.0.1:8200/v1/integrations/oidc", "issuer_key_rotation_period": "1h"})
	got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data
	if got["issuer"] != "http://127.0.0.1:8200/v1/integrations/oidc" || got["issuer_key_rotation_period"] != int64(3600) {
		t.Errorf("config = %v", got)
	}
	mustOK(t, b, s, logical.DeleteOperation, "config", nil)
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data; got["issuer"] != "" || got["issuer_key_rotation_period"] != int64(30*24*3600) {
		t.Errorf("defaults = %v", got)
	}
	wantFieldError(t, call(t, b, s, logical.UpdateOperation, issuerRotatePath, nil), "issuer")
}

// TestIssuerFirstUseRace: many first uses at once make exactly one key, and all sign
// with it.
func TestIssuerFirstUseRace(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	const n = 16
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			k, err := b.issuerSigningKey(context.Background(), clock.Now())
			kids[i], errs[i] = k.ID, err
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || kids[i] != kids[0] || kids[0] == "" {
			t.Fatalf("use %d: kid %q err %v; first %q", i, kids[i], errs[i], kids[0])
		}
	}
	set, err := loadIssuerKeys(context.Background(), s)
	if err != nil || set.Len() != 1 {
		t.Fatalf("stored set: %v keys, %v", set.Len(), err)
	}
}

// TestIssuerScheduledRotation runs the rotation job minute by minute with the
// injected clock over five rotation periods and signs an assertion each minute. The
// next key is published ahead of signing (half an hour for a one-hour period); the
// key that signs is always published; a key stays published until everything it
// signed has expired (lifetime + skew) and is destroyed soon after; the set never
// holds more than three keys.
func TestIssuerScheduledRotation(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer, "issuer_key_rotation_period": "1h"})
	ctx := context.Background()
	lastSigned := map[string]time.Time{}
	firstPublished := map[string]time.Time{}
	firstSigned := map[string]time.Time{}
	var order []string
	for minute := 0; minute < 5*60; minute++ {
		if err := b.rotateIssuerKeys(ctx, s); err != nil {
			t.Fatal(err)
		}
		now := clock.Now()
		published := publishedKids(t, b, s)
		for _, kid := range published {
			if _, ok := firstPublished[kid]; !ok {
				firstPublished[kid] = now
			}
		}
		k, err := b.issuerSigningKey(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(published, k.ID) {
			t.Fatalf("minute %d: signed with %s, not among the published %v", minute, k.ID, published)
		}
		if _, ok := firstSigned[k.ID]; !ok {
			firstSigned[k.ID] = now
			order = append(order, k.ID)
		}
		lastSigned[k.ID] = now
		for kid, at := range lastSigned {
			if now.Before(at.Add(oauth.AssertionLifetime+issuerClockSkew)) && !slices.Contains(published, kid) {
				t.Fatalf("minute %d: %s signed at %s is no longer published", minute, kid, at.Format(time.TimeOnly))
			}
		}
		if set, _ := loadIssuerKeys(ctx, s); set.Len() > 3 {
			t.Fatalf("minute %d: the set holds %d keys", minute, set.Len())
		}
		clock.Advance(time.Minute)
	}
	if len(order) != 5 {
		t.Fatalf("%d keys signed in five periods, want 5", len(order))
	}
	for _, kid := range order[1:] {
		if ahead := firstSigned[kid].Sub(firstPublished[kid]); ahead < 30*time.Minute {
			t.Errorf("%s was published only %s before it signed", kid, ahead)
		}
	}
	// The first key was destroyed after its keep: storage no longer holds it.
	set, _ := loadIssuerKeys(ctx, s)
	for _, k := range set.Keys() {
		if k.ID == order[0] {
			t.Errorf("the first key is still stored")
		}
	}
}

// TestIssuerRotateNow: oidc/rotate makes a new key sign at once, keeps the previous
// one published for the assertion lifetime plus the skew allowance, then the job
// destroys it; its answer names kids only.
func TestIssuerRotateNow(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer})
	ctx := context.Background()
	old, err := b.issuerSigningKey(ctx, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp := mustOK(t, b, s, logical.UpdateOperation, issuerRotatePath, nil)
	next, _ := b.issuerSigningKey(ctx, clock.Now())
	if next.ID == old.ID || resp.Data["signing_kid"] != next.ID {
		t.Fatalf("after oidc/rotate: signing %s (answer %v), before %s", next.ID, resp.Data["signing_kid"], old.ID)
	}
	if kids := publishedKids(t, b, s); !slices.Contains(kids, old.ID) || !slices.Contains(kids, next.ID) {
		t.Fatalf("published right after the rotation: %v", kids)
	}
	clock.Advance(issuerKeyKeep - time.Second)
	if kids := publishedKids(t, b, s); !slices.Contains(kids, old.ID) {
		t.Fatalf("the previous key went before its keep: %v", kids)
	}
	clock.Advance(time.Second)
	if kids := publishedKids(t, b, s); !slices.Equal(kids, []string{next.ID}) {
		t.Fatalf("published after the keep: %v, want only %s", kids, next.ID)
	}
	if err := b.rotateIssuerKeys(ctx, s); err != nil {
		t.Fatal(err)
	}
	if set, _ := loadIssuerKeys(ctx, s); set.Len() != 1 {
		t.Fatalf("stored keys after the job: %d, want 1 (the previous one destroyed)", set.Len())
	}
}

// entraLikeEndpoint verifies client assertions the way Microsoft Entra does for a
// federated identity credential: the signature by a key the engine publishes at the
// time of the request (fetched from oidc/.well-known/keys), iss, sub, aud, exp, and a
// jti never seen before.
type entraLikeEndpoint struct {
	t        *testing.T
	b        logical.Backend
	s        logical.Storage
	clock    *testClock
	subject  string
	seen     sync.Map
	accepted atomic.Int64
	refused  atomic.Int64
	lastKid  atomic.Pointer[string]
}

func (e *entraLikeEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	refuse := func(why string) {
		e.refused.Add(1)
		e.t.Logf("refused: %s", why)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
	}
	_ = r.ParseForm()
	if _, _, basic := r.BasicAuth(); basic || r.Form.Has("client_secret") || r.Form.Get("client_assertion_type") != oauth.ClientAssertionType {
		refuse("client authentication")
		return
	}
	tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		refuse("not a JWS")
		return
	}
	resp, err := issuerRequest(e.b, e.s, logical.ReadOperation, issuerJWKSPath, nil)
	if err != nil {
		refuse("keys: " + err.Error())
		return
	}
	var set jose.JSONWebKeySet
	if json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &set) != nil {
		refuse("keys do not decode")
		return
	}
	kid := tok.Headers[0].KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		refuse("kid " + kid + " not published")
		return
	}
	var c jwt.Claims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		refuse("signature")
		return
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: testIssuer, Subject: e.subject, AnyAudience: jwt.Audience{credtype.FederatedAudience}, Time: e.clock.Now()}, 0); err != nil {
		refuse("claims: " + err.Error())
		return
	}
	if c.ID == "" || c.Expiry.Time().Sub(c.IssuedAt.Time()) > time.Hour {
		refuse("jti or lifetime")
		return
	}
	if _, replay := e.seen.LoadOrStore(c.ID, true); replay {
		refuse("jti replayed")
		return
	}
	e.accepted.Add(1)
	e.lastKid.Store(&kid)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"access_token":"federated-` + c.ID[:8] + `","token_type":"Bearer","expires_in":600}`))
}

// TestFederatedAccessMints: an auth_style=federated credential needs config issuer
// (a 400 naming auth_style), stores federated_subject's default made of the mount
// accessor, mints through a verifier that checks what Entra checks, keeps minting
// across oidc/rotate and a scheduled rotation, and with issuer removed later its mint
// is refused with a clear configuration error.
func TestFederatedAccessMints(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	ep := &entraLikeEndpoint{t: t, b: b, s: s, clock: clock, subject: "integrations:integrations_1a2b3c:fed"}
	srv := httptest.NewServer(ep)
	t.Cleanup(srv.Close)
	create := map[string]any{"type": "oauth2_client_credentials", "token_url": srv.URL + "/token", "client_id": "app-1", "auth_style": "federated"}
	resp, err := issuerRequest(b, s, logical.CreateOperation, "credentials/fed", create)
	if err != nil {
		t.Fatal(err)
	}
	wantFieldError(t, resp, "auth_style")

	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer, "issuer_key_rotation_period": "1h"})
	if resp, err = issuerRequest(b, s, logical.CreateOperation, "credentials/fed", create); err != nil || resp.IsError() {
		t.Fatalf("create: %s", outcome(resp, err))
	}
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/fed", nil)
	if read.Data[credtype.FieldFederatedSubject] != ep.subject {
		t.Fatalf("federated_subject = %v, want the default %s", read.Data[credtype.FieldFederatedSubject], ep.subject)
	}
	mint := func(what string) {
		t.Helper()
		got := mustOK(t, b, s, logical.ReadOperation, "access/fed", nil)
		if tok, _ := got.Data["access_token"].(string); !strings.HasPrefix(tok, "federated-") {
			t.Fatalf("%s: %s", what, outcome(got, nil))
		}
		clock.Advance(10 * time.Minute) // the token has expired: the next read mints
	}
	mint("first mint")
	first := *ep.lastKid.Load()
	mustOK(t, b, s, logical.UpdateOperation, issuerRotatePath, nil)
	mint("after oidc/rotate")
	if second := *ep.lastKid.Load(); second == first {
		t.Fatalf("the mint after oidc/rotate was signed by the old key %s", first)
	}
	for range 12 { // two hours of ticks: two scheduled rotations
		if err := b.rotateIssuerKeys(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		mint("across the scheduled rotation")
	}
	if ep.refused.Load() != 0 || ep.accepted.Load() != 14 {
		t.Fatalf("accepted %d, refused %d; want 14 and 0", ep.accepted.Load(), ep.refused.Load())
	}

	// A key of its own is refused under federated.
	patch, _ := issuerRequest(b, s, logical.PatchOperation, "credentials/fed", map[string]any{"client_key": fixtures.KeyPEM(fixtures.NewKey("p256"))})
	wantFieldError(t, patch, "client_key")

	// So is a generated one: under federated the credential holds no key at all.
	patch, _ = issuerRequest(b, s, logical.PatchOperation, "credentials/fed", map[string]any{"generate_client_key": "ec-p256"})
	wantFieldError(t, patch, "generate_client_key")
	resp, _ = issuerRequest(b, s, logical.CreateOperation, "credentials/fed-gen", maps2(create, "generate_client_key", "ec-p256"))
	wantFieldError(t, resp, "generate_client_key")
	// A credential with generated keys moves to federated once it lets them go.
	gen := map[string]any{"type": "oauth2_client_credentials", "token_url": srv.URL + "/token", "client_id": "app-1", "auth_style": "private_key_jwt", "generate_client_key": "ec-p256"}
	mustOK(t, b, s, logical.CreateOperation, "credentials/was-gen", gen)
	resp, _ = issuerRequest(b, s, logical.PatchOperation, "credentials/was-gen", map[string]any{"auth_style": "federated"})
	wantFieldError(t, resp, "generate_client_key")
	mustOK(t, b, s, logical.PatchOperation, "credentials/was-gen", map[string]any{"auth_style": "federated", "generate_client_key": ""})
	if read := mustOK(t, b, s, logical.ReadOperation, "credentials/was-gen", nil); read.Data["client_public_key"] != nil || read.Data["client_keys"] != nil {
		t.Fatalf("the generated keys outlived the move to federated: %v", read.Data)
	}

	// A JWT-bearer type keeps its grant's key under federated client authentication.
	jb := map[string]any{"type": "oauth2_jwt_bearer", "token_url": srv.URL + "/token", "issuer": "svc", "client_id": "app-1",
		"client_key": fixtures.KeyPEM(fixtures.NewKey("p256")), "auth_style": "federated"}
	if resp, err := issuerRequest(b, s, logical.CreateOperation, "credentials/jb", jb); err != nil || resp.IsError() {
		t.Errorf("oauth2_jwt_bearer with auth_style federated: %s", outcome(resp, err))
	}
	resp, _ = issuerRequest(b, s, logical.CreateOperation, "credentials/jb2", maps2(jb, "client_certificate", fixtures.SelfSigned(fixtures.NewKey("p256"), "x", time.Now().AddDate(1, 0, 0))))
	wantFieldError(t, resp, "client_certificate")

	// issuer removed after the credential was written: a clear configuration error.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": ""})
	resp, err = b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "access/fed", Storage: s})
	if err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("minted without an issuer: %s", outcome(resp, err))
	}
	if msg := outcome(resp, err); !strings.Contains(msg, "config issuer") {
		t.Errorf("the refusal does not say what is missing: %s", msg)
	}
	if ep.accepted.Load() != 14 {
		t.Errorf("a request reached the provider without an issuer")
	}
}

// TestIssuerKeysNeverLeave: the issuer's private keys appear in no response (config,
// discovery, keys, rotate, credential read, access), no log line, no error and no
// printed form of the set.
func TestIssuerKeysNeverLeave(t *testing.T) {
	t.Parallel()
	logs := &lcLogBuffer{}
	b, s, clock := newBackendWith(t, backendOptions{initialize: true, logs: logs})
	ep := &entraLikeEndpoint{t: t, b: b, s: s, clock: clock, subject: "integrations:integrations_1a2b3c:fed"}
	srv := httptest.NewServer(ep)
	t.Cleanup(srv.Close)
	var answers []any
	keep := func(resp *logical.Response, err error) {
		if resp != nil {
			answers = append(answers, resp.Data, resp.Headers, resp.Warnings)
		}
		if err != nil {
			answers = append(answers, err.Error())
		}
	}
	keep(issuerRequest(b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer}))
	keep(issuerRequest(b, s, logical.CreateOperation, "credentials/fed", map[string]any{"type": "oauth2_client_credentials",
		"token_url": srv.URL + "/token", "client_id": "app-1", "auth_style": "federated"}))
	keep(issuerRequest(b, s, logical.ReadOperation, "access/fed", nil))
	keep(issuerRequest(b, s, logical.UpdateOperation, issuerRotatePath, nil))
	if err := b.rotateIssuerKeys(context.Background(), s); err != nil {
		answers = append(answers, err.Error())
	}
	clock.Advance(10 * time.Minute) // the token has expired, the previous key is not yet destroyed
	keep(issuerRequest(b, s, logical.ReadOperation, "access/fed", nil))
	for _, p := range []string{"config", issuerDiscoveryPath, issuerJWKSPath, "credentials/fed", "credentials/fed/verify"} {
		keep(issuerRequest(b, s, logical.ReadOperation, p, nil))
	}
	keep(issuerRequest(b, s, logical.ListOperation, "credentials/", nil))
	set, err := loadIssuerKeys(context.Background(), s)
	if err != nil || set.Len() != 2 {
		t.Fatalf("stored set: %d keys, %v", set.Len(), err)
	}
	answers = append(answers, fmt.Sprint(set), fmt.Sprintf("%#v", set), set.Keys())
	// The private halves as stored (Encode is their only encoding): each PEM body line.
	enc, _ := set.Encode()
	var stored []struct {
		Private string `json:"private"`
	}
	if err := json.Unmarshal(enc, &stored); err != nil || len(stored) != 2 {
		t.Fatal("the stored form does not decode")
	}
	var secrets []string
	for _, k := range stored {
		lines := strings.Split(strings.TrimSpace(k.Private), "\n")
		secrets = append(secrets, lines[1:len(lines)-2]...) // the full 64-character lines
	}
	for _, k := range set.Keys() {
		jwk := jose.JSONWebKey{Key: k.Signer()}
		js, _ := jwk.MarshalJSON()
		var members map[string]string
		_ = json.Unmarshal(js, &members)
		secrets = append(secrets, members["d"], members["p"], members["q"])
	}
	everything, err := json.Marshal(answers)
	if err != nil {
		t.Fatal(err)
	}
	haystack := string(everything) + logs.String()
	if ep.accepted.Load() != 2 {
		t.Fatalf("the mints did not happen (%d accepted): the scan would prove little", ep.accepted.Load())
	}
	for _, secret := range secrets {
		if len(secret) < 40 {
			t.Fatalf("a private part is too short to look for: %q", secret)
		}
		if strings.Contains(haystack, secret) {
			t.Fatalf("a private key part appears in an answer or a log line")
		}
	}
}

// maps2 is m with k set to v, a copy.
func maps2(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for x, y := range m {
		out[x] = y
	}
	out[k] = v
	return out
}

// TestIssuerOverdueRotationPublishesAhead: when the rotation job could not run for
// longer than the period (a sealed or stopped cluster), the next key is still
// published issuerPublishAhead before it signs; the current key, still published,
// keeps signing meanwhile. Before the fix the overdue key signed the moment it was
// made, and a verifier holding the cached key set refused what it signed.
func TestIssuerOverdueRotationPublishesAhead(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"issuer": testIssuer, "issuer_key_rotation_period": "1h"})
	ctx := context.Background()
	if err := b.rotateIssuerKeys(ctx, s); err != nil {
		t.Fatal(err)
	}
	first, err := b.issuerSigningKey(ctx, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Hour) // the job did not run meanwhile
	if err := b.rotateIssuerKeys(ctx, s); err != nil {
		t.Fatal(err)
	}
	published := clock.Now()
	k, err := b.issuerSigningKey(ctx, published)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != first.ID {
		t.Fatalf("the overdue next key %s signed the moment it was published", k.ID)
	}
	set, _ := loadIssuerKeys(ctx, s)
	next, _ := set.Current()
	if next.ID == first.ID {
		t.Fatal("no next key was published")
	}
	if ahead := next.Activates.Sub(published); ahead < issuerPublishAhead(time.Hour) {
		t.Errorf("the next key signs %s after it was published, want at least %s", ahead, issuerPublishAhead(time.Hour))
	}
	clock.Advance(issuerPublishAhead(time.Hour))
	if err := b.rotateIssuerKeys(ctx, s); err != nil {
		t.Fatal(err)
	}
	if k, err := b.issuerSigningKey(ctx, clock.Now()); err != nil || k.ID != next.ID {
		t.Errorf("after the publish-ahead the signing key is %s (%v), want the next one %s", k.ID, err, next.ID)
	}
}
