// Upstream expiries: dates a provider enforces on a credential's material (a client
// secret's end, a certificate's not_after). The engine warns about them at the
// warn_before thresholds and alerts on them, but never suspends for them: the
// provider decides when the material stops working.

package lifecycle

import (
	"slices"
	"time"
)

// The upstream expiries, by the name Upstream.Field gives them.
const (
	// UpstreamCertificate is a certificate credential's certificate (not_after).
	UpstreamCertificate = "not_after"
	// UpstreamClientSecret is an OAuth type's client_secret_expires_at.
	UpstreamClientSecret = "client_secret_expires_at"
	// UpstreamClientCertificate is an OAuth type's client_certificate (its not_after).
	UpstreamClientCertificate = "client_certificate"
)

// Action kinds of upstream expiries: a warning at a threshold, and the expiry itself.
const (
	ActionWarnUpstream ActionKind = "warn_upstream"
	ActionUpstreamEnd  ActionKind = "upstream_expired"
)

type upstreamKind struct {
	expiring, expired string // alert reasons
	detail            string // the alert's detail: which date
	noun              string // the message's subject
}

var upstreamKinds = map[string]upstreamKind{
	UpstreamCertificate:       {AlertCertificateExpiring, AlertCertificateExpired, "certificate not_after", "Certificate"},
	UpstreamClientSecret:      {AlertSecretExpiring, AlertSecretExpired, "client_secret_expires_at", "Client secret"},
	UpstreamClientCertificate: {AlertCertificateExpiring, AlertCertificateExpired, "client_certificate not_after", "Client certificate"},
}

func kindOf(field string) upstreamKind {
	if k, ok := upstreamKinds[field]; ok {
		return k
	}
	return upstreamKind{AlertExpiring, AlertExpired, field, field}
}

// Upstream is one upstream expiry of a credential and what was announced about it.
// It is kept in the State (WithUpstream), apart from the inactivity warnings, which an
// access forgets: an access does not move an upstream date.
type Upstream struct {
	// Field names the date: UpstreamCertificate, UpstreamClientSecret or
	// UpstreamClientCertificate.
	Field string    `json:"field"`
	At    time.Time `json:"at"`
	// Warned is the nearest threshold warned about for At; zero before the first.
	Warned time.Duration `json:"warned,omitempty"`
	// Expired reports that the expiry itself was announced.
	Expired bool `json:"expired,omitempty"`
}

func (u Upstream) kind() upstreamKind { return kindOf(u.Field) }

func (u Upstream) alertReason(now time.Time) string {
	if now.Before(u.At) {
		return u.kind().expiring
	}
	return u.kind().expired
}

// WithUpstream returns s with its upstream expiries set to ups (zero dates dropped).
// An expiry whose date is unchanged keeps what was announced about it; a new or
// changed date (a new secret, a new certificate) starts its warnings afresh.
func WithUpstream(s State, ups []Upstream) State {
	var next []Upstream
	for _, u := range ups {
		if u.At.IsZero() {
			continue
		}
		u = Upstream{Field: u.Field, At: u.At.UTC()}
		if i := slices.IndexFunc(s.Upstream, func(o Upstream) bool { return o.Field == u.Field && o.At.Equal(u.At) }); i >= 0 {
			u.Warned, u.Expired = s.Upstream[i].Warned, s.Upstream[i].Expired
		}
		next = append(next, u)
	}
	s.Upstream = next // never the caller's array
	return s
}

// upstreamPending returns the thresholds, largest first, whose warnings may still be sent for
// u: every threshold nearer than the nearest already sent. When the remaining time is
// already inside several at write time, the sweep sends the nearest of those
// (dueWarning's rule) and the farther ones are then done with.
func (p Policy) upstreamPending(u Upstream) []time.Duration {
	ts := p.thresholds()
	if u.Expired {
		return nil
	}
	i := 0 // ts is in decreasing order: skip the sent threshold and the farther ones
	for u.Warned > 0 && i < len(ts) && ts[i] >= u.Warned {
		i++
	}
	return ts[i:]
}

// upstreamDue returns the upstream action to perform at now: the expiry once passed
// (announced once), else the nearest threshold passed and not yet sent. Of several
// expiries, the one due earliest.
func (p Policy) upstreamDue(s State, now time.Time) (Action, bool) {
	var best Action
	found := false
	for _, u := range s.Upstream {
		a, ok := p.upstreamAction(u, now)
		if ok && (!found || a.Due.Before(best.Due)) {
			best, found = a, true
		}
	}
	return best, found
}

func (p Policy) upstreamAction(u Upstream, now time.Time) (Action, bool) {
	if u.Expired {
		return Action{}, false
	}
	if !now.Before(u.At) {
		return Action{Kind: ActionUpstreamEnd, Due: u.At, Upstream: u.Field}, true
	}
	pending := p.upstreamPending(u)
	for i := len(pending) - 1; i >= 0; i-- {
		if at := u.At.Add(-pending[i]); !now.Before(at) {
			return Action{Kind: ActionWarnUpstream, Due: at, Threshold: pending[i], Upstream: u.Field}, true
		}
	}
	return Action{}, false
}

// upstreamNext is the earliest time upstreamDue returns an action for s; zero when
// every expiry has been announced.
func (p Policy) upstreamNext(s State) time.Time {
	var next time.Time
	for _, u := range s.Upstream {
		if u.Expired {
			continue
		}
		at := u.At
		if pending := p.upstreamPending(u); len(pending) > 0 {
			at = u.At.Add(-pending[0])
		}
		next = earliest(next, at)
	}
	return next
}

// upstreamAlertFrom is when an upstream expiry starts to show in Alerts: at its
// largest threshold, so the alert stands while its warnings go out (at the expiry
// itself with no thresholds).
func (p Policy) upstreamAlertFrom(u Upstream) time.Time {
	if ts := p.thresholds(); len(ts) > 0 {
		return u.At.Add(-ts[0])
	}
	return u.At
}

// applyUpstream records an upstream action in the expiry it is about.
func applyUpstream(s State, a Action) State {
	i := slices.IndexFunc(s.Upstream, func(u Upstream) bool { return u.Field == a.Upstream && u.At.Equal(a.Due.Add(a.Threshold)) })
	if i < 0 {
		return s
	}
	s.Upstream = slices.Clone(s.Upstream) // never write into the caller's array
	if a.Kind == ActionUpstreamEnd {
		s.Upstream[i].Expired = true
	} else {
		s.Upstream[i].Warned = a.Threshold
	}
	return s
}

// upstreamMessage is the text of an upstream action's log event and notification.
func (a Action) upstreamMessage() string {
	k := kindOf(a.Upstream)
	at := a.Due.Add(a.Threshold).UTC().Format(time.RFC3339)
	if a.Kind == ActionUpstreamEnd {
		return k.noun + " expired at " + at + "; the credential is not suspended, but the provider may refuse it: replace it."
	}
	return k.noun + " expires within " + humanDuration(a.Threshold) + ", at " + at + "."
}

// AlertReason is the alert reason an upstream action announces (such as
// client_secret_expiring), which also names its notification; "" for other actions.
func (a Action) AlertReason() string {
	k := kindOf(a.Upstream)
	switch a.Kind {
	case ActionWarnUpstream:
		return k.expiring
	case ActionUpstreamEnd:
		return k.expired
	}
	return ""
}
