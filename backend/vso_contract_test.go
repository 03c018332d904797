package backend

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// vsoView is what Vault Secrets Operator's VaultDynamicSecret reconciler (with
// allowStaticCreds: true) takes from a read, decoded as it decodes it: the answer
// travels as JSON and Vault's API client decodes numbers as json.Number. VSO reads
// last_vault_rotation with time.Parse(time.RFC3339Nano, v.(string)) and keeps its
// Unix seconds, rotation_period and ttl with json.Number.Int64, and treats the
// secret as rotating only when last_vault_rotation > 0 and rotation_period >= 1;
// otherwise it syncs once and never again.
type vsoView struct {
	lastRotation time.Time
	period, ttl  int64
}

// vsoRead reads access/name and decodes the answer as VSO does, failing the test on
// any field missing or of another JSON type.
func vsoRead(t *testing.T, b *integrationsBackend, s logical.Storage, name string) (vsoView, map[string]any) {
	t.Helper()
	resp := accessOK(t, b, s, name, nil)
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	var v vsoView
	last, ok := data["last_vault_rotation"].(string)
	if !ok {
		t.Fatalf("last_vault_rotation is %T, want a JSON string", data["last_vault_rotation"])
	}
	if v.lastRotation, err = time.Parse(time.RFC3339Nano, last); err != nil {
		t.Fatalf("last_vault_rotation %q does not parse as RFC 3339 with nanoseconds: %v", last, err)
	}
	if v.lastRotation.Location() != time.UTC {
		t.Fatalf("last_vault_rotation %q is not in UTC", last)
	}
	for key, dst := range map[string]*int64{"rotation_period": &v.period, "ttl": &v.ttl} {
		n, ok := data[key].(json.Number)
		if !ok {
			t.Fatalf("%s is %T, want a JSON number", key, data[key])
		}
		if *dst, err = n.Int64(); err != nil {
			t.Fatalf("%s %q is not an integer: %v", key, n, err)
		}
		if *dst < 1 {
			t.Fatalf("%s is %d, want at least 1 (VSO stops re-syncing below)", key, *dst)
		}
	}
	return v, data
}

// The contract Vault Secrets Operator reads an OAuth access/ answer by, and the two
// schedules it computes from it (hashicorp/vault-secrets-operator,
// controllers/vaultdynamicsecret_controller.go):
//
//   - after each sync: computePostSyncHorizon, ttl (+0.5 s and jitter) from the sync,
//     i.e. read time + ttl;
//   - after its own restart: computeRotationTime, the ttl it stored from its last
//     read added to last_vault_rotation (Unix seconds).
//
// ttl counts from the read (it is also what Vault Agent waits, from its read), so the
// first lands on the hand-over point H (when this reader would be handed another
// token: the opening of the refresh window, 47 minutes into an hour-long token) and
// the second on H minus the token's age at the read: early by that age, never late.
// The early sync reads the same token (VSO's MAC of the data is unchanged, nothing
// is rewritten or restarted) and its ttl lands on H again.
func TestVSOStaticCredsContract(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "body"))
	// Issued at T, with nanoseconds, which last_vault_rotation must keep.
	clock.Advance(123456789 * time.Nanosecond)
	issued := clock.Now()
	first, data := vsoRead(t, b, s, "cc")
	if !first.lastRotation.Equal(issued) {
		t.Fatalf("last_vault_rotation %s, want the issue time %s", first.lastRotation.Format(time.RFC3339Nano), issued.Format(time.RFC3339Nano))
	}
	if first.period != 3600 {
		t.Fatalf("rotation_period %d, want the token's lifetime 3600", first.period)
	}
	// The window opening: 47 minutes after issue, earlier by the token's own spread
	// (token_timing.go).
	handOver := refreshAt(storedTokenOf(t, s, "cc"), time.Minute)
	if early := issued.Add(47 * time.Minute).Sub(handOver); early < 0 || early >= 3*time.Minute {
		t.Fatalf("the window opens %v before 47 minutes after issue, want [0, 3m)", early)
	}
	token := data["access_token"]

	// Read at T+x: VSO's next sync (read + ttl) is H; after a restart it computes
	// last_vault_rotation + ttl = H - x.
	const x = 10 * time.Minute
	clock.Advance(x)
	read := clock.Now()
	v, data := vsoRead(t, b, s, "cc")
	if data["access_token"] != token || !v.lastRotation.Equal(issued) {
		t.Fatalf("the read at T+%s was served another token or issue time (%s)", x, v.lastRotation)
	}
	ttl := time.Duration(v.ttl) * time.Second
	// ttl is whole seconds, rounded down: VSO syncs at the hand-over point or less than
	// a second before it. (Comparing truncated seconds failed whenever the hand-over
	// point's fraction of a second, which the token's spread makes random, was below
	// the read's: about one run in eight.)
	if next := read.Add(ttl); next.After(handOver) || handOver.Sub(next) >= time.Second {
		t.Fatalf("read + ttl = %s, want the hand-over point %s or less than a second before it", next, handOver)
	}
	restart := time.Unix(v.lastRotation.Unix(), 0).UTC().Add(ttl)
	if restart.After(handOver) {
		t.Fatalf("after a restart VSO would sync at %s, after the hand-over point %s: late", restart, handOver)
	}
	// last_vault_rotation is read in whole seconds and ttl rounds down: each loses
	// under a second, so VSO syncs early by the token's age at the read plus under 2 s.
	if early := handOver.Sub(restart); early < x || early >= x+2*time.Second {
		t.Fatalf("after a restart VSO syncs %s before the hand-over point, want the token's age at the read, %s, plus under 2 s", early, x)
	}

	// VSO restarted, syncs at last_vault_rotation + ttl: the same token, and a ttl
	// that lands on H again.
	clock.Advance(restart.Sub(clock.Now()))
	v, data = vsoRead(t, b, s, "cc")
	if data["access_token"] != token || !v.lastRotation.Equal(issued) {
		t.Fatal("the early sync after a restart was served another token")
	}
	if next := clock.Now().Add(time.Duration(v.ttl) * time.Second); next.After(handOver) || handOver.Sub(next) >= time.Second {
		t.Fatalf("early sync: read + ttl = %s, want the hand-over point %s or less than a second before it", next, handOver)
	}

	// Past H the refresh starts; the answer after it names the new token's issue time.
	clock.Advance(handOver.Sub(clock.Now()) + time.Second)
	refreshed := clock.Now()
	accessOK(t, b, s, "cc", nil)
	settle(b)
	v, data = vsoRead(t, b, s, "cc")
	if data["access_token"] == token {
		t.Fatal("no new token after the hand-over point")
	}
	if !v.lastRotation.Equal(refreshed) {
		t.Fatalf("after the refresh last_vault_rotation is %s, want the new token's issue time %s", v.lastRotation, refreshed)
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests, want 2", n)
	}
}

// External Secrets Operator reads every refreshInterval, not by ttl. The README's rule,
// at most a tenth of the token lifetime, keeps the token a periodic reader holds valid
// until its next read, over several lifetimes; 15 minutes with hour-long tokens does
// not (the first read in the refresh window is answered with the current token, which
// has 13 minutes or less left).
func TestPeriodicReaderRefreshInterval(t *testing.T) {
	t.Parallel()
	held := func(interval time.Duration) (expiredAt time.Time, ok bool) {
		p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
		b, s, clock := newBackendWith(t, backendOptions{initialize: true})
		mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "body"))
		for range int(4 * time.Hour / interval) {
			resp := accessOK(t, b, s, "cc", nil)
			settle(b)
			expiry := mustParseTime(t, resp.Data["expires_at"].(string))
			clock.Advance(interval)
			if !expiry.After(clock.Now()) {
				return expiry, false
			}
		}
		return time.Time{}, true
	}
	if at, ok := held(6 * time.Minute); !ok {
		t.Fatalf("read every 6 minutes: the held token expired at %s before the next read", at)
	}
	if _, ok := held(15 * time.Minute); ok {
		t.Fatal("read every 15 minutes: the held token never expired before the next read; the README's rule would be stricter than needed")
	}
}

func mustParseTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}
