// The verification schedule: with verify_interval set (config, or a credential's own),
// the active node re-verifies each credential at its slots (lifecycle.NextVerify),
// found through a due-time index like the sweep's, never by a scan of storage.

package backend

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

const (
	// maxVerifyInFlight bounds the scheduled verifications running at once: each may
	// hold a connection for up to request_timeout.
	maxVerifyInFlight = 8
	// verifyBatch is how many due names one pass takes from the index.
	verifyBatch = 256
	// verifyRetry files a credential whose scheduled verification started: it is not
	// taken again while it runs, and one whose result could not be stored (a storage
	// error) is tried again after this long. A stored result files the next slot.
	verifyRetry = 15 * time.Minute
)

// verifier runs the schedule: one run at a time, started by the periodic tick and
// ended by Clean.
type verifier struct {
	mu      sync.Mutex
	done    chan struct{} // closed when the current run ends; nil before the first
	ctx     context.Context
	cancel  context.CancelFunc
	stopped bool
	// full is a test hook: called when a run waits because maxVerifyInFlight are in
	// flight; nil in production.
	full func()
}

func newVerifier() *verifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &verifier{ctx: ctx, cancel: cancel}
}

// nextVerify is when the schedule next verifies c: zero when never (no interval, a
// type with no check, a credential not active).
func (b *integrationsBackend) nextVerify(cfg *engineConfig, c *credential) time.Time {
	t := c.typeDef()
	if t == nil || t.VerifyMethod() == credtype.VerifyUnsupported {
		return time.Time{}
	}
	if c.State.VerifyInterval > 0 {
		// The credential's own interval: set when it was written, after its creation.
		return lifecycle.NextVerify(c.Name, c.State, c.State.VerifyInterval, time.Time{})
	}
	return lifecycle.NextVerify(c.Name, c.State, cfg.VerifyInterval, cfg.VerifySince)
}

// startDueVerifications starts a run over the credentials due for verification, unless
// one is running. Active node only.
func (b *integrationsBackend) startDueVerifications(s logical.Storage) {
	if !b.WriteSafeReplicationState() {
		return
	}
	v := b.verifier
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return
	}
	if v.done != nil {
		select {
		case <-v.done:
		default:
			return
		}
	}
	done := make(chan struct{})
	v.done = done
	go func() {
		defer close(done)
		b.runDueVerifications(v.ctx, s)
	}()
}

// runDueVerifications verifies every credential due, at most maxVerifyInFlight at once,
// until none is left. Each is filed verifyRetry ahead before it starts, so the next
// pass does not take it again and the run ends; its recorded result files its next
// slot. A name still in flight is skipped: the index scan, which files what it read
// before the result was stored, can make it due again meanwhile.
func (b *integrationsBackend) runDueVerifications(ctx context.Context, s logical.Storage) {
	slots := make(chan struct{}, maxVerifyInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	inFlight := map[string]struct{}{}
	idx := b.activity.verifying
	for ctx.Err() == nil {
		now := b.now().UTC()
		names := idx.Due(now, verifyBatch)
		if len(names) == 0 {
			return
		}
		for _, name := range names {
			idx.Set(name, now.Add(verifyRetry))
			mu.Lock()
			_, running := inFlight[name]
			inFlight[name] = struct{}{}
			mu.Unlock()
			if running {
				continue
			}
			select {
			case slots <- struct{}{}:
			default:
				if hook := b.verifier.full; hook != nil {
					hook()
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					mu.Lock()
					delete(inFlight, name)
					mu.Unlock()
					return
				}
			case <-ctx.Done():
				mu.Lock()
				delete(inFlight, name)
				mu.Unlock()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(inFlight, name)
					mu.Unlock()
					<-slots
				}()
				if _, _, err := b.verifyCredential(ctx, s, name); err != nil && ctx.Err() == nil {
					b.Logger().Warn("scheduled verification failed; retried later", "credential", name, "error", err)
				}
			}()
		}
	}
}

// waitVerifications waits for the current run to end (tests, and Clean).
func (v *verifier) wait() {
	v.mu.Lock()
	done := v.done
	v.mu.Unlock()
	if done != nil {
		<-done
	}
}

// stop cancels a run and waits for it; no run starts after.
func (v *verifier) stop() {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	v.cancel()
	v.wait()
}
