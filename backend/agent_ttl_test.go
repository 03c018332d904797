package backend

import (
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// ttlOf is the ttl and rotation_period of an access answer.
func ttlOf(t *testing.T, resp *logical.Response) (ttl, period int64) {
	t.Helper()
	ttl, ok1 := resp.Data["ttl"].(int64)
	period, ok2 := resp.Data["rotation_period"].(int64)
	if !ok1 || !ok2 {
		t.Fatalf("answer without ttl/rotation_period: %v", resp.Data)
	}
	return ttl, period
}

// An OAuth answer's ttl is when this reader would be handed another token: the
// opening of the refresh window with refresh ahead (47 minutes into an hour-long
// token with the default 60 s expiry_buffer, see refreshahead_test.go), the due point
// without it, moved by minimum_seconds; rotation_period is the token's lifetime.
func TestAccessTTLIsTheHandOverPoint(t *testing.T) {
	t.Parallel()
	b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})

	resp := accessOK(t, b, s, "cc", nil)
	// The window opens 47 minutes after issue, earlier by the token's own spread
	// (refreshSpread: less than a quarter of the 12-minute lead).
	tok := storedTokenOf(t, s, "cc")
	spread := aheadLead(tok, time.Minute) - 12*time.Minute
	if spread < 0 || spread >= 3*time.Minute {
		t.Fatalf("spread %v outside [0, 3m)", spread)
	}
	wantTTL := func(at time.Duration) int64 { return int64((at - spread).Seconds()) }
	nearTTL := func(got, want int64) bool { return got >= want-1 && got <= want+1 }
	if ttl, period := ttlOf(t, resp); !nearTTL(ttl, wantTTL(47*time.Minute)) || period != 3600 {
		t.Fatalf("fresh token: ttl %d, rotation_period %d; want %d and 3600", ttl, period, wantTTL(47*time.Minute))
	}
	clock.Advance(10 * time.Minute)
	if ttl, _ := ttlOf(t, accessOK(t, b, s, "cc", nil)); !nearTTL(ttl, wantTTL(37*time.Minute)) {
		t.Fatalf("10 minutes on: ttl %d, want %d", ttl, wantTTL(37*time.Minute))
	}
	// minimum_seconds=1200: due at 40 minutes, the window opens
	// min(max(12m, 10s), (60m-20m)/2) = 12 minutes before, at 28, less its spread
	// (a quarter of the lead at most, 3 minutes); 18 minutes from now.
	spread1200 := aheadLead(tok, 20*time.Minute) - 12*time.Minute
	if ttl, _ := ttlOf(t, accessOK(t, b, s, "cc", map[string]any{"minimum_seconds": 1200})); !nearTTL(ttl, int64((18*time.Minute - spread1200).Seconds())) {
		t.Fatalf("minimum_seconds=1200: ttl %d, want %v", ttl, 18*time.Minute-spread1200)
	}
	// In the window: this read starts the refresh and is served the current token
	// for one more second.
	clock.Advance(inWindow - 10*time.Minute)
	resp = accessOK(t, b, s, "cc", nil)
	if ttl, _ := ttlOf(t, resp); resp.Data["access_token"] != first || ttl != 1 {
		t.Fatalf("read in the window: token changed %v, ttl %d; want the current token for 1 s", resp.Data["access_token"] != first, ttl)
	}
	settle(b)
	resp = accessOK(t, b, s, "cc", nil)
	spread = aheadLead(storedTokenOf(t, s, "cc"), time.Minute) - 12*time.Minute
	if ttl, _ := ttlOf(t, resp); resp.Data["access_token"] == first || !nearTTL(ttl, wantTTL(47*time.Minute)) {
		t.Fatalf("after the refresh: new token %v, ttl %d; want a new token good for %d s", resp.Data["access_token"] != first, ttl, wantTTL(47*time.Minute))
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests, want 2", n)
	}

	// Without refresh ahead the reader is handed another token at the due point.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"refresh_ahead": false})
	if ttl, _ := ttlOf(t, accessOK(t, b, s, "cc", nil)); ttl != 59*60 {
		t.Fatalf("refresh_ahead off: ttl %d, want %d", ttl, 59*60)
	}
}

// A refresh that keeps failing does not make the ttl 1 s on every read: the next
// answer comes when the next attempt may be made, and never sooner than 1 s.
func TestAccessTTLDuringBackoff(t *testing.T) {
	t.Parallel()
	b, s, clock, p, _ := refreshAheadBackend(t, backendOptions{})
	// Retry-After makes the backoff long enough to tell apart from the 1 s minimum.
	p.SetFault(oauthtest.Fail(http.StatusTooManyRequests, "Retry-After", "120"))
	clock.Advance(inWindow)
	accessOK(t, b, s, "cc", nil) // starts the refresh, which fails
	settle(b)
	retry := b.tokens.brokerOf().RetryAt("cc")
	ttl, _ := ttlOf(t, accessOK(t, b, s, "cc", nil))
	want := int64(retry.Sub(clock.Now()) / time.Second)
	if want < 100 || ttl != want {
		t.Fatalf("ttl during the backoff %d, want %d (until the retry, at least 100 s)", ttl, want)
	}
	// Past the due point, served degraded: still at least a second.
	clock.Advance(pastDue - inWindow)
	if ttl, _ := ttlOf(t, accessOK(t, b, s, "cc", nil)); ttl < 1 {
		t.Fatalf("degraded answer ttl %d, want at least 1", ttl)
	}
}

// Static answers have no ttl, rotation_period or last_vault_rotation: nothing in them
// is issued or rotates (and a VaultDynamicSecret over one syncs once). Every OAuth
// type's answer carries them, through the same read (tokenAccess).
func TestStaticAccessHasNoTTL(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/db", basicCredential())
	resp := mustOK(t, b, s, logical.ReadOperation, "access/db", nil)
	for _, k := range []string{"ttl", "rotation_period", "last_vault_rotation"} {
		if _, ok := resp.Data[k]; ok {
			t.Errorf("a static answer carries %s", k)
		}
	}
}
