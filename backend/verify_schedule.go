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
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/jobs"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
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

// runDueVerifications is the verify schedule job's run (started by the tick, one at a
// time): it verifies every credential due, at most maxVerifyInFlight at once.
func (b *integrationsBackend) runDueVerifications(ctx context.Context, s logical.Storage) error {
	b.runDue(ctx, b.verifier, b.verifyFull, b.activity.verifying, maxVerifyInFlight, verifyBatch, verifyRetry, func(ctx context.Context, name string) {
		// Nobody waits on a scheduled verification: behind every reader at the token host.
		if _, _, err := b.verifyCredential(oauth.WithPriority(ctx, oauth.Background), s, name); err != nil && ctx.Err() == nil {
			b.Logger().Warn("scheduled verification failed; retried later", "credential", name, "error", err)
		}
	})
	return nil
}

// runDue runs do for every name idx says is due, at most inFlight at once, until none
// is left. Each is filed retry ahead before it starts, so the next pass does not take
// it again and the run ends; what do records files its next time. A name still in
// flight is skipped: the index scan, which files what it read before a result was
// stored, can make it due again meanwhile.
// full, a test hook, is called when a name waits for a slot.
//
// Each do runs guarded (jobs.Guard): a panic in one is logged as job's and the run
// goes on.
func (b *integrationsBackend) runDue(ctx context.Context, job *jobs.Handle, full func(), idx *lifecycle.Index, inFlight, batch int, retry time.Duration, do func(ctx context.Context, name string)) {
	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	running := map[string]struct{}{}
	release := func(name string) {
		mu.Lock()
		delete(running, name)
		mu.Unlock()
	}
	for ctx.Err() == nil {
		now := b.now().UTC()
		names := idx.Due(now, batch)
		if len(names) == 0 {
			return
		}
		for _, name := range names {
			idx.Set(name, now.Add(retry))
			mu.Lock()
			_, busy := running[name]
			running[name] = struct{}{}
			mu.Unlock()
			if busy {
				continue
			}
			select {
			case slots <- struct{}{}:
			default:
				if full != nil {
					full()
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					release(name)
					return
				}
			case <-ctx.Done():
				release(name)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					release(name)
					<-slots
				}()
				job.Guard(func() { do(ctx, name) })
			}()
		}
	}
}
