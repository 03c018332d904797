package backend

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the run when the lock-order checker (race builds, lockorder.go)
// raised an inversion anywhere: a background job recovers its panics and only logs
// them, so without this an inversion in a job would pass unseen.
func TestMain(m *testing.M) {
	code := m.Run()
	if n, first := lockInversionsSeen(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d lock order inversion(s) raised during the run; the first: %v\n", n, first)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
