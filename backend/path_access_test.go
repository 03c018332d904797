package backend

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// newBackendOver is newTestBackend over the given storage, with config written first.
func newBackendOver(t testing.TB, s logical.Storage, config map[string]any) (*integrationsBackend, *testClock) {
	t.Helper()
	b, _, clock := newBackendWith(t, backendOptions{storage: s, config: config, initialize: true})
	return b, clock
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// wantAccess is what access/<name> returns for a static type written with values
// (exampleValues or encryptedKeyValues): exactly what docs/API.md lists, nothing more.
func wantAccess(t testing.TB, typeName string, v map[string]any, now time.Time) map[string]any {
	t.Helper()
	str := func(k string) string { s, _ := v[k].(string); return s }
	pick := func(keys ...string) map[string]any {
		out := map[string]any{}
		for _, k := range keys {
			if s := str(k); s != "" {
				out[k] = s
			}
		}
		return out
	}
	var out map[string]any
	switch typeName {
	case "basic":
		out = pick("username", "password")
		out["authorization"] = basicAuth(str("username"), str("password"))
	case "bearer":
		out = pick("token")
		prefix := str("header_prefix")
		if prefix == "" {
			prefix = "Bearer"
		}
		out["authorization"] = prefix + " " + str("token")
	case "api_key":
		out = pick("key", "header_name")
		if _, ok := out["header_name"]; !ok {
			out["header_name"] = "X-API-Key"
		}
	case "certificate":
		out = pick("certificate")
		out["private_key"] = str("private_key")
		if str("private_key_password") != "" {
			out["private_key"] = str("pkcs8") // filled in by the caller for encrypted keys
		}
		out["not_after"] = exampleNotAfter.Format(time.RFC3339)
	case "sftp_password":
		out = pick("host", "host_key_fingerprint", "username", "password")
	case "sftp_ssh_key":
		out = pick("host", "host_key_fingerprint", "username", "private_key", "passphrase")
	case "webhook":
		out = pick("url")
	case "device_account":
		out = pick("hostname", "ip", "username", "password", "domain", "additional", "notes")
	case "slack":
		out = pick("token")
		out["authorization"] = "Bearer " + str("token")
	case "pagerduty":
		out = pick("routing_key")
	case "okta":
		out = pick("token")
		out["authorization"] = "SSWS " + str("token")
	default:
		t.Fatalf("no access expectation for static type %q", typeName)
	}
	if secret := str("totp_secret"); secret != "" {
		code, err := credtype.TOTPCode(secret, now)
		if err != nil {
			t.Fatal(err)
		}
		out["totp_code"] = code
	}
	return out
}

func TestAccessStaticTypesReturnWhatDesignLists(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	const marker = "ACCESSMARKER"
	type variant struct {
		name, typ string
		values    map[string]any
		pkcs8     string
	}
	var variants []variant
	for _, typeName := range credTypesOfKind(credtype.KindStatic) {
		variants = append(variants, variant{name: "acc-" + typeName, typ: typeName, values: exampleValues(t, typeName, marker)})
	}
	enc := encryptedECKey(t, "pw-"+marker)
	variants = append(variants,
		variant{name: "acc-enc-certificate", typ: "certificate", pkcs8: enc.pkcs8PEM, values: map[string]any{
			"certificate": enc.certPEM, "private_key": enc.keyPEM, "private_key_password": "pw-" + marker,
		}},
		variant{name: "acc-enc-sftp_ssh_key", typ: "sftp_ssh_key", values: encryptedKeyValues(t, "sftp_ssh_key", marker)},
		variant{name: "acc-defaults-bearer", typ: "bearer", values: map[string]any{"token": "plain-token"}},
		variant{name: "acc-defaults-api_key", typ: "api_key", values: map[string]any{"key": "plain-key"}},
		variant{name: "acc-minimal-device", typ: "device_account", values: map[string]any{"hostname": "h1", "ip": "2001:db8::1", "username": "root"}},
	)
	for _, v := range variants {
		mustOK(t, b, s, logical.CreateOperation, "credentials/"+v.name, credWithType(v.typ, v.values))
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			values := maps.Clone(v.values)
			values["pkcs8"] = v.pkcs8
			got := mustOK(t, b, s, logical.ReadOperation, "access/"+v.name, nil).Data
			want := wantAccess(t, v.typ, values, clock.Now())
			if !reflect.DeepEqual(got, want) {
				t.Errorf("access/%s: the fields %v differ from the expected answer's %v",
					v.name, differingFields(got, want), slices.Sorted(maps.Keys(want)))
			}
		})
	}
	// totp_code follows the clock: a new 30-second step, a new code.
	clock.Advance(30 * time.Second)
	secret := markedTOTPSecret(marker)
	want, _ := credtype.TOTPCode(secret, clock.Now())
	before, _ := credtype.TOTPCode(secret, clock.Now().Add(-30*time.Second))
	if want == before {
		return // two consecutive codes happen to be equal: nothing to tell apart
	}
	for _, name := range []string{"acc-basic", "acc-sftp_password", "acc-device_account"} {
		if got := mustOK(t, b, s, logical.ReadOperation, "access/"+name, nil).Data["totp_code"]; got != want {
			t.Errorf("%s: totp_code %v after 30 s, want %s", name, got, want)
		}
	}
}

func TestAccessRefusedWhenUnusable(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	values := credWithType("basic", exampleValues(t, "basic", "REFUSEDMARK"))
	mustOK(t, b, s, logical.CreateOperation, "credentials/held", values)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/held/suspend", nil)
	resp, code := credReq(t, b, s, logical.ReadOperation, "access/held", nil)
	if code != http.StatusForbidden {
		t.Fatalf("suspended: status %d, want 403 (%s)", code, outcome(resp, nil))
	}

	expiring := maps.Clone(values)
	expiring["expires_at"] = clock.Now().Add(time.Hour).Format(time.RFC3339)
	mustOK(t, b, s, logical.CreateOperation, "credentials/expiring", expiring)
	mustOK(t, b, s, logical.ReadOperation, "access/expiring", nil)
	clock.Advance(time.Hour)
	if _, code := credReq(t, b, s, logical.ReadOperation, "access/expiring", nil); code != http.StatusForbidden {
		t.Fatalf("expired: status %d, want 403", code)
	}
	credWantStatus(t, b, s, logical.ReadOperation, "access/never-written", nil, http.StatusNotFound)
}

// Once a credential is cached, access does no storage read or write: the usage it
// records stays in memory until the flush.
func TestAccessDoesNoStorageIOOnceCached(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	// A long flush interval keeps the background flush, which writes by design, out
	// of the measurement.
	b, _ := newBackendOver(t, cs, map[string]any{"usage_flush_interval": "1h"})
	ctx := context.Background()
	for _, typeName := range credTypesOfKind(credtype.KindStatic) {
		mustOK(t, b, cs, logical.CreateOperation, "credentials/io-"+typeName, credWithType(typeName, exampleValues(t, typeName, "NOSTORAGEIO")))
	}
	// Another node's write, invalidated: the first access after it decodes afresh.
	b.InvalidateKey(ctx, credentialPrefix+"io-basic")
	b.InvalidateKey(ctx, configPath)

	const n = 500
	for _, typeName := range credTypesOfKind(credtype.KindStatic) {
		path := "access/io-" + typeName
		before := cs.total()
		mustOK(t, b, cs, logical.ReadOperation, path, nil) // warm-up
		if typeName == "basic" && cs.total() == before {
			t.Fatal("the access after an invalidation read nothing: the counter is not wired")
		}
		start := cs.total()
		for range n {
			mustOK(t, b, cs, logical.ReadOperation, path, map[string]any{"integration": "bench"})
		}
		if got := cs.total() - start; got != 0 {
			t.Errorf("%s: %d storage operations for %d cached accesses (%s)", path, got, n, cs)
		}
	}
	// The accesses were counted, in memory, and reach storage with the flush.
	if err := b.flushUsage(ctx, cs); err != nil {
		t.Fatal(err)
	}
	u := mustOK(t, b, cs, logical.ReadOperation, "credentials/io-basic", nil).Data["access_count"]
	if u != int64(n+1) {
		t.Fatalf("access_count after flush = %v, want %d", u, n+1)
	}
}

// Many readers and writers at once: every access sees one consistent version of the
// credential, never half of one update and half of another.
func TestAccessConcurrentWithUpdates(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ctx := context.Background()
	version := func(i int) map[string]any {
		return map[string]any{"username": fmt.Sprintf("user-%d", i), "password": fmt.Sprintf("pass-%d", i)}
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/shared", credWithType("basic", version(0)))
	const readers, reads, writers, writes = 8, 150, 3, 40
	var wg sync.WaitGroup
	var accesses atomic.Int64
	for range readers {
		wg.Go(func() {
			for range reads {
				resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "access/shared", Storage: s})
				if err != nil || resp == nil || resp.IsError() {
					t.Errorf("access: %s", outcome(resp, err))
					return
				}
				accesses.Add(1)
				user, _ := resp.Data["username"].(string)
				pass, _ := resp.Data["password"].(string)
				if strings.TrimPrefix(user, "user-") != strings.TrimPrefix(pass, "pass-") {
					t.Errorf("torn read: %s / %s", user, pass)
				}
				if resp.Data["authorization"] != basicAuth(user, pass) {
					t.Errorf("authorization does not match the username and password read with it")
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				var op logical.Operation = logical.UpdateOperation
				if i%2 == 1 {
					op = logical.PatchOperation
				}
				data := version(1 + w*writes + i)
				resp, err := b.HandleRequest(ctx, &logical.Request{Operation: op, Path: "credentials/shared", Data: data, Storage: s})
				if err != nil || resp == nil || resp.IsError() {
					t.Errorf("update: %v %v", resp, err)
					return
				}
				if _, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ListOperation, Path: "credentials/", Storage: s}); err != nil {
					t.Errorf("list: %v", err)
				}
			}
		})
	}
	wg.Go(func() {
		for range writes {
			b.InvalidateKey(ctx, credentialPrefix+"shared")
			if err := b.flushUsage(ctx, s); err != nil {
				t.Errorf("flush: %v", err)
			}
		}
	})
	wg.Wait()
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/shared", nil).Data
	got := mustOK(t, b, s, logical.ReadOperation, "access/shared", nil).Data
	if got["username"] != read["username"] || got["password"] != strings.Replace(read["username"].(string), "user-", "pass-", 1) {
		t.Fatalf("final access %v disagrees with the final read %v", got, read["username"])
	}
	if err := b.flushUsage(ctx, s); err != nil {
		t.Fatal(err)
	}
	if c := mustOK(t, b, s, logical.ReadOperation, "credentials/shared", nil).Data["access_count"]; c != accesses.Load()+1 {
		t.Fatalf("access_count = %v, want %d", c, accesses.Load()+1)
	}
}

// A failed access is recorded at the time the read began, however long the provider
// took to refuse: the access event and the needs_reauth it causes carry the read's
// now, not a second reading of the clock.
func TestFailedAccessRecordedAtTheReadsTime(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, clock := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/c", clientCredentials(p, "header"))
	start := clock.Now().UTC()
	refuse := oauthError(http.StatusUnauthorized, "invalid_client")
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		clock.Advance(time.Minute) // the provider is slow to refuse
		return refuse(w, r)
	})
	if code, _ := accessErr(t, b, s, "c"); code != http.StatusForbidden {
		t.Fatalf("access: %d, want 403", code)
	}
	access := lcLogs(t, b, s, "c", map[string]any{"event": "access"})
	if len(access) != 1 || access[0]["status"] != "failure" || access[0]["time"] != rfc3339Nano(start) {
		t.Fatalf("access events %v, want one failure at %s", access, rfc3339Nano(start))
	}
	c, err := b.credentials.get(context.Background(), s, "c")
	if err != nil || c == nil {
		t.Fatalf("get: %v %v", c, err)
	}
	if !c.State.NeedsReauthAt.Equal(start) {
		t.Fatalf("needs_reauth_at %s, want the read's time %s", c.State.NeedsReauthAt, start)
	}
	failed := lcLogs(t, b, s, "c", map[string]any{"event": "refresh_failed"})
	if len(failed) != 1 || failed[0]["time"] != rfc3339Nano(start) {
		t.Fatalf("refresh_failed events %v, want one at the read's time %s", failed, rfc3339Nano(start))
	}
}

// A permanent refusal of a request that started under settings changed since (here
// an update, which a person makes to fix the credential) says nothing about the new
// settings: the credential is not marked needs_reauth, and the reader is told to read
// again.
func TestRefusalOfOldSettingsDoesNotMarkNewOnes(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	data := clientCredentials(p, "header")
	mustOK(t, b, s, logical.CreateOperation, "credentials/c", data)
	asked, release := make(chan struct{}), make(chan struct{})
	refuse := oauthError(http.StatusUnauthorized, "invalid_client")
	var once sync.Once
	p.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		first := false
		once.Do(func() { first = true })
		if !first {
			return false
		}
		close(asked)
		<-release
		return refuse(w, r)
	})
	type result struct {
		resp *logical.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := request(b, s, logical.ReadOperation, "access/c", nil)
		done <- result{resp, err}
	}()
	<-asked
	update := maps.Clone(data)
	delete(update, "type")
	mustOK(t, b, s, logical.UpdateOperation, "credentials/c", update)
	close(release)
	r := <-done
	var ce logical.HTTPCodedError
	if r.err == nil || !errors.As(r.err, &ce) || ce.Code() != http.StatusConflict {
		t.Fatalf("access during the update: %s, want 409", outcome(r.resp, r.err))
	}
	if st, reason := credStatus(t, b, s, "c"); st != "active" {
		t.Fatalf("status %s (%s) after a refusal of the old settings, want active", st, reason)
	}
	accessOK(t, b, s, "c", nil)
}

// failingGets refuses every Get while fail is set.
type failingGets struct {
	logical.Storage
	fail atomic.Bool
}

func (f *failingGets) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if f.fail.Load() {
		return nil, errors.New("storage unavailable")
	}
	return f.Storage.Get(ctx, key)
}

// A token request whose credential cannot be read still names the credential, so the
// failure it leads to is recorded under that name (not under "").
func TestTicketNamesTheCredentialWhenItCannotBeRead(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/c", clientCredentials(p, "header"))
	b.credentials.forget("c")
	fs := &failingGets{Storage: s}
	fs.fail.Store(true)
	tk, c, err := b.tokens.ticket(context.Background(), fs, "c")
	if err == nil || c != nil {
		t.Fatalf("ticket over failing storage: %v %v, want an error", c, err)
	}
	if tk.name != "c" {
		t.Fatalf("ticket name %q, want %q", tk.name, "c")
	}
}
