package usage

import (
	"strings"
	"unicode/utf8"
)

// Bounds on the fields of one logged event, in characters. Every event the recorder
// takes is cut to them (and every event of a log stored before they existed, by the
// backend when it decodes the log), so the stored log of a credential has a
// worst-case size however hostile the caller's integration label or a detail is.
const (
	MaxEventKind   = 32
	MaxStatus      = 16
	MaxIntegration = 128 // the access path's integration label rule allows 128 printable characters
	MaxDetail      = 128
)

// jsonRuneMax is the most bytes encoding/json writes for one character of valid UTF-8:
// six, for the \u00XX escapes (control characters and, with HTML escaping, < > &).
const jsonRuneMax = 6

// maxTimeJSON is the longest time Bound leaves in an event: RFC 3339 in UTC, with
// nanoseconds, quoted.
const maxTimeJSON = len(`"2006-01-02T15:04:05.999999999Z"`)

// MaxEncodedEvent is the most bytes one bounded event takes in a stored Usage's JSON,
// separator included.
const MaxEncodedEvent = len(`{"time":,"event":"","status":"","integration":"","detail":""},`) +
	maxTimeJSON + jsonRuneMax*(MaxEventKind+MaxStatus+MaxIntegration+MaxDetail)

// MaxEncodedEnvelope is the most bytes a stored Usage takes besides its events: the
// counts, the last access and the brackets.
const MaxEncodedEnvelope = 256

// MaxEventsWithin is the largest log size whose stored Usage, at worst, takes at most
// limit bytes.
func MaxEventsWithin(limit int) int { return (limit - MaxEncodedEnvelope) / MaxEncodedEvent }

// Bound returns ev with every field cut to its bound (invalid UTF-8 replaced) and its
// time in UTC.
func Bound(ev Event) Event {
	ev.Time = ev.Time.UTC()
	ev.Event = boundString(ev.Event, MaxEventKind)
	ev.Status = boundString(ev.Status, MaxStatus)
	ev.Integration = boundString(ev.Integration, MaxIntegration)
	ev.Detail = boundString(ev.Detail, MaxDetail)
	return ev
}

// boundString cuts s to at most n characters of valid UTF-8. The common case, a short
// valid string, costs one scan and no allocation.
func boundString(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
	}
	count := 0
	for i := range s {
		if count == n {
			return s[:i]
		}
		count++
	}
	return s
}
