package lifecycle

import (
	"fmt"
	"testing"
	"time"
)

// 100,000 credentials verified daily, turned on at one moment: no minute gets much
// more than its share (about 70), where slots without the per-name offset would put
// them all in one minute.
func TestNextVerifySpreadsOverTheInterval(t *testing.T) {
	t.Parallel()
	created := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const n = 100_000
	perMinute := map[int64]int{}
	first, last := time.Time{}, time.Time{}
	for i := range n {
		due := NextVerify(fmt.Sprintf("cred-%06d", i), NewState(created), Day, since)
		if due.Before(since.Add(Day/2)) || !due.Before(since.Add(Day/2+Day)) {
			t.Fatalf("due %v outside [since+12h, since+36h)", due)
		}
		perMinute[due.Unix()/60]++
		if first.IsZero() || due.Before(first) {
			first = due
		}
		if due.After(last) {
			last = due
		}
	}
	worst := 0
	for _, c := range perMinute {
		worst = max(worst, c)
	}
	mean := n / (24 * 60)
	if worst > 2*mean {
		t.Errorf("busiest minute has %d verifications, want at most %d (twice the mean)", worst, 2*mean)
	}
	if last.Sub(first) < 23*time.Hour {
		t.Errorf("verifications span only %s of the day", last.Sub(first))
	}
}

func TestNextVerifyFollowsTheLastVerificationAndNothingElse(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState(created)
	first := NextVerify("a", s, time.Hour, time.Time{})
	if first.Before(created.Add(30*time.Minute)) || !first.Before(created.Add(90*time.Minute)) {
		t.Fatalf("first slot %v not within [created+30m, created+90m)", first)
	}
	// Filed again later, unverified: the same slot, not one pushed later.
	if again := NextVerify("a", Touch(s, created.Add(5*time.Hour)), time.Hour, time.Time{}); !again.Equal(first) {
		t.Errorf("re-filing moved the slot from %v to %v", first, again)
	}
	checked := first.Add(time.Minute)
	v := Verified(s, Verification{Result: VerifyOK, CheckedAt: checked})
	next := NextVerify("a", v, time.Hour, time.Time{})
	if next.Sub(first) != 2*time.Hour && next.Sub(first) != time.Hour || next.Before(checked.Add(30*time.Minute)) {
		t.Errorf("after a verification at %v the next slot is %v (first %v)", checked, next, first)
	}
	if got := NextVerify("a", s, 0, time.Time{}); !got.IsZero() {
		t.Errorf("no interval: %v", got)
	}
	if got := NextVerify("a", Suspend(s, ReasonManual, created), time.Hour, time.Time{}); !got.IsZero() {
		t.Errorf("suspended: %v", got)
	}
	if got := NextVerify("a", NeedsReauth(s, "invalid_grant", created), time.Hour, time.Time{}); !got.IsZero() {
		t.Errorf("needs_reauth: %v", got)
	}
}

func TestFailedVerificationIsRedUntilSuperseded(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState(now)
	failed := Verified(s, Verification{Result: VerifyFailed, Detail: "HTTP 401", CheckedAt: now})
	in := HealthInput{State: failed, Accessed: true}
	if h := p.Health(in, now); h != HealthRed {
		t.Errorf("health after a failed verification = %s", h)
	}
	alerts := p.Alerts("x", in, now)
	if len(alerts) != 1 || alerts[0].Reason != AlertVerifyFailed || alerts[0].Detail != "HTTP 401" {
		t.Errorf("alerts = %+v", alerts)
	}
	if from := p.AlertsFrom(failed); from.After(now) {
		t.Errorf("AlertsFrom %v: a failed verification alerts at once", from)
	}
	if _, changed := Minted(failed, now); changed {
		t.Error("a mint at the same instant as the failure supersedes it")
	}
	ok, changed := Minted(failed, now.Add(time.Minute))
	if !changed || ok.VerifyFailed() || p.Health(HealthInput{State: ok, Accessed: true}, now) != HealthGreen {
		t.Errorf("after a later mint: %+v", ok.Verified)
	}
	if _, changed := Minted(s, now.Add(time.Minute)); changed {
		t.Error("a mint changed a state with no failed verification (a write on every mint)")
	}
	unsupported := Verified(s, Verification{Result: VerifyUnsupported, CheckedAt: now})
	if h := p.Health(HealthInput{State: unsupported, Accessed: true}, now); h != HealthGreen {
		t.Errorf("unsupported verification made health %s", h)
	}
	if st := Verified(s, Verification{Result: VerifyOK, CheckedAt: now.Add(Day)}); !st.ActivityAt.Equal(s.ActivityAt) {
		t.Error("a verification renewed the inactivity window")
	}
}
