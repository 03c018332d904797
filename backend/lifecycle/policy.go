package lifecycle

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Day is the unit the limits are expressed in.
const Day = 24 * time.Hour

// MinWindow is the shortest suspend_after or purge_after a credential may set for
// itself. Anyone allowed to update a credential may set its windows; a window of
// seconds would let that right suspend or purge the credential at once, turning an
// update right into a delete right.
const MinWindow = Day

// MinWindowRule states MinWindow, for the catalog's rule and the refusal alike.
var MinWindowRule = fmt.Sprintf("at least one day (%d seconds)", int64(MinWindow/time.Second))

// MaxWarnThresholds bounds warn_before.
const MaxWarnThresholds = 16

// CheckWindow reports whether d may be a credential's own suspend_after or
// purge_after. The error is a rule, phrased to follow the field name.
func CheckWindow(d time.Duration) error {
	if d < MinWindow {
		return errors.New("must be a positive duration of " + MinWindowRule + ": a shorter window would let an update suspend or purge the credential at once")
	}
	return nil
}

// DefaultPolicy is the policy of a mount with no configuration, from the design:
// the vendor's six months to suspension and one year to purge, warned 90, 60, 30 and
// 7 days ahead. The engine's config defaults are this policy.
func DefaultPolicy() Policy {
	return Policy{SuspendAfter: 180 * Day, PurgeAfter: 365 * Day, WarnBefore: []time.Duration{90 * Day, 60 * Day, 30 * Day, 7 * Day}}
}

// Policy is the effective inactivity policy of one credential: the mount's config
// with the credential's overrides (Override).
type Policy struct {
	// SuspendAfter and PurgeAfter count from the start of the inactivity window; a
	// suspended credential keeps counting toward purge. Validate requires both, but Due
	// and the rest treat zero as "this step never happens".
	SuspendAfter time.Duration
	PurgeAfter   time.Duration
	// WarnBefore lists how long before a suspension or purge to warn. A threshold is
	// used only when its warning falls inside the window, so a 30-day window with the
	// default schedule is warned 7 days ahead only.
	WarnBefore []time.Duration
}

// Override returns p with a credential's own windows in place of p's; a zero window
// keeps p's (the credential sets none).
func (p Policy) Override(suspendAfter, purgeAfter time.Duration) Policy {
	if suspendAfter > 0 {
		p.SuspendAfter = suspendAfter
	}
	if purgeAfter > 0 {
		p.PurgeAfter = purgeAfter
	}
	return p
}

// RuleError is the rule a policy breaks, naming the setting; the backend turns it into
// its field error.
type RuleError struct {
	Field, Rule string
}

func (e *RuleError) Error() string { return e.Field + " " + e.Rule }

// Validate reports the first rule p breaks: both windows positive, purge_after longer
// than suspend_after, and the warning thresholds positive, largest first without
// repeats, at most MaxWarnThresholds. It holds for the engine's config and for every
// credential's effective policy (the config with its overrides).
func (p Policy) Validate() error {
	switch {
	case p.SuspendAfter <= 0:
		return &RuleError{"suspend_after", "must be a positive duration"}
	case p.PurgeAfter <= 0:
		return &RuleError{"purge_after", "must be a positive duration"}
	case p.PurgeAfter <= p.SuspendAfter:
		// The values in force are named: the one the request changed, and the other it
		// conflicts with (config's or the credential's own).
		return &RuleError{"purge_after", fmt.Sprintf("must be longer than suspend_after: purge_after is %s, suspend_after %s",
			humanDuration(p.PurgeAfter), humanDuration(p.SuspendAfter))}
	case len(p.WarnBefore) > MaxWarnThresholds:
		return &RuleError{"warn_before", fmt.Sprintf("at most %d thresholds", MaxWarnThresholds)}
	}
	for i, w := range p.WarnBefore {
		if w <= 0 {
			return &RuleError{"warn_before", "each threshold must be a positive duration"}
		}
		if i > 0 && w >= p.WarnBefore[i-1] {
			return &RuleError{"warn_before", "thresholds must be listed largest first, without repeats"}
		}
	}
	return nil
}

// ValidateDefault is Validate for the engine's config, whose thresholds must also fit
// its suspend_after: a default schedule that can never be sent is a mistake, while a
// credential with a shorter window of its own just skips the thresholds too long for it.
func (p Policy) ValidateDefault() error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, w := range p.WarnBefore {
		if w >= p.SuspendAfter {
			return &RuleError{"warn_before", fmt.Sprintf("each threshold must be shorter than suspend_after (and so than purge_after): %s is not shorter than suspend_after %s",
				humanDuration(w), humanDuration(p.SuspendAfter))}
		}
	}
	return nil
}

// ActionKind is what a sweep does to a credential.
type ActionKind string

// Action kinds, from least to most severe.
const (
	ActionWarnSuspend ActionKind = "warn_suspend"
	ActionWarnPurge   ActionKind = "warn_purge"
	ActionSuspend     ActionKind = "suspend"
	ActionPurge       ActionKind = "purge"
)

// Action is one thing a sweep should do.
type Action struct {
	Kind ActionKind
	// Due is when the action became due; a late sweep performs it after that.
	Due time.Time
	// Threshold is how far ahead a warning is given; zero for suspend and purge.
	Threshold time.Duration
	// Reason is why the suspension or purge happens (or will, for a warning).
	Reason Reason
	// Upstream names the upstream expiry (Upstream.Field) of an upstream action.
	Upstream string
}

// Key is the warning's entry in State.Warned, such as "suspend:30d"; empty for
// suspend and purge.
func (a Action) Key() string {
	switch a.Kind {
	case ActionWarnSuspend:
		return warnKey("suspend:", a.Threshold)
	case ActionWarnPurge:
		return warnKey("purge:", a.Threshold)
	}
	return ""
}

func warnKey(prefix string, t time.Duration) string {
	if t%Day == 0 {
		return prefix + strconv.FormatInt(int64(t/Day), 10) + "d"
	}
	return prefix + t.String()
}

// Message is the text for the log event and notification, in the vendor's words.
func (a Action) Message() string {
	expired := a.Reason == ReasonExpired
	switch {
	case a.Kind == ActionWarnUpstream || a.Kind == ActionUpstreamEnd:
		return a.upstreamMessage()
	case a.Kind == ActionWarnSuspend && expired:
		return "Credential will expire and be suspended in " + humanDuration(a.Threshold) + "."
	case a.Kind == ActionWarnSuspend:
		return "Credential will be suspended in " + humanDuration(a.Threshold) + " because it isn't being used."
	case a.Kind == ActionWarnPurge:
		return "Credential will be purged in " + humanDuration(a.Threshold) + " because it isn't being used."
	case a.Kind == ActionSuspend && expired:
		return "Credential suspended because it expired."
	case a.Kind == ActionSuspend:
		return "Credential suspended because it isn't being used."
	case a.Kind == ActionPurge:
		return "Credential purged because it isn't being used."
	}
	return string(a.Kind)
}

func humanDuration(d time.Duration) string {
	switch {
	case d == Day:
		return "1 day"
	case d%Day == 0:
		return strconv.FormatInt(int64(d/Day), 10) + " days"
	case d > Day && d%time.Hour == 0:
		// Half a short window, such as 60 hours of a 5-day suspend_after.
		return strconv.FormatInt(int64(d/time.Hour), 10) + " hours"
	}
	return d.String()
}

// SuspendAt is when an active credential will be suspended: the end of its
// inactivity window or its expires_at, whichever comes first. Zero when it is not
// active (a credential needing re-authorization is already unusable, and suspending
// it would hide the reason a person has to act on) or neither applies.
func (p Policy) SuspendAt(s State) time.Time {
	at, _ := p.suspension(s)
	return at
}

func (p Policy) suspension(s State) (time.Time, Reason) {
	if s.Status != StatusActive {
		return time.Time{}, ""
	}
	var at time.Time
	var why Reason
	if a := s.activity(); p.SuspendAfter > 0 && !a.IsZero() {
		at, why = a.Add(p.SuspendAfter), ReasonInactivity
	}
	if !s.ExpiresAt.IsZero() && (at.IsZero() || !s.ExpiresAt.After(at)) {
		at, why = s.ExpiresAt, ReasonExpired
	}
	return at, why
}

// PurgeAt is when the credential will be purged, counted from the same window
// start as suspension whatever its status; zero when purge is disabled.
func (p Policy) PurgeAt(s State) time.Time {
	a := s.activity()
	if p.PurgeAfter <= 0 || a.IsZero() || s.Status == StatusPurged {
		return time.Time{}
	}
	return a.Add(p.PurgeAfter)
}

// Due returns the one action to perform at now: the most severe that is due, purge
// before suspension before warnings (of purge, then of suspension). A sweep that runs
// late, say after the node was down, thus purges without first suspending, and of
// the warnings it missed sends only the nearest threshold that has passed. Anything
// else still due, such as a purge warning for a credential it just suspended, comes
// up at the next sweep: NextDue of the new state is then in the past.
func (p Policy) Due(s State, now time.Time) (Action, bool) {
	if at := p.PurgeAt(s); !at.IsZero() && !now.Before(at) {
		return Action{Kind: ActionPurge, Due: at, Reason: ReasonInactivity}, true
	}
	suspendAt, why := p.suspension(s)
	if !suspendAt.IsZero() && !now.Before(suspendAt) {
		return Action{Kind: ActionSuspend, Due: suspendAt, Reason: why}, true
	}
	if a, ok := p.dueWarning(s, ActionWarnPurge, p.PurgeAt(s), ReasonInactivity, now); ok {
		return a, true
	}
	if a, ok := p.dueWarning(s, ActionWarnSuspend, suspendAt, why, now); ok {
		return a, true
	}
	return p.upstreamDue(s, now)
}

// NextDue is the earliest time Due could return an action for s: the time to file
// the credential under in the Index. Zero when nothing will ever be due. Nothing is
// due before it, and something is due at it.
func (p Policy) NextDue(s State) time.Time {
	purgeAt := p.PurgeAt(s)
	suspendAt, why := p.suspension(s)
	next := earliest(purgeAt, suspendAt)
	for _, w := range []struct {
		kind   ActionKind
		target time.Time
		why    Reason
	}{{ActionWarnPurge, purgeAt, ReasonInactivity}, {ActionWarnSuspend, suspendAt, why}} {
		if pending := p.pendingWarnings(s, w.kind, w.target, w.why); len(pending) > 0 {
			next = earliest(next, w.target.Add(-pending[0]))
		}
	}
	return earliest(next, p.upstreamNext(s))
}

// earliest returns the earlier of two times, zero meaning "never".
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// dueWarning returns the warning of kind to send at now for a suspension or purge at
// target: the nearest threshold that has passed, unless it or a nearer one was sent.
func (p Policy) dueWarning(s State, kind ActionKind, target time.Time, why Reason, now time.Time) (Action, bool) {
	pending := p.pendingWarnings(s, kind, target, why)
	for i := len(pending) - 1; i >= 0; i-- {
		if at := target.Add(-pending[i]); !now.Before(at) {
			return Action{Kind: kind, Due: at, Threshold: pending[i], Reason: why}, true
		}
	}
	return Action{}, false
}

// pendingWarnings returns the thresholds, largest (earliest) first, whose warnings
// for a suspension or purge at target (for reason why) may still be sent: those that
// fit the window (fitting). Thresholds up to the nearest one already sent are done
// with: after a late sweep the farther ones it skipped are not sent any more.
func (p Policy) pendingWarnings(s State, kind ActionKind, target time.Time, why Reason) []time.Duration {
	ts := p.fitting(s, target, why)
	for i := len(ts) - 1; i >= 0; i-- {
		if s.warned(Action{Kind: kind, Threshold: ts[i]}.Key()) {
			return ts[i+1:]
		}
	}
	return ts
}

// fitting returns the warning thresholds of a suspension or purge at target (for
// reason why), largest first: those whose warning falls after the window started.
// Thresholds too long for the window are skipped, and so is a warning that was
// already due when an access or reset renewed the window (which can happen with
// expires_at, which a renewal does not move). When none fits an inactivity window
// (a 5-day suspend_after under thresholds of 90, 60, 30 and 7 days), its one warning
// comes at half the window, so no inactivity suspension or purge comes unannounced.
// With no thresholds at all (warn_before set empty: warnings off) there is none.
func (p Policy) fitting(s State, target time.Time, why Reason) []time.Duration {
	if target.IsZero() {
		return nil
	}
	ts := p.thresholds()
	window := target.Sub(s.activity())
	// ts is in decreasing order, so the thresholds that fit the window are a suffix.
	start := 0
	for start < len(ts) && ts[start] >= window {
		start++
	}
	if len(ts) > 0 && start == len(ts) && why == ReasonInactivity && window > 0 {
		return []time.Duration{window / 2}
	}
	return ts[start:]
}

// thresholds returns WarnBefore in decreasing order without duplicates or
// non-positive values; the configured slice itself when it already is, which is the
// usual case, so the sweep does not allocate per credential.
func (p Policy) thresholds() []time.Duration {
	clean := true
	for i, t := range p.WarnBefore {
		if t <= 0 || (i > 0 && t >= p.WarnBefore[i-1]) {
			clean = false
			break
		}
	}
	if clean {
		return p.WarnBefore
	}
	ts := slices.DeleteFunc(slices.Clone(p.WarnBefore), func(t time.Duration) bool { return t <= 0 })
	slices.SortFunc(ts, func(a, b time.Duration) int { return cmp.Compare(b, a) })
	return slices.Compact(ts)
}
