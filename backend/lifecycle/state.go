// Package lifecycle decides when an idle credential is warned about, suspended and
// purged, and how healthy it looks.
//
// Like a lease, every successful access renews a credential's inactivity window.
// The package imports no Vault code and never reads the clock: every function takes
// the time, so a two-year timeline is tested in milliseconds. The backend owns
// storage, the clock and the periodic sweep; Index tells the sweep which
// credentials have something due, so its cost does not grow with idle credentials.
//
// Accesses reach the stored state only when usage is flushed. Before judging a
// credential (Usable on the access path, Due in a sweep) the backend should Touch its
// state with the recorder's unflushed last access, or an access made seconds before
// the deadline would not count.
package lifecycle

import (
	"slices"
	"time"
)

// Status is where a credential stands.
type Status string

// Statuses. StatusPurged only ever comes out of Apply for a purge action: the backend
// deletes the credential rather than storing it.
const (
	StatusActive      Status = "active"
	StatusSuspended   Status = "suspended"
	StatusNeedsReauth Status = "needs_reauth"
	// StatusAwaitingConsent is an authorization-code credential no consent was given
	// for under its current settings (never authorized, or its destination or client
	// changed since): nothing failed, a person has to authorize it. Refused like
	// needs_reauth, but a warning (yellow), not a fault.
	StatusAwaitingConsent Status = "awaiting_consent"
	StatusPurged          Status = "purged"
)

// Statuses lists the statuses a stored credential can have (StatusPurged never is
// stored), for whatever enumerates them: the list filter, the metrics gauge.
func Statuses() []Status {
	return []Status{StatusActive, StatusSuspended, StatusNeedsReauth, StatusAwaitingConsent}
}

// Reason says why a credential is suspended or purged. For StatusNeedsReauth it is
// the provider's error code, such as "invalid_grant".
type Reason string

// Reasons for suspension and purge.
const (
	ReasonManual     Reason = "manual"
	ReasonInactivity Reason = "inactivity"
	ReasonExpired    Reason = "expired"
)

// State is the lifecycle part of a stored credential.
type State struct {
	Status    Status    `json:"status"`
	Reason    Reason    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ActivityAt starts the inactivity window: the latest of creation, successful
	// access, unsuspend, reset-inactivity, re-authorization and a change of limits.
	ActivityAt  time.Time `json:"activity_at"`
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	// NeedsReauthAt is when the provider refused the grant; it dates the alert.
	NeedsReauthAt time.Time `json:"needs_reauth_at,omitzero"`
	// AwaitingConsentAt is when the credential came to await consent; it dates the
	// alert.
	AwaitingConsentAt time.Time `json:"awaiting_consent_at,omitzero"`
	// NoRefreshTokenAt is when a consent ended without the refresh token the
	// credential refreshes through (AuthorizationIssue, AlertNoRefreshTokenIssued):
	// the access token it brought works until it falls due, then nothing can renew
	// it. Zero once a consent or an imported refresh token brings one.
	NoRefreshTokenAt time.Time `json:"no_refresh_token_at,omitzero"`
	// Warned holds the keys of the warnings sent in the current window, such as
	// "suspend:30d", so each is sent once however often the sweep runs.
	Warned []string `json:"warned,omitempty"`
	// Verified is the last verification (verify.go); nil when never verified.
	Verified *Verification `json:"verified,omitempty"`
	// VerifyInterval is the credential's own verify_interval; zero uses the engine's.
	// A setting kept with the state it schedules, as ExpiresAt is.
	VerifyInterval time.Duration `json:"verify_interval,omitempty"`
	// Upstream holds the credential's upstream expiries and what was announced about
	// each (upstream.go): kept apart from Warned, which a new window forgets.
	Upstream []Upstream `json:"upstream,omitempty"`
	// SecretOverlap is set while the credential keeps its previous client secret
	// (client_secret_overlap, secret_overlap.go).
	SecretOverlap *SecretOverlap `json:"secret_overlap,omitempty"`
}

// NewState is the state of a credential created at the given time.
func NewState(created time.Time) State {
	return State{Status: StatusActive, CreatedAt: created, ActivityAt: created}
}

// activity is the start of the current inactivity window. A state written before
// ActivityAt existed falls back to its creation time.
func (s State) activity() time.Time {
	if s.ActivityAt.After(s.CreatedAt) {
		return s.ActivityAt
	}
	return s.CreatedAt
}

func (s State) warned(key string) bool { return slices.Contains(s.Warned, key) }

// Touch renews the inactivity window at the given time: after a successful access
// (the flush passes usage's LastAccessed), reset-inactivity, or a change of
// suspend_after, purge_after or expires_at, whose new window starts at once. The
// warnings of the old window are forgotten. A time no later than the current
// window's start changes nothing, so a late or repeated flush cannot undo warnings.
// Touch leaves the status alone: an access flushed after a suspension still counts
// toward purge, but does not unsuspend.
func Touch(s State, at time.Time) State {
	if !at.After(s.activity()) {
		return s
	}
	s.ActivityAt = at
	s.Warned = nil
	return s
}

// Unsuspend makes a suspended credential active again and restarts its window, as
// the vendor does. On any other status it only renews the window. The backend should
// refuse to unsuspend a credential whose expires_at has passed: the next sweep would
// suspend it again.
func Unsuspend(s State, at time.Time) State {
	if s.Status == StatusSuspended {
		s.Status, s.Reason, s.SuspendedAt = StatusActive, "", time.Time{}
		if !s.AwaitingConsentAt.IsZero() {
			// Still no consent for its settings: a suspension does not give one.
			s.Status = StatusAwaitingConsent
		}
	}
	s = Touch(s, at)
	s.Warned = nil
	return s
}

// Suspend suspends a credential by hand (or for any reason the caller names). An
// already suspended credential keeps its original reason and time.
func Suspend(s State, reason Reason, at time.Time) State {
	if s.Status == StatusSuspended || s.Status == StatusPurged {
		return s
	}
	s.Status, s.Reason, s.SuspendedAt = StatusSuspended, reason, at
	s.NeedsReauthAt = time.Time{} // AwaitingConsentAt stays: Unsuspend returns to it
	return s
}

// AwaitingConsent records that the credential has no consent for its current
// settings (created without one, its destination or client changed, or the provider
// was asked for a token with no refresh token to send): active and needs_reauth
// credentials await consent from at; a suspended one stays suspended, and awaits
// consent once unsuspended.
func AwaitingConsent(s State, at time.Time) State {
	switch s.Status {
	case StatusActive, StatusNeedsReauth:
		s.Status, s.Reason, s.NeedsReauthAt, s.AwaitingConsentAt = StatusAwaitingConsent, "", time.Time{}, at
	case StatusSuspended:
		s.AwaitingConsentAt = at // what Unsuspend returns to
	}
	return s
}

// NeedsReauth records that the provider refused the grant for good (reason is its
// error code). A suspended credential stays suspended: suspension is the stronger
// statement and is what an operator has to undo first. One awaiting consent stays so:
// a consent is what it needs.
func NeedsReauth(s State, reason Reason, at time.Time) State {
	switch s.Status {
	case StatusActive:
		s.Status, s.Reason, s.NeedsReauthAt = StatusNeedsReauth, reason, at
	case StatusNeedsReauth:
		s.Reason = reason
	}
	return s
}

// Reauthorized records a completed authorization (a consent, or an imported refresh
// token): a credential awaiting consent or needing re-authorization is active again.
// It is a person acting on the credential, so the window is renewed too.
func Reauthorized(s State, at time.Time) State {
	s.NoRefreshTokenAt = time.Time{}
	return Touch(granted(s), at)
}

// granted is s once the credential is known to obtain tokens again (a consent, a
// token minted by a verification): neither refused nor awaiting consent.
func granted(s State) State {
	if s.Status == StatusAwaitingConsent {
		s.Status, s.Reason = StatusActive, ""
	}
	s.AwaitingConsentAt = time.Time{}
	return Reconfigured(s)
}

// IssueNoRefreshToken is the AuthorizationIssue of a consent that brought no refresh
// token where the credential needs one.
const IssueNoRefreshToken = "no_refresh_token_issued"

// AuthorizedWithoutRefreshToken records a completed authorization whose answer held
// no refresh token where the credential needs one (every authorization-code
// credential refreshes through it): the consent is recorded as Reauthorized does, and
// the missing refresh token is said at once (AuthorizationIssue, an alert) rather
// than by a lock-out when the access token falls due.
func AuthorizedWithoutRefreshToken(s State, at time.Time) State {
	s = Reauthorized(s, at)
	s.NoRefreshTokenAt = at
	return s
}

// AuthorizationIssue names what is wrong with the credential's last consent:
// IssueNoRefreshToken, or "" when nothing is.
func (s State) AuthorizationIssue() string {
	if s.NoRefreshTokenAt.IsZero() {
		return ""
	}
	return IssueNoRefreshToken
}

// Reconfigured records that a person wrote new settings (an update, or a patch that
// sends a setting the provider's refusal can be about: credtype's SettingFields): a
// credential needing re-authorization gets a new attempt and is active again; if
// the provider still refuses, the next access marks it again. Any other status stays:
// new settings are no consent.
// The window is not renewed here: only a change of the limits renews it (Touch).
func Reconfigured(s State) State {
	if s.Status == StatusNeedsReauth {
		s.Status, s.Reason, s.NeedsReauthAt = StatusActive, "", time.Time{}
	}
	return s
}

// NewLimits returns s with a credential's expiry set to expiresAt, written at the
// given time. New limits start a new window at once, as the vendor does: when the
// expiry or one of the credential's windows changed (windowsChanged), the window
// restarts; otherwise the state is as it was.
func NewLimits(s State, expiresAt time.Time, windowsChanged bool, at time.Time) State {
	if windowsChanged || !expiresAt.Equal(s.ExpiresAt) {
		s = Touch(s, at)
	}
	s.ExpiresAt = expiresAt
	return s
}

// Apply returns the state after performing a, which Policy.Due returned at now.
func Apply(s State, a Action, now time.Time) State {
	switch a.Kind {
	case ActionWarnSuspend, ActionWarnPurge:
		if key := a.Key(); !s.warned(key) {
			// Clip so appending never writes into an array the caller's copy shares.
			s.Warned = append(slices.Clip(s.Warned), key)
		}
	case ActionSuspend:
		s = Suspend(s, a.Reason, now)
	case ActionPurge:
		s.Status, s.Reason = StatusPurged, a.Reason
	case ActionWarnUpstream, ActionUpstreamEnd:
		s = applyUpstream(s, a)
	}
	return s
}

// SecretsChanged records that a person changed a secret or a destination of the
// credential (an update or a patch): a failed verification was about the old
// settings, so it is dropped, and the credential shows no verification result until
// the next one. A successful one stays: it was true of the credential until now.
func SecretsChanged(s State) State {
	if s.VerifyFailed() {
		s.Verified = nil
	}
	return s
}
