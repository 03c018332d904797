package usage

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

func evs(secs ...int) []Event {
	var out []Event
	for _, s := range secs {
		out = append(out, Event{Time: at(s), Event: EventAccess, Status: StatusSuccess, Detail: fmt.Sprint(s)})
	}
	return out
}

func TestUsageMerge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stored    Usage
		pending   Pending
		max       int
		wantCount int64
		wantFail  int64
		wantLast  time.Time
		wantEvs   []string
	}{
		{
			name:      "into empty",
			pending:   Pending{Count: 2, Failures: 1, LastAccessed: at(5), Events: evs(4, 5)},
			max:       10,
			wantCount: 2, wantFail: 1, wantLast: at(5), wantEvs: []string{"4", "5"},
		},
		{
			name:      "appends and keeps the later access",
			stored:    Usage{Count: 3, LastAccessed: at(3), Events: evs(1, 2, 3)},
			pending:   Pending{Count: 1, LastAccessed: at(9), Events: evs(9)},
			max:       10,
			wantCount: 4, wantLast: at(9), wantEvs: []string{"1", "2", "3", "9"},
		},
		{
			name:      "an older pending access does not move last_accessed back",
			stored:    Usage{Count: 1, LastAccessed: at(50), Events: evs(50)},
			pending:   Pending{Count: 1, Failures: 1, Events: evs(60)},
			max:       10,
			wantCount: 2, wantFail: 1, wantLast: at(50), wantEvs: []string{"50", "60"},
		},
		{
			name:      "caps by dropping the oldest",
			stored:    Usage{Count: 3, LastAccessed: at(3), Events: evs(1, 2, 3)},
			pending:   Pending{Count: 3, LastAccessed: at(6), Events: evs(4, 5, 6)},
			max:       4,
			wantCount: 6, wantLast: at(6), wantEvs: []string{"3", "4", "5", "6"},
		},
		{
			name:      "pending alone over the cap",
			pending:   Pending{Count: 5, LastAccessed: at(5), Events: evs(1, 2, 3, 4, 5)},
			max:       2,
			wantCount: 5, wantLast: at(5), wantEvs: []string{"4", "5"},
		},
		{
			name:      "out-of-order events are sorted",
			stored:    Usage{Events: evs(1, 5)},
			pending:   Pending{Count: 2, LastAccessed: at(4), Events: evs(4, 3)},
			max:       10,
			wantCount: 2, wantLast: at(4), wantEvs: []string{"1", "3", "4", "5"},
		},
		{
			name:      "a smaller log_size trims an existing log",
			stored:    Usage{Count: 3, Events: evs(1, 2, 3)},
			max:       1,
			wantCount: 3, wantEvs: []string{"3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := tc.stored
			u.Merge(tc.pending, tc.max)
			if u.Count != tc.wantCount || u.Failures != tc.wantFail || !u.LastAccessed.Equal(tc.wantLast) {
				t.Errorf("got count=%d failures=%d last=%v, want %d %d %v",
					u.Count, u.Failures, u.LastAccessed, tc.wantCount, tc.wantFail, tc.wantLast)
			}
			if got := details(u.Events); !slices.Equal(got, tc.wantEvs) {
				t.Errorf("events %v, want %v", got, tc.wantEvs)
			}
		})
	}
}

func TestUsageMergeDefaultCap(t *testing.T) {
	t.Parallel()
	var u Usage
	secs := make([]int, DefaultLogSize+50)
	for i := range secs {
		secs[i] = i
	}
	u.Merge(Pending{Count: int64(len(secs)), Events: evs(secs...)}, 0)
	if len(u.Events) != DefaultLogSize || u.Events[0].Detail != "50" {
		t.Errorf("kept %d events starting at %s, want %d starting at 50", len(u.Events), u.Events[0].Detail, DefaultLogSize)
	}
}

func TestUsageFilter(t *testing.T) {
	t.Parallel()
	u := Usage{Events: []Event{
		{Time: at(1), Event: EventCreated, Status: StatusSuccess, Detail: "1"},
		{Time: at(2), Event: EventAccess, Status: StatusSuccess, Integration: "siem", Detail: "2"},
		{Time: at(3), Event: EventAccess, Status: StatusFailure, Integration: "siem", Detail: "3"},
		{Time: at(4), Event: EventAccess, Status: StatusSuccess, Integration: "soar", Detail: "4"},
		{Time: at(5), Event: EventWarning, Status: StatusSuccess, Detail: "5"},
		{Time: at(6), Event: EventAccess, Status: StatusSuccess, Integration: "siem", Detail: "6"},
	}}
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all newest first", Filter{}, []string{"6", "5", "4", "3", "2", "1"}},
		{"status", Filter{Status: StatusFailure}, []string{"3"}},
		{"integration", Filter{Integration: "siem"}, []string{"6", "3", "2"}},
		{"status and integration", Filter{Status: StatusSuccess, Integration: "siem"}, []string{"6", "2"}},
		{"event kind", Filter{Event: EventWarning}, []string{"5"}},
		{"since inclusive", Filter{Since: at(4)}, []string{"6", "5", "4"}},
		{"until inclusive", Filter{Until: at(2)}, []string{"2", "1"}},
		{"range", Filter{Since: at(2), Until: at(4)}, []string{"4", "3", "2"}},
		{"range and integration", Filter{Since: at(3), Until: at(6), Integration: "siem"}, []string{"6", "3"}},
		{"limit", Filter{Limit: 2}, []string{"6", "5"}},
		{"limit after filtering", Filter{Integration: "siem", Limit: 2}, []string{"6", "3"}},
		{"nothing", Filter{Integration: "none"}, nil},
		{"empty range", Filter{Since: at(5), Until: at(4)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := details(u.Filter(tc.f)); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestUsageJSON pins the stored and returned field names.
func TestUsageJSON(t *testing.T) {
	t.Parallel()
	u := Usage{Count: 2, Failures: 1, LastAccessed: at(0), Events: []Event{{Time: at(0), Event: EventAccess, Status: StatusSuccess, Integration: "siem"}}}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"count":2,"failures":1,"last_accessed":"2025-01-01T00:00:00Z","events":[{"time":"2025-01-01T00:00:00Z","event":"access","status":"success","integration":"siem"}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
