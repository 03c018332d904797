package backend

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// The stored-format tests of every record kind, version by version: an entry as each
// past version wrote it decodes to what the current version would hold for it, and
// is written back in the current version. Credentials of every type are in the golden
// files (TestStoredCredentialsReadBackUnchanged); the other kinds' entries are here.

// putRaw stores a raw entry, as an older version wrote it.
func putRaw(t *testing.T, s logical.Storage, key, value string) {
	t.Helper()
	if err := s.Put(context.Background(), &logical.StorageEntry{Key: key, Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
}

// encoded is v encoded as a store writes it (without the stamp: v is decoded, so
// already current).
func encoded(t *testing.T, v any) string {
	t.Helper()
	e, err := logical.StorageEntryJSON("k", v)
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value)
}

// jsonObject decodes a JSON object.
func jsonObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCredentialRecordVersions: what the upgrade of a credential changes, and nothing
// else. The golden entries of version 0 (62069f0) and their current form differ only
// in record_version, the settings' version and a certificate's expiry in its state;
// an entry as 0.1.0 wrote it (the current form without record_version) decodes to
// the same credential; static values stored before their field had a default read
// with it, on access/ too; the indexes' partial decode gets the certificate expiry.
func TestCredentialRecordVersions(t *testing.T) {
	t.Parallel()
	current := goldenEntries(t, "testdata/credentials-v1.json")
	for name, entry := range goldenEntries(t, "testdata/credentials-62069f0.json") {
		was, now := jsonObject(t, entry), jsonObject(t, current[name])
		if now["record_version"] != float64(credentialRecordVersion) || now["version"] != float64(1) {
			t.Fatalf("%s: current form %v", name, current[name])
		}
		nowState := now["state"].(map[string]any)
		if _, cert := was["not_after"]; cert != (nowState["upstream"] != nil) {
			t.Fatalf("%s: upstream %v, not_after %v", name, nowState["upstream"], was["not_after"])
		}
		for _, m := range []map[string]any{was, now} {
			delete(m, "record_version")
			delete(m, "version")
		}
		delete(nowState, "upstream")
		if !reflect.DeepEqual(was, now) {
			t.Fatalf("%s: the upgrade changed more than its rules say:\n%v\n%v", name, was, now)
		}

		// As 0.1.0 wrote it: the current form without its record version.
		old := jsonObject(t, current[name])
		delete(old, "record_version")
		raw, _ := json.Marshal(old)
		if c := decodeStored(t, name, string(raw)); !reflect.DeepEqual(c, decodeStored(t, name, current[name])) {
			t.Fatalf("%s: an entry as 0.1.0 wrote it decodes differently", name)
		}
	}

	// Stored before header_prefix and header_name had defaults.
	const stamp = `"created_at":"2026-01-01T12:00:00Z","updated_at":"2026-01-01T12:00:00Z"`
	const state = `"state":{"status":"active","created_at":"2026-01-01T12:00:00Z","activity_at":"2026-01-01T12:00:00Z"}`
	for name, tc := range map[string]struct{ v0, now string }{
		"bearer": {
			`{"name":"bearer","type":"bearer","values":{"token":"tok"},` + stamp + `,` + state + `}`,
			`{"name":"bearer","type":"bearer","values":{"header_prefix":"Bearer","token":"tok"},` + stamp + `,"version":1,` + state + `,"record_version":1}` + "\n",
		},
		"bearer-empty": {
			`{"name":"bearer-empty","type":"bearer","values":{"header_prefix":"","token":"tok"},` + stamp + `,` + state + `}`,
			`{"name":"bearer-empty","type":"bearer","values":{"header_prefix":"Bearer","token":"tok"},` + stamp + `,"version":1,` + state + `,"record_version":1}` + "\n",
		},
		"apikey": {
			`{"name":"apikey","type":"api_key","values":{"key":"k1"},` + stamp + `,` + state + `}`,
			`{"name":"apikey","type":"api_key","values":{"header_name":"X-API-Key","key":"k1"},` + stamp + `,"version":1,` + state + `,"record_version":1}` + "\n",
		},
	} {
		c := decodeStored(t, name, tc.v0)
		reencoded(t, name, c, tc.now)
		if !reflect.DeepEqual(c, decodeStored(t, name, tc.now)) {
			t.Fatalf("%s: decodes differently from its current form", name)
		}
	}
	b, s, _ := newTestBackend(t)
	putRaw(t, s, credentialPrefix+"old-bearer", `{"name":"old-bearer","type":"bearer","values":{"token":"tok"},`+stamp+`,`+state+`}`)
	putRaw(t, s, credentialPrefix+"old-key", `{"name":"old-key","type":"api_key","values":{"key":"k1"},`+stamp+`,`+state+`}`)
	if got := mustOK(t, b, s, logical.ReadOperation, "access/old-bearer", nil).Data["authorization"]; got != "Bearer tok" {
		t.Errorf("access/ of a bearer stored without header_prefix: authorization %v", got)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "access/old-key", nil).Data["header_name"]; got != "X-API-Key" {
		t.Errorf("access/ of an api_key stored without header_name: header_name %v", got)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "credentials/old-bearer", nil).Data["header_prefix"]; got != "Bearer" {
		t.Errorf("read of a bearer stored without header_prefix: header_prefix %v", got)
	}

	// The indexes read only part of an entry: the same rule applies to it.
	putRaw(t, s, credentialPrefix+"g-certificate", goldenEntries(t, "testdata/credentials-62069f0.json")["g-certificate"])
	ic, err := b.credentials.readIndexed(context.Background(), s, "g-certificate")
	if err != nil || ic == nil {
		t.Fatal(ic, err)
	}
	want := []lifecycle.Upstream{{Field: lifecycle.UpstreamCertificate, At: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	if !reflect.DeepEqual(ic.State.Upstream, want) || ic.Record != credentialRecordVersion {
		t.Fatalf("indexed part of a version 0 certificate: upstream %+v, record %d", ic.State.Upstream, ic.Record)
	}
}

// TestTokenRecordVersions: token states as each version stored them. One stored
// before the destination fingerprint, or before the client's, matches the
// credential's current one; since version 1 a fingerprint matches only itself, and
// "" only a client-less type's "".
func TestTokenRecordVersions(t *testing.T) {
	t.Parallel()
	const tok = `"access_token":"at","token_type":"Bearer","refresh_token":"rt","expiry":"2026-01-01T13:00:00Z","issued_at":"2026-01-01T12:00:00Z"`
	for _, tc := range []struct {
		name, stored, now         string
		anyDestination, anyClient bool
	}{
		{"before fingerprints", `{` + tok + `}`, `{` + tok + `,"record_version":1}`, true, true},
		{"before the client's", `{` + tok + `,"destination":"d1"}`, `{` + tok + `,"destination":"d1","record_version":1}`, false, true},
		{"as 0.1.0 stored it", `{` + tok + `,"destination":"d1","client":"c1"}`, `{` + tok + `,"destination":"d1","client":"c1","record_version":1}`, false, false},
		{"version 1", `{` + tok + `,"destination":"d1","client":"c1","record_version":1}`, `{` + tok + `,"destination":"d1","client":"c1","record_version":1}`, false, false},
		{"version 1, a client-less type", `{` + tok + `,"destination":"d1","record_version":1}`, `{` + tok + `,"destination":"d1","record_version":1}`, false, false},
	} {
		b, s, _ := newTestBackend(t)
		putRaw(t, s, tokenPrefix+"c", tc.stored)
		st, err := b.tokens.cached(context.Background(), s, "c")
		if err != nil || st == nil {
			t.Fatalf("%s: %v %v", tc.name, st, err)
		}
		if st.anyDestination != tc.anyDestination || st.anyClient != tc.anyClient || st.Record != tokenRecordVersion {
			t.Errorf("%s: any destination %v, any client %v, record %d", tc.name, st.anyDestination, st.anyClient, st.Record)
		}
		if got := encoded(t, st); got != tc.now+"\n" {
			t.Errorf("%s: written back as\n%s\nwant\n%s", tc.name, got, tc.now)
		}
		dest, client := st.Destination, st.Client
		if !st.learntFor(dest, client) {
			t.Errorf("%s: not learnt for its own fingerprints", tc.name)
		}
		if st.learntFor("d2", client) != tc.anyDestination || st.learntFor(dest, "c2") != tc.anyClient {
			t.Errorf("%s: learnt for another destination %v, another client %v", tc.name, st.learntFor("d2", client), st.learntFor(dest, "c2"))
		}
	}
}

// TestConfigRecordVersions: a config stored before the fields added since (and with
// a log_size above today's cap) reads as the defaults with the cap; the next write
// stores every field and the current version, which reads back the same.
func TestConfigRecordVersions(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	putRaw(t, s, configPath, `{"suspend_after":7776000000000000,"purge_after":15552000000000000,"warn_before":[1209600000000000],"expiry_buffer":60000000000,"request_timeout":30000000000,"log_size":100000,"usage_flush_interval":10000000000,"default_token_lifetime":3600000000000}`)
	b.invalidate(context.Background(), configPath)
	c, err := b.loadConfig(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.SuspendAfter, want.PurgeAfter, want.WarnBefore = 90*day, 180*day, []time.Duration{14 * day}
	want.LogSize, want.Record = maxLogSize, configRecordVersion
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("a version 0 config reads as\n%+v\nwant\n%+v", c, want)
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": 7})
	e, err := s.Get(context.Background(), configPath)
	if err != nil || e == nil {
		t.Fatal(e, err)
	}
	stored := jsonObject(t, string(e.Value))
	for _, k := range []string{"refresh_ahead", "keepalive_interval", "denied_networks", "allowed_networks"} {
		if _, ok := stored[k]; !ok {
			t.Errorf("the current version does not store %s: %s", k, e.Value)
		}
	}
	if stored["record_version"] != float64(configRecordVersion) {
		t.Errorf("stored %s", e.Value)
	}
	b.invalidate(context.Background(), configPath)
	again, err := b.loadConfig(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want.LogSize = 7
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("the current version reads back as\n%+v\nwant\n%+v", again, want)
	}
}

// TestUsageRecordVersions: a log stored before events were bounded reads bounded, and
// a flush writes it back bounded in the current version.
func TestUsageRecordVersions(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	lcCreateBasic(t, b, s, "svc", nil)
	huge := strings.Repeat("<", 10000)
	old := usage.Usage{Count: 3, Events: []usage.Event{
		{Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.FixedZone("x", 3600)), Event: usage.EventAccess, Status: usage.StatusSuccess, Integration: huge, Detail: huge},
		{Time: time.Date(2026, 1, 1, 12, 0, 1, 0, time.UTC), Event: usage.EventAccess, Status: usage.StatusSuccess, Integration: "etl"},
	}}
	putRaw(t, s, usagePrefix+"svc", encoded(t, old))
	u := lcStoredUsage(t, s, "svc")
	want := old
	want.Events = []usage.Event{usage.Bound(old.Events[0]), old.Events[1]}
	if !reflect.DeepEqual(*u, want) {
		t.Fatalf("a version 0 log reads as %+v", u)
	}
	mustOK(t, b, s, logical.ReadOperation, "access/svc", nil)
	lcFlush(t, b, s)
	e, err := s.Get(context.Background(), usagePrefix+"svc")
	if err != nil || e == nil {
		t.Fatal(e, err)
	}
	stored := jsonObject(t, string(e.Value))
	if stored["record_version"] != float64(usageRecordVersion) || strings.Contains(string(e.Value), huge) {
		t.Fatalf("the flush stored %.300s", e.Value)
	}
	// With the flushed events (created, access) between them, in time order.
	if now := lcStoredUsage(t, s, "svc"); len(now.Events) != 4 || now.Events[0] != want.Events[0] || now.Events[3] != want.Events[1] {
		t.Fatalf("the current version reads back as %+v", now.Events)
	}
}

// TestAuthorizationRecordVersions: a pending authorization stored before versions
// reads as it was stored, and is stored in the current version.
func TestAuthorizationRecordVersions(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	putRaw(t, s, authorizationPrefix+"ac", `{"state":"st","verifier":"ver","redirect_url":"https://vault.example/cb","expires_at":"2026-01-01T12:10:00Z"}`)
	p, err := b.authorizations.load(context.Background(), s, "ac")
	if err != nil || p == nil {
		t.Fatal(p, err)
	}
	want := pendingAuthorization{State: "st", Verifier: "ver", RedirectURL: "https://vault.example/cb", ExpiresAt: time.Date(2026, 1, 1, 12, 10, 0, 0, time.UTC), Record: authorizationRecordVersion}
	if *p != want {
		t.Fatalf("a version 0 authorization reads as %+v", p)
	}
	held, unlock := b.credentials.lock("ac")
	err = b.authorizations.put(context.Background(), s, held, pendingAuthorization{State: "st2", Verifier: "v2", RedirectURL: "https://vault.example/cb", ExpiresAt: want.ExpiresAt})
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(context.Background(), authorizationPrefix+"ac")
	if err != nil || e == nil {
		t.Fatal(e, err)
	}
	if got := jsonObject(t, string(e.Value)); got["record_version"] != float64(authorizationRecordVersion) {
		t.Fatalf("stored %s", e.Value)
	}
}

// TestEveryStoreWritesTheCurrentVersion: after an OAuth credential's life through
// the API (its config, create, consent, token, access, flush), every JSON entry of a
// versioned kind in storage carries its kind's current version.
func TestEveryStoreWritesTheCurrentVersion(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	b, s, _ := oauthBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/ac", authCodeFields(p))
	start := startAuthorization(t, b, s, "ac")
	pending := map[string]int{}
	collect := func() {
		for prefix, v := range map[string]int{credentialPrefix: credentialRecordVersion, tokenPrefix: tokenRecordVersion,
			usagePrefix: usageRecordVersion, authorizationPrefix: authorizationRecordVersion} {
			keys, err := s.List(context.Background(), prefix)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				pending[prefix+k] = v
			}
		}
		pending[configPath] = configRecordVersion
	}
	collect()
	if _, ok := pending[authorizationPrefix+"ac"]; !ok {
		t.Fatal("no pending authorization stored")
	}
	check := func() {
		for key, v := range pending {
			e, err := s.Get(context.Background(), key)
			if err != nil || e == nil {
				t.Fatalf("%s: %v %v", key, e, err)
			}
			if got := jsonObject(t, string(e.Value))["record_version"]; got != float64(v) {
				t.Errorf("%s stored with record_version %v, want %d", key, got, v)
			}
		}
	}
	check()
	if status, page := callback(t, b, s, p.consent(t, start["auth_url"].(string)).Query()); status != 200 {
		t.Fatalf("callback: %d %s", status, page)
	}
	accessOK(t, b, s, "ac", nil)
	lcFlush(t, b, s)
	clear(pending)
	collect()
	for _, k := range []string{tokenPrefix + "ac", usagePrefix + "ac"} {
		if _, ok := pending[k]; !ok {
			t.Fatalf("%s not stored; keys %v", k, slices.Sorted(maps.Keys(pending)))
		}
	}
	check()
}
