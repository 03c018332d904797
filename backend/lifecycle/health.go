package lifecycle

import (
	"slices"
	"strconv"
	"time"
)

// Health values, as the vendor shows them in its credential list.
const (
	HealthAwaitingUsage = "awaiting_usage"
	HealthGreen         = "green"
	HealthYellow        = "yellow"
	HealthRed           = "red"
)

// ExpiryNotice is how far ahead an expires_at makes a credential yellow and raises an
// alert. Upstream expiries (upstream.go) follow the warn_before thresholds instead.
const ExpiryNotice = 30 * Day

// FailingAfter is how many failures in a row make a credential red: one or two are
// likely transient, three are not.
const FailingAfter = 3

// Alert reasons, the values of Alert.Reason.
const (
	AlertSuspensionPending = "suspension_pending"
	AlertPurgePending      = "purge_pending"
	AlertSuspended         = "suspended"
	AlertNeedsReauth       = "needs_reauth"
	// AlertAwaitingConsent: an authorization-code credential no consent was given for
	// (StatusAwaitingConsent); yellow, since nothing failed.
	AlertAwaitingConsent     = "awaiting_consent"
	AlertExpiring            = "expiring"
	AlertExpired             = "expired"
	AlertCertificateExpiring = "certificate_expiring"
	AlertCertificateExpired  = "certificate_expired"
	AlertSecretExpiring      = "client_secret_expiring"
	AlertSecretExpired       = "client_secret_expired"
	AlertFailing             = "failing"
	// AlertNoRefreshTokenIssued: the last consent brought no refresh token, so access
	// ends when the access token it brought falls due.
	AlertNoRefreshTokenIssued = IssueNoRefreshToken
)

// HealthInput is what health is judged on: the lifecycle state plus facts the
// lifecycle does not own.
type HealthInput struct {
	State State
	// Accessed reports whether the credential was ever accessed successfully.
	Accessed bool
	// ConsecutiveFailures counts failed accesses or token refreshes since the last
	// success.
	ConsecutiveFailures int
	// TransientFailure reports that the last provider call failed in a way that may
	// pass (network, 5xx, 429) and a cached token was served instead.
	TransientFailure bool
}

// Alert is something that needs a person.
type Alert struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	// Due is when the condition takes or took effect; zero when unknown.
	Due time.Time `json:"due,omitzero"`
	// Severity is HealthRed or HealthYellow, so a list of alerts can be triaged
	// without knowing every reason.
	Severity string `json:"severity"`
	Detail   string `json:"detail,omitempty"`

	// For alerts about notifications the engine could not deliver: the notification's
	// event, the attempts made and when it was first queued.
	Event    string    `json:"event,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	QueuedAt time.Time `json:"queued_at,omitzero"`
}

// Health grades a credential. A problem outranks awaiting_usage, so a credential
// never used that is about to expire still shows yellow.
func (p Policy) Health(in HealthInput, now time.Time) string {
	health := HealthGreen
	if !in.Accessed {
		health = HealthAwaitingUsage
	}
	if in.TransientFailure || in.ConsecutiveFailures > 0 || len(in.State.Warned) > 0 {
		health = HealthYellow
	}
	// Health and Alerts share one set of conditions so they cannot disagree.
	for _, a := range p.Alerts("", in, now) {
		if a.Severity == HealthRed {
			return HealthRed
		}
		health = HealthYellow
	}
	return health
}

// Alerts lists what needs a person for one credential, earliest first: a suspension
// or purge within the largest warning threshold that fits its window (red once
// overdue), suspension, re-authorization, awaiting consent (yellow), a consent that
// brought no refresh token
// (red), expiry within ExpiryNotice (red once
// passed), upstream expiries from their first warning threshold (red once passed), a
// failed verification, and repeated failures.
func (p Policy) Alerts(name string, in HealthInput, now time.Time) []Alert {
	s := in.State
	var out []Alert
	add := func(reason string, due time.Time, red bool, detail string) {
		sev := HealthYellow
		if red {
			sev = HealthRed
		}
		out = append(out, Alert{Name: name, Reason: reason, Due: due, Severity: sev, Detail: detail})
	}

	switch s.Status {
	case StatusSuspended:
		add(AlertSuspended, s.SuspendedAt, true, string(s.Reason))
	case StatusNeedsReauth:
		add(AlertNeedsReauth, s.NeedsReauthAt, true, string(s.Reason))
	case StatusAwaitingConsent:
		add(AlertAwaitingConsent, s.AwaitingConsentAt, false, "no consent for its current settings: authorize it at credentials/"+name+"/authorize")
	}
	if !s.NoRefreshTokenAt.IsZero() {
		add(AlertNoRefreshTokenIssued, s.NoRefreshTokenAt, true,
			"the consent brought no refresh token: access ends when its access token falls due; ask for offline access (scopes offline_access, or authorization_params such as access_type=offline) and authorize again")
	}

	expiryCovered := s.Status == StatusSuspended
	if at, why := p.suspension(s); p.warningOpen(s, at, why, now) {
		if why == ReasonExpired {
			add(expiryReason(at, now), at, !now.Before(at), "expires_at")
			expiryCovered = true
		} else {
			add(AlertSuspensionPending, at, !now.Before(at), string(why))
		}
	}
	if at := p.PurgeAt(s); p.warningOpen(s, at, ReasonInactivity, now) {
		add(AlertPurgePending, at, !now.Before(at), string(ReasonInactivity))
	}
	if at := s.ExpiresAt; !expiryCovered && !at.IsZero() && !now.Before(at.Add(-ExpiryNotice)) {
		add(expiryReason(at, now), at, !now.Before(at), "expires_at")
	}
	for _, u := range s.Upstream {
		if !now.Before(p.upstreamAlertFrom(u)) {
			add(u.alertReason(now), u.At, !now.Before(u.At), u.kind().detail)
		}
	}
	if s.VerifyFailed() {
		add(AlertVerifyFailed, s.Verified.CheckedAt, true, s.Verified.Detail)
	}
	if at, detail, ok := s.secretRefusedAlert(now); ok {
		add(AlertNewSecretRefused, at, false, detail)
	}
	if in.ConsecutiveFailures >= FailingAfter {
		add(AlertFailing, time.Time{}, true, strconv.Itoa(in.ConsecutiveFailures)+" failures in a row")
	}
	slices.SortStableFunc(out, func(a, b Alert) int { return a.Due.Compare(b.Due) })
	return out
}

func expiryReason(at, now time.Time) string {
	if now.Before(at) {
		return AlertExpiring
	}
	return AlertExpired
}

// warningOpen reports whether a suspension or purge at target (for reason why) is
// close enough to warn about: its first warning that fits the window (fitting) has
// come due, or the target itself has passed.
func (p Policy) warningOpen(s State, target time.Time, why Reason, now time.Time) bool {
	return !target.IsZero() && !now.Before(p.warningFrom(s, target, why))
}

// UnavailableError says why a credential cannot be handed out.
type UnavailableError struct {
	Status Status
	Reason Reason
}

// Error reads like the vendor's refusal, naming the reason a person can act on.
func (e *UnavailableError) Error() string {
	msg := "credential is " + string(e.Status)
	switch e.Status {
	case StatusNeedsReauth:
		msg = "credential needs re-authorization"
	case StatusAwaitingConsent:
		msg = "credential is awaiting consent"
	}
	if e.Reason != "" {
		msg += " (" + string(e.Reason) + ")"
	}
	return msg
}

// Usable returns nil when the access path may hand the credential out at now, else
// an *UnavailableError. It judges by time as well as status, so a credential whose
// window or expires_at has run out is refused before the sweep gets to it. The caller
// should first Touch the state with the recorder's unflushed last access, so an access
// moments ago still counts.
func (p Policy) Usable(s State, now time.Time) error {
	switch s.Status {
	case StatusSuspended, StatusNeedsReauth, StatusAwaitingConsent, StatusPurged:
		return &UnavailableError{Status: s.Status, Reason: s.Reason}
	}
	if at := p.PurgeAt(s); !at.IsZero() && !now.Before(at) {
		return &UnavailableError{Status: StatusPurged, Reason: ReasonInactivity}
	}
	if at, why := p.suspension(s); !at.IsZero() && !now.Before(at) {
		return &UnavailableError{Status: StatusSuspended, Reason: why}
	}
	return nil
}

// alwaysAlerting is what AlertsFrom returns for a credential whose state alone is an
// alert: before any time the engine can be asked about.
var alwaysAlerting = time.Unix(0, 0).UTC()

// AlertsFrom is the earliest time at which Alerts may list anything for a credential
// in state s, other than repeated failures (which depend on usage, not time); zero
// when nothing time or state can bring ever will. Until the state changes,
// Alerts(..., now) before that time lists no such alert, so an index filed under it
// finds every alerting credential without visiting the rest. A later State (a newer
// access) only moves it later, so filing the stored state is safe for a caller that
// judges the current one.
func (p Policy) AlertsFrom(s State) time.Time {
	if s.Status == StatusSuspended || s.Status == StatusNeedsReauth || s.Status == StatusAwaitingConsent || s.VerifyFailed() || !s.NoRefreshTokenAt.IsZero() {
		return alwaysAlerting
	}
	var from time.Time
	if at, why := p.suspension(s); !at.IsZero() {
		from = earliest(from, p.warningFrom(s, at, why))
	}
	if at := p.PurgeAt(s); !at.IsZero() {
		from = earliest(from, p.warningFrom(s, at, ReasonInactivity))
	}
	if at := s.ExpiresAt; !at.IsZero() {
		from = earliest(from, at.Add(-ExpiryNotice))
	}
	for _, u := range s.Upstream {
		from = earliest(from, p.upstreamAlertFrom(u))
	}
	if o := s.SecretOverlap; o != nil && !o.RefusedAt.IsZero() {
		from = earliest(from, o.RefusedAt)
	}
	return from
}

// warningFrom is when warningOpen starts to hold for a suspension or purge at target:
// its first fitting warning, or the target itself when none fits.
func (p Policy) warningFrom(s State, target time.Time, why Reason) time.Time {
	if ts := p.fitting(s, target, why); len(ts) > 0 {
		return target.Add(-ts[0])
	}
	return target
}
