package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// Expected log lines of a timeline, "d<day> <event>: <detail>".
func lcWarnSuspend(d, n int) string {
	return fmt.Sprintf("d%d warning: Credential will be suspended in %s because it isn't being used.", d, lcDays(n))
}

func lcWarnExpire(d, n int) string {
	return fmt.Sprintf("d%d warning: Credential will expire and be suspended in %s.", d, lcDays(n))
}

func lcWarnPurge(d, n int) string {
	return fmt.Sprintf("d%d warning: Credential will be purged in %s because it isn't being used.", d, lcDays(n))
}

func lcSuspended(d int) string {
	return fmt.Sprintf("d%d suspended: Credential suspended because it isn't being used.", d)
}

func lcDays(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// lcStateCheck is what the management view must show after a day's sweeps.
type lcStateCheck struct {
	day                    int
	status, reason, health string
}

// timeline drives one credential through a simulated span, a day at a time, sweeping
// twice after each step (a second sweep picks up what the first made due).
type lcTimeline struct {
	t      *testing.T
	b      *integrationsBackend
	s      logical.Storage
	clock  *testClock
	start  time.Time
	events *logical.MockEventSender
	name   string
}

func (tl *lcTimeline) day() int { return int(tl.clock.Now().Sub(tl.start) / day) }

func (tl *lcTimeline) sweep() {
	tl.t.Helper()
	for i := 0; i < 2; i++ {
		if err := tl.b.periodic(context.Background(), &logical.Request{Storage: tl.s}); err != nil {
			tl.t.Fatalf("d%d: periodic: %v", tl.day(), err)
		}
	}
}

// log renders the credential's events (but created) as "d<day> <event>: <detail>".
func (tl *lcTimeline) log() []string {
	tl.t.Helper()
	var out []string
	events := lcLogs(tl.t, tl.b, tl.s, tl.name, nil)
	for i := len(events) - 1; i >= 0; i-- {
		ev := events[i]
		if ev["event"] == usage.EventCreated {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
		if err != nil {
			tl.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("d%d %s: %s", int(at.Sub(tl.start)/day), ev["event"], ev["detail"]))
	}
	return out
}

func TestLifecycleTimeline(t *testing.T) {
	t.Parallel()
	type env = lcTimeline
	accessAt := func(tl *env) {
		if resp, err := lcDo(tl.b, tl.s, logical.ReadOperation, "access/"+tl.name, "ci", nil); err != nil || resp.IsError() {
			tl.t.Fatalf("d%d: access refused: %v %v", tl.day(), resp, err)
		}
		lcFlush(tl.t, tl.b, tl.s)
	}
	action := func(a string) func(*env) {
		return func(tl *env) {
			if resp, err := lcDo(tl.b, tl.s, logical.UpdateOperation, "credentials/"+tl.name+"/"+a, "ops", nil); err != nil || resp.IsError() {
				tl.t.Fatalf("d%d: %s: %v %v", tl.day(), a, resp, err)
			}
		}
	}
	defaultLog := []string{
		lcWarnSuspend(90, 90), lcWarnSuspend(120, 60), lcWarnSuspend(150, 30), lcWarnSuspend(173, 7), lcSuspended(180),
		lcWarnPurge(275, 90), lcWarnPurge(305, 60), lcWarnPurge(335, 30), lcWarnPurge(358, 7),
	}
	cases := []struct {
		name    string
		config  map[string]any
		fields  map[string]any
		days    int
		ops     map[int]func(*env)
		logAt   int // day whose log is compared with wantLog (before any purge)
		wantLog []string
		// wantNotes are the Vault events, "d<day> <kind>", over the whole span.
		wantNotes []string
		checks    []lcStateCheck
		goneAt    int // the day the credential is purged; 0: never within days
	}{
		{
			name: "defaults", days: 400, logAt: 364, goneAt: 365,
			wantLog: defaultLog,
			wantNotes: []string{
				"d90 suspension-warning", "d120 suspension-warning", "d150 suspension-warning", "d173 suspension-warning",
				"d180 suspended", "d275 purge-warning", "d305 purge-warning", "d335 purge-warning", "d358 purge-warning", "d365 purged",
			},
			checks: []lcStateCheck{
				{1, "active", "", lifecycle.HealthAwaitingUsage},
				{89, "active", "", lifecycle.HealthAwaitingUsage},
				{90, "active", "", lifecycle.HealthYellow},
				{179, "active", "", lifecycle.HealthYellow},
				{180, "suspended", "inactivity", lifecycle.HealthRed},
				{364, "suspended", "inactivity", lifecycle.HealthRed},
			},
		},
		{
			name: "access renews the window", days: 470, logAt: 464, goneAt: 465,
			ops: map[int]func(*env){100: accessAt},
			wantLog: []string{
				lcWarnSuspend(90, 90), "d100 access: ",
				lcWarnSuspend(190, 90), lcWarnSuspend(220, 60), lcWarnSuspend(250, 30), lcWarnSuspend(273, 7), lcSuspended(280),
				lcWarnPurge(375, 90), lcWarnPurge(405, 60), lcWarnPurge(435, 30), lcWarnPurge(458, 7),
			},
			checks: []lcStateCheck{
				{99, "active", "", lifecycle.HealthYellow},
				{100, "active", "", lifecycle.HealthGreen},
				{189, "active", "", lifecycle.HealthGreen},
				{190, "active", "", lifecycle.HealthYellow},
				{279, "active", "", lifecycle.HealthYellow},
				{280, "suspended", "inactivity", lifecycle.HealthRed},
			},
		},
		{
			name:   "per-credential overrides",
			fields: map[string]any{"suspend_after": "30d", "purge_after": "60d"},
			days:   70, logAt: 59, goneAt: 60,
			// Only thresholds shorter than the window apply: 7d before suspension, 30d
			// and 7d before purge.
			wantLog: []string{
				lcWarnSuspend(23, 7), lcSuspended(30), lcWarnPurge(30, 30), lcWarnPurge(53, 7),
			},
			wantNotes: []string{"d23 suspension-warning", "d30 suspended", "d30 purge-warning", "d53 purge-warning", "d60 purged"},
			checks: []lcStateCheck{
				{29, "active", "", lifecycle.HealthYellow},
				{30, "suspended", "inactivity", lifecycle.HealthRed},
			},
		},
		{
			name:   "engine warn_before",
			config: map[string]any{"warn_before": "14d,1d"},
			days:   366, logAt: 364, goneAt: 365,
			wantLog: []string{
				lcWarnSuspend(166, 14), lcWarnSuspend(179, 1), lcSuspended(180), lcWarnPurge(351, 14), lcWarnPurge(364, 1),
			},
		},
		{
			name:   "engine windows",
			config: map[string]any{"suspend_after": "100d", "purge_after": "120d", "warn_before": "10d"},
			days:   121, logAt: 119, goneAt: 120,
			wantLog: []string{lcWarnSuspend(90, 10), lcSuspended(100), lcWarnPurge(110, 10)},
		},
		{
			name:   "expires_at",
			fields: map[string]any{"expires_at": "2026-02-15T12:00:00Z"}, // day 45
			days:   60, logAt: 60,
			wantLog: []string{
				lcWarnExpire(15, 30), lcWarnExpire(38, 7),
				"d45 suspended: Credential suspended because it expired.",
			},
			wantNotes: []string{"d15 suspension-warning", "d38 suspension-warning", "d45 suspended"},
			checks: []lcStateCheck{
				{14, "active", "", lifecycle.HealthAwaitingUsage},
				{15, "active", "", lifecycle.HealthYellow},
				{45, "suspended", "expired", lifecycle.HealthRed},
			},
		},
		{
			name: "manual suspend still counts toward purge", days: 366, logAt: 364, goneAt: 365,
			ops: map[int]func(*env){10: action("suspend")},
			wantLog: []string{
				"d10 suspended: suspended by hand",
				lcWarnPurge(275, 90), lcWarnPurge(305, 60), lcWarnPurge(335, 30), lcWarnPurge(358, 7),
			},
			checks: []lcStateCheck{
				{10, "suspended", "manual", lifecycle.HealthRed},
				{364, "suspended", "manual", lifecycle.HealthRed},
			},
		},
		{
			name: "unsuspend restarts the window", days: 400, logAt: 400,
			ops: map[int]func(*env){200: action("unsuspend")},
			wantLog: []string{
				lcWarnSuspend(90, 90), lcWarnSuspend(120, 60), lcWarnSuspend(150, 30), lcWarnSuspend(173, 7), lcSuspended(180),
				"d200 unsuspended: unsuspended by hand",
				lcWarnSuspend(290, 90), lcWarnSuspend(320, 60), lcWarnSuspend(350, 30), lcWarnSuspend(373, 7), lcSuspended(380),
			},
			checks: []lcStateCheck{
				{200, "active", "", lifecycle.HealthAwaitingUsage},
				{380, "suspended", "inactivity", lifecycle.HealthRed},
			},
		},
		{
			name: "reset-inactivity restarts the window", days: 200, logAt: 200,
			ops: map[int]func(*env){95: action("reset-inactivity")},
			wantLog: []string{
				lcWarnSuspend(90, 90), "d95 inactivity_reset: inactivity window restarted by hand", lcWarnSuspend(185, 90),
			},
			checks: []lcStateCheck{{95, "active", "", lifecycle.HealthAwaitingUsage}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			events := logical.NewMockEventSender()
			b, s, clock := newBackendWith(t, backendOptions{events: events})
			tl := &lcTimeline{t: t, b: b, s: s, clock: clock, start: clock.Now(), events: events, name: "svc"}
			if tc.config != nil {
				mustOK(t, b, s, logical.UpdateOperation, "config", tc.config)
			}
			lcCreateBasic(t, b, s, tl.name, tc.fields)
			// A cached token beside the credential, to check a purge removes it too.
			if err := s.Put(context.Background(), &logical.StorageEntry{Key: tokenPrefix + tl.name, Value: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			var notes []string
			var gotLog []string
			for d := 1; d <= tc.days; d++ {
				clock.Advance(day)
				if op := tc.ops[d]; op != nil {
					op(tl)
				}
				seen := len(events.Events)
				tl.sweep()
				for _, ev := range events.Events[seen:] {
					if ev.Event.Metadata.Fields["credential"].GetStringValue() != tl.name {
						t.Fatalf("event for %v", ev.Event.Metadata)
					}
					notes = append(notes, fmt.Sprintf("d%d %s", d, strings.TrimPrefix(string(ev.Type), "integrations/credential-")))
				}
				for _, c := range tc.checks {
					if c.day != d {
						continue
					}
					v := lcRead(t, b, s, tl.name)
					if v["status"] != c.status || v["status_reason"] != c.reason || v["health"] != c.health {
						t.Errorf("d%d: status %v (%v) health %v, want %s (%s) %s", d, v["status"], v["status_reason"], v["health"], c.status, c.reason, c.health)
					}
				}
				if d == tc.logAt {
					gotLog = tl.log()
				}
				if tc.goneAt != 0 && d == tc.goneAt-1 && lcRead(t, b, s, tl.name) == nil {
					t.Fatalf("d%d: purged a day early", d)
				}
			}
			if !slices.Equal(gotLog, tc.wantLog) {
				t.Errorf("log on d%d:\n got %q\nwant %q", tc.logAt, gotLog, tc.wantLog)
			}
			if tc.wantNotes != nil && !slices.Equal(notes, tc.wantNotes) {
				t.Errorf("Vault events:\n got %q\nwant %q", notes, tc.wantNotes)
			}
			if tc.goneAt != 0 {
				lcWantGone(t, b, s, tl.name)
				if want := fmt.Sprintf("d%d purged", tc.goneAt); !slices.Contains(notes, want) {
					t.Errorf("no %q in %q", want, notes)
				}
			} else if lcRead(t, b, s, tl.name) == nil {
				t.Errorf("credential purged, want it kept through d%d", tc.days)
			}
		})
	}
}

// wantGone asserts a purged credential left nothing behind and reads as absent.
func lcWantGone(t *testing.T, b *integrationsBackend, s logical.Storage, name string) {
	t.Helper()
	for _, key := range []string{credentialPrefix + name, usagePrefix + name, tokenPrefix + name} {
		if e, err := s.Get(context.Background(), key); err != nil || e != nil {
			t.Errorf("%s still stored after purge (err %v)", key, err)
		}
	}
	for _, path := range []string{"credentials/" + name, "access/" + name, "credentials/" + name + "/logs"} {
		resp, err := lcDo(b, s, logical.ReadOperation, path, "", nil)
		var coded logical.HTTPCodedError
		if resp != nil || err != nil && (!errors.As(err, &coded) || coded.Code() != http.StatusNotFound) {
			t.Errorf("read %s after purge: %v, %v; want a 404", path, resp, err)
		}
	}
	if dueBy(b.activity.index, name, never) {
		t.Errorf("%s still in the due-time index", name)
	}
}

func TestLateSweepPurgesDirectly(t *testing.T) {
	t.Parallel()
	events := logical.NewMockEventSender()
	b, s, clock := newBackendWith(t, backendOptions{events: events})
	lcCreateBasic(t, b, s, "svc", nil)
	lcAccess(t, b, s, "svc")
	clock.Advance(400 * day) // the node was down the whole time
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	if got := lcEventTypes(events); !slices.Equal(got, []string{"integrations/credential-purged"}) {
		t.Fatalf("late sweep sent %v, want only a purge", got)
	}
	lcWantGone(t, b, s, "svc")
}

func TestExpiredCredentialRefused(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	expires := clock.Now().Add(10 * day)
	lcCreateBasic(t, b, s, "svc", map[string]any{"expires_at": expires.Format(time.RFC3339)})
	if v := lcRead(t, b, s, "svc"); v["expires_at"] != expires.Format(time.RFC3339) || v["suspend_at"] != expires.Format(time.RFC3339) {
		t.Fatalf("expires_at %v suspend_at %v", v["expires_at"], v["suspend_at"])
	}
	lcAccess(t, b, s, "svc")
	clock.Advance(10 * day)

	// Refused from the moment it expires, before any sweep.
	for _, sweep := range []bool{false, true} {
		if sweep {
			if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := lcDo(b, s, logical.ReadOperation, "access/svc", "", nil)
		lcWantRefusal(t, resp, err, "suspended (expired)", "expires_at")
		if v := lcRead(t, b, s, "svc"); v["status"] != "suspended" || v["status_reason"] != "expired" || v["health"] != lifecycle.HealthRed {
			t.Fatalf("sweep %v: status %v (%v) health %v", sweep, v["status"], v["status_reason"], v["health"])
		}
	}

	resp := call(t, b, s, logical.UpdateOperation, "credentials/svc/unsuspend", nil)
	wantFieldError(t, resp, "expires_at")
	if v := lcRead(t, b, s, "svc"); v["status"] != "suspended" {
		t.Fatalf("refused unsuspend changed the status to %v", v["status"])
	}

	later := clock.Now().Add(100 * day).Format(time.RFC3339)
	mustOK(t, b, s, logical.PatchOperation, "credentials/svc", map[string]any{"expires_at": later})
	mustOK(t, b, s, logical.UpdateOperation, "credentials/svc/unsuspend", nil)
	lcAccess(t, b, s, "svc")
	if v := lcRead(t, b, s, "svc"); v["status"] != "active" || v["suspend_at"] != later {
		t.Fatalf("after a new expires_at and unsuspend: status %v suspend_at %v", v["status"], v["suspend_at"])
	}
}

// wantRefusal asserts a 403 whose message names every want.
func lcWantRefusal(t *testing.T, resp *logical.Response, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a refusal, got %v", resp)
	}
	coded, ok := err.(logical.HTTPCodedError)
	if !ok || coded.Code() != http.StatusForbidden {
		t.Fatalf("want a 403, got %T %v", err, err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("refusal %q does not name %q", err, w)
		}
	}
}

func TestManualLifecycleActions(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	lcCreateBasic(t, b, s, "svc", nil)

	clock.Advance(10 * day)
	resp := mustOK(t, b, s, logical.UpdateOperation, "credentials/svc/suspend", nil)
	if resp.Data["status"] != "suspended" || resp.Data["status_reason"] != "manual" || resp.Data["suspended_at"] != clock.Now().Format(time.RFC3339) {
		t.Fatalf("suspend answered %v", resp.Data)
	}
	r, err := lcDo(b, s, logical.ReadOperation, "access/svc", "", nil)
	lcWantRefusal(t, r, err, `"svc"`, "suspended (manual)", "unsuspend")

	clock.Advance(10 * day)
	resp = mustOK(t, b, s, logical.UpdateOperation, "credentials/svc/unsuspend", nil)
	if resp.Data["status"] != "active" || resp.Data["suspend_at"] != clock.Now().Add(180*day).Format(time.RFC3339) ||
		resp.Data["purge_at"] != clock.Now().Add(365*day).Format(time.RFC3339) {
		t.Fatalf("unsuspend did not restart the window: %v", resp.Data)
	}
	lcAccess(t, b, s, "svc")

	clock.Advance(50 * day)
	resp = mustOK(t, b, s, logical.UpdateOperation, "credentials/svc/reset-inactivity", nil)
	if resp.Data["suspend_at"] != clock.Now().Add(180*day).Format(time.RFC3339) {
		t.Fatalf("reset-inactivity did not restart the window: %v", resp.Data)
	}
	if due := clock.Now().Add(90 * day); !dueBy(b.activity.index, "svc", due) || dueBy(b.activity.index, "svc", due.Add(-time.Nanosecond)) {
		t.Fatalf("index after reset: svc not filed at the 90-day warning (%s)", due)
	}

	for _, a := range []string{"suspend", "unsuspend", "reset-inactivity"} {
		_, err := lcDo(b, s, logical.UpdateOperation, "credentials/nope/"+a, "", nil)
		if coded, ok := err.(logical.HTTPCodedError); !ok || coded.Code() != http.StatusNotFound {
			t.Errorf("%s of a missing credential: %v, want 404", a, err)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	lcCreateBasic(t, b, s, "new", nil)
	lcCreateBasic(t, b, s, "used", nil)
	lcCreateBasic(t, b, s, "warned", nil)
	lcCreateBasic(t, b, s, "suspended", nil)
	lcCreateBasic(t, b, s, "expiring", map[string]any{"expires_at": clock.Now().Add(100 * day).Format(time.RFC3339)})
	clock.Advance(80 * day)
	lcCreateBasic(t, b, s, "new2", nil)
	lcAccess(t, b, s, "used")
	lcAccess(t, b, s, "expiring")
	mustOK(t, b, s, logical.UpdateOperation, "credentials/suspended/suspend", nil)
	clock.Advance(10 * day) // "warned" now has its 90-day warning due
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"new2":      lifecycle.HealthAwaitingUsage,
		"used":      lifecycle.HealthGreen,
		"warned":    lifecycle.HealthYellow,
		"new":       lifecycle.HealthYellow, // warned too: never used is no excuse
		"expiring":  lifecycle.HealthYellow, // expires within 30 days
		"suspended": lifecycle.HealthRed,
	}
	list := mustOK(t, b, s, logical.ListOperation, "credentials/", nil)
	info := list.Data["key_info"].(map[string]any)
	for name, health := range want {
		if got := lcRead(t, b, s, name)["health"]; got != health {
			t.Errorf("%s: health %v, want %s", name, got, health)
		}
		if got := info[name].(map[string]any)["health"]; got != health {
			t.Errorf("%s: listed health %v, want %s", name, got, health)
		}
	}
}

func TestLogsFilters(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	lcCreateBasic(t, b, s, "svc", nil)
	start := clock.Now()
	// Ten reads a minute apart, alternating integrations; reads 4 and 5 refused while
	// suspended by hand.
	for i := 1; i <= 10; i++ {
		clock.Advance(time.Minute)
		switch i {
		case 4:
			mustOK(t, b, s, logical.UpdateOperation, "credentials/svc/suspend", nil)
		case 6:
			mustOK(t, b, s, logical.UpdateOperation, "credentials/svc/unsuspend", nil)
		}
		integration := "alpha"
		if i%2 == 0 {
			integration = "beta"
		}
		_, _ = lcDo(b, s, logical.ReadOperation, "access/svc", "", map[string]any{"integration": integration})
		if i == 5 {
			lcFlush(t, b, s) // half stored, half pending: the view merges both
		}
	}
	at := func(i int) string { return start.Add(time.Duration(i) * time.Minute).Format(time.RFC3339) }
	cases := []struct {
		name  string
		query map[string]any
		want  int
		check func(ev map[string]any) bool
	}{
		{"all", nil, 13, nil}, // created, suspended, unsuspended and ten accesses
		{"failures", map[string]any{"status": "failure"}, 2, func(ev map[string]any) bool {
			return ev["event"] == usage.EventAccess && strings.Contains(ev["detail"].(string), "suspended")
		}},
		{"successes", map[string]any{"status": "success"}, 11, func(ev map[string]any) bool { return ev["status"] == "success" }},
		{"integration", map[string]any{"integration": "beta"}, 5, func(ev map[string]any) bool { return ev["integration"] == "beta" }},
		{"event", map[string]any{"event": "access"}, 10, func(ev map[string]any) bool { return ev["event"] == "access" }},
		{"since", map[string]any{"since": at(8)}, 3, nil},
		{"until", map[string]any{"until": at(2)}, 3, nil}, // created + two reads
		{"range", map[string]any{"since": at(3), "until": at(6), "event": "access"}, 4, nil},
		{"limit", map[string]any{"limit": 2}, 2, func(ev map[string]any) bool { return ev["time"].(string) >= at(9) }},
		{"combined", map[string]any{"integration": "alpha", "status": "failure"}, 1, func(ev map[string]any) bool {
			return ev["time"] == at(5)
		}},
	}
	for _, c := range cases {
		got := lcLogs(t, b, s, "svc", c.query)
		if len(got) != c.want {
			t.Errorf("%s: %d events, want %d: %v", c.name, len(got), c.want, got)
			continue
		}
		for i, ev := range got {
			if c.check != nil && !c.check(ev) {
				t.Errorf("%s: unexpected event %v", c.name, ev)
			}
			if i > 0 && ev["time"].(string) > got[i-1]["time"].(string) {
				t.Errorf("%s: not newest first: %v", c.name, got)
			}
		}
	}
	for _, bad := range []map[string]any{{"status": "maybe"}, {"since": "yesterday"}, {"until": "2026-13-01"}} {
		resp := call(t, b, s, logical.ReadOperation, "credentials/svc/logs", bad)
		for field := range bad {
			wantFieldError(t, resp, field)
		}
	}
}

func TestLogSizeCap(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": 5})
	lcCreateBasic(t, b, s, "svc", nil)
	for i := 1; i <= 12; i++ {
		clock.Advance(time.Minute)
		_, _ = lcDo(b, s, logical.ReadOperation, "access/svc", "", map[string]any{"integration": fmt.Sprintf("i%02d", i)})
		if i%5 == 0 {
			lcFlush(t, b, s) // i11 and i12 stay pending: the read merges them
		}
	}
	check := func(stage string) {
		got := lcLogs(t, b, s, "svc", nil)
		var names []string
		for _, ev := range got {
			names = append(names, ev["integration"].(string))
		}
		if want := []string{"i12", "i11", "i10", "i09", "i08"}; !slices.Equal(names, want) {
			t.Fatalf("%s: log %v, want the newest five %v", stage, names, want)
		}
	}
	check("read")
	lcFlush(t, b, s)
	if u := lcStoredUsage(t, s, "svc"); len(u.Events) != 5 || u.Count != 12 {
		t.Fatalf("stored %d events, count %d; want 5 and 12", len(u.Events), u.Count)
	}
	check("stored")
}

// selfSignedPEM returns a certificate valid until notAfter and its PKCS#8 key.
func lcSelfSignedPEM(t *testing.T, notAfter time.Time) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "integration"},
		NotBefore: notAfter.Add(-365 * day), NotAfter: notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}))
}

func TestAlerts(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	lcCreateBasic(t, b, s, "idle", nil)
	clock.Advance(95 * day)
	now := clock.Now()
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	lcCreateBasic(t, b, s, "fine", nil)
	lcAccess(t, b, s, "fine")
	lcCreateBasic(t, b, s, "held", nil)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/held/suspend", nil)
	lcCreateBasic(t, b, s, "expiring", map[string]any{"expires_at": now.Add(10 * day).Format(time.RFC3339)})
	certPEM, keyPEM := lcSelfSignedPEM(t, now.Add(20*day))
	mustOK(t, b, s, logical.CreateOperation, "credentials/cert", map[string]any{
		"type": "certificate", "certificate": certPEM, "private_key": keyPEM,
	})
	lcAccess(t, b, s, "cert")

	resp := mustOK(t, b, s, logical.ReadOperation, "alerts", nil)
	var got []string
	for _, a := range resp.Data["alerts"].([]map[string]any) {
		got = append(got, fmt.Sprintf("%s %s %s %s", a["name"], a["reason"], a["severity"], a["due"]))
	}
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	want := []string{
		"held suspended red " + at(0),
		"expiring expiring yellow " + at(10*day),
		"cert certificate_expiring yellow " + at(20*day),
		"idle suspension_pending yellow " + at(85*day),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("alerts:\n got %q\nwant %q", got, want)
	}

	// Once the suspension is overdue (before any sweep) it turns red.
	clock.Advance(85 * day)
	resp = mustOK(t, b, s, logical.ReadOperation, "alerts", nil)
	found := false
	for _, a := range resp.Data["alerts"].([]map[string]any) {
		if a["name"] == "idle" {
			found = a["reason"] == lifecycle.AlertSuspensionPending && a["severity"] == lifecycle.HealthRed
		}
	}
	if !found {
		t.Fatalf("overdue suspension not a red alert: %v", resp.Data["alerts"])
	}
}

// TestConfigChangeReachesIndexedCredentials: shortening the engine's windows applies
// to credentials the index filed under the old ones.
func TestConfigChangeReachesIndexedCredentials(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	lcCreateBasic(t, b, s, "svc", nil)
	clock.Advance(day)
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"suspend_after": "20d", "purge_after": "40d", "warn_before": "7d"})
	// The next sweep sees the index was built under other windows and rebuilds it in
	// the background.
	if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
		t.Fatal(err)
	}
	waitIndexBuilt(t, b)
	for d := 2; d <= 20; d++ {
		clock.Advance(day)
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatal(err)
		}
		v := lcRead(t, b, s, "svc")
		wantHealth := lifecycle.HealthAwaitingUsage
		if d >= 13 {
			wantHealth = lifecycle.HealthYellow
		}
		if d == 20 {
			wantHealth = lifecycle.HealthRed
		}
		if v["health"] != wantHealth {
			t.Fatalf("d%d: health %v, want %s", d, v["health"], wantHealth)
		}
	}
	got := lcLogs(t, b, s, "svc", map[string]any{"event": "warning"})
	if len(got) != 1 || !strings.Contains(got[0]["detail"].(string), "in 7 days") {
		t.Fatalf("warnings under the new config: %v", got)
	}
	c, _ := b.credentials.get(context.Background(), s, "svc")
	if c.State.Status != lifecycle.StatusSuspended {
		t.Fatalf("stored status %v on d20, want suspended by the sweep", c.State.Status)
	}
}

// never is later than anything an index files.
var never = time.Unix(1<<40, 0)

// dueBy reports whether the index x files name at or before at.
func dueBy(x *lifecycle.Index, name string, at time.Time) bool {
	return slices.Contains(x.Due(at, 0), name)
}
