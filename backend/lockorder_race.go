//go:build race

package backend

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// lockOrderChecked: race builds check the lock order (lockorder.go).
const lockOrderChecked = true

// lockHeld is, per goroutine, the ranks of the ranked locks it holds, in the order
// taken. Race builds only: finding the goroutine costs a runtime.Stack call per
// acquisition.
var lockHeld = struct {
	sync.Mutex
	by map[uint64][]lockRank
}{by: make(map[uint64][]lockRank)}

// goroutineID parses the current goroutine's id from the first line of its stack
// ("goroutine 42 [running]:"); the runtime exposes it nowhere else.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

// lockAcquire checks, before a lock of rank r is waited for, that the goroutine holds
// no lock of a later rank, and records r. An inversion panics with a lockOrderError
// before anything is recorded, so a test that recovers sees the state unchanged.
func lockAcquire(r lockRank) {
	id := goroutineID()
	lockHeld.Lock()
	defer lockHeld.Unlock()
	for _, h := range lockHeld.by[id] {
		// A lock of the same rank counts too: two locks of one rank are taken together
		// only by one acquisition in locksutil's sorted order (deviceIndex.lock), and
		// a name's lock taken again under itself would deadlock.
		if h >= r {
			// Recorded as well as raised: a background job recovers its panics (the
			// runner logs and restarts it), and the package's TestMain fails the run
			// on any inversion recorded, wherever it was recovered.
			e := lockOrderError{want: r, held: h}
			lockInversions.Add(1)
			lockFirstInversion.CompareAndSwap(nil, &e)
			panic(e)
		}
	}
	lockHeld.by[id] = append(lockHeld.by[id], r)
}

// lockReleased forgets the latest lock of rank r the goroutine holds. A lock released
// by another goroutine than the one that took it is not tracked past its release here
// (no code does so today); a release with nothing recorded is ignored.
func lockReleased(r lockRank) {
	id := goroutineID()
	lockHeld.Lock()
	defer lockHeld.Unlock()
	held := lockHeld.by[id]
	for i := len(held) - 1; i >= 0; i-- {
		if held[i] == r {
			held = append(held[:i], held[i+1:]...)
			break
		}
	}
	if len(held) == 0 {
		delete(lockHeld.by, id)
	} else {
		lockHeld.by[id] = held
	}
}

// lockInversions counts the inversions the checker has raised; lockFirstInversion is
// the first of them.
var (
	lockInversions     atomic.Int64
	lockFirstInversion atomic.Pointer[lockOrderError]
)

// lockInversionsSeen reports how many inversions were raised since the last reset, and
// the first.
func lockInversionsSeen() (int64, error) {
	if e := lockFirstInversion.Load(); e != nil {
		return lockInversions.Load(), *e
	}
	return lockInversions.Load(), nil
}

// resetLockInversions forgets the inversions raised so far: for a test that raises
// one on purpose.
func resetLockInversions() {
	lockInversions.Store(0)
	lockFirstInversion.Store(nil)
}
