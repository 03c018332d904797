// Package notify delivers a mount's lifecycle notifications to the notify credential:
// the notification and its coalescing (notification.go), where and how a target is
// posted to (target.go), the outbox that keeps each one in storage until delivered
// (outbox.go), and the delivery passes the outbox delivery job runs (notifier.go). It
// owns the storage keys notify-outbox/ and notify-dropped; everything else it needs is
// in Deps.
package notify

import "time"

// Notification is the JSON body POSTed to the notify credential, and the metadata of
// the Vault event.
type Notification struct {
	Event      string `json:"event"`
	Credential string `json:"credential"`
	Type       string `json:"type"`
	Message    string `json:"message"`
	Due        string `json:"due,omitempty"`
	Mount      string `json:"mount"`
	Time       string `json:"time"`
	// Count is how many notifications of this credential and event kind the outbox
	// coalesced into this one, FirstTime and LastTime the times of the first and the
	// last (Time is the last's too). Entries an older version stored have none:
	// upgrade fills them in.
	Count     int    `json:"count,omitempty"`
	FirstTime string `json:"first_time,omitempty"`
	LastTime  string `json:"last_time,omitempty"`
}

// tally is n as it is posted: one stored before coalescing counts once, at its own
// time.
func (n Notification) tally() Notification {
	if n.Count < 1 {
		n.Count = 1
	}
	if n.FirstTime == "" {
		n.FirstTime = n.Time
	}
	if n.LastTime == "" {
		n.LastTime = n.Time
	}
	return n
}

// coalesce is n (waiting) with later, of the same credential and kind, folded in: the
// later message, due date, type and time, and one count more per occurrence.
func (n Notification) coalesce(later Notification) Notification {
	n, later = n.tally(), later.tally()
	n.Count += later.Count
	n.Type, n.Message, n.Due, n.Mount = later.Type, later.Message, later.Due, later.Mount
	n.Time, n.LastTime = later.Time, later.LastTime
	return n
}

// PurgeRelated reports whether a notification announces (or reports) a purge: those
// are the last a full outbox gives up.
func PurgeRelated(event string) bool { return event == "purge-warning" || event == "purged" }

// RFC3339 renders t as notifications carry times, or "" for the zero time.
func RFC3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
