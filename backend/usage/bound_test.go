package usage

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestBoundedEventWorstCase: whatever a caller or provider puts in an event, the event
// Bound leaves encodes to at most MaxEncodedEvent bytes (its separator included), and
// short valid fields are kept as they are.
func TestBoundedEventWorstCase(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"a", "<", "&", "\x00", "\n", `"`, `\`, "\u2028", "é", "€", "😀", "\xff", "\xe2\x82"} {
		long := strings.Repeat(unit, 4*MaxDetail)
		ev := Bound(Event{
			Time:  time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 14*3600)),
			Event: long, Status: long, Integration: long, Detail: long,
		})
		encoded, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("%q: %v", unit, err)
		}
		if got := len(encoded) + len(","); got > MaxEncodedEvent {
			t.Errorf("%q: an event encodes to %d bytes, over MaxEncodedEvent %d", unit, got, MaxEncodedEvent)
		}
		for name, f := range map[string]struct {
			s string
			n int
		}{"event": {ev.Event, MaxEventKind}, "status": {ev.Status, MaxStatus}, "integration": {ev.Integration, MaxIntegration}, "detail": {ev.Detail, MaxDetail}} {
			want := f.n
			if !utf8.ValidString(unit) {
				want = 1 // a run of invalid bytes becomes one replacement character
			}
			if !utf8.ValidString(f.s) || utf8.RuneCountInString(f.s) != want {
				t.Errorf("%q: %s bounded to %d characters (valid %v), want %d", unit, name, utf8.RuneCountInString(f.s), utf8.ValidString(f.s), want)
			}
		}
	}
	ok := Event{Time: time.Unix(1, 0).UTC(), Event: EventAccess, Status: StatusSuccess, Integration: "etl job <nightly> ✓", Detail: "fine"}
	if got := Bound(ok); got != ok {
		t.Fatalf("Bound changed a short event: %+v", got)
	}
}

// TestRecorderBoundsEvents: the recorder bounds what it takes, so what Merge adds to a
// bounded log is bounded. (A log stored before the bounds existed is bounded by the
// backend's upgrade of it: backend/records_test.go.)
func TestRecorderBoundsEvents(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("<", 10000)
	r := NewRecorder()
	r.Access("c", at(1), huge, true, huge)
	r.Log("c", Event{Time: at(2), Event: huge, Status: huge, Integration: huge, Detail: huge})
	p := r.Drain()["c"]
	old := &Usage{Events: []Event{{Time: at(0), Event: EventAccess, Status: StatusSuccess, Integration: "job", Detail: "fine"}}}
	old.Merge(p, 10)
	if len(old.Events) != 3 {
		t.Fatalf("%d events", len(old.Events))
	}
	for i, ev := range old.Events {
		if Bound(ev) != ev {
			t.Errorf("event %d not bounded: integration %d, detail %d bytes", i, len(ev.Integration), len(ev.Detail))
		}
	}
}
