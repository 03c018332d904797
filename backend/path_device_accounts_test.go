package backend

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestDeviceAccountUpsertByTriple(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	first := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"hostname": "SRV01.corp.example.com", "ip": "10.0.0.5", "username": "Administrator",
		"password": "first-password", "domain": "CORP", "description": "made by the PAM sync",
	}).Data
	if first["created"] != true || first["type"] != "device_account" || first["hostname"] != "srv01.corp.example.com" {
		t.Fatalf("first upsert: %v", first)
	}
	name, _ := first["name"].(string)
	if !validName(name) || !strings.HasPrefix(name, "srv01.corp.example.com_administrator-") {
		t.Fatalf("derived name %q", name)
	}
	if _, shown := first["password"]; shown {
		t.Fatal("upsert response shows the password")
	}

	// The same device, spelt differently: found, updated, secrets and unsent fields kept.
	spellings := []map[string]any{
		{"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator"},
		{"hostname": "SRV01.CORP.EXAMPLE.COM.", "ip": "::ffff:10.0.0.5", "username": "ADMINISTRATOR"},
		{"hostname": " srv01.corp.example.com ", "ip": "10.0.0.5", "username": "administrator"},
	}
	for i, triple := range spellings {
		data := maps.Clone(triple)
		data["notes"] = "update " + string(rune('a'+i))
		got := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", data).Data
		if got["created"] != false || got["name"] != name {
			t.Fatalf("upsert %v: created=%v name=%v, want an update of %s", triple, got["created"], got["name"], name)
		}
		if got["notes"] != data["notes"] || got["domain"] != "CORP" || got["description"] != "made by the PAM sync" {
			t.Fatalf("upsert %v did not keep what it did not send: %v", triple, got)
		}
		if !slices.Equal(got["secret_fields"].([]string), []string{"password"}) {
			t.Fatalf("upsert %v lost the password: %v", triple, got["secret_fields"])
		}
		found := mustOK(t, b, s, logical.ReadOperation, "lookup", triple).Data
		if found["name"] != name {
			t.Fatalf("lookup %v = %v, want %s", triple, found["name"], name)
		}
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "access/"+name, nil).Data["password"]; got != "first-password" {
		t.Fatalf("password after upserts = %v", got)
	}
	// An upsert that sends the password replaces it.
	mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "administrator", "password": "second-password",
	})
	if got := mustOK(t, b, s, logical.ReadOperation, "access/"+name, nil).Data["password"]; got != "second-password" {
		t.Fatalf("password after replacing = %v", got)
	}
	// Another user on the same host is another account.
	other := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"hostname": "srv01.corp.example.com", "ip": "10.0.0.5", "username": "backup",
	}).Data
	if other["created"] != true || other["name"] == name {
		t.Fatalf("other user: %v", other)
	}
	if names := storedCredentialNames(t, s); len(names) != 2 {
		t.Fatalf("stored %v, want two accounts", names)
	}
}

func TestDeviceAccountUpsertByIdentifier(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	created := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "dc01-admin", "hostname": "dc01", "ip": "10.1.0.1", "username": "admin", "password": "pw1",
	}).Data
	if created["created"] != true || created["name"] != "dc01-admin" {
		t.Fatalf("create by identifier: %v", created)
	}
	// The identifier wins over the triple: the account moves to a new address.
	moved := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "dc01-admin", "ip": "10.1.0.2", "password": "pw1",
	}).Data
	if moved["created"] != false || moved["ip"] != "10.1.0.2" || moved["hostname"] != "dc01" {
		t.Fatalf("move by identifier: %v", moved)
	}
	credWantStatus(t, b, s, logical.ReadOperation, "lookup", map[string]any{"hostname": "dc01", "ip": "10.1.0.1", "username": "admin"}, http.StatusNotFound)
	if got := mustOK(t, b, s, logical.ReadOperation, "lookup", map[string]any{"hostname": "dc01", "ip": "10.1.0.2", "username": "admin"}).Data["name"]; got != "dc01-admin" {
		t.Fatalf("lookup at the new address = %v", got)
	}
	// Without the identifier, the triple finds the account it names.
	found := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"hostname": "DC01", "ip": "10.1.0.2", "username": "admin", "notes": "found by triple",
	}).Data
	if found["created"] != false || found["name"] != "dc01-admin" || found["notes"] != "found by triple" {
		t.Fatalf("upsert by triple of an identified account: %v", found)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "access/dc01-admin", nil).Data["password"]; got != "pw1" {
		t.Fatalf("password = %v", got)
	}
	if names := storedCredentialNames(t, s); !slices.Equal(names, []string{"dc01-admin"}) {
		t.Fatalf("stored %v", names)
	}
}

func TestDeviceAccountRefusals(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "taken", "hostname": "h1", "ip": "10.0.0.1", "username": "u",
	})
	mustOK(t, b, s, logical.CreateOperation, "credentials/not-a-device", credWithType("basic", exampleValues(t, "basic", "DEVICEREFUSE")))
	mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "other", "hostname": "h2", "ip": "10.0.0.2", "username": "u",
	})
	before := credStorageSnapshot(t, s)
	cases := []struct {
		name     string
		data     map[string]any
		field    string
		fragment string
	}{
		{"no hostname", map[string]any{"ip": "10.0.0.9", "username": "u"}, "hostname", "required"},
		{"blank hostname", map[string]any{"hostname": "  ", "ip": "10.0.0.9", "username": "u"}, "hostname", "required"},
		{"no ip", map[string]any{"hostname": "h9", "username": "u"}, "ip", "required"},
		{"no username", map[string]any{"hostname": "h9", "ip": "10.0.0.9"}, "username", "required"},
		{"bad ip", map[string]any{"hostname": "h9", "ip": "10.0.0.999", "username": "u"}, "ip", "IPv4 or IPv6"},
		{"bad hostname", map[string]any{"hostname": "h 9", "ip": "10.0.0.9", "username": "u"}, "hostname", "host name"},
		{"bad identifier", map[string]any{"identifier": "a b", "hostname": "h9", "ip": "10.0.0.9", "username": "u"}, "identifier", "letters, digits"},
		{"identifier of another type", map[string]any{"identifier": "not-a-device", "hostname": "h9", "ip": "10.0.0.9", "username": "u"}, "identifier", "basic"},
		{"new account without triple", map[string]any{"identifier": "fresh", "password": "x"}, "hostname", "required"},
		{"triple taken by another account", map[string]any{"identifier": "other", "hostname": "h1", "ip": "10.0.0.1", "username": "u"}, "hostname", "already exists (taken)"},
		{"unknown field", map[string]any{"hostname": "h9", "ip": "10.0.0.9", "username": "u", "token": "x"}, "token", "unknown field"},
		{"bad totp", map[string]any{"hostname": "h9", "ip": "10.0.0.9", "username": "u", "totp_secret": "123"}, "totp_secret", "base32"},
	}
	for _, tc := range cases {
		credWant400(t, b, s, logical.UpdateOperation, "device-accounts", tc.data, tc.field, tc.fragment)
	}
	// The same conflict through credentials/<name> is a 400 too, not an internal error.
	credWant400(t, b, s, logical.PatchOperation, "credentials/other", map[string]any{"hostname": "h1", "ip": "10.0.0.1"}, "hostname", "already exists")
	credWant400(t, b, s, logical.CreateOperation, "credentials/third", map[string]any{
		"type": "device_account", "hostname": "H1", "ip": "10.0.0.1", "username": "U",
	}, "hostname", "already exists")
	if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
		t.Fatal("a refused upsert changed storage")
	}

	lookups := []struct {
		q     map[string]any
		field string
	}{
		{map[string]any{"ip": "10.0.0.1", "username": "u"}, "hostname"},
		{map[string]any{"hostname": "h1", "username": "u"}, "ip"},
		{map[string]any{"hostname": "h1", "ip": "10.0.0.1"}, "username"},
		{map[string]any{}, "hostname"},
	}
	for _, l := range lookups {
		credWant400(t, b, s, logical.ReadOperation, "lookup", l.q, l.field, "required")
	}
	credWantStatus(t, b, s, logical.ReadOperation, "lookup", map[string]any{"hostname": "h1", "ip": "10.0.0.1", "username": "nobody"}, http.StatusNotFound)
}

// A device account written through credentials/<name> is found by lookup and by the
// upsert, and deleting it frees its hostname + ip + username.
func TestDeviceAccountIndexFollowsCredentialWrites(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	values := exampleValues(t, "device_account", "DEVICEINDEX")
	triple := map[string]any{"hostname": values["hostname"], "ip": values["ip"], "username": values["username"]}
	mustOK(t, b, s, logical.CreateOperation, "credentials/by-path", credWithType("device_account", values))
	read := mustOK(t, b, s, logical.ReadOperation, "credentials/by-path", nil).Data
	found := mustOK(t, b, s, logical.ReadOperation, "lookup", triple).Data
	if !reflect.DeepEqual(found, read) {
		t.Fatalf("lookup differs from read:\n%v\n%v", found, read)
	}
	up := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", triple).Data
	if up["name"] != "by-path" || up["created"] != false {
		t.Fatalf("upsert by triple: %v", up)
	}
	// A patch that changes the username moves the index entry.
	mustOK(t, b, s, logical.PatchOperation, "credentials/by-path", map[string]any{"username": "renamed"})
	credWantStatus(t, b, s, logical.ReadOperation, "lookup", triple, http.StatusNotFound)
	moved := maps.Clone(triple)
	moved["username"] = "renamed"
	if got := mustOK(t, b, s, logical.ReadOperation, "lookup", moved).Data["name"]; got != "by-path" {
		t.Fatalf("lookup after rename = %v", got)
	}
	mustOK(t, b, s, logical.DeleteOperation, "credentials/by-path", nil)
	credWantStatus(t, b, s, logical.ReadOperation, "lookup", moved, http.StatusNotFound)
	again := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", moved).Data
	if again["created"] != true {
		t.Fatalf("upsert after delete: %v", again)
	}
	for k := range credStorageSnapshot(t, s) {
		if strings.HasPrefix(k, deviceIndexPrefix) {
			continue
		}
		if k != credentialPrefix+again["name"].(string) && strings.HasPrefix(k, credentialPrefix) {
			t.Errorf("left behind: %s", k)
		}
	}
}

func deviceAccountAt(t *testing.T, b *integrationsBackend, s logical.Storage, name string) *credential {
	t.Helper()
	c, err := b.credentials.get(context.Background(), s, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDeviceAccountMovedAwayIsNotRewrittenByItsOldTriple: an account created by its
// triple (so under a name derived from it) and then moved by identifier is never
// found, let alone rewritten, by the old triple: an upsert by the old triple creates
// another account.
func TestDeviceAccountMovedAwayIsNotRewrittenByItsOldTriple(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	old := map[string]any{"hostname": "srv01", "ip": "10.0.0.5", "username": "admin"}
	first := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"hostname": "srv01", "ip": "10.0.0.5", "username": "admin", "password": "moved-pw",
	}).Data
	name := first["name"].(string)
	mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{"identifier": name, "ip": "10.0.0.6", "password": "moved-pw"})
	credWantStatus(t, b, s, logical.ReadOperation, "lookup", old, http.StatusNotFound)

	again := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"hostname": "srv01", "ip": "10.0.0.5", "username": "admin", "notes": "the old address",
	}).Data
	if again["created"] != true || again["name"] == name || !validName(again["name"].(string)) {
		t.Fatalf("upsert by the old triple: %v (moved account %s)", again, name)
	}
	moved := deviceAccountAt(t, b, s, name)
	if _, notes := moved.Values.Get("notes"); !moved.hasDeviceTriple("srv01", "10.0.0.6", "admin") || notes || moved.Values.Str("password") != "moved-pw" {
		t.Fatalf("the moved account was rewritten: %v", moved.Values)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "lookup", old).Data["name"]; got != again["name"] {
		t.Fatalf("lookup of the old triple = %v, want the new account %v", got, again["name"])
	}
}

// TestDeviceIndexEntryNamingAnotherAccountRedirectsNothing: an index entry that names
// an account whose stored triple is not the entry's (left stale, or a colliding hash)
// or a credential of another type leads neither a lookup, nor an upsert, nor a
// conflict check to it.
func TestDeviceIndexEntryNamingAnotherAccountRedirectsNothing(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ctx := context.Background()
	mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
		"identifier": "victim", "hostname": "other", "ip": "10.9.9.9", "username": "root", "password": "victim-pw",
	})
	mustOK(t, b, s, logical.CreateOperation, "credentials/plain", credWithType("basic", exampleValues(t, "basic", "STALEINDEX")))
	for i, target := range []string{"victim", "plain"} {
		triple := map[string]any{"hostname": "srv0" + fmt.Sprint(i), "ip": "10.0.0.5", "username": "admin"}
		key := deviceKey(triple["hostname"].(string), "10.0.0.5", "admin")
		if err := s.Put(ctx, &logical.StorageEntry{Key: key, Value: []byte(target)}); err != nil {
			t.Fatal(err)
		}
		before := credStorageSnapshot(t, s)[credentialPrefix+target]
		credWantStatus(t, b, s, logical.ReadOperation, "lookup", triple, http.StatusNotFound)
		data := maps.Clone(triple)
		data["notes"] = "upsert " + target
		got := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", data).Data
		if got["created"] != true || got["name"] == target {
			t.Fatalf("upsert through an entry naming %s: %v", target, got)
		}
		if after := credStorageSnapshot(t, s)[credentialPrefix+target]; after != before {
			t.Fatalf("the upsert rewrote %s", target)
		}
		if found := mustOK(t, b, s, logical.ReadOperation, "lookup", triple).Data["name"]; found != got["name"] {
			t.Fatalf("lookup after the upsert = %v, want %v", found, got["name"])
		}
	}
	// Nor does such an entry block creating the account it does not describe.
	key := deviceKey("srv09", "10.0.0.5", "admin")
	if err := s.Put(ctx, &logical.StorageEntry{Key: key, Value: []byte("victim")}); err != nil {
		t.Fatal(err)
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/by-path", map[string]any{
		"type": "device_account", "hostname": "srv09", "ip": "10.0.0.5", "username": "admin",
	})
	if v := deviceAccountAt(t, b, s, "victim"); !v.hasDeviceTriple("other", "10.9.9.9", "root") {
		t.Fatalf("victim changed: %v", v.Values)
	}
}

// TestDeviceAccountDerivedNamesFollowTheNameRule: the names the engine derives for
// accounts created without an identifier are valid credential names, whatever the
// username ('..' included), and one taken by another credential is passed over.
func TestDeviceAccountDerivedNamesFollowTheNameRule(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for _, username := range []string{"a..b", "..", "...x", "a/../b", "Ünïcode user", strings.Repeat("long.", 40), "-x-", "_"} {
		for _, n := range deviceAccountNames("srv01", username, "10.0.0.5") {
			if !validName(n) {
				t.Errorf("username %q: derived name %q breaks the name rule", username, n)
			}
		}
		got := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
			"hostname": "srv01", "ip": "10.0.0.5", "username": username,
		}).Data
		if name, _ := got["name"].(string); got["created"] != true || !validName(name) {
			t.Errorf("username %q: %v", username, got)
		}
	}
	// The first derived name taken by a credential of another type: the next is used.
	names := deviceAccountNames("srv02", "admin", "10.0.0.5")
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+names[0], credWithType("basic", exampleValues(t, "basic", "DERIVEDTAKEN")))
	got := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{"hostname": "srv02", "ip": "10.0.0.5", "username": "admin"}).Data
	if got["created"] != true || got["name"] != names[1] {
		t.Fatalf("with %s taken: %v", names[0], got)
	}
	if c := deviceAccountAt(t, b, s, names[0]); c.Type != "basic" {
		t.Fatalf("%s became %s", names[0], c.Type)
	}
}

// TestDeviceAccountsConcurrentMoveAndOldTriple: an upsert by the old triple racing a
// move away either updates the account before it moves or creates another one; it
// never moves the account back.
func TestDeviceAccountsConcurrentMoveAndOldTriple(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for i := range 100 {
		host := fmt.Sprintf("race%d", i)
		name := mustOK(t, b, s, logical.UpdateOperation, "device-accounts", map[string]any{
			"hostname": host, "ip": "10.0.0.1", "username": "u",
		}).Data["name"].(string)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, data := range []map[string]any{
			{"identifier": name, "ip": "10.0.0.2"},
			{"hostname": host, "ip": "10.0.0.1", "username": "u", "notes": "by the old triple"},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := b.HandleRequest(context.Background(), &logical.Request{
					Operation: logical.UpdateOperation, Path: "device-accounts", Data: data, Storage: s,
				})
				if err != nil || resp.IsError() {
					t.Errorf("upsert %v: %v %v", data, resp, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if c := deviceAccountAt(t, b, s, name); !c.hasDeviceTriple(host, "10.0.0.2", "u") {
			t.Fatalf("round %d: the moved account was moved back: %v", i, c.Values)
		}
	}
}

// meetingStorage holds the first Get of each device-index key, once read, until a
// second one arrives, or until another goroutine waits for a device-index lock (the fixed code
// lets only one writer in at a time, so no second Get can come). Either way the two
// writers are known to overlap: the check-then-claim race is forced where it exists,
// and shown to be shut where it does not. unforced counts holds that saw neither.
type meetingStorage struct {
	logical.Storage
	mu       sync.Mutex
	held     map[string]bool // keys whose first Get was held: later Gets pass
	waiting  chan struct{}
	met      atomic.Int32 // holds ended by a second Get
	locked   atomic.Int32 // holds ended by a writer waiting for the lock
	unforced atomic.Int32
}

func (m *meetingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := m.Storage.Get(ctx, key) // read first, then wait: both readers see the same
	if strings.HasPrefix(key, deviceIndexPrefix) {
		m.mu.Lock()
		if m.waiting == nil && m.held[key] {
			m.mu.Unlock() // a writer after the race, alone: nothing to meet
			return entry, err
		}
		if m.waiting == nil {
			if m.held == nil {
				m.held = map[string]bool{}
			}
			m.held[key] = true
			ch := make(chan struct{})
			m.waiting = ch
			m.mu.Unlock()
			m.hold(ch)
		} else {
			close(m.waiting)
			m.waiting = nil
			m.mu.Unlock()
		}
	}
	return entry, err
}

// hold waits for the second Get (ch closed) or a writer blocked on a device lock.
func (m *meetingStorage) hold(ch chan struct{}) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-ch:
			m.met.Add(1)
			return
		case <-time.After(time.Millisecond): // polling the goroutines' state
		}
		blocked := waitingForDeviceLock()
		if blocked || time.Now().After(deadline) { // the deadline is a failure bound only
			m.mu.Lock()
			if m.waiting == ch {
				m.waiting = nil
			}
			m.mu.Unlock()
			if blocked {
				m.locked.Add(1)
			} else {
				m.unforced.Add(1)
			}
			return
		}
	}
}

// waitingForDeviceLock reports whether a goroutine is blocked taking a device-index
// lock.
func waitingForDeviceLock() bool {
	for _, g := range allGoroutines() {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "Lock") && strings.Contains(g, "backend.(*deviceIndex).lock(") {
			return true
		}
	}
	return false
}

// allGoroutines is the stack of every goroutine of the process.
func allGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestDeviceTripleClaimedOnce: two credentials created at once with one hostname + ip +
// username: exactly one gets it.
//
// Not parallel: meetingStorage looks at every goroutine for one waiting for a device
// lock, which another test's could be.
func TestDeviceTripleClaimedOnce(t *testing.T) {
	s := &meetingStorage{Storage: &logical.InmemStorage{}}
	b, _, _ := newBackendWith(t, backendOptions{storage: s})
	for i := range 5 {
		host := fmt.Sprintf("claim%d", i)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var won atomic.Int32
		for _, name := range []string{host + "-a", host + "-b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := b.HandleRequest(context.Background(), &logical.Request{
					Operation: logical.CreateOperation, Path: "credentials/" + name, Storage: s,
					Data: map[string]any{"type": "device_account", "hostname": host, "ip": "10.0.0.1", "username": "u"},
				})
				if err == nil && !resp.IsError() {
					won.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("round %d: %d credentials got the same triple", i, won.Load())
		}
	}
	t.Logf("holds ended by a second read: %d, by a writer at the lock: %d", s.met.Load(), s.locked.Load())
	if n := s.unforced.Load(); n != 0 || s.met.Load()+s.locked.Load() < 5 {
		t.Fatalf("the two writers overlapped in %d of 5 rounds (%d met at the index, %d at its lock); %d holds saw neither",
			s.met.Load()+s.locked.Load(), s.met.Load(), s.locked.Load(), n)
	}
}

// TestDeviceAccountsChangeOnlyDeviceAccounts: whoever may write device-accounts
// changes device accounts and their index entries, nothing else: not a credential of
// another type (by identifier, by an index entry or by a derived name), not config,
// not a field the type does not have. lookup shows the management view, no secret.
func TestDeviceAccountsChangeOnlyDeviceAccounts(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ctx := context.Background()
	mustOK(t, b, s, logical.CreateOperation, "credentials/tok", credWithType("bearer", exampleValues(t, "bearer", "ONLYDEVICE")))
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": 100})
	derived := deviceAccountNames("srv03", "admin", "10.0.0.3")[0]
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+derived, credWithType("basic", exampleValues(t, "basic", "ONLYDEVICE")))
	if err := s.Put(ctx, &logical.StorageEntry{Key: deviceKey("srv04", "10.0.0.4", "admin"), Value: []byte("tok")}); err != nil {
		t.Fatal(err)
	}
	before := credStorageSnapshot(t, s)

	for _, data := range []map[string]any{
		{"identifier": "tok", "hostname": "h", "ip": "10.0.0.1", "username": "u"},
		{"identifier": "tok", "notes": "x"},
		{"identifier": derived, "notes": "x"},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "type": "bearer"},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "token": "x"},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "url": "https://example.com"},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "client_secret": "x"},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "log_size": 5},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "notify_credential": "tok"},
		{"hostname": "h", "ip": "10.0.0.1", "username": "u", "name": "tok"},
	} {
		if resp := call(t, b, s, logical.UpdateOperation, "device-accounts", data); resp == nil || !resp.IsError() {
			t.Errorf("device-accounts %v was accepted: %v", data, resp)
		}
	}
	if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
		t.Fatal("a refused device-accounts write changed storage")
	}
	made := map[string]bool{}
	for _, data := range []map[string]any{
		{"hostname": "srv03", "ip": "10.0.0.3", "username": "admin", "password": "device-pw-3"}, // its derived name is taken
		{"hostname": "srv04", "ip": "10.0.0.4", "username": "admin", "password": "device-pw-4"}, // its index entry names tok
		{"identifier": "dev5", "hostname": "srv05", "ip": "10.0.0.5", "username": "admin", "password": "device-pw-5"},
		{"identifier": "dev5", "ip": "10.0.0.6", "password": "device-pw-5"},
	} {
		made[mustOK(t, b, s, logical.UpdateOperation, "device-accounts", data).Data["name"].(string)] = true
	}
	after := credStorageSnapshot(t, s)
	for k, v := range after {
		if before[k] == v {
			continue
		}
		name, isCred := strings.CutPrefix(k, credentialPrefix)
		switch {
		case strings.HasPrefix(k, deviceIndexPrefix):
		case isCred && made[name] && deviceAccountAt(t, b, s, name).Type == deviceAccountType:
		default:
			t.Errorf("device-accounts changed %s", k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok && !strings.HasPrefix(k, deviceIndexPrefix) {
			t.Errorf("device-accounts deleted %s", k)
		}
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["log_size"]; got != 100 {
		t.Errorf("config log_size = %v", got)
	}
	found := mustOK(t, b, s, logical.ReadOperation, "lookup", map[string]any{"hostname": "srv04", "ip": "10.0.0.4", "username": "admin"}).Data
	if found["type"] != deviceAccountType || !slices.Equal(found["secret_fields"].([]string), []string{"password"}) {
		t.Fatalf("lookup: %v", found)
	}
	for k, v := range found {
		if s, _ := v.(string); strings.Contains(s, "device-pw") {
			t.Errorf("lookup shows the password in %s", k)
		}
	}
}
