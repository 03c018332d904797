package backend

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// A panic in background work is recovered and logged by the job runner; these tests
// hold it to what must come with that: no lock stays held by the panicked work (a
// held credential lock would hang every later write of the credential, the next tick
// and Clean), and work on a job's own worker goroutines is recovered too, so the
// process lives and the job goes on.

// A tick job that panics under a credential's lock (the authorization clean-up,
// storage panicking on a read) releases the lock; the next tick runs through.
func TestTickPanicReleasesTheCredentialLock(t *testing.T) {
	var armed atomic.Bool
	hs := &hookStorage{Storage: logical.NewStorageView(&logical.InmemStorage{}, ""), onGet: func(key string) {
		if key == authorizationPrefix+"x" && armed.CompareAndSwap(true, false) {
			panic("a storage driver bug")
		}
	}}
	// Not initialized: the loop jobs (the device poller reads pending authorizations
	// too) stay off, so the one armed read is the clean-up's.
	b, s, _ := newBackendWith(t, backendOptions{storage: hs})
	ctx := context.Background()
	if err := s.Put(ctx, &logical.StorageEntry{Key: authorizationPrefix + "x", Value: []byte(`{"state":"s"}`)}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if err := b.periodic(ctx, &logical.Request{Storage: s}); err == nil {
		t.Fatal("the tick reported no failure, yet its job panicked")
	}
	l := locksutil.LockForKey(b.credentials.locks, "x")
	if !l.TryLock() {
		t.Fatal(`the credential lock of "x" is still held after the recovered panic: its writes, the next tick and Clean would hang`)
	}
	l.Unlock()
	lockHeldEmpty(t) // the checker (race builds) keeps no rank for the tick's goroutine either
	if err := b.periodic(ctx, &logical.Request{Storage: s}); err != nil {
		t.Fatalf("the next tick: %v", err)
	}
}

// A keep-alive that panics on its worker goroutine is recovered there: the process
// lives, the run ends, and the credential is kept alive on a later pass.
func TestKeepAliveWorkerPanicIsRecovered(t *testing.T) {
	p, b, s, clock := importBackend(t)
	importCredential(t, b, s, p, "idle")
	clock.Advance(week)
	mint := b.tokens.kept.mint
	b.tokens.kept.mint = func(context.Context, logical.Storage, *engineConfig, string) (oauth.Result, tokenTicket, error) {
		panic("a bug in a keep-alive")
	}
	n := p.requests.Load()
	keepAliveTick(t, b, s) // before the fix the panic killed the test binary here
	wantRequests(t, p, n, "after the panicked keep-alive")
	b.tokens.kept.mint = mint
	clock.Advance(keepAliveRetry)
	keepAliveTick(t, b, s)
	wantRequests(t, p, n+1, "on the next pass")
}
