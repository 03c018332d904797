package lifecycle

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// t0 is the start of every simulated timeline.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func day(n int) time.Duration { return time.Duration(n) * Day }

// offset renders a time on the timeline as days since t0, such as "d180" or
// "d180+1h0m0s".
func offset(at time.Time) string {
	d := at.Sub(t0)
	if rest := d % Day; rest != 0 {
		return fmt.Sprintf("d%d+%s", d/Day, rest)
	}
	return fmt.Sprintf("d%d", d/Day)
}

// op is something a person or an integration does to a credential at a time.
type op struct {
	at   time.Duration
	name string
	do   func(p Policy, s State, now time.Time) (State, string)
}

// access models the access path: refused unless Usable, else it renews the window.
func access(at time.Duration) op {
	return op{at: at, name: "access", do: func(p Policy, s State, now time.Time) (State, string) {
		if err := p.Usable(s, now); err != nil {
			return s, "refused: " + err.Error()
		}
		return Touch(s, now), ""
	}}
}

func unsuspend(at time.Duration) op {
	return op{at: at, name: "unsuspend", do: func(_ Policy, s State, now time.Time) (State, string) {
		return Unsuspend(s, now), ""
	}}
}

func resetInactivity(at time.Duration) op {
	return op{at: at, name: "reset", do: func(_ Policy, s State, now time.Time) (State, string) {
		return Touch(s, now), ""
	}}
}

func suspendByHand(at time.Duration) op {
	return op{at: at, name: "suspend", do: func(_ Policy, s State, now time.Time) (State, string) {
		return Suspend(s, ReasonManual, now), "manual"
	}}
}

// credential is one simulated credential: its effective policy, its state at t0 and
// what happens to it.
type credential struct {
	policy Policy
	state  State
	ops    []op
}

type stepMode int

const (
	hourly    stepMode = iota // the clock ticks every hour, a sweep on each tick
	jumpToDue                 // the clock jumps straight to the next due time or op
)

func (m stepMode) String() string { return [...]string{"hourly", "jump"}[m] }

// simulate runs a sweeper over two years with an injected clock, the way the backend
// does: the Index says which credentials have something due, Policy.Due says what,
// Apply performs it and NextDue re-files the credential. No sweep runs while the
// node is down, in [down[0], down[1]). It returns each credential's log, one line per
// action or op.
func simulate(t *testing.T, creds map[string]credential, down [2]time.Duration, mode stepMode) map[string][]string {
	t.Helper()
	var clock time.Time
	now := func() time.Time { return clock } // the injected clock
	horizon := t0.Add(day(730))

	idx := NewIndex()
	states := map[string]State{}
	logs := map[string][]string{}
	nextOp := map[string]int{}
	for name, c := range creds {
		states[name] = c.state
		idx.Set(name, c.policy.NextDue(c.state))
	}
	isDown := func() bool {
		return down != [2]time.Duration{} && !now().Before(t0.Add(down[0])) && now().Before(t0.Add(down[1]))
	}

	runOps := func() {
		for _, name := range slices.Sorted(maps.Keys(creds)) {
			c := creds[name]
			for nextOp[name] < len(c.ops) && !t0.Add(c.ops[nextOp[name]].at).After(now()) {
				o := c.ops[nextOp[name]]
				nextOp[name]++
				s, ok := states[name]
				if !ok {
					continue // purged
				}
				s, note := o.do(c.policy, s, now())
				states[name] = s
				idx.Set(name, c.policy.NextDue(s))
				line := offset(now()) + " " + o.name
				if note != "" {
					line += " " + note
				}
				logs[name] = append(logs[name], line)
			}
		}
	}
	sweep := func() {
		for _, name := range idx.Due(now(), 0) {
			c, s := creds[name], states[name]
			a, ok := c.policy.Due(s, now())
			if !ok {
				t.Errorf("%s %s: the index said due but Policy.Due found nothing (NextDue %v)", name, offset(now()), c.policy.NextDue(s))
				idx.Set(name, c.policy.NextDue(s))
				continue
			}
			line := fmt.Sprintf("%s %s", offset(now()), a.Kind)
			if a.Threshold != 0 {
				line += " " + strings.TrimPrefix(strings.TrimPrefix(a.Key(), "suspend:"), "purge:")
			}
			line += " " + string(a.Reason)
			if !a.Due.Equal(now()) {
				line += " late " + offset(a.Due)
			}
			logs[name] = append(logs[name], line)
			if a.Kind == ActionPurge {
				delete(states, name)
				idx.Remove(name)
				continue
			}
			s = Apply(s, a, now())
			states[name] = s
			idx.Set(name, c.policy.NextDue(s))
		}
	}

	switch mode {
	case hourly:
		for clock = t0; !clock.After(horizon); clock = clock.Add(time.Hour) {
			runOps()
			if !isDown() {
				sweep()
			}
		}
	case jumpToDue:
		clock = t0
		for range 10000 {
			next := time.Time{}
			if _, due, ok := idx.next(); ok {
				next = due
			}
			for name, c := range creds {
				if i := nextOp[name]; i < len(c.ops) {
					next = earliest(next, t0.Add(c.ops[i].at))
				}
			}
			if next.IsZero() || next.After(horizon) {
				return logs
			}
			if next.After(clock) {
				clock = next
			}
			if isDown() {
				clock = t0.Add(down[1])
			}
			runOps()
			sweep()
		}
		t.Fatal("the sweeper did not settle: NextDue keeps returning a time Due does not act on")
	}
	return logs
}

// TestTimeline runs each scenario over two years in both clock modes and checks that
// every transition and every warning happens exactly once, at the right time, in
// order.
func TestTimeline(t *testing.T) {
	t.Parallel()
	def := DefaultPolicy()
	// The default policy's complete life of a credential nobody uses.
	defaultLife := []string{
		"d90 warn_suspend 90d inactivity",
		"d120 warn_suspend 60d inactivity",
		"d150 warn_suspend 30d inactivity",
		"d173 warn_suspend 7d inactivity",
		"d180 suspend inactivity",
		"d275 warn_purge 90d inactivity",
		"d305 warn_purge 60d inactivity",
		"d335 warn_purge 30d inactivity",
		"d358 warn_purge 7d inactivity",
		"d365 purge inactivity",
	}
	tests := []struct {
		name string
		cred credential
		down [2]time.Duration
		want []string
	}{
		{
			name: "default policy",
			cred: credential{policy: def, state: NewState(t0)},
			want: defaultLife,
		},
		{
			name: "custom overrides: suspend after 1 year, purge after 2",
			cred: credential{
				policy: Policy{SuspendAfter: day(365), PurgeAfter: day(730), WarnBefore: []time.Duration{day(1), day(30), day(7), day(30)}},
				state:  NewState(t0),
			},
			want: []string{
				"d335 warn_suspend 30d inactivity",
				"d358 warn_suspend 7d inactivity",
				"d364 warn_suspend 1d inactivity",
				"d365 suspend inactivity",
				"d700 warn_purge 30d inactivity",
				"d723 warn_purge 7d inactivity",
				"d729 warn_purge 1d inactivity",
				"d730 purge inactivity",
			},
		},
		{
			name: "short windows use only the thresholds that fit",
			cred: credential{policy: Policy{SuspendAfter: day(30), PurgeAfter: day(100), WarnBefore: DefaultPolicy().WarnBefore}, state: NewState(t0)},
			want: []string{
				"d10 warn_purge 90d inactivity", // purge warnings may come before suspension
				"d23 warn_suspend 7d inactivity",
				"d30 suspend inactivity",
				"d40 warn_purge 60d inactivity",
				"d70 warn_purge 30d inactivity",
				"d93 warn_purge 7d inactivity",
				"d100 purge inactivity",
			},
		},
		{
			name: "suspension disabled: purge only",
			cred: credential{policy: Policy{PurgeAfter: day(100), WarnBefore: []time.Duration{day(7)}}, state: NewState(t0)},
			want: []string{"d93 warn_purge 7d inactivity", "d100 purge inactivity"},
		},
		{
			name: "access mid-window resets window and warnings",
			cred: credential{policy: def, state: NewState(t0), ops: []op{access(day(130))}},
			want: []string{
				"d90 warn_suspend 90d inactivity",
				"d120 warn_suspend 60d inactivity",
				"d130 access",
				"d220 warn_suspend 90d inactivity",
				"d250 warn_suspend 60d inactivity",
				"d280 warn_suspend 30d inactivity",
				"d303 warn_suspend 7d inactivity",
				"d310 suspend inactivity",
				"d405 warn_purge 90d inactivity",
				"d435 warn_purge 60d inactivity",
				"d465 warn_purge 30d inactivity",
				"d488 warn_purge 7d inactivity",
				"d495 purge inactivity",
			},
		},
		{
			name: "reset-inactivity after the last warning",
			cred: credential{policy: def, state: NewState(t0), ops: []op{resetInactivity(day(175))}},
			want: []string{
				"d90 warn_suspend 90d inactivity",
				"d120 warn_suspend 60d inactivity",
				"d150 warn_suspend 30d inactivity",
				"d173 warn_suspend 7d inactivity",
				"d175 reset",
				"d265 warn_suspend 90d inactivity",
				"d295 warn_suspend 60d inactivity",
				"d325 warn_suspend 30d inactivity",
				"d348 warn_suspend 7d inactivity",
				"d355 suspend inactivity",
				"d450 warn_purge 90d inactivity",
				"d480 warn_purge 60d inactivity",
				"d510 warn_purge 30d inactivity",
				"d533 warn_purge 7d inactivity",
				"d540 purge inactivity",
			},
		},
		{
			name: "unsuspend restarts the window",
			cred: credential{policy: def, state: NewState(t0), ops: []op{access(day(190)), unsuspend(day(200))}},
			want: []string{
				"d90 warn_suspend 90d inactivity",
				"d120 warn_suspend 60d inactivity",
				"d150 warn_suspend 30d inactivity",
				"d173 warn_suspend 7d inactivity",
				"d180 suspend inactivity",
				"d190 access refused: credential is suspended (inactivity)",
				"d200 unsuspend",
				"d290 warn_suspend 90d inactivity",
				"d320 warn_suspend 60d inactivity",
				"d350 warn_suspend 30d inactivity",
				"d373 warn_suspend 7d inactivity",
				"d380 suspend inactivity",
				"d475 warn_purge 90d inactivity",
				"d505 warn_purge 60d inactivity",
				"d535 warn_purge 30d inactivity",
				"d558 warn_purge 7d inactivity",
				"d565 purge inactivity",
			},
		},
		{
			name: "expires_at before suspension",
			cred: credential{policy: def, state: withExpiry(NewState(t0), day(100))},
			want: []string{
				"d10 warn_suspend 90d expired",
				"d40 warn_suspend 60d expired",
				"d70 warn_suspend 30d expired",
				"d93 warn_suspend 7d expired",
				"d100 suspend expired",
				"d275 warn_purge 90d inactivity",
				"d305 warn_purge 60d inactivity",
				"d335 warn_purge 30d inactivity",
				"d358 warn_purge 7d inactivity",
				"d365 purge inactivity",
			},
		},
		{
			name: "expires_at: warnings already due at an access are not sent again",
			cred: credential{policy: def, state: withExpiry(NewState(t0), day(100)), ops: []op{access(day(50)), access(day(101))}},
			want: []string{
				"d10 warn_suspend 90d expired",
				"d40 warn_suspend 60d expired",
				"d50 access",
				"d70 warn_suspend 30d expired",
				"d93 warn_suspend 7d expired",
				"d100 suspend expired",
				"d101 access refused: credential is suspended (expired)",
				"d325 warn_purge 90d inactivity",
				"d355 warn_purge 60d inactivity",
				"d385 warn_purge 30d inactivity",
				"d408 warn_purge 7d inactivity",
				"d415 purge inactivity",
			},
		},
		{
			name: "late sweep: down days 85-185, suspends without the missed warnings",
			cred: credential{policy: def, state: NewState(t0)},
			down: [2]time.Duration{day(85), day(185)},
			want: []string{
				"d185 suspend inactivity late d180",
				"d275 warn_purge 90d inactivity",
				"d305 warn_purge 60d inactivity",
				"d335 warn_purge 30d inactivity",
				"d358 warn_purge 7d inactivity",
				"d365 purge inactivity",
			},
		},
		{
			name: "late sweep: down days 260-360, only the nearest missed warning",
			cred: credential{policy: def, state: NewState(t0)},
			down: [2]time.Duration{day(260), day(360)},
			want: append(slices.Clone(defaultLife[:5]),
				"d360 warn_purge 7d inactivity late d358",
				"d365 purge inactivity",
			),
		},
		{
			name: "late sweep: down days 300-400, purges without the missed warnings",
			cred: credential{policy: def, state: NewState(t0)},
			down: [2]time.Duration{day(300), day(400)},
			want: append(slices.Clone(defaultLife[:6]),
				"d400 purge inactivity late d365",
			),
		},
		{
			name: "late sweep: down days 95-195, purges without suspending first",
			cred: credential{policy: Policy{SuspendAfter: day(150), PurgeAfter: day(190), WarnBefore: DefaultPolicy().WarnBefore}, state: NewState(t0)},
			down: [2]time.Duration{day(95), day(195)},
			want: []string{
				"d60 warn_suspend 90d inactivity",
				"d90 warn_suspend 60d inactivity",
				"d195 purge inactivity late d190",
			},
		},
		{
			name: "purge of a credential suspended by hand",
			cred: credential{policy: def, state: NewState(t0), ops: []op{suspendByHand(day(10)), access(day(200))}},
			want: []string{
				"d10 suspend manual",
				"d200 access refused: credential is suspended (manual)",
				"d275 warn_purge 90d inactivity",
				"d305 warn_purge 60d inactivity",
				"d335 warn_purge 30d inactivity",
				"d358 warn_purge 7d inactivity",
				"d365 purge inactivity",
			},
		},
		{
			name: "needs re-authorization: not suspended, still purged",
			cred: credential{policy: def, state: NeedsReauth(NewState(t0), "invalid_grant", t0)},
			want: defaultLife[5:],
		},
	}
	for _, tc := range tests {
		for _, mode := range []stepMode{hourly, jumpToDue} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				got := simulate(t, map[string]credential{"c": tc.cred}, tc.down, mode)["c"]
				if !slices.Equal(got, tc.want) {
					t.Errorf("timeline mismatch\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
				}
			})
		}
	}

	// All credentials without downtime in one index: sharing the index changes nothing.
	t.Run("together", func(t *testing.T) {
		t.Parallel()
		creds := map[string]credential{}
		want := map[string][]string{}
		for i, tc := range tests {
			if tc.down == [2]time.Duration{} {
				name := fmt.Sprintf("cred-%02d", i)
				creds[name], want[name] = tc.cred, tc.want
			}
		}
		for _, mode := range []stepMode{hourly, jumpToDue} {
			got := simulate(t, creds, [2]time.Duration{}, mode)
			for name := range creds {
				if !slices.Equal(got[name], want[name]) {
					t.Errorf("%s %s:\ngot  %q\nwant %q", mode, name, got[name], want[name])
				}
			}
		}
	})
}

func withExpiry(s State, after time.Duration) State {
	s.ExpiresAt = t0.Add(after)
	return s
}
