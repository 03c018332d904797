package backend

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// A read at the very instant the refresh window opens (where a reader told ttl lands
// when the token was issued on a whole second, as VSO and Agent re-read) is in the
// window for the read path, but the Broker still counts the token valid for the
// window's demand (ValidFor: at least, not more than) and requests nothing. That
// background refresh must not stay "running": the next read, a second later, starts
// one that mints, and the reader is not answered ttl=1 until the due point.
func TestRefreshAheadAtTheWindowOpening(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	b, s, clock := newBackendWith(t, backendOptions{initialize: true})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "body"))
	clock.Advance(123456789 * time.Nanosecond) // an issue time off the whole second
	first := accessOK(t, b, s, "cc", nil).Data["access_token"]
	clock.Advance(47 * time.Minute) // exactly the window opening
	if r := accessOK(t, b, s, "cc", nil); r.Data["access_token"] != first || r.Data["ttl"] != int64(1) {
		t.Fatalf("at the window opening: token changed %v, ttl %v; want the current token for 1 s", r.Data["access_token"] != first, r.Data["ttl"])
	}
	settle(b)
	clock.Advance(time.Second)
	accessOK(t, b, s, "cc", nil)
	settle(b)
	r := accessOK(t, b, s, "cc", nil)
	if r.Data["access_token"] == first || p.requests.Load() != 2 {
		t.Fatalf("a second into the window: new token %v after %d provider requests; want a new one, 2 requests (ttl %v)",
			r.Data["access_token"] != first, p.requests.Load(), r.Data["ttl"])
	}
}
