package backend

import (
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

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
