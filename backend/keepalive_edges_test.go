package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// heldForKeepAlive reports whether the keep-alive schedule holds name's refresh token.
func heldForKeepAlive(b *integrationsBackend, name string) bool {
	k := b.tokens.kept
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.used[name]
	return ok
}

// beforeRestart is a mount on storage (fresh when nil) whose refresh tokens for names
// were imported by a backend since cleaned up, as before a restart: the provider and
// the clock, for the backend the test starts next.
func beforeRestart(t *testing.T, storage logical.Storage, names ...string) (*testProvider, logical.Storage, *testClock) {
	t.Helper()
	p := newTestProvider(t, providerConfig{})
	if storage == nil {
		storage = logical.NewStorageView(&logical.InmemStorage{}, "")
	}
	clock := newTestClock()
	b1, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	for _, n := range names {
		importCredential(t, b1, storage, p, n)
	}
	b1.Cleanup(t.Context())
	return p, storage, clock
}

// One token entry that cannot be decoded is skipped for keep-alive (logged by name, its
// content never) and does not stop the scan: the index is complete, the rest held.
func TestKeepAliveScanSkipsUndecodableToken(t *testing.T) {
	t.Parallel()
	_, storage, clock := beforeRestart(t, nil, "broken", "fine")
	const garbage = `{"refresh_token":"secret-looking-garbage`
	if err := storage.Put(t.Context(), &logical.StorageEntry{Key: tokenPrefix + "broken", Value: []byte(garbage)}); err != nil {
		t.Fatal(err)
	}
	logs := &lcLogBuffer{}
	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, logs: logs, initialize: true})
	cfg, err := b2.loadConfig(t.Context(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if !b2.indexComplete(cfg) {
		t.Fatal("one undecodable token entry kept the index incomplete")
	}
	if heldForKeepAlive(b2, "broken") || !heldForKeepAlive(b2, "fine") {
		t.Errorf("held for keep-alive: broken %v, fine %v; want only the decodable one", heldForKeepAlive(b2, "broken"), heldForKeepAlive(b2, "fine"))
	}
	out := logs.String()
	if !strings.Contains(out, "broken") || strings.Contains(out, "secret-looking") {
		t.Errorf("want a log line naming the credential and never the entry's content; got %q", out)
	}
	scans := b2.indexScan.Starts()
	sweepNow(t, b2, storage)
	waitIndexBuilt(t, b2)
	if got := b2.indexScan.Starts(); got != scans {
		t.Errorf("a sweep after the scan rescanned (%d scans, was %d)", got, scans)
	}
}

// The scan reads tokens without filling or reordering the bounded token cache: an index
// build over a large mount must not evict the hot working set.
func TestKeepAliveScanLeavesTokenCacheAlone(t *testing.T) {
	t.Parallel()
	_, storage, clock := beforeRestart(t, nil, "a", "b", "c")
	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	// "a" is hot (cached); the cache has room for two only.
	b2.tokens.cache = newGenCacheSized[*storedToken](2)
	if _, err := b2.tokens.cached(t.Context(), storage, "a"); err != nil {
		t.Fatal(err)
	}
	if err := b2.buildIndex(t.Context(), storage); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if !heldForKeepAlive(b2, n) {
			t.Errorf("%s not held for keep-alive after the scan", n)
		}
	}
	c := b2.tokens.cache
	c.mu.Lock()
	keys := c.m.Keys()
	c.mu.Unlock()
	if len(keys) != 1 || keys[0] != "a" {
		t.Errorf("token cache after the scan holds %v, want only the hot [a]", keys)
	}
}

// hookStorage calls onGet before each Get.
type hookStorage struct {
	logical.Storage
	onGet func(key string)
}

func (h *hookStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if h.onGet != nil {
		h.onGet(key)
	}
	return h.Storage.Get(ctx, key)
}

// A credential whose shard keeps changing under the scan is indexed under its lock
// (the fallback after 8 attempts); its refresh token is held for keep-alive all the
// same, so after a restart it is kept alive.
func TestKeepAliveScanFallbackHoldsToken(t *testing.T) {
	t.Parallel()
	storage := &hookStorage{Storage: logical.NewStorageView(&logical.InmemStorage{}, "")}
	p, _, clock := beforeRestart(t, storage, "held")

	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock})
	reads := 0
	storage.onGet = func(key string) {
		if key == credentialPrefix+"held" {
			reads++
			b2.credentials.cache.drop("held") // a change of the shard after every read
		}
	}
	cfg, err := b2.loadConfig(t.Context(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.indexOne(t.Context(), storage, cfg, "held", false); err != nil {
		t.Fatal(err)
	}
	storage.onGet = nil
	if reads < 8 {
		t.Fatalf("the scan read the credential %d times; the fallback was not reached", reads)
	}
	if !heldForKeepAlive(b2, "held") {
		t.Fatal("the fallback path did not hold the refresh token for keep-alive")
	}
	n := p.requests.Load()
	clock.Advance(week)
	keepAliveTick(t, b2, storage)
	wantRequests(t, p, n+1, "the keep-alive after the fallback")
}

// After a restart with every held refresh token long overdue, the keep-alives are
// spread over a day from the restart (lifecycle.NextKeepAlive), not run in one burst.
func TestKeepAliveOverdueAfterRestartSpread(t *testing.T) {
	t.Parallel()
	const n = 12
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("idle%02d", i))
	}
	p, storage, clock := beforeRestart(t, nil, names...)
	clock.Advance(5 * week) // an upgrade after a long outage: all overdue

	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	start := p.requests.Load()
	keepAliveTick(t, b2, storage)
	if got := p.requests.Load() - start; got > n/2 {
		t.Fatalf("%d of %d overdue keep-alives ran at the first tick after the restart; want them spread", got, n)
	}
	clock.Advance(12 * time.Hour)
	keepAliveTick(t, b2, storage)
	half := p.requests.Load() - start
	if half == 0 || half == n {
		t.Errorf("half a day after the restart %d of %d kept alive; want them spread over the day", half, n)
	}
	clock.Advance(12 * time.Hour)
	keepAliveTick(t, b2, storage)
	wantRequests(t, p, start+n, "a day after the restart")
}

// A keep-alive that joins a request in flight which serves a token without minting
// stored nothing: it is not counted ok, and the credential is judged again soon, from
// the token the other request stored.
func TestKeepAliveThatMintsNothingIsNotOK(t *testing.T) {
	p, b, s, clock := importBackend(t)
	importCredential(t, b, s, p, "idle")
	clock.Advance(week)
	joined := 0
	b.tokens.kept.mint = func(ctx context.Context, s logical.Storage, cfg *engineConfig, name string) (oauth.Result, tokenTicket, error) {
		joined++
		// The request in flight it joined: an earlier one refreshed and stored, this
		// one serves that token, minting nothing.
		res, tt, err := b.mintToken(ctx, s, cfg, mintForRead(name, cfg.ExpiryBuffer))
		res.Minted = false
		return res, tt, err
	}
	n := p.requests.Load()
	keepAliveTick(t, b, s)
	if joined != 1 {
		t.Fatalf("%d keep-alives, want 1", joined)
	}
	if got := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": "ok"}); got > 0 {
		t.Errorf("a keep-alive that minted nothing counted ok (%v)", got)
	}
	if due := b.tokens.kept.due.Due(clock.Now().Add(keepAliveRecheck), 10); len(due) != 1 {
		t.Fatalf("due within the recheck: %v, want the credential", due)
	}
	clock.Advance(keepAliveRecheck)
	keepAliveTick(t, b, s)
	if joined != 1 || p.requests.Load() != n+1 {
		t.Errorf("the recheck: %d keep-alives, %d requests (want 1 and %d): the stored token was refreshed just now", joined, p.requests.Load(), n+1)
	}
}

// Many due at once (more than the in-flight bound), one deleted and one suspended
// while the run is under way: under -race, each of the others is kept alive once, and
// the deleted and suspended ones are not held or kept alive afterwards.
func TestKeepAliveManyDueRacingDeleteAndSuspend(t *testing.T) {
	p, b, s, clock := importBackend(t)
	const n = 10
	for i := range n {
		importCredential(t, b, s, p, fmt.Sprintf("c%d", i))
	}
	var full atomic.Int64
	b.keepAliveFull = func() { full.Add(1) }
	clock.Advance(week)
	start := p.requests.Load()
	var wg sync.WaitGroup
	wg.Add(2)
	b.keepalives.Start(s)
	go func() {
		defer wg.Done()
		if resp, err := request(b, s, logical.DeleteOperation, "credentials/c0", nil); err != nil || (resp != nil && resp.IsError()) {
			t.Errorf("delete: %v %v", resp, err)
		}
	}()
	go func() {
		defer wg.Done()
		if resp, err := request(b, s, logical.UpdateOperation, "credentials/c1/suspend", nil); err != nil || (resp != nil && resp.IsError()) {
			t.Errorf("suspend: %v %v", resp, err)
		}
	}()
	wg.Wait()
	b.keepalives.Wait()
	if got := p.requests.Load() - start; got < n-2 || got > n {
		t.Fatalf("%d keep-alives for %d due (two racing a delete and a suspend)", got, n)
	}
	if full.Load() == 0 {
		t.Error("the run never waited on its in-flight bound with more due than it allows")
	}
	if heldForKeepAlive(b, "c0") {
		t.Error("a deleted credential is still held for keep-alive")
	}
	if st, _ := credStatus(t, b, s, "c1"); st != "suspended" {
		t.Fatalf("c1 %s, want suspended", st)
	}
	// A week on: the eight others once each, the deleted and the suspended not.
	clock.Advance(week)
	start = p.requests.Load()
	keepAliveTick(t, b, s)
	wantRequests(t, p, start+n-2, "a week after the racing run")
}

// A credential whose inactivity window ran out, before the sweep has suspended it, is
// not kept alive: the sweep suspends it, and a suspended one is not kept alive.
func TestKeepAliveNotWhenWindowRanOut(t *testing.T) {
	p, b, s, clock := importBackend(t)
	importCredential(t, b, s, p, "idle")
	clock.Advance(lifecycle.DefaultPolicy().SuspendAfter + lifecycle.Day)
	n := p.requests.Load()
	b.keepalives.Start(s) // no sweep first: the credential is still active
	b.keepalives.Wait()
	wantRequests(t, p, n, "a credential whose window ran out")
	if c, err := b.credentials.get(t.Context(), s, "idle"); err != nil || c == nil || c.State.Status != lifecycle.StatusActive {
		t.Fatalf("stored %v (%v); the keep-alive must leave suspending to the sweep", c, err)
	}
	if due := b.tokens.kept.due.Due(clock.Now().Add(52*week), 10); len(due) != 0 {
		t.Errorf("still filed for keep-alive: %v", due)
	}
	keepAliveTick(t, b, s) // the sweep suspends it
	if st, _ := credStatus(t, b, s, "idle"); st != "suspended" {
		t.Fatalf("after the sweep: %s, want suspended", st)
	}
	clock.Advance(week)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n, "suspended")
}

// A provider that does not rotate refresh tokens: after a keep-alive the stored refresh
// token is the one held before, and the next keep-alive sends it again.
func TestKeepAliveWithoutRotationKeepsTheRefreshToken(t *testing.T) {
	p, b, s, clock := importBackend(t)
	rt := importCredential(t, b, s, p, "idle")
	for i := range 2 {
		clock.Advance(week)
		keepAliveTick(t, b, s)
		if got := p.LastRequest(t).Form.Get("refresh_token"); got != rt {
			t.Fatalf("keep-alive %d sent another refresh token", i+1)
		}
		if st := storedTokenOf(t, s, "idle"); st.RefreshToken != rt || st.AccessToken == "" {
			t.Fatalf("after keep-alive %d the stored token state lost its refresh token or holds no access token", i+1)
		}
	}
	if got := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("ok keep-alives %v, want 2", got)
	}
}
