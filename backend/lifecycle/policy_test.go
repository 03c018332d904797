package lifecycle

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func warned(s State, keys ...string) State {
	s.Warned = keys
	return s
}

func TestDue(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	fresh := NewState(t0)
	suspended := Suspend(fresh, ReasonInactivity, at(day(180)))
	tests := []struct {
		name   string
		policy Policy
		state  State
		now    time.Duration
		want   string // "kind threshold reason due", or "" for nothing due
	}{
		{"nothing at creation", def, fresh, 0, ""},
		{"nothing the moment before the first warning", def, fresh, day(90) - time.Nanosecond, ""},
		{"first warning", def, fresh, day(90), "warn_suspend 90d inactivity d90"},
		{"first warning sent", def, warned(fresh, "suspend:90d"), day(100), ""},
		{"first warning late", def, fresh, day(100), "warn_suspend 90d inactivity d90"},
		{"missed warning superseded by a nearer one", def, fresh, day(125), "warn_suspend 60d inactivity d120"},
		{"nearest sent, farther missed: nothing", def, warned(fresh, "suspend:60d"), day(125), ""},
		{"clock behind a sent warning: nothing", def, warned(fresh, "suspend:30d"), day(125), ""},
		{"suspension beats its warnings", def, fresh, day(180), "suspend 0s inactivity d180"},
		{"purge beats suspension", def, fresh, day(400), "purge 0s inactivity d365"},
		{"suspended: no suspension warnings", def, suspended, day(200), ""},
		{"suspended: purge warnings", def, suspended, day(275), "warn_purge 90d inactivity d275"},
		{"suspended: purge", def, suspended, day(365), "purge 0s inactivity d365"},
		{
			"purge warning beats suspension warning",
			Policy{SuspendAfter: day(300), PurgeAfter: day(365), WarnBefore: DefaultPolicy().WarnBefore},
			fresh, day(280), "warn_purge 90d inactivity d275",
		},
		{
			"then the suspension warning",
			Policy{SuspendAfter: day(300), PurgeAfter: day(365), WarnBefore: DefaultPolicy().WarnBefore},
			warned(fresh, "purge:90d"), day(280), "warn_suspend 30d inactivity d270",
		},
		{
			"unsorted duplicate thresholds act sorted",
			Policy{SuspendAfter: day(180), WarnBefore: []time.Duration{day(7), day(90), day(7), -day(1), day(30)}},
			warned(fresh, "suspend:90d"), day(160), "warn_suspend 30d inactivity d150",
		},
		{"expiry on the same day as inactivity: expired", def, withExpiry(fresh, day(180)), day(180), "suspend 0s expired d180"},
		{"expiry warning", def, withExpiry(fresh, day(20)), day(13), "warn_suspend 7d expired d13"},
		{"expiry ignores too-long thresholds", def, withExpiry(fresh, day(20)), day(12), ""},
		{"expiry alone, inactivity off", Policy{}, withExpiry(fresh, day(20)), day(20), "suspend 0s expired d20"},
		{"needs reauth is not suspended", def, NeedsReauth(fresh, "invalid_grant", t0), day(200), ""},
		{"no activity known: nothing", def, State{Status: StatusActive}, day(1000), ""},
		{"purged: nothing", def, State{Status: StatusPurged, CreatedAt: t0}, day(1000), ""},
		{"zero policy: nothing ever", Policy{}, fresh, day(10000), ""},
		{
			"sub-day threshold key",
			Policy{SuspendAfter: day(1), WarnBefore: []time.Duration{36 * time.Hour, 12 * time.Hour}},
			fresh, day(1), "suspend 0s inactivity d1",
		},
		{
			"sub-day threshold",
			Policy{SuspendAfter: day(1), WarnBefore: []time.Duration{36 * time.Hour, 12 * time.Hour}},
			fresh, 13 * time.Hour, "warn_suspend 12h0m0s inactivity d0+12h0m0s",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, ok := tc.policy.Due(tc.state, at(tc.now))
			got := ""
			if ok {
				got = string(a.Kind) + " " + strings.TrimPrefix(strings.TrimPrefix(a.Key(), "suspend:"), "purge:")
				if a.Key() == "" {
					got += a.Threshold.String()
				}
				got += " " + string(a.Reason) + " " + offset(a.Due)
			}
			if got != tc.want {
				t.Errorf("Due = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSameInstant: a short window whose first purge warning falls on the day of
// suspension. One sweep suspends; the warning comes at the next, not never.
func TestSameInstant(t *testing.T) {
	t.Parallel()
	p := Policy{SuspendAfter: day(30), PurgeAfter: day(60), WarnBefore: DefaultPolicy().WarnBefore}
	s := NewState(t0)
	now := at(day(30))
	var kinds []string
	for range 5 {
		a, ok := p.Due(s, now)
		if !ok {
			break
		}
		kinds = append(kinds, string(a.Kind)+" "+a.Key())
		s = Apply(s, a, now)
		if next := p.NextDue(s); next.After(now) {
			break
		}
	}
	want := []string{"suspend ", "warn_purge purge:30d"}
	if !slices.Equal(kinds, want) {
		t.Errorf("sweeps at d30 did %q, want %q", kinds, want)
	}
	if next := p.NextDue(s); !next.Equal(at(day(53))) {
		t.Errorf("NextDue %s, want d53", offset(next))
	}
}

// TestNextDueAgreesWithDue checks, over random policies and histories, the contract
// the sweeper relies on: nothing is due before NextDue and something is due at it.
func TestNextDueAgreesWithDue(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	randDur := func(maxDays int) time.Duration {
		if rng.IntN(5) == 0 {
			return 0
		}
		return time.Duration(rng.Int64N(int64(day(maxDays)))) + time.Hour
	}
	for i := range 2000 {
		p := Policy{SuspendAfter: randDur(400), PurgeAfter: randDur(800)}
		for range rng.IntN(6) {
			p.WarnBefore = append(p.WarnBefore, randDur(120))
		}
		s := NewState(t0)
		if rng.IntN(3) == 0 {
			s.ExpiresAt = t0.Add(randDur(500))
		}
		var ups []Upstream // upstream expiries, some already passed when written
		for _, f := range []string{UpstreamCertificate, UpstreamClientSecret, UpstreamClientCertificate} {
			if rng.IntN(3) == 0 {
				ups = append(ups, Upstream{Field: f, At: t0.Add(randDur(600) - day(30))})
			}
		}
		s = WithUpstream(s, ups)
		now := t0
		for step := 0; step < 40 && s.Status != StatusPurged; step++ {
			next := p.NextDue(s)
			if next.IsZero() {
				if a, ok := p.Due(s, now.Add(day(5000))); ok {
					t.Fatalf("case %d: NextDue zero but %v due later (policy %+v, state %+v)", i, a, p, s)
				}
				break
			}
			if a, ok := p.Due(s, next.Add(-time.Nanosecond)); ok {
				t.Fatalf("case %d: %v due before NextDue %v (policy %+v, state %+v)", i, a, next, p, s)
			}
			if _, ok := p.Due(s, next); !ok {
				t.Fatalf("case %d: nothing due at NextDue %v (policy %+v, state %+v)", i, next, p, s)
			}
			// Advance like a sweeper, sometimes late, sometimes with an op in between.
			if next.After(now) {
				now = next
			}
			switch rng.IntN(8) {
			case 0:
				now = now.Add(randDur(200))
			case 1:
				s = Touch(s, now.Add(-randDur(2)))
			case 2:
				s = Unsuspend(s, now)
			}
			if a, ok := p.Due(s, now); ok {
				s = Apply(s, a, now)
			}
		}
	}
}

func TestTouchAndTransitions(t *testing.T) {
	t.Parallel()
	s := warned(NewState(t0), "suspend:90d")

	if got := Touch(s, t0); !slices.Equal(got.Warned, s.Warned) || !got.ActivityAt.Equal(t0) {
		t.Errorf("Touch at the window start changed the state: %+v", got)
	}
	if got := Touch(s, at(-day(1))); !got.ActivityAt.Equal(t0) || len(got.Warned) != 1 {
		t.Errorf("Touch with an older time moved the window back: %+v", got)
	}
	touched := Touch(s, at(day(1)))
	if !touched.ActivityAt.Equal(at(day(1))) || touched.Warned != nil || touched.Status != StatusActive {
		t.Errorf("Touch = %+v, want window at d1 and warnings cleared", touched)
	}

	sus := Suspend(s, ReasonManual, at(day(2)))
	if sus.Status != StatusSuspended || sus.Reason != ReasonManual || !sus.SuspendedAt.Equal(at(day(2))) {
		t.Errorf("Suspend = %+v", sus)
	}
	if again := Suspend(sus, ReasonInactivity, at(day(3))); again.Reason != ReasonManual || !again.SuspendedAt.Equal(at(day(2))) {
		t.Errorf("a second suspension overwrote the first: %+v", again)
	}
	if tt := Touch(sus, at(day(4))); tt.Status != StatusSuspended {
		t.Errorf("Touch unsuspended: %+v", tt)
	}
	un := Unsuspend(sus, at(day(5)))
	if un.Status != StatusActive || un.Reason != "" || !un.SuspendedAt.IsZero() || !un.ActivityAt.Equal(at(day(5))) || un.Warned != nil {
		t.Errorf("Unsuspend = %+v", un)
	}

	re := NeedsReauth(un, "invalid_grant", at(day(6)))
	if re.Status != StatusNeedsReauth || re.Reason != "invalid_grant" || !re.NeedsReauthAt.Equal(at(day(6))) {
		t.Errorf("NeedsReauth = %+v", re)
	}
	if got := NeedsReauth(sus, "invalid_grant", at(day(6))); got.Status != StatusSuspended {
		t.Errorf("NeedsReauth replaced a suspension: %+v", got)
	}
	ok := Reauthorized(re, at(day(7)))
	if ok.Status != StatusActive || ok.Reason != "" || !ok.NeedsReauthAt.IsZero() || !ok.ActivityAt.Equal(at(day(7))) {
		t.Errorf("Reauthorized = %+v", ok)
	}
	// New limits restart the window; the same limits leave the state alone.
	exp := at(day(100))
	if got := NewLimits(s, exp, false, at(day(8))); !got.ExpiresAt.Equal(exp) || !got.ActivityAt.Equal(at(day(8))) || got.Warned != nil {
		t.Errorf("NewLimits(new expiry) = %+v, want a new window", got)
	}
	if got := NewLimits(s, time.Time{}, true, at(day(8))); !got.ActivityAt.Equal(at(day(8))) {
		t.Errorf("NewLimits(new windows) = %+v, want a new window", got)
	}
	if got := NewLimits(s, time.Time{}, false, at(day(8))); !got.ActivityAt.Equal(s.ActivityAt) || len(got.Warned) != 1 {
		t.Errorf("NewLimits(unchanged) = %+v, want the state as it was", got)
	}
	// New settings retry a refused grant without renewing the window.
	if got := Reconfigured(re); got.Status != StatusActive || got.Reason != "" || !got.NeedsReauthAt.IsZero() || !got.ActivityAt.Equal(re.ActivityAt) {
		t.Errorf("Reconfigured(needs_reauth) = %+v", got)
	}
	if got := Reconfigured(sus); got.Status != StatusSuspended || got.Reason != ReasonManual {
		t.Errorf("Reconfigured lifted a suspension: %+v", got)
	}

	if got := Apply(s, Action{Kind: ActionPurge, Reason: ReasonInactivity}, at(day(365))); got.Status != StatusPurged {
		t.Errorf("Apply(purge) = %+v", got)
	}
	if got := Apply(s, Action{Kind: ActionWarnSuspend, Threshold: day(90)}, at(day(91))); len(got.Warned) != 1 {
		t.Errorf("a repeated warning was recorded twice: %q", got.Warned)
	}
}

// TestApplyDoesNotAlias guards the value semantics of State: applying a warning to a
// copy must not show up in the original's Warned.
func TestApplyDoesNotAlias(t *testing.T) {
	t.Parallel()
	base := NewState(t0)
	base.Warned = make([]string, 1, 4)
	base.Warned[0] = "suspend:90d"
	a := Apply(base, Action{Kind: ActionWarnSuspend, Threshold: day(60)}, at(day(120)))
	b := Apply(base, Action{Kind: ActionWarnPurge, Threshold: day(90)}, at(day(275)))
	if a.Warned[1] != "suspend:60d" || b.Warned[1] != "purge:90d" {
		t.Errorf("Warned aliased: %q %q", a.Warned, b.Warned)
	}
}

// TestValidate: one rule set for the engine's config and every credential's effective
// policy. Purge equal to suspension, or a window of zero, is refused (the engine's
// rule; an earlier Validate, used only by tests, allowed both).
func TestValidate(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	tests := []struct {
		name    string
		p       Policy
		wantErr string
	}{
		{"default", def, ""},
		{"no warnings", Policy{SuspendAfter: day(10), PurgeAfter: day(11)}, ""},
		{"zero suspend", Policy{PurgeAfter: day(10)}, "suspend_after must be a positive duration"},
		{"zero purge", Policy{SuspendAfter: day(10)}, "purge_after must be a positive duration"},
		{"negative suspend", Policy{SuspendAfter: -1, PurgeAfter: day(10)}, "suspend_after must be a positive duration"},
		{"purge equal to suspend", Policy{SuspendAfter: day(10), PurgeAfter: day(10)}, "purge_after must be longer than suspend_after"},
		{"purge before suspend", Policy{SuspendAfter: day(10), PurgeAfter: day(5)}, "purge_after must be longer than suspend_after"},
		{"zero threshold", Policy{SuspendAfter: day(10), PurgeAfter: day(20), WarnBefore: []time.Duration{0}}, "each threshold must be a positive duration"},
		{"thresholds out of order", Policy{SuspendAfter: day(10), PurgeAfter: day(20), WarnBefore: []time.Duration{day(1), day(2)}}, "largest first"},
		{"repeated threshold", Policy{SuspendAfter: day(10), PurgeAfter: day(20), WarnBefore: []time.Duration{day(2), day(2)}}, "without repeats"},
		{"too many thresholds", Policy{SuspendAfter: day(100), PurgeAfter: day(200), WarnBefore: make([]time.Duration, MaxWarnThresholds+1)}, "at most 16 thresholds"},
		// A credential's own short window skips the thresholds too long for it.
		{"thresholds longer than the window", def.Override(day(1), day(2)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.p.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
			var re *RuleError
			if err != nil && !errors.As(err, &re) {
				t.Errorf("Validate() = %T, want a *RuleError naming the setting", err)
			}
		})
	}
	if err := def.Override(day(1), day(2)).ValidateDefault(); err == nil || !strings.Contains(err.Error(), "warn_before each threshold must be shorter than suspend_after") {
		t.Errorf("ValidateDefault with thresholds beyond suspend_after = %v", err)
	}
	if err := def.ValidateDefault(); err != nil {
		t.Errorf("ValidateDefault(DefaultPolicy()) = %v", err)
	}
}

// TestOverride: a credential's own windows replace the config's; zero keeps them.
func TestOverride(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	if got := def.Override(0, 0); got.SuspendAfter != def.SuspendAfter || got.PurgeAfter != def.PurgeAfter {
		t.Errorf("Override(0, 0) = %+v, want the defaults", got)
	}
	if got := def.Override(day(2), 0); got.SuspendAfter != day(2) || got.PurgeAfter != def.PurgeAfter || len(got.WarnBefore) != len(def.WarnBefore) {
		t.Errorf("Override(2d, 0) = %+v", got)
	}
	if got := def.Override(0, day(400)); got.SuspendAfter != def.SuspendAfter || got.PurgeAfter != day(400) {
		t.Errorf("Override(0, 400d) = %+v", got)
	}
}

func TestUsable(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	fresh := NewState(t0)
	purgeOnly := Policy{PurgeAfter: day(365)}
	tests := []struct {
		name   string
		policy Policy
		state  State
		now    time.Duration
		want   string
	}{
		{"active", def, fresh, day(100), ""},
		{"window ran out before the sweep", def, fresh, day(180), "credential is suspended (inactivity)"},
		{"expired before the sweep", def, withExpiry(fresh, day(10)), day(10), "credential is suspended (expired)"},
		{"purge overdue before the sweep", purgeOnly, fresh, day(365), "credential is purged (inactivity)"},
		{"purge not yet", purgeOnly, fresh, day(364), ""},
		{"suspended", def, Suspend(fresh, ReasonManual, t0), day(1), "credential is suspended (manual)"},
		{"needs reauth", def, NeedsReauth(fresh, "invalid_grant", t0), day(1), "credential needs re-authorization (invalid_grant)"},
		{"renewed by an unflushed access", def, Touch(fresh, at(day(179))), day(180), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.policy.Usable(tc.state, at(tc.now))
			got := ""
			if err != nil {
				got = err.Error()
				var ue *UnavailableError
				if !errors.As(err, &ue) {
					t.Errorf("error %T is not an *UnavailableError", err)
				}
			}
			if got != tc.want {
				t.Errorf("Usable = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestActionMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a    Action
		want string
	}{
		{Action{Kind: ActionWarnPurge, Threshold: day(90)}, "Credential will be purged in 90 days because it isn't being used."},
		{Action{Kind: ActionWarnSuspend, Threshold: day(1), Reason: ReasonInactivity}, "Credential will be suspended in 1 day because it isn't being used."},
		{Action{Kind: ActionWarnSuspend, Threshold: 12 * time.Hour, Reason: ReasonExpired}, "Credential will expire and be suspended in 12h0m0s."},
		{Action{Kind: ActionSuspend, Reason: ReasonExpired}, "Credential suspended because it expired."},
		{Action{Kind: ActionSuspend, Reason: ReasonInactivity}, "Credential suspended because it isn't being used."},
		{Action{Kind: ActionPurge, Reason: ReasonInactivity}, "Credential purged because it isn't being used."},
	}
	for _, tc := range tests {
		if got := tc.a.Message(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.a, got, tc.want)
		}
	}
}

// TestStateJSON pins the stored field names; unset times are left out.
func TestStateJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(warned(NewState(t0), "suspend:90d"))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"status":"active","created_at":"2024-01-01T00:00:00Z","activity_at":"2024-01-01T00:00:00Z","warned":["suspend:90d"]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil || back.Status != StatusActive || !back.ActivityAt.Equal(t0) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestCheckWindow(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{Day, Day + time.Second, 365 * Day} {
		if err := CheckWindow(d); err != nil {
			t.Errorf("CheckWindow(%s) = %v, want nil", d, err)
		}
	}
	for _, d := range []time.Duration{0, time.Second, Day - time.Second, -Day} {
		if err := CheckWindow(d); err == nil || !strings.Contains(err.Error(), "at least one day (86400 seconds)") {
			t.Errorf("CheckWindow(%s) = %v, want the one-day minimum", d, err)
		}
	}
}
