// The last flush, at Clean, and the usage handoff: Clean writes usage/<name> credential
// by credential within a time budget, and only what is left then is written as a
// handful of batch entries; the next owner of the mount (this node after a reload or
// restart, or the new active node) restores them at Initialize and flushes them with
// its own usage. An older release does not read the entries: in normal running the
// flush threshold (usage_flush.go) keeps Clean within the budget, so there are none.

package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// usageHandoffPrefix holds what a Clean handed to the next owner: usage-handoff/<id>-<n>,
// each entry a batch of credentials' pending usage.
const usageHandoffPrefix = "usage-handoff/"

const (
	// cleanFlushBudget is how long the last flush, at Clean, writes usage/<name>
	// credential by credential (what every release reads) before it hands the rest
	// off. Vault holds the mount while Clean runs, so it is most of the time a reload
	// may take before the mount serves again (2 s, issue 28); usageFlushThreshold keeps
	// what is pending in normal running within it.
	cleanFlushBudget = time.Second
	// handoffChunkBytes bounds one handoff entry's encoded usage, well inside a
	// Raft entry's default limit (1 MiB); one credential's pending usage is never split.
	handoffChunkBytes = 256 << 10
)

// storedHandoff is the stored form of a usage-handoff/ entry: each credential's pending
// usage, in usage/<name>'s own encoding (count, failures, last access, events).
type storedHandoff struct {
	Usage  map[string]usage.Usage `json:"usage"`
	Record int                    `json:"record_version,omitempty"`
}

func (h *storedHandoff) stamp() { h.Record = usageHandoffRecordVersion }

// upgradeHandoff brings a decoded handoff entry to the current version (1 is the
// first: nothing to upgrade), bounding each event as usage/<name> does.
func upgradeHandoff(h *storedHandoff) {
	for name, u := range h.Usage {
		for i := range u.Events {
			u.Events[i] = usage.Bound(u.Events[i])
		}
		h.Usage[name] = u
	}
	h.Record = usageHandoffRecordVersion
}

// finalFlush is the last flush, at Clean, once the loop has stopped. It writes
// usage/<name> credential by credential, as any flush does, for cleanFlushBudget; what
// is left then (credentials not started, and what storage refused) is handed off:
// written as batch entries the next Initialize restores, so Clean (which a reload, a
// restart and a leader change wait for, the mount serving nothing meanwhile) takes a
// bounded time however many credentials were accessed since the last flush. In normal
// running the flush threshold keeps that within the budget, and nothing is handed off
// (an older release, after a downgrade, does not read usage-handoff/).
func (b *integrationsBackend) finalFlush(ctx context.Context, s logical.Storage) {
	if s == nil || !b.WriteSafeReplicationState() {
		return
	}
	defer lockRanked(rankFlush, &b.activity.flushMu)()
	arm := b.activity.cleanStop
	if arm == nil {
		arm = func() (<-chan struct{}, func()) {
			budget, cancel := context.WithTimeout(context.Background(), cleanFlushBudget)
			return budget.Done(), cancel
		}
	}
	stop, release := arm()
	defer release()
	rest, err := b.flushPending(ctx, s, b.usage.drain(), stop)
	if err != nil {
		b.Logger().Warn("flushing usage at shutdown failed; handing the rest off", "error", err)
	}
	if left := len(rest); left > 0 {
		b.Logger().Info("the usage flush at shutdown ran out of its time budget; handing the rest off to the next start",
			"budget", cleanFlushBudget.String(), "credentials", left)
	}
	// What storage refused went back to the recorder: handed off with the rest. When
	// there is both, they are merged through the recorder (the rest first drained, so
	// older), and only then: the common case copies nothing.
	if refused := b.usage.drain(); len(refused) > 0 {
		if len(rest) == 0 {
			rest = refused
		} else {
			b.usage.restore(refused)
			b.usage.restore(rest)
			rest = b.usage.drain()
		}
	}
	if len(rest) == 0 {
		return
	}
	if err := b.handOff(ctx, s, rest); err != nil {
		b.Logger().Error("handing usage off at shutdown failed", "error", err)
	}
}

// handOff writes pending (drained, in flight) as usage-handoff/ entries, then deletes
// the entries this node restored and has not flushed yet: their usage is in pending.
func (b *integrationsBackend) handOff(ctx context.Context, s logical.Storage, pending map[string]usage.Pending) error {
	us := b.usage
	if len(pending) == 0 {
		return nil
	}
	defer us.flushed()
	chunks, err := handoffChunks(pending)
	if err != nil {
		us.restore(pending)
		return err
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:]) // never fails (crypto/rand)
	id := hex.EncodeToString(idb[:])
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	sem := make(chan struct{}, flushWorkers)
	for i, chunk := range chunks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := s.Put(ctx, &logical.StorageEntry{Key: usageHandoffPrefix + id + "-" + strconv.Itoa(i), Value: chunk.value})
			if err != nil {
				back := make(map[string]usage.Pending, len(chunk.names))
				for _, name := range chunk.names {
					back[name] = pending[name]
				}
				us.restore(back)
				errMu.Lock()
				errs = append(errs, fmt.Errorf("storing a usage handoff of %d credentials: %w", len(chunk.names), err))
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		// The entries restored at Initialize stay: what they held is not lost with a
		// chunk storage refused (its access counts may then be counted twice).
		return errors.Join(errs...)
	}
	return b.dropRestoredHandoff(ctx, s)
}

// handoffChunk is one usage-handoff/ entry, encoded, and the credentials it holds.
type handoffChunk struct {
	names []string
	value []byte
}

// handoffChunks groups pending into entries of at most handoffChunkBytes of encoded
// usage, each the JSON of a storedHandoff stamped with its record version. Each
// credential's usage is encoded once, into its entry (a Clean handing off 100,000
// credentials spends its time here).
func handoffChunks(pending map[string]usage.Pending) ([]handoffChunk, error) {
	var stamped storedHandoff
	stamped.stamp()
	tail := []byte(`},"record_version":` + strconv.Itoa(stamped.Record) + `}`)
	var (
		chunks []handoffChunk
		cur    *handoffChunk
	)
	for name, p := range pending {
		enc, err := json.Marshal(usage.Usage(p))
		if err != nil {
			return nil, fmt.Errorf("encoding the usage of %q: %w", name, err)
		}
		key, err := json.Marshal(name)
		if err != nil {
			return nil, fmt.Errorf("encoding the name %q: %w", name, err)
		}
		if cur == nil || (len(cur.value)+len(key)+len(enc)+2+len(tail) > handoffChunkBytes && len(cur.names) > 0) {
			if cur != nil {
				cur.value = append(cur.value, tail...)
			}
			chunks = append(chunks, handoffChunk{value: append(make([]byte, 0, 4096), `{"usage":{`...)})
			cur = &chunks[len(chunks)-1]
		}
		if len(cur.names) > 0 {
			cur.value = append(cur.value, ',')
		}
		cur.value = append(append(append(cur.value, key...), ':'), enc...)
		cur.names = append(cur.names, name)
	}
	if cur != nil {
		cur.value = append(cur.value, tail...)
	}
	return chunks, nil
}

// restoreHandoff, at Initialize on a node that may write, puts what an earlier Clean
// handed off back into the recorder: reads, lists and the sweep count it at once (a
// credential read just before a reload is not suspended for inactivity), and the next
// flush stores it, renewing inactivity windows, and then deletes the entries.
func (b *integrationsBackend) restoreHandoff(ctx context.Context, s logical.Storage) error {
	keys, err := s.List(ctx, usageHandoffPrefix)
	if err != nil {
		return fmt.Errorf("listing the usage handoff: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	defer lockRanked(rankFlush, &b.activity.flushMu)()
	var errs []error
	for _, key := range keys {
		entry, err := s.Get(ctx, usageHandoffPrefix+key)
		if err != nil || entry == nil {
			errs = append(errs, err)
			continue
		}
		var h storedHandoff
		if err := entry.DecodeJSON(&h); err != nil {
			// Left in place (and logged): an entry this release cannot read is never
			// deleted, so a later one may.
			errs = append(errs, fmt.Errorf("decoding %s%s: %w", usageHandoffPrefix, key, err))
			continue
		}
		upgradeHandoff(&h)
		back := make(map[string]usage.Pending, len(h.Usage))
		for name, u := range h.Usage {
			back[name] = usage.Pending(u)
		}
		b.usage.restore(back)
		b.activity.handoffKeys = append(b.activity.handoffKeys, key)
	}
	return errors.Join(errs...)
}

// dropRestoredHandoff deletes the handoff entries restored at Initialize, once a flush
// (or a new handoff) has taken over their usage. The caller holds flushMu. An entry
// that cannot be deleted stays listed for the next flush.
func (b *integrationsBackend) dropRestoredHandoff(ctx context.Context, s logical.Storage) error {
	a := b.activity
	keys := a.handoffKeys
	a.handoffKeys = nil
	var errs []error
	for _, key := range keys {
		if err := s.Delete(ctx, usageHandoffPrefix+key); err != nil {
			a.handoffKeys = append(a.handoffKeys, key)
			errs = append(errs, fmt.Errorf("deleting %s%s: %w", usageHandoffPrefix, key, err))
		}
	}
	return errors.Join(errs...)
}

// restore puts drained usage back into the recorder: it is no longer in flight.
func (us *usageStore) restore(p map[string]usage.Pending) {
	us.mu.Lock()
	us.recorder.Restore(p)
	for name := range p {
		delete(us.inflight, name)
	}
	us.mu.Unlock()
}
