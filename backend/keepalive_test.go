package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

const week = 7 * lifecycle.Day

// keepAliveTick is Vault's periodic tick, returning once the background runs it
// started (verifications, keep-alive) have ended.
func keepAliveTick(t *testing.T, b *integrationsBackend, s logical.Storage) {
	t.Helper()
	tick(t, b, s)
	b.keepalives.Wait()
}

// wantRequests fails unless the provider has had want token requests.
func wantRequests(t *testing.T, p *testProvider, want int64, when string) {
	t.Helper()
	if got := p.requests.Load(); got != want {
		t.Fatalf("%s: %d token requests, want %d", when, got, want)
	}
}

func importCredential(t *testing.T, b *integrationsBackend, s logical.Storage, p *testProvider, name string) string {
	t.Helper()
	rt := p.IssueRefreshToken(t, callbackURL)
	mustOK(t, b, s, logical.CreateOperation, "credentials/"+name, importedFields(p, rt))
	return rt
}

func TestKeepAliveOnScheduleAndNotUsage(t *testing.T) {
	p, b, s, clock := importBackend(t)
	rt := importCredential(t, b, s, p, "idle")
	before := mustOK(t, b, s, logical.ReadOperation, "credentials/idle", nil).Data
	n := p.requests.Load()

	keepAliveTick(t, b, s)
	// Due a week after the last use, less its own jitter (lifecycle: under an hour).
	clock.Advance(week - time.Hour)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n, "before keepalive_interval (less its jitter) passed")

	clock.Advance(time.Hour)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "when due")
	if f := p.LastRequest(t).Form; f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != rt {
		t.Fatalf("keep-alive asked with %v, want a refresh with the held refresh token", f)
	}
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "a tick after the keep-alive")

	// Not usage: no access counted, nothing last accessed, the window where it was.
	if err := b.flushUsage(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	after := mustOK(t, b, s, logical.ReadOperation, "credentials/idle", nil).Data
	if after["access_count"] != int64(0) || after["last_accessed"] != "" || after["suspend_at"] != before["suspend_at"] {
		t.Fatalf("after a keep-alive: access_count %v, last_accessed %q, suspend_at %v (was %v); keep-alive is not an access",
			after["access_count"], after["last_accessed"], after["suspend_at"], before["suspend_at"])
	}

	// The interval runs from the last use: a read that refreshes moves it on.
	clock.Advance(3 * lifecycle.Day)
	accessOK(t, b, s, "idle", nil) // the keep-alive's access token expired long ago: a refresh
	wantRequests(t, p, n+2, "the read")
	clock.Advance(week - time.Hour)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+2, "a week after the keep-alive, days after the read's refresh")
	clock.Advance(time.Hour)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+3, "a week after the read's refresh")
	if got := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("keepalive_refreshes_total{result=ok} = %v, want 2", got)
	}
}

func metricValueOf(t *testing.T, b *integrationsBackend, s logical.Storage, name string, labels map[string]string) float64 {
	t.Helper()
	families, _ := scrape(t, b, s)
	return metricValue(families, name, labels)
}

func TestKeepAliveSkipsSuspendedAndNeedsReauth(t *testing.T) {
	p, b, s, clock := importBackend(t)
	importCredential(t, b, s, p, "sus")
	mustOK(t, b, s, logical.UpdateOperation, "credentials/sus/suspend", nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/bad", importedFields(p, "unknown-refresh-token"))
	if code, _ := accessErr(t, b, s, "bad"); code != http.StatusForbidden {
		t.Fatalf("an unknown refresh token: %d, want 403", code)
	}
	n := p.requests.Load()
	clock.Advance(week + lifecycle.Day)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n, "suspended and needs_reauth credentials, a day overdue")

	// Unsuspended, it is overdue: kept alive at the next tick.
	mustOK(t, b, s, logical.UpdateOperation, "credentials/sus/unsuspend", nil)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "the unsuspended credential")
}

func TestKeepAliveOffWithZero(t *testing.T) {
	p, b, s, clock := importBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"keepalive_interval": 0})
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["keepalive_interval"]; got != int64(0) {
		t.Fatalf("keepalive_interval %v, want 0", got)
	}
	importCredential(t, b, s, p, "idle")
	n := p.requests.Load()
	clock.Advance(4 * week)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n, "keepalive_interval 0")

	// Turned on, the overdue token is exercised once the index is refiled, within the
	// spread of overdue keep-alives (lifecycle.NextKeepAlive).
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"keepalive_interval": "1h"})
	keepAliveTick(t, b, s) // the sweep sees the new config and rebuilds the indexes
	waitIndexBuilt(t, b)
	clock.Advance(lifecycle.KeepAliveSpread(time.Hour))
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "keepalive_interval back on")
}

func TestKeepaliveIntervalRule(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["keepalive_interval"]; got != int64(week/time.Second) {
		t.Errorf("default keepalive_interval %v, want 7 days", got)
	}
	for _, bad := range []any{"10m", "400d", -1, "soon"} {
		resp, _ := request(b, s, logical.UpdateOperation, "config", map[string]any{"keepalive_interval": bad})
		if resp == nil || !resp.IsError() {
			t.Errorf("keepalive_interval %v accepted", bad)
		}
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["keepalive_interval"]; got != int64(week/time.Second) {
		t.Errorf("refused writes changed keepalive_interval to %v", got)
	}
}

func TestKeepAliveTransientThenPermanent(t *testing.T) {
	p, b, s, clock := importBackend(t)
	rt := importCredential(t, b, s, p, "idle")
	n := p.requests.Load()
	clock.Advance(week)
	p.SetFault(oauthtest.Fail(http.StatusServiceUnavailable))
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "the failing keep-alive")
	if st, _ := credStatus(t, b, s, "idle"); st != "active" || storedTokenOf(t, s, "idle").RefreshToken != rt {
		t.Fatalf("after a transient failure: status %s; the refresh token must be kept and the credential active", st)
	}
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "a tick while the Broker backs off")

	p.SetFault(nil)
	clock.Advance(6 * time.Minute) // past the backoff (at most 5 minutes)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+2, "the retry after the backoff")
	if got := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": "transient"}); got != 1 {
		t.Errorf("transient keep-alives %v, want 1", got)
	}

	// The provider revokes the grant: the next keep-alive is refused for good.
	if err := p.tokens.RemoveByRefresh(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
	clock.Advance(week)
	keepAliveTick(t, b, s)
	wantStatus(t, b, s, "idle", "needs_reauth", "invalid_grant", "after a refused keep-alive")
	m := p.requests.Load()
	clock.Advance(week)
	keepAliveTick(t, b, s)
	wantRequests(t, p, m, "needs_reauth: not kept alive")
	if got := metricValueOf(t, b, s, "integrations_keepalive_refreshes_total", map[string]string{"result": "permanent"}); got != 1 {
		t.Errorf("permanent keep-alives %v, want 1", got)
	}
}

// After a restart the scan files the held refresh tokens again (and only those), and
// only the active node keeps them alive.
func TestKeepAliveRebuiltByScanActiveNodeOnly(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	storage := logical.NewStorageView(&logical.InmemStorage{}, "")
	clock := newTestClock()
	b1, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	importCredential(t, b1, storage, p, "held")
	mustOK(t, b1, storage, logical.CreateOperation, "credentials/consentless", authCodeFields(p)) // holds none
	for _, name := range []string{"cc1", "cc2"} {
		mustOK(t, b1, storage, logical.CreateOperation, "credentials/"+name, clientCredentials(p, "header"))
		accessOK(t, b1, storage, name, nil) // a token, but no refresh token to keep alive
	}
	b1.Cleanup(context.Background())

	standby := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	sb, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, system: standby})
	c, err := sb.credentials.get(context.Background(), storage, "held")
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	used, err := sb.scannedUse(context.Background(), storage, c)
	if err != nil {
		t.Fatal(err)
	}
	sb.tokens.kept.holdAt("held", used)
	sb.reindex(defaultConfig(), c, c.State)

	b2, _, _ := newBackendWith(t, backendOptions{storage: storage, clock: clock, initialize: true})
	b2.tokens.kept.mu.Lock()
	held := len(b2.tokens.kept.used)
	b2.tokens.kept.mu.Unlock()
	if held != 1 {
		t.Fatalf("the scan holds %d refresh tokens for keep-alive, want 1", held)
	}
	n := p.requests.Load()
	clock.Advance(week)
	keepAliveTick(t, sb, storage)
	wantRequests(t, p, n, "a performance standby's tick")
	keepAliveTick(t, b2, storage)
	wantRequests(t, p, n+1, "the active node's tick after the restart")
}

// BenchmarkKeepAliveTick is a keep-alive run on a mount whose index holds n refresh
// tokens, few of them due: its cost follows the due ones, not n.
func BenchmarkKeepAliveTick(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) {
			be, s, clock := newBackendWith(b, backendOptions{})
			k := be.tokens.kept
			now := clock.Now()
			for i := range n {
				name := fmt.Sprintf("c%06d", i)
				k.mu.Lock()
				k.used[name] = now
				k.mu.Unlock()
				k.due.Set(name, now.Add(week+time.Duration(i)*time.Second))
			}
			b.ResetTimer()
			for range b.N {
				be.keepalives.Start(s)
				be.keepalives.Wait()
			}
		})
	}
}

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
	if err := b2.indexOne(t.Context(), storage, cfg, "held", false, nil); err != nil {
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
