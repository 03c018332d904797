package lifecycle

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// upstreamOnly is a policy whose only deadlines are upstream ones: no inactivity
// window can suspend or purge, so whatever Due returns is about the upstream expiry.
var upstreamOnly = Policy{WarnBefore: DefaultPolicy().WarnBefore}

func withSecret(s State, d time.Duration) State {
	return WithUpstream(s, []Upstream{{Field: UpstreamClientSecret, At: at(d)}})
}

// sweepAll runs a sweeper over the timeline from..to: at each NextDue it performs what
// is due. It returns "kind threshold due" per action, and the final state.
func sweepAll(t *testing.T, p Policy, s State, from, to time.Duration) ([]string, State) {
	t.Helper()
	var got []string
	now := at(from)
	for range 50 {
		if next := p.NextDue(s); !next.IsZero() && next.After(now) {
			now = next
		}
		if now.After(at(to)) {
			break
		}
		a, ok := p.Due(s, now)
		if !ok {
			break
		}
		got = append(got, string(a.Kind)+" "+a.Threshold.String()+" "+offset(a.Due))
		s = Apply(s, a, now)
	}
	return got, s
}

func TestUpstreamWarningsAtThresholds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		expires time.Duration // from t0, the write time
		want    []string
	}{
		{"far off: every threshold, then the expiry", day(200), []string{
			"warn_upstream 2160h0m0s d110", "warn_upstream 1440h0m0s d140", "warn_upstream 720h0m0s d170",
			"warn_upstream 168h0m0s d193", "upstream_expired 0s d200",
		}},
		// 3 days left under 90/60/30/7: inside all four; the 7-day one fires at once,
		// once, and none of the larger ones ever does.
		{"3 days left: the smallest threshold it is inside, at once", day(3), []string{
			"warn_upstream 168h0m0s d-4", "upstream_expired 0s d3",
		}},
		{"45 days left: 60 at once, then 30 and 7", day(45), []string{
			"warn_upstream 1440h0m0s d-15", "warn_upstream 720h0m0s d15", "warn_upstream 168h0m0s d38", "upstream_expired 0s d45",
		}},
		{"expired at write: the expiry only", -day(1), []string{"upstream_expired 0s d-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, end := sweepAll(t, upstreamOnly, withSecret(NewState(t0), tc.expires), 0, day(1000))
			if !slices.Equal(got, tc.want) {
				t.Errorf("actions =\n  %q\nwant\n  %q", got, tc.want)
			}
			if end.Status != StatusActive {
				t.Errorf("status %s after the expiry: upstream expiries never suspend", end.Status)
			}
			if next := upstreamOnly.NextDue(end); !next.IsZero() {
				t.Errorf("NextDue %v after everything was announced, want never", next)
			}
			if _, ok := upstreamOnly.Due(end, at(day(5000))); ok {
				t.Error("something due after the expiry was announced")
			}
		})
	}
}

func TestUpstreamNeverSuspends(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	s := WithUpstream(NewState(t0), []Upstream{{Field: UpstreamCertificate, At: at(-day(1))}, {Field: UpstreamClientSecret, At: at(day(3))}})
	if err := p.Usable(s, at(day(10))); err != nil {
		t.Errorf("Usable after both expiries: %v, want usable (the provider decides)", err)
	}
	if got := p.SuspendAt(s); !got.Equal(at(day(180))) {
		t.Errorf("SuspendAt = %v, want the inactivity window's end d180 only", offset(got))
	}
	for now := range 10 {
		a, ok := p.Due(s, at(day(now)))
		if !ok {
			continue
		}
		if a.Kind != ActionWarnUpstream && a.Kind != ActionUpstreamEnd {
			t.Fatalf("day %d: %+v due, want only upstream actions before d90", now, a)
		}
		s = Apply(s, a, at(day(now)))
	}
	if s.Status != StatusActive || s.Reason != "" {
		t.Errorf("state %s/%s, want active", s.Status, s.Reason)
	}
}

func TestUpstreamAlertsAndHealth(t *testing.T) {
	t.Parallel()
	p := upstreamOnly
	s := WithUpstream(NewState(t0), []Upstream{{Field: UpstreamClientSecret, At: at(day(100))}, {Field: UpstreamCertificate, At: at(day(200))}})
	in := HealthInput{State: s, Accessed: true}
	tests := []struct {
		now    time.Duration
		health string
		alerts []string
	}{
		{day(10) - time.Nanosecond, HealthGreen, nil},
		{day(10), HealthYellow, []string{"client_secret_expiring yellow d100 client_secret_expires_at"}},
		{day(100), HealthRed, []string{"client_secret_expired red d100 client_secret_expires_at"}},
		{day(110), HealthRed, []string{"client_secret_expired red d100 client_secret_expires_at", "certificate_expiring yellow d200 certificate not_after"}},
	}
	for _, tc := range tests {
		var got []string
		for _, a := range p.Alerts("c", in, at(tc.now)) {
			got = append(got, a.Reason+" "+a.Severity+" "+offset(a.Due)+" "+a.Detail)
		}
		if !slices.Equal(got, tc.alerts) {
			t.Errorf("at %s: alerts %q, want %q", offset(at(tc.now)), got, tc.alerts)
		}
		if h := p.Health(in, at(tc.now)); h != tc.health {
			t.Errorf("at %s: health %s, want %s", offset(at(tc.now)), h, tc.health)
		}
	}
	if from := p.AlertsFrom(s); !from.Equal(at(day(10))) {
		t.Errorf("AlertsFrom = %s, want d10 (the largest threshold before the first expiry)", offset(from))
	}
	cc := WithUpstream(NewState(t0), []Upstream{{Field: UpstreamClientCertificate, At: at(day(5))}})
	if got := p.Alerts("c", HealthInput{State: cc}, at(day(6))); len(got) != 1 || got[0].Reason != AlertCertificateExpired || got[0].Detail != "client_certificate not_after" {
		t.Errorf("client certificate alerts %+v, want certificate_expired naming client_certificate", got)
	}
}

func TestUpstreamChangedDateStartsAfresh(t *testing.T) {
	t.Parallel()
	p := upstreamOnly
	s := withSecret(NewState(t0), day(3))
	a, _ := p.Due(s, t0)
	s = Apply(s, a, t0)
	if _, ok := p.Due(s, at(day(1))); ok {
		t.Fatal("the 7-day warning came twice")
	}
	// The same date written again (an update that does not touch it) keeps the mark.
	if same := withSecret(s, day(3)); !slices.Equal(same.Upstream, s.Upstream) {
		t.Errorf("rewriting the same date: %+v, want %+v", same.Upstream, s.Upstream)
	}
	// An access renews the inactivity window, not the upstream warnings.
	if touched := Touch(s, at(day(1))); touched.Upstream[0].Warned != day(7) {
		t.Errorf("an access forgot the upstream warning: %+v", touched.Upstream)
	}
	// A new secret, 40 days out: its warnings start afresh (60, the smallest it is
	// inside, at once; then 30 and 7).
	renewed := withSecret(s, day(40))
	if renewed.Upstream[0].Warned != 0 {
		t.Fatalf("new date kept the old mark: %+v", renewed.Upstream)
	}
	got, _ := sweepAll(t, p, renewed, 0, day(100))
	want := []string{"warn_upstream 1440h0m0s d-20", "warn_upstream 720h0m0s d10", "warn_upstream 168h0m0s d33", "upstream_expired 0s d40"}
	if !slices.Equal(got, want) {
		t.Errorf("after a new date: %q, want %q", got, want)
	}
	// Dropping the date drops the expiry.
	if cleared := WithUpstream(s, []Upstream{{Field: UpstreamClientSecret}}); cleared.Upstream != nil {
		t.Errorf("zero date kept: %+v", cleared.Upstream)
	}
}

func TestApplyUpstreamDoesNotAlias(t *testing.T) {
	t.Parallel()
	s := withSecret(NewState(t0), day(3))
	a, _ := upstreamOnly.Due(s, t0)
	_ = Apply(s, a, t0)
	if s.Upstream[0].Warned != 0 {
		t.Errorf("Apply wrote into the caller's state: %+v", s.Upstream)
	}
}

func TestUpstreamMessagesAndReasons(t *testing.T) {
	t.Parallel()
	warn := Action{Kind: ActionWarnUpstream, Due: at(-day(4)), Threshold: day(7), Upstream: UpstreamClientSecret}
	if got, want := warn.Message(), "Client secret expires within 7 days, at 2024-01-04T00:00:00Z."; got != want {
		t.Errorf("Message = %q, want %q", got, want)
	}
	end := Action{Kind: ActionUpstreamEnd, Due: at(day(3)), Upstream: UpstreamCertificate}
	if got := end.Message(); !strings.HasPrefix(got, "Certificate expired at 2024-01-04T00:00:00Z") || !strings.Contains(got, "not suspended") {
		t.Errorf("Message = %q", got)
	}
	for a, want := range map[*Action]string{&warn: AlertSecretExpiring, &end: AlertCertificateExpired, {Kind: ActionWarnSuspend}: ""} {
		if got := a.AlertReason(); got != want {
			t.Errorf("%s AlertReason = %q, want %q", a.Kind, got, want)
		}
	}
}

// TestHalfWindowWarning: a window no threshold fits warns once at half the window.
func TestHalfWindowWarning(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy().WarnBefore
	tests := []struct {
		name  string
		p     Policy
		state State
		want  []string
	}{
		{"5-day suspend_after: once at 2.5 days", Policy{SuspendAfter: day(5), PurgeAfter: day(400), WarnBefore: def}, NewState(t0),
			[]string{"warn_suspend 60h0m0s d2+12h0m0s", "suspend 0s d5"}},
		{"3-day suspend_after and 5-day purge_after: each at half", Policy{SuspendAfter: day(3), PurgeAfter: day(5), WarnBefore: def}, NewState(t0),
			[]string{"warn_suspend 36h0m0s d1+12h0m0s", "warn_purge 60h0m0s d2+12h0m0s", "suspend 0s d3", "purge 0s d5"}},
		{"a fitting threshold: no half-window warning", Policy{SuspendAfter: day(30), PurgeAfter: day(400), WarnBefore: def}, NewState(t0),
			[]string{"warn_suspend 168h0m0s d23", "suspend 0s d30"}},
		{"no thresholds at all (warn_before empty: warnings off): none", Policy{SuspendAfter: day(4), PurgeAfter: day(400)}, NewState(t0),
			[]string{"suspend 0s d4"}},
		{"expires_at is not an inactivity window", Policy{SuspendAfter: day(100), PurgeAfter: day(400), WarnBefore: def}, withExpiry(NewState(t0), day(5)),
			[]string{"suspend 0s d5"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, _ := sweepAll(t, tc.p, tc.state, 0, day(40))
			if !slices.Equal(got, tc.want) {
				t.Errorf("actions =\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
	// The alert opens with the half-window warning, not only when overdue.
	p := Policy{SuspendAfter: day(5), PurgeAfter: day(400), WarnBefore: def}
	in := HealthInput{State: NewState(t0), Accessed: true}
	if got := p.Alerts("c", in, at(day(2))); len(got) != 0 {
		t.Errorf("alert before half the window: %+v", got)
	}
	if got := p.Alerts("c", in, at(day(3))); len(got) != 1 || got[0].Reason != AlertSuspensionPending || got[0].Severity != HealthYellow {
		t.Errorf("alerts after half the window: %+v, want suspension_pending yellow", got)
	}
	msg := Action{Kind: ActionWarnSuspend, Threshold: 60 * time.Hour, Reason: ReasonInactivity}.Message()
	if msg != "Credential will be suspended in 60 hours because it isn't being used." {
		t.Errorf("Message = %q", msg)
	}
}
