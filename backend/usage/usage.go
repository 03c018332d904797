// Package usage counts credential accesses and keeps each credential's event log.
//
// The access path must not touch storage, so a Recorder holds counts and events in
// memory and the backend drains it into stored Usage entries in batches. The package
// imports no Vault code: the backend owns storage, clocks and flush timing.
package usage

import (
	"slices"
	"time"
)

// Event kinds written to a credential's log. They are part of the API: the logs path
// returns them and operators filter on them.
const (
	EventAccess          = "access"
	EventTokenMinted     = "token_minted"
	EventRefreshFailed   = "refresh_failed"
	EventSuspended       = "suspended"
	EventUnsuspended     = "unsuspended"
	EventInactivityReset = "inactivity_reset"
	EventWarning         = "warning"
	EventUpdated         = "updated"
	EventAuthorized      = "authorized"
	EventCreated         = "created"
	EventPurged          = "purged"
	// EventVerify is a verification (credentials/<name>/verify or the schedule); never an access.
	EventVerify = "verify"
)

// Outcomes of an event, the values of Event.Status.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// DefaultLogSize is how many events a stored Usage keeps, as the vendor's log view
// does; the backend's log_size setting overrides it.
const DefaultLogSize = 250

// Event is one entry of a credential's log.
type Event struct {
	Time        time.Time `json:"time"`
	Event       string    `json:"event"`
	Status      string    `json:"status"`
	Integration string    `json:"integration,omitempty"`
	Detail      string    `json:"detail,omitempty"`
}

// Usage is the stored usage of one credential. It is persisted apart from the
// credential so that flushing counts never rewrites (and re-encrypts) the secret.
type Usage struct {
	// Count is every access attempt, successful or refused, like the vendor's
	// "number of requests sent to the credential".
	Count int64 `json:"count"`
	// Failures is the part of Count that was refused or failed.
	Failures int64 `json:"failures,omitempty"`
	// LastAccessed is the latest successful access; only success renews the
	// inactivity window, so a refused read of a suspended credential must not move it.
	LastAccessed time.Time `json:"last_accessed"`
	// Events is the log, oldest first, capped by Merge.
	Events []Event `json:"events"`
}

// Merge folds flushed pending usage into u: counts add up, the later LastAccessed
// wins, events are appended in time order and the oldest beyond maxEvents dropped
// (maxEvents < 1 means DefaultLogSize). It never writes into the slices it was
// given, so a read can merge Peek into a copy of a cached Usage.
func (u *Usage) Merge(p Pending, maxEvents int) {
	if maxEvents < 1 {
		maxEvents = DefaultLogSize
	}
	u.Count += p.Count
	u.Failures += p.Failures
	if p.LastAccessed.After(u.LastAccessed) {
		u.LastAccessed = p.LastAccessed
	}
	if len(p.Events) == 0 && len(u.Events) <= maxEvents {
		return
	}
	events := make([]Event, 0, len(u.Events)+len(p.Events))
	events = append(append(events, u.Events...), p.Events...)
	// Concurrent readers take their timestamps before the recorder's lock, so pending
	// events can be a few microseconds out of order; the log must not be.
	if !slices.IsSortedFunc(events, compareEventTime) {
		slices.SortStableFunc(events, compareEventTime)
	}
	if len(events) > maxEvents {
		// Copy rather than reslice so the dropped events' backing array is released.
		events = append([]Event(nil), events[len(events)-maxEvents:]...)
	}
	// The events are bounded (Bound): the recorder bounds what it takes, and the
	// backend bounds a log stored before the bounds existed when it decodes it.
	u.Events = events
}

func compareEventTime(a, b Event) int { return a.Time.Compare(b.Time) }

// Filter selects log events. Empty fields do not filter; Since and Until are
// inclusive; Limit < 1 means no limit.
type Filter struct {
	Status      string
	Integration string
	// Event narrows to one kind, such as "warning"; an addition to the logs path's
	// status/integration/time filters that costs nothing.
	Event string
	Since time.Time
	Until time.Time
	Limit int
}

// Filter returns the events matching f, newest first, as a log view shows them.
func (u *Usage) Filter(f Filter) []Event {
	var out []Event
	for i := len(u.Events) - 1; i >= 0; i-- {
		ev := u.Events[i]
		if !f.Since.IsZero() && ev.Time.Before(f.Since) {
			// Events are in time order, so nothing older can match either.
			break
		}
		if !f.matches(ev) {
			continue
		}
		out = append(out, ev)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out
}

func (f Filter) matches(ev Event) bool {
	switch {
	case f.Status != "" && ev.Status != f.Status:
		return false
	case f.Integration != "" && ev.Integration != f.Integration:
		return false
	case f.Event != "" && ev.Event != f.Event:
		return false
	case !f.Until.IsZero() && ev.Time.After(f.Until):
		return false
	}
	return true
}
