package backend

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// Tokens in these tests live an hour and expiry_buffer is the default 60 s: a read
// falls due 59 minutes after the mint, and the refresh window opens
// min(max(60m/5, 10s), (59m)/2) = 12 minutes before that, at 47 minutes.
const (
	inWindow = 50 * time.Minute                // past refreshAt, before the due point
	pastDue  = 59*time.Minute + 30*time.Second // less than expiry_buffer left
)

// refreshAheadBackend is a backend with an OAuth client-credentials credential "cc"
// whose first token has been minted (one provider request), over storage s.
func refreshAheadBackend(t *testing.T, o backendOptions) (*integrationsBackend, *countingStorage, *testClock, *testProvider, any) {
	t.Helper()
	p := newTestProvider(t, providerConfig{accessTTL: time.Hour})
	if o.storage == nil {
		o.storage = logical.NewStorageView(&logical.InmemStorage{}, "")
	}
	o.initialize = true
	b, inner, clock := newBackendWith(t, o)
	s := &countingStorage{Storage: inner}
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "body"))
	first := accessOK(t, b, s, "cc", nil).Data["access_token"]
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests for the first mint", n)
	}
	return b, s, clock, p, first
}

// waitRead is the result of an access read started with accessAsync. The bound only
// keeps a broken build from hanging the run: the reads awaited here return at once,
// or the test has failed.
func waitRead(t *testing.T, done <-chan accessResult, what string) accessResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the read is still waiting", what)
		return accessResult{}
	}
}

// waitArrived waits for a token request to reach the provider (bounded as waitRead).
func waitArrived(t *testing.T, arrived <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no token request reached the provider", what)
	}
}

// settle waits until no background refresh is running.
func settle(b *integrationsBackend) { b.ahead.Wait() }

// A read in the refresh window is served the current token at once while the refresh
// it started is held at the provider; once the provider answers, readers get the new
// token without any further request.
func TestRefreshAheadReaderNeverWaits(t *testing.T) {
	t.Parallel()
	b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})
	arrived, release := blockTokens(t, p)
	clock.Advance(inWindow)
	r := waitRead(t, accessAsync(b, s, "cc"), "a read in the refresh window")
	if r.err != nil || r.token() != first {
		t.Fatalf("read in the window: %v (err %v), want the current token", r.token(), r.err)
	}
	waitArrived(t, arrived, "refresh ahead")
	// The refresh is still held at the provider: more reads are served at once,
	// start nothing more, and touch no storage.
	s.reset()
	for range 10 {
		if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != first {
			t.Fatalf("read during the refresh got %v, want the current token", got)
		}
	}
	if s.total() != 0 {
		t.Fatalf("reads during the refresh touched storage: %s", s)
	}
	release()
	settle(b)
	fresh := p.lastIssued(t).access
	if fresh == first {
		t.Fatal("the provider issued no new token")
	}
	if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != fresh {
		t.Fatalf("after the refresh: %v, want the new token", got)
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests, want 2 (mint, one refresh ahead)", n)
	}
	if storedTokenOf(t, s, "cc").AccessToken != fresh {
		t.Fatal("the refreshed token was not stored")
	}
}

// Across several rollovers, many concurrent readers cause exactly one provider request
// each; readers who arrive once the token is due join the refresh in flight.
func TestRefreshAheadOneRequestPerRollover(t *testing.T) {
	t.Parallel()
	b, s, clock, p, _ := refreshAheadBackend(t, backendOptions{})
	const readers = 40
	for rollover := 1; rollover <= 3; rollover++ {
		current := p.lastIssued(t).access
		arrived, release := blockTokens(t, p)
		clock.Advance(inWindow)
		var wg sync.WaitGroup
		errs := make(chan string, 2*readers)
		read := func(want any) {
			defer wg.Done()
			resp, err := request(b, s, logical.ReadOperation, "access/cc", nil)
			if err != nil || resp == nil || (want != nil && resp.Data["access_token"] != want) {
				errs <- "unexpected read result"
			}
		}
		for range readers {
			wg.Add(1)
			go read(current)
		}
		wg.Wait() // every one served while the refresh is held
		waitArrived(t, arrived, "refresh ahead")
		// Now past the due point, still held: these readers may not be served the
		// old token, so they join the request in flight.
		clock.Advance(pastDue - inWindow)
		for range readers {
			wg.Add(1)
			go read(nil)
		}
		release()
		wg.Wait()
		settle(b)
		close(errs)
		for e := range errs {
			t.Fatalf("rollover %d: %s", rollover, e)
		}
		if n := p.requests.Load(); n != int64(1+rollover) {
			t.Fatalf("rollover %d: %d provider requests, want exactly one per rollover (+1 initial)", rollover, n-1)
		}
		if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got == current || got != p.lastIssued(t).access {
			t.Fatalf("rollover %d: served %v, want the new token", rollover, got)
		}
		// The new token was issued when the provider answered, at pastDue: the next
		// round's clock is measured from there.
		p.SetFault(nil)
	}
}

// A token nobody reads in its window is not refreshed: no provider traffic for an idle
// credential, whatever the clock and the periodic sweep do.
func TestRefreshAheadIdleTokenNotRefreshed(t *testing.T) {
	t.Parallel()
	b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})
	clock.Advance(10 * time.Minute)
	if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != first {
		t.Fatalf("read before the window: %v", got)
	}
	for range 4 {
		clock.Advance(15 * time.Minute) // through the window and past expiry, unread
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		settle(b)
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests for a credential nobody read in its window, want only the first mint", n)
	}
}

// A refresh ahead that fails transiently backs off like the read path; the current
// token is served (with the Broker's warning) until it falls due, and the next read
// after the backoff tries again.
func TestRefreshAheadFailureBacksOffAndServesCurrentToken(t *testing.T) {
	t.Parallel()
	b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})
	p.SetFault(oauthtest.Fail(http.StatusServiceUnavailable))
	clock.Advance(inWindow)
	if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != first {
		t.Fatalf("read in the window: %v", got)
	}
	settle(b)
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests, want the failed refresh ahead", n)
	}
	for range 5 { // within the backoff: served, warned, nothing asked
		resp := accessOK(t, b, s, "cc", nil)
		if resp.Data["access_token"] != first || len(resp.Warnings) == 0 {
			t.Fatalf("read after a failed refresh: %v, warnings %v; want the current token with a warning", resp.Data["access_token"], resp.Warnings)
		}
		settle(b)
	}
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests during the backoff, want none", n-2)
	}
	if status, _ := credStatus(t, b, s, "cc"); status != "active" {
		t.Fatalf("a transient failure made the credential %s", status)
	}
	clock.Advance(2 * time.Second) // the first backoff is at most a second
	accessOK(t, b, s, "cc", nil)
	settle(b)
	if n := p.requests.Load(); n != 3 {
		t.Fatalf("%d provider requests after the backoff, want one retry", n)
	}
	// Due, still failing: the read path serves the still-valid token degraded.
	clock.Advance(pastDue - inWindow)
	resp := accessOK(t, b, s, "cc", nil)
	if resp.Data["access_token"] != first || len(resp.Warnings) == 0 {
		t.Fatalf("due read: %v, warnings %v", resp.Data["access_token"], resp.Warnings)
	}
	// Expired: nothing left to serve.
	clock.Advance(time.Minute)
	if code, _ := accessErr(t, b, s, "cc"); code != http.StatusBadGateway {
		t.Fatalf("read of an expired token with the provider down: %d, want 502", code)
	}
}

// A permanent refusal during refresh ahead marks the credential needs_reauth, as the
// read path does.
func TestRefreshAheadPermanentFailureNeedsReauth(t *testing.T) {
	t.Parallel()
	b, s, clock, p, _ := refreshAheadBackend(t, backendOptions{})
	p.SetFault(oauthError(http.StatusUnauthorized, "invalid_client"))
	clock.Advance(inWindow)
	accessOK(t, b, s, "cc", nil)
	settle(b)
	if status, reason := credStatus(t, b, s, "cc"); status != "needs_reauth" || reason != "invalid_client" {
		t.Fatalf("after a refused refresh ahead: %s (%s), want needs_reauth (invalid_client)", status, reason)
	}
}

// refresh_ahead=false: a read in the window starts nothing, and the reader who finds
// the token due waits for the provider, as before refresh ahead.
func TestRefreshAheadOffReadersWait(t *testing.T) {
	t.Parallel()
	b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"refresh_ahead": false})
	arrived, release := blockTokens(t, p)
	clock.Advance(inWindow)
	if got := accessOK(t, b, s, "cc", nil).Data["access_token"]; got != first {
		t.Fatalf("read in the window: %v", got)
	}
	settle(b)
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests with refresh_ahead off, want none before the due point", n-1)
	}
	clock.Advance(pastDue - inWindow)
	done := accessAsync(b, s, "cc")
	waitArrived(t, arrived, "the due read")
	select {
	case r := <-done:
		t.Fatalf("the due read returned (%v, %v) while the provider held its request", r.token(), r.err)
	default:
	}
	release()
	if r := waitRead(t, done, "the due read"); r.err != nil || r.token() != p.lastIssued(t).access {
		t.Fatalf("due read: %v (%v), want the new token", r.token(), r.err)
	}
}

// A credential updated or deleted while its refresh ahead is at the provider does not
// get the answer stored: the token store's generation has moved on.
func TestRefreshAheadDiscardedOnChange(t *testing.T) {
	t.Parallel()
	for _, change := range []string{"update", "delete"} {
		t.Run(change, func(t *testing.T) {
			t.Parallel()
			b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})
			arrived, release := blockTokens(t, p)
			clock.Advance(inWindow)
			accessOK(t, b, s, "cc", nil)
			waitArrived(t, arrived, "refresh ahead")
			clock.Advance(time.Second)
			if change == "update" {
				mustOK(t, b, s, logical.PatchOperation, "credentials/cc", map[string]any{"scopes": "read"})
			} else {
				mustOK(t, b, s, logical.DeleteOperation, "credentials/cc", nil)
			}
			release()
			settle(b)
			issued := p.lastIssued(t).access
			if issued == first {
				t.Fatal("the held refresh never completed")
			}
			if change == "delete" {
				if storageHas(t, s, tokenPrefix+"cc") {
					t.Fatal("the refresh ahead stored a token for a deleted credential")
				}
				return
			}
			if e, _ := s.Get(context.Background(), tokenPrefix+"cc"); e != nil && storedTokenOf(t, s, "cc").AccessToken == issued {
				t.Fatal("the refresh ahead stored a token of the old settings")
			}
			p.SetFault(nil)
			if got := accessOK(t, b, s, "cc", nil).Data; got["access_token"] == issued || got["scope"] != "read" {
				t.Fatalf("after the update: %v", got)
			}
		})
	}
}

// On a node that may not write (a performance standby), nothing is started: the
// active node minted the token, the standby reads it in its window.
func TestRefreshAheadOnlyOnActiveNode(t *testing.T) {
	t.Parallel()
	shared := logical.NewStorageView(&logical.InmemStorage{}, "")
	_, _, clock, p, first := refreshAheadBackend(t, backendOptions{storage: shared})
	standby := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	sb, _, _ := newBackendWith(t, backendOptions{storage: shared, clock: clock, system: standby, initialize: true})
	clock.Advance(inWindow)
	for range 3 {
		if got := accessOK(t, sb, shared, "cc", nil).Data["access_token"]; got != first {
			t.Fatalf("read on the standby: %v", got)
		}
		settle(sb)
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("%d provider requests from a standby's refresh ahead, want none", n-1)
	}
}

// Clean stops a refresh ahead held at the provider (cancelling its request) and
// returns; the provider's late answer is never stored.
func TestRefreshAheadStoppedByClean(t *testing.T) {
	t.Parallel()
	b, s, clock, p, first := refreshAheadBackend(t, backendOptions{})
	arrived, release := blockTokens(t, p)
	clock.Advance(inWindow)
	accessOK(t, b, s, "cc", nil)
	waitArrived(t, arrived, "refresh ahead")
	cleaned := make(chan struct{})
	go func() {
		b.Cleanup(context.Background())
		close(cleaned)
	}()
	select {
	case <-cleaned:
	case <-time.After(30 * time.Second):
		t.Fatal("Clean did not return while a refresh ahead was held at the provider")
	}
	// Let the provider answer now: a refresh Clean had not stopped would store it.
	release()
	settle(b)
	if storedTokenOf(t, s, "cc").AccessToken != first {
		t.Fatal("a token was stored after Clean")
	}
	// And nothing starts any more.
	accessOK(t, b, s, "cc", nil)
	if n := p.requests.Load(); n != 2 {
		t.Fatalf("%d provider requests after Clean, want none", n-2)
	}
}

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
