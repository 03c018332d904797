// The mount's background jobs, registered in one place. Package jobs runs them and
// owns the rules every job follows: write safety, stopping, panics. Each job's body is
// in its own file; adding a job is that file plus one line here.

package backend

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/jobs"
)

// registerJobs registers every background job. The order is load-bearing and is the
// only place it is declared: the periodic tick runs the Tick jobs in this order (save
// what storage refused, drop idle token states, then the sweep, then the
// authorizations' clean-up; an error
// skips the rest) and then starts or wakes the OnTick jobs in this order; Clean stops
// the jobs in this order, each waited for before the next:
//   - the scheduled runs, device polling and refresh ahead first, before the token
//     requests they make are cancelled (refresh ahead's Stopping closes the Broker);
//   - the unsaved tokens' last save after every token request has ended;
//   - the index scan before the usage flush, whose Final is the last flush: nothing
//     counted after it;
//   - the index snapshot after the last flush (its touches mark chunks): its Final
//     writes the dirty chunks and the marker (index_snapshot.go);
//   - the outbox delivery last: every notification the others sent is queued by then.
func (b *integrationsBackend) registerJobs() {
	r := jobs.New(jobs.Options{
		Logger:    func() hclog.Logger { return b.Logger() },
		WriteSafe: func() bool { return b.WriteSafeReplicationState() },
		Storage:   func() logical.Storage { return b.storage },
	})
	b.jobs = r
	b.keepalives = r.Register(jobs.Spec{Name: "keep-alive", Trigger: jobs.Run, Bound: 1, OnTick: true, Do: b.runKeepAlives})
	b.verifier = r.Register(jobs.Spec{Name: "verify schedule", Trigger: jobs.Run, Bound: 1, OnTick: true, Do: b.runDueVerifications})
	b.clientKeyJob = r.Register(jobs.Spec{Name: "client keys", Trigger: jobs.Run, Bound: 1, OnTick: true, Do: b.runClientKeys})
	b.devicePolls = r.Register(jobs.Spec{Name: "device polling", Trigger: jobs.Loop, Bound: 1, Wait: b.awaitDevicePoll, Wake: b.deviceFlow.wake, Do: b.pollDevices})
	b.ahead = r.Register(jobs.Spec{Name: "refresh ahead", Trigger: jobs.Demand, Stopping: func() { b.tokens.brokerOf().Close() }})
	r.Register(jobs.Spec{Name: "save unsaved tokens", Trigger: jobs.Tick, Do: b.saveUnsaved, Final: b.lastSaveUnsaved})
	r.Register(jobs.Spec{Name: "idle token states", Trigger: jobs.Tick, Do: b.pruneTokenStates})
	r.Register(jobs.Spec{Name: "sweep", Trigger: jobs.Tick, Do: b.sweep})
	r.Register(jobs.Spec{Name: "authorization clean-up", Trigger: jobs.Tick, Do: b.cleanAuthorizations})
	r.Register(jobs.Spec{Name: "issuer key rotation", Trigger: jobs.Run, Bound: 1, OnTick: true, Do: b.rotateIssuerKeys})
	b.indexScan = r.Register(jobs.Spec{Name: "index scan", Trigger: jobs.Run, Bound: 1, Do: b.scanIndex})
	r.Register(jobs.Spec{Name: "usage flush", Trigger: jobs.Loop, Bound: 1, Wait: b.awaitFlush, Do: b.flushStep, Final: b.finalFlush})
	r.Register(jobs.Spec{Name: "index snapshot", Trigger: jobs.Loop, Bound: 1, Wait: b.awaitSnapshot, Wake: b.wakeSnapshot, Do: b.snapshotStep, Final: b.finalSnapshot})
	r.Register(jobs.Spec{Name: "outbox delivery", Trigger: jobs.Loop, Bound: 1, OnTick: true, Wait: b.outbox.Wait, Wake: b.outbox.Wake, Do: b.deliveryStep})
}

// saveUnsaved retries, every tick, a refresh token the provider issued that storage
// refused, whether or not anyone reads the credential.
func (b *integrationsBackend) saveUnsaved(ctx context.Context, s logical.Storage) error {
	b.tokens.saveAllUnsaved(ctx, s)
	return nil
}

// lastSaveUnsaved is a last try at Clean for what storage refused: memory does not
// outlive the unload.
func (b *integrationsBackend) lastSaveUnsaved(ctx context.Context, s logical.Storage) {
	b.tokens.saveAllUnsaved(ctx, s)
}
