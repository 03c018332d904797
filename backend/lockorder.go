// The lock order, declared once. A goroutine that holds a lock takes further locks only
// of a later rank; locks of one rank (the per-name and per-key shards) are taken
// several at once only in locksutil's sorted order (deviceIndex.lock). Leaf mutexes
// that guard a few fields and are never held across a call into another store (the
// caches, tokenStore.mu and unsavedMu, the outbox's, the usage store's) are not
// ranked.
//
// In a race build (go test -race) every ranked acquisition is checked against the
// ranks the goroutine already holds (lockorder_race.go), and an inversion panics
// before the lock is waited for, naming the two ranks; in any other build the checks
// are empty functions the compiler removes (lockorder_norace.go).

package backend

import (
	"fmt"
	"sync"
)

// lockRank is a lock's place in the order, outermost first.
type lockRank uint8

const (
	// rankConfigWrite is integrationsBackend.configWriteMu: a config write or reset as a
	// whole, which may then change credentials' pending authorizations (configChanged).
	rankConfigWrite lockRank = iota + 1
	// rankFlush is activity.flushMu: one usage flush at a time, and none while the
	// sweep judges; both take credential locks under it.
	rankFlush
	// rankCredential is credentialStore's per-name lock (lock, rlock): every change of
	// a credential and of the records stored beside it.
	rankCredential
	// rankDevice is deviceIndex's per-key lock, taken by a writer holding the name
	// lock of the device account it changes.
	rankDevice
	// rankToken is tokenStore's per-name lock (withLock): writes of a token state
	// against forgets.
	rankToken
	// rankConfig is integrationsBackend.configMu: the decoded engine config, read by
	// a token write (put, store) and by every request.
	rankConfig
)

func (r lockRank) String() string {
	switch r {
	case rankConfigWrite:
		return "config write"
	case rankFlush:
		return "usage flush"
	case rankCredential:
		return "credential"
	case rankDevice:
		return "device index"
	case rankToken:
		return "token"
	case rankConfig:
		return "config"
	}
	return fmt.Sprintf("rank %d", uint8(r))
}

// lockOrderError is what the race-build checker panics with: the rank asked for
// while a later one was held. It names ranks only, never a key.
type lockOrderError struct {
	want, held lockRank
}

func (e lockOrderError) Error() string {
	return fmt.Sprintf("lock order inversion: taking a %s lock while holding a %s lock (the order is lockorder.go's)", e.want, e.held)
}

// lockRanked takes l, a lock of rank r, checking the order first, and returns its
// release.
func lockRanked(r lockRank, l sync.Locker) func() {
	lockAcquire(r)
	l.Lock()
	return func() {
		l.Unlock()
		lockReleased(r)
	}
}
