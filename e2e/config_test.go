//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestConfigDefaultsThroughCLI(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	out := shared.mustCLI(t, "read", "-format=json", mount+"/config")
	var got struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	want := map[string]float64{
		"suspend_after":        180 * 86400,
		"purge_after":          365 * 86400,
		"expiry_buffer":        60,
		"log_size":             250,
		"usage_flush_interval": 10,
	}
	for k, v := range want {
		if got.Data[k] != v {
			t.Errorf("%s = %v, want %v", k, got.Data[k], v)
		}
	}
	warn, _ := json.Marshal(got.Data["warn_before"])
	if string(warn) != "[7776000,5184000,2592000,604800]" {
		t.Errorf("warn_before = %s, want 90,60,30,7 days in seconds", warn)
	}
}

func TestPluginVersionIsReported(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	out := shared.mustCLI(t, "secrets", "list", "-detailed", "-format=json")
	var mounts map[string]struct {
		Type                 string `json:"type"`
		RunningPluginVersion string `json:"running_plugin_version"`
		PluginVersion        string `json:"plugin_version"`
	}
	if err := json.Unmarshal([]byte(out), &mounts); err != nil {
		t.Fatalf("decoding secrets list: %v", err)
	}
	m, ok := mounts[mount+"/"]
	if !ok {
		t.Fatalf("mount %s/ missing from %s", mount, out)
	}
	want := os.Getenv("PLUGIN_VERSION")
	if m.RunningPluginVersion != want || m.PluginVersion != want {
		t.Errorf("running_plugin_version=%q plugin_version=%q, want %q", m.RunningPluginVersion, m.PluginVersion, want)
	}
	// The table view operators read shows it too.
	table := shared.mustCLI(t, "secrets", "list", "-detailed")
	if !strings.Contains(table, want) {
		t.Errorf("`vault secrets list -detailed` does not show %s:\n%s", want, table)
	}
}

func TestConfigRejectsBadInputAndStoresNothing(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	c := shared.client.Logical()
	before, err := c.Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		field string
	}{
		{"negative duration", []string{"suspend_after=-5"}, "suspend_after"},
		{"purge before suspend", []string{"suspend_after=30d", "purge_after=20d"}, "purge_after"},
		{"unknown field", []string{"suspend_afterr=30d"}, "suspend_afterr"},
		{"unsorted warnings", []string{"warn_before=7d,30d"}, "warn_before"},
		{"warning longer than window", []string{"suspend_after=10d", "warn_before=20d"}, "warn_before"},
		{"log size", []string{"log_size=0"}, "log_size"},
	}
	for _, tc := range cases {
		out, err := shared.cli(append([]string{"write", mount + "/config"}, tc.args...)...)
		if err == nil {
			t.Errorf("%s: accepted: %s", tc.name, out)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "Code: 400") || !strings.Contains(msg, tc.field) {
			t.Errorf("%s: want a 400 naming %q, got: %s", tc.name, tc.field, msg)
		}
	}
	after, err := c.Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := json.Marshal(before.Data)
	b2, _ := json.Marshal(after.Data)
	if string(b1) != string(b2) {
		t.Errorf("config changed by refused writes:\nbefore %s\nafter  %s", b1, b2)
	}
}

func TestConfigWriteThroughAPIClient(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	c := shared.client.Logical()
	if _, err := c.Write(mount+"/config", map[string]any{
		"suspend_after": "30d", "purge_after": "60d", "warn_before": "14d,2d",
		"callback_base_url": "https://vault.example.com:8200",
	}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if s.Data["suspend_after"] != json.Number("2592000") || s.Data["purge_after"] != json.Number("5184000") {
		t.Errorf("windows not stored: %v", s.Data)
	}
	if s.Data["callback_base_url"] != "https://vault.example.com:8200" {
		t.Errorf("callback_base_url = %v", s.Data["callback_base_url"])
	}
	if _, err := c.Delete(mount + "/config"); err != nil {
		t.Fatal(err)
	}
	s, err = c.Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if s.Data["suspend_after"] != json.Number("15552000") {
		t.Errorf("delete did not restore defaults: %v", s.Data)
	}
}
