package backend

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
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
	clock.Advance(week - time.Minute)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n, "before keepalive_interval passed")

	clock.Advance(time.Minute)
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
	clock.Advance(week - time.Minute)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+2, "a week after the keep-alive, days after the read's refresh")
	clock.Advance(time.Minute)
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
