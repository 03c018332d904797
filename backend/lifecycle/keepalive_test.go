package lifecycle

import (
	"fmt"
	"testing"
	"time"
)

func TestNextKeepAlive(t *testing.T) {
	used := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	active := NewState(used.Add(-Day))
	// An interval after the last use, less the credential's own jitter (under an hour).
	got := NextKeepAlive("c", active, used, 7*Day, time.Time{})
	if !got.Equal(used.Add(7*Day-keepAliveJitter("c", used, 7*Day))) || got.After(used.Add(7*Day)) || !got.After(used.Add(7*Day-time.Hour)) {
		t.Errorf("active: %v, want within the hour before an interval after the last use", got)
	}
	suspended, reauth := active, NeedsReauth(active, "invalid_grant", used)
	suspended.Status = StatusSuspended
	for what, tc := range map[string]struct {
		s        State
		used     time.Time
		interval time.Duration
	}{
		"off":          {active, used, 0},
		"no token":     {active, time.Time{}, 7 * Day},
		"suspended":    {suspended, used, 7 * Day},
		"needs_reauth": {reauth, used, 7 * Day},
	} {
		if got := NextKeepAlive("c", tc.s, tc.used, tc.interval, used.Add(30*Day)); !got.IsZero() {
			t.Errorf("%s: %v, want never", what, got)
		}
	}
	if CheckKeepaliveInterval(30*time.Minute) == nil || CheckKeepaliveInterval(400*Day) == nil || CheckKeepaliveInterval(DefaultKeepaliveInterval) != nil {
		t.Error("keepalive_interval bounds: want one hour to 365 days, the default inside")
	}
}

// Keep-alives overdue when the schedule started are spread over KeepAliveSpread from
// since by name, not all due at since; those not overdue keep their own time.
func TestNextKeepAliveSpreadsOverdue(t *testing.T) {
	since := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	active := NewState(since.Add(-100 * Day))
	if got, want := KeepAliveSpread(7*Day), Day; got != want {
		t.Errorf("spread at 7 days: %v, want %v", got, want)
	}
	if got, want := KeepAliveSpread(7*time.Hour), time.Hour; got != want {
		t.Errorf("spread at 7 hours: %v, want %v", got, want)
	}
	// Not overdue at since (due at or after it): an interval after the last use, less
	// its jitter.
	for _, used := range []time.Time{since.Add(-7*Day + time.Hour), since.Add(-Day)} {
		want := used.Add(7*Day - keepAliveJitter("c", used, 7*Day))
		if got := NextKeepAlive("c", active, used, 7*Day, since); !got.Equal(want) {
			t.Errorf("last used %v: %v, want %v", used, got, want)
		}
	}
	for _, interval := range []time.Duration{7 * Day, 7 * time.Hour, 90 * Day} {
		spread := KeepAliveSpread(interval)
		const n, buckets = 10_000, 10
		var counts [buckets]int
		for i := range n {
			name := fmt.Sprintf("cred-%05d", i)
			used := since.Add(-interval - time.Duration(i)*time.Minute) // overdue, by various amounts
			got := NextKeepAlive(name, active, used, interval, since)
			if got.Before(since) || !got.Before(since.Add(spread)) {
				t.Fatalf("interval %v: %s due %v, want within [%v, %v)", interval, name, got, since, since.Add(spread))
			}
			if again := NextKeepAlive(name, active, used, interval, since); !again.Equal(got) {
				t.Fatalf("asked again: %v, then %v", got, again)
			}
			counts[got.Sub(since)*buckets/spread]++
		}
		for i, c := range counts {
			if c < n/buckets/2 || c > n/buckets*2 {
				t.Errorf("interval %v: %d of %d due in tenth %d of the spread; want them spread evenly (%v)", interval, c, n, i, counts)
				break
			}
		}
	}
}

// Refresh tokens used in the same instant are kept alive at points spread over the
// hour before the interval ends, never after it.
func TestKeepAliveJitterSpreads(t *testing.T) {
	used := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const n, buckets = 10_000, 10
	var counts [buckets]int
	for i := range n {
		j := keepAliveJitter(fmt.Sprintf("tenant-%05d", i), used, 7*Day)
		if j < 0 || j >= time.Hour {
			t.Fatalf("jitter %v outside [0, 1h)", j)
		}
		counts[j*buckets/time.Hour]++
	}
	for i, c := range counts {
		if c < n/buckets*8/10 || c > n/buckets*12/10 {
			t.Errorf("bucket %d of the hour holds %d of %d: %v", i, c, n, counts)
		}
	}
	if a, b := keepAliveJitter("x", used, 7*Day), keepAliveJitter("x", used, 7*Day); a != b {
		t.Error("the jitter is not the same on every call")
	}
	if keepAliveJitter("x", used, 50*time.Minute) >= 30*time.Second {
		t.Error("at a 50-minute interval the jitter is not within a hundredth of it")
	}
}
