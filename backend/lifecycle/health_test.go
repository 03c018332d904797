package lifecycle

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHealthAndAlerts(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	fresh := NewState(t0)
	used := func(s State) HealthInput { return HealthInput{State: s, Accessed: true} }
	tests := []struct {
		name       string
		in         HealthInput
		now        time.Duration
		wantHealth string
		wantAlerts []string // "reason severity due detail"
	}{
		{
			name: "never used", in: HealthInput{State: fresh}, now: day(1),
			wantHealth: HealthAwaitingUsage,
		},
		{
			name: "used", in: used(fresh), now: day(1),
			wantHealth: HealthGreen,
		},
		{
			name: "suspension within the largest threshold", in: used(fresh), now: day(90),
			wantHealth: HealthYellow,
			wantAlerts: []string{"suspension_pending yellow d180 inactivity"},
		},
		{
			name: "never used and suspension pending: the problem shows", in: HealthInput{State: fresh}, now: day(100),
			wantHealth: HealthYellow,
			wantAlerts: []string{"suspension_pending yellow d180 inactivity"},
		},
		{
			name: "suspension overdue before the sweep", in: used(fresh), now: day(181),
			wantHealth: HealthRed,
			wantAlerts: []string{"suspension_pending red d180 inactivity"},
		},
		{
			name: "transient failure", in: HealthInput{State: fresh, Accessed: true, TransientFailure: true, ConsecutiveFailures: 1}, now: day(1),
			wantHealth: HealthYellow,
		},
		{
			name: "two failures", in: HealthInput{State: fresh, Accessed: true, ConsecutiveFailures: 2}, now: day(1),
			wantHealth: HealthYellow,
		},
		{
			name: "repeated failures", in: HealthInput{State: fresh, Accessed: true, ConsecutiveFailures: 3}, now: day(1),
			wantHealth: HealthRed,
			wantAlerts: []string{"failing red - 3 failures in a row"},
		},
		{
			name: "suspended by hand", in: used(Suspend(fresh, ReasonManual, at(day(10)))), now: day(11),
			wantHealth: HealthRed,
			wantAlerts: []string{"suspended red d10 manual"},
		},
		{
			name: "suspended and purge pending", in: used(Suspend(fresh, ReasonInactivity, at(day(180)))), now: day(280),
			wantHealth: HealthRed,
			wantAlerts: []string{"suspended red d180 inactivity", "purge_pending yellow d365 inactivity"},
		},
		{
			name: "needs re-authorization", in: used(NeedsReauth(fresh, "invalid_grant", at(day(3)))), now: day(4),
			wantHealth: HealthRed,
			wantAlerts: []string{"needs_reauth red d3 invalid_grant"},
		},
		{
			name: "expiry within its warning window", in: used(withExpiry(fresh, day(100))), now: day(10),
			wantHealth: HealthYellow,
			wantAlerts: []string{"expiring yellow d100 expires_at"},
		},
		{
			name: "expiry within 30 days after a recent access", in: used(withExpiry(Touch(fresh, at(day(75))), day(100))), now: day(80),
			wantHealth: HealthYellow,
			wantAlerts: []string{"expiring yellow d100 expires_at"},
		},
		{
			name: "expiry far away", in: used(withExpiry(fresh, day(400))), now: day(10),
			wantHealth: HealthGreen,
		},
		{
			name: "expired before the sweep", in: used(withExpiry(fresh, day(100))), now: day(100),
			wantHealth: HealthRed,
			wantAlerts: []string{"expired red d100 expires_at"},
		},
		{
			name: "suspended as expired", in: used(Suspend(withExpiry(fresh, day(100)), ReasonExpired, at(day(100)))), now: day(101),
			wantHealth: HealthRed,
			wantAlerts: []string{"suspended red d100 expired"},
		},
		{
			name: "needs reauth and expiring", in: used(withExpiry(NeedsReauth(fresh, "invalid_client", at(day(1))), day(20))), now: day(2),
			wantHealth: HealthRed,
			wantAlerts: []string{"needs_reauth red d1 invalid_client", "expiring yellow d20 expires_at"},
		},
		{
			name: "certificate expiring", in: HealthInput{State: withCert(fresh, day(40)), Accessed: true}, now: day(10),
			wantHealth: HealthYellow,
			wantAlerts: []string{"certificate_expiring yellow d40 certificate not_after"},
		},
		{
			name: "certificate expiring, never used", in: HealthInput{State: withCert(fresh, day(40))}, now: day(10),
			wantHealth: HealthYellow,
			wantAlerts: []string{"certificate_expiring yellow d40 certificate not_after"},
		},
		{
			name: "certificate beyond the largest threshold", in: HealthInput{State: withCert(fresh, day(101)), Accessed: true}, now: day(10),
			wantHealth: HealthGreen,
		},
		{
			name: "certificate expired", in: HealthInput{State: withCert(fresh, day(5)), Accessed: true}, now: day(10),
			wantHealth: HealthRed,
			wantAlerts: []string{"certificate_expired red d5 certificate not_after"},
		},
		{
			name: "everything at once, earliest first",
			in: HealthInput{
				State: withCert(NeedsReauth(withExpiry(fresh, day(120)), "invalid_grant", at(day(95))), day(110)), Accessed: true,
				ConsecutiveFailures: 4,
			},
			now:        day(100),
			wantHealth: HealthRed,
			wantAlerts: []string{
				"failing red - 4 failures in a row",
				"needs_reauth red d95 invalid_grant",
				"certificate_expiring yellow d110 certificate not_after",
				"expiring yellow d120 expires_at",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := def
			if got := p.Health(tc.in, at(tc.now)); got != tc.wantHealth {
				t.Errorf("Health = %q, want %q", got, tc.wantHealth)
			}
			var got []string
			for _, a := range p.Alerts("c", tc.in, at(tc.now)) {
				if a.Name != "c" {
					t.Errorf("alert names %q, want c", a.Name)
				}
				due := "-"
				if !a.Due.IsZero() {
					due = offset(a.Due)
				}
				got = append(got, fmt.Sprintf("%s %s %s %s", a.Reason, a.Severity, due, a.Detail))
			}
			if !slices.Equal(got, tc.wantAlerts) {
				t.Errorf("Alerts =\n  %q\nwant\n  %q", got, tc.wantAlerts)
			}
		})
	}
}

// TestShortWindowAlertOpens pins when the alert of a 30-day window opens: with its
// only fitting warning, 7 days ahead, not 90.
func TestShortWindowAlertOpens(t *testing.T) {
	t.Parallel()
	p := Policy{SuspendAfter: day(30), WarnBefore: DefaultPolicy().WarnBefore}
	in := HealthInput{State: NewState(t0), Accessed: true}
	if got := p.Alerts("c", in, at(day(23)-time.Nanosecond)); len(got) != 0 {
		t.Errorf("alert before the 7-day warning: %+v", got)
	}
	if got := p.Alerts("c", in, at(day(23))); len(got) != 1 || got[0].Reason != AlertSuspensionPending {
		t.Errorf("no alert at the 7-day warning: %+v", got)
	}
	if got := p.Health(in, at(day(23))); got != HealthYellow {
		t.Errorf("Health = %q at the 7-day warning, want yellow", got)
	}
}

// TestAlertsFromBoundsAlerts checks the promise an alert index relies on: before
// AlertsFrom, Alerts lists nothing but repeated failures; at and after it, anything
// listed is found. Random policies, states (expiry, certificate end, suspension,
// re-authorization, warnings sent, accesses) and times.
func TestAlertsFromBoundsAlerts(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	randDur := func(maxDays int) time.Duration {
		if rng.IntN(5) == 0 {
			return 0
		}
		return time.Duration(rng.Int64N(int64(day(maxDays)))) + time.Hour
	}
	found := 0
	for i := range 5000 {
		p := Policy{SuspendAfter: randDur(400), PurgeAfter: randDur(800)}
		for range rng.IntN(6) {
			p.WarnBefore = append(p.WarnBefore, randDur(120))
		}
		s := NewState(t0)
		if rng.IntN(3) == 0 {
			s.ExpiresAt = t0.Add(randDur(500))
		}
		var ups []Upstream
		for _, f := range []string{UpstreamCertificate, UpstreamClientSecret} {
			if rng.IntN(3) == 0 {
				ups = append(ups, Upstream{Field: f, At: t0.Add(randDur(500))})
			}
		}
		s = WithUpstream(s, ups)
		if rng.IntN(3) == 0 {
			s = Touch(s, t0.Add(randDur(100)))
		}
		switch rng.IntN(6) {
		case 0:
			s = Suspend(s, ReasonManual, t0.Add(randDur(50)))
		case 1:
			s = NeedsReauth(s, ReasonManual, t0.Add(randDur(50)))
		case 2:
			if a, ok := p.Due(s, t0.Add(randDur(600))); ok {
				s = Apply(s, a, a.Due)
			}
		}
		from := p.AlertsFrom(s)
		in := HealthInput{State: s, Accessed: true, ConsecutiveFailures: rng.IntN(FailingAfter)}
		for range 20 {
			now := t0.Add(time.Duration(rng.Int64N(int64(day(1500)))))
			alerts := p.Alerts("x", in, now)
			if len(alerts) == 0 {
				continue
			}
			found++
			if from.IsZero() || now.Before(from) {
				t.Fatalf("case %d: alerts %v at %v, but AlertsFrom is %v (policy %+v, state %+v)", i, alerts, now, from, p, s)
			}
		}
	}
	if found < 1000 {
		t.Fatalf("only %d alerting samples: the generator does not exercise AlertsFrom", found)
	}
}

// withCert gives s a certificate that expires at offset d.
func withCert(s State, d time.Duration) State {
	return WithUpstream(s, []Upstream{{Field: UpstreamCertificate, At: at(d)}})
}
