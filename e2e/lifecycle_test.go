//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestUsageAndLifecycleThroughCLI: accesses are counted and, once flushed, read back
// from storage; suspend, unsuspend and reset-inactivity work; alerts and logs show what
// needs a person.
func TestUsageAndLifecycleThroughCLI(t *testing.T) {
	t.Parallel()
	// Its own server: a plugin reload restarts the multiplexed plugin process, which
	// would cut off every other test's mount on a shared server.
	v := newVault(t, serverOptions{})
	mount := v.mount(t)
	cred := mount + "/credentials/svc"
	start := time.Now().Truncate(time.Second) // the API shows times to the second
	v.mustCLI(t, "write", cred, "type=basic", "username=svc", "password=pw", "suspend_after=5d", "purge_after=30d")
	for i := range 7 {
		v.mustCLI(t, "read", mount+"/access/svc", fmt.Sprintf("integration=forwarder-%d", i%2))
	}

	// A plugin reload runs the engine's Clean, which flushes usage, and starts it anew
	// from storage: what the read shows now was stored, not held in memory. (Through
	// the API: Vault 1.21's CLI cannot reload by mount.)
	if _, err := v.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{mount + "/"}}); err != nil {
		t.Fatalf("reloading the mount: %v", err)
	}
	read := decode(t, v.mustCLI(t, "read", "-format=json", cred)).Data
	if fmt.Sprint(read["access_count"]) != "7" || read["health"] != "green" {
		t.Fatalf("after the flush: access_count=%v health=%v", read["access_count"], read["health"])
	}
	if last := timeField(t, read, "last_accessed"); last.Before(start) || last.After(time.Now()) {
		t.Fatalf("after the flush: last_accessed %v, want between the test's start %v and now", last, start)
	}
	logs := decode(t, v.mustCLI(t, "read", "-format=json", mount+"/credentials/svc/logs", "integration=forwarder-1")).Data
	events, _ := logs["events"].([]any)
	if len(events) != 3 {
		t.Fatalf("logs for forwarder-1: %d events, want 3: %v", len(events), logs)
	}

	// A credential that expires (and so is suspended) in five days is due soon: alerts
	// lists it, and only it.
	soon := time.Now().Add(5 * 24 * time.Hour).UTC().Format(time.RFC3339)
	v.mustCLI(t, "write", mount+"/credentials/soon", "type=webhook", "url=https://hooks.example.com/x", "expires_at="+soon)
	var alerts struct {
		Data struct {
			Alerts []map[string]any `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(v.mustCLI(t, "read", "-format=json", mount+"/alerts")), &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts.Data.Alerts) != 1 || alerts.Data.Alerts[0]["name"] != "soon" || alerts.Data.Alerts[0]["reason"] != "expiring" || alerts.Data.Alerts[0]["due"] != soon {
		t.Fatalf("alerts = %v, want one: soon expiring at %s", alerts.Data.Alerts, soon)
	}

	v.mustCLI(t, "write", "-f", cred+"/suspend")
	_, err := v.cli("read", mount+"/access/svc")
	if err == nil || !strings.Contains(err.Error(), "Code: 403") || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("access while suspended: %v", err)
	}
	if st := decode(t, v.mustCLI(t, "read", "-format=json", cred)).Data; st["status"] != "suspended" || st["health"] != "red" {
		t.Fatalf("after suspend: status=%v health=%v", st["status"], st["health"])
	}
	v.mustCLI(t, "write", "-f", cred+"/unsuspend")
	v.mustCLI(t, "read", mount+"/access/svc")
	before := timeField(t, decode(t, v.mustCLI(t, "read", "-format=json", cred)).Data, "suspend_at")
	// suspend_at shows seconds: a reset in the second of the last activity would show
	// the suspend_at a no-op reset leaves. Wait for the clock to enter the next
	// second (a condition on the clock, not on the server), so the two differ.
	lastActivity := time.Now()
	time.Sleep(time.Until(lastActivity.Truncate(time.Second).Add(time.Second)))
	resetFrom := time.Now().Truncate(time.Second)
	v.mustCLI(t, "write", "-f", cred+"/reset-inactivity")
	resetBy := time.Now()
	after := decode(t, v.mustCLI(t, "read", "-format=json", cred)).Data
	// The window restarts at the reset: suspend_at is the reset's time plus
	// suspend_after (5d), later than any suspend_at the earlier activity gave.
	got := timeField(t, after, "suspend_at")
	if after["status"] != "active" || got.Before(resetFrom.Add(5*24*time.Hour)) || got.After(resetBy.Add(5*24*time.Hour)) || !got.After(before) {
		t.Fatalf("after reset: status=%v suspend_at %v -> %v, want the reset's time (%v to %v) + 5d",
			after["status"], before, got, resetFrom, resetBy)
	}

	// The events a person would look for are all in the log.
	all := decode(t, v.mustCLI(t, "read", "-format=json", mount+"/credentials/svc/logs")).Data
	raw, _ := json.Marshal(all["events"])
	for _, ev := range []string{"created", "access", "suspended", "unsuspended", "inactivity_reset"} {
		if !strings.Contains(string(raw), `"event":"`+ev+`"`) {
			t.Errorf("log lacks a %s event: %s", ev, raw)
		}
	}
}

// timeField is m[key] as an RFC 3339 time. It fails t when the field is missing, not
// a string or not a time: a check like m[key] == "" passes on a missing field.
func timeField(t testing.TB, m map[string]any, key string) time.Time {
	t.Helper()
	s, ok := m[key].(string)
	if !ok {
		t.Fatalf("%s is %T (%v), want an RFC 3339 time: %v", key, m[key], m[key], m)
	}
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("%s = %q, want an RFC 3339 time", key, s)
	}
	return at
}

// isNonEmptyString reports whether v is a non-empty string: v == "" is false for a
// missing field (nil) and so passes it.
func isNonEmptyString(v any) bool {
	s, ok := v.(string)
	return ok && s != ""
}
