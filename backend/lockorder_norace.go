//go:build !race

package backend

// lockOrderChecked says whether lockAcquire and lockReleased check anything: only in
// race builds (lockorder_race.go).
const lockOrderChecked = false

// lockAcquire is called before a lock of rank r is taken; nothing outside race builds.
func lockAcquire(lockRank) {}

// lockReleased is called after a lock of rank r is released; nothing outside race
// builds.
func lockReleased(lockRank) {}

// lockInversionsSeen reports the inversions raised: none outside race builds.
func lockInversionsSeen() (int64, error) { return 0, nil }

// resetLockInversions does nothing outside race builds.
func resetLockInversions() {}
