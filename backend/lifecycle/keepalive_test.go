package lifecycle

import (
	"testing"
	"time"
)

func TestNextKeepAlive(t *testing.T) {
	used := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	active := NewState(used.Add(-Day))
	if got := NextKeepAlive(active, used, 7*Day); !got.Equal(used.Add(7 * Day)) {
		t.Errorf("active: %v, want an interval after the last use", got)
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
		if got := NextKeepAlive(tc.s, tc.used, tc.interval); !got.IsZero() {
			t.Errorf("%s: %v, want never", what, got)
		}
	}
	if CheckKeepaliveInterval(30*time.Minute) == nil || CheckKeepaliveInterval(400*Day) == nil || CheckKeepaliveInterval(DefaultKeepaliveInterval) != nil {
		t.Error("keepalive_interval bounds: want one hour to 365 days, the default inside")
	}
}
