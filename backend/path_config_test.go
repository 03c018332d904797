package backend

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	resp := mustOK(t, b, s, logical.ReadOperation, "config", nil)
	want := map[string]any{
		"suspend_after":              int64(180 * 86400),
		"purge_after":                int64(365 * 86400),
		"warn_before":                []int64{90 * 86400, 60 * 86400, 30 * 86400, 7 * 86400},
		"expiry_buffer":              int64(60),
		"request_timeout":            int64(30),
		"log_size":                   250,
		"usage_flush_interval":       int64(10),
		"default_token_lifetime":     int64(3600),
		"refresh_ahead":              true,
		"verify_interval":            int64(0),
		"keepalive_interval":         int64(7 * 86400),
		"token_host_concurrency":     10,
		"token_host_rate":            20,
		"callback_base_url":          "",
		"notify_credential":          "",
		"notify_channel":             "",
		"metrics_credential_label":   false,
		"denied_networks":            []string{"0.0.0.0/8", "::/128", "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "fd00:ec2::23/128", "100.100.100.200/32", "192.0.0.192/32"},
		"allowed_networks":           []string{},
		"issuer":                     "",
		"issuer_key_rotation_period": int64(30 * 86400),
	}
	if !reflect.DeepEqual(resp.Data, want) {
		t.Fatalf("defaults:\n got %#v\nwant %#v", resp.Data, want)
	}
}

func TestConfigUpdateChangesOnlyWhatIsGiven(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"suspend_after": "30d", "warn_before": "14d,1d"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": 10})
	resp := mustOK(t, b, s, logical.ReadOperation, "config", nil)
	if resp.Data["suspend_after"] != int64(30*86400) || resp.Data["log_size"] != 10 {
		t.Fatalf("update lost a field: %v", resp.Data)
	}
	if !reflect.DeepEqual(resp.Data["warn_before"], []int64{14 * 86400, 86400}) {
		t.Fatalf("warn_before = %v", resp.Data["warn_before"])
	}
	if resp.Data["purge_after"] != int64(365*86400) {
		t.Fatalf("untouched purge_after changed: %v", resp.Data["purge_after"])
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		data  map[string]any
		field string
	}{
		{"negative suspend", map[string]any{"suspend_after": -5}, "suspend_after"},
		{"zero purge", map[string]any{"purge_after": 0}, "purge_after"},
		{"purge before suspend", map[string]any{"suspend_after": "30d", "purge_after": "20d"}, "purge_after"},
		{"purge equal suspend", map[string]any{"suspend_after": "30d", "purge_after": "30d"}, "purge_after"},
		{"negative expiry buffer", map[string]any{"expiry_buffer": -1}, "expiry_buffer"},
		{"timeout too long", map[string]any{"request_timeout": "1h"}, "request_timeout"},
		{"zero flush", map[string]any{"usage_flush_interval": 0}, "usage_flush_interval"},
		{"warn unsorted", map[string]any{"warn_before": "7d,30d"}, "warn_before"},
		{"warn repeated", map[string]any{"warn_before": "7d,7d"}, "warn_before"},
		{"warn negative", map[string]any{"warn_before": "-7d"}, "warn_before"},
		{"warn not a duration", map[string]any{"warn_before": "soon"}, "warn_before"},
		{"warn beyond window", map[string]any{"suspend_after": "10d", "warn_before": "10d"}, "warn_before"},
		{"log size zero", map[string]any{"log_size": 0}, "log_size"},
		{"host concurrency zero", map[string]any{"token_host_concurrency": 0}, "token_host_concurrency"},
		{"host concurrency huge", map[string]any{"token_host_concurrency": 1001}, "token_host_concurrency"},
		{"host rate zero", map[string]any{"token_host_rate": 0}, "token_host_rate"},
		{"host rate negative", map[string]any{"token_host_rate": -5}, "token_host_rate"},
		{"host rate huge", map[string]any{"token_host_rate": 10001}, "token_host_rate"},
		{"host rate not a number", map[string]any{"token_host_rate": "fast"}, "token_host_rate"},
		{"log size huge", map[string]any{"log_size": 1000000}, "log_size"},
		{"callback not a URL", map[string]any{"callback_base_url": "vault.example.com"}, "callback_base_url"},
		{"callback with query", map[string]any{"callback_base_url": "https://v.example.com/?x=1"}, "callback_base_url"},
		{"callback too long", map[string]any{"callback_base_url": "https://v.example.com/" + strings.Repeat("p", 1024)}, "callback_base_url"},
		{"callback control character", map[string]any{"callback_base_url": "https://v.example.com/\x00"}, "callback_base_url"},
		{"callback line break", map[string]any{"callback_base_url": "https://v.example.com/a\nb"}, "callback_base_url"},
		{"notify bad name", map[string]any{"notify_credential": "a/b"}, "notify_credential"},
		{"notify dotted name", map[string]any{"notify_credential": "a..b"}, "notify_credential"},
		{"channel control character", map[string]any{"notify_channel": "#ops\x00"}, "notify_channel"},
		{"channel too long", map[string]any{"notify_channel": strings.Repeat("c", 81)}, "notify_channel"},
		{"refresh ahead not a boolean", map[string]any{"refresh_ahead": "sometimes"}, "refresh_ahead"},
		{"unknown field", map[string]any{"suspend_afterr": "30d"}, "suspend_afterr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, s, _ := newTestBackend(t)
			resp := call(t, b, s, logical.UpdateOperation, "config", tc.data)
			wantFieldError(t, resp, tc.field)
			if entry, err := s.Get(context.Background(), "config"); err != nil || entry != nil {
				t.Fatalf("refused write stored something: %v %v", entry, err)
			}
		})
	}
}

func TestConfigDeleteRestoresDefaults(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": 5})
	mustOK(t, b, s, logical.DeleteOperation, "config", nil)
	resp := mustOK(t, b, s, logical.ReadOperation, "config", nil)
	if resp.Data["log_size"] != defaultLogSize {
		t.Fatalf("log_size after delete = %v", resp.Data["log_size"])
	}
}

// refresh_ahead is on by default, can be turned off and on, survives other updates, and
// a config stored before the field existed reads as on.
func TestConfigRefreshAhead(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"refresh_ahead": false})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"log_size": 5})
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["refresh_ahead"]; got != false {
		t.Fatalf("refresh_ahead after turning it off = %v", got)
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"refresh_ahead": "true"})
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["refresh_ahead"]; got != true {
		t.Fatalf("refresh_ahead after turning it on = %v", got)
	}
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"refresh_ahead": false})
	mustOK(t, b, s, logical.DeleteOperation, "config", nil)
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["refresh_ahead"]; got != true {
		t.Fatalf("refresh_ahead after reset = %v", got)
	}
	old, _ := logical.StorageEntryJSON(configPath, map[string]any{"log_size": 7, "expiry_buffer": int64(time.Minute)})
	if err := s.Put(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	b.invalidate(context.Background(), configPath)
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data; got["refresh_ahead"] != true || got["log_size"] != 7 ||
		got["token_host_concurrency"] != 10 || got["token_host_rate"] != 20 {
		t.Fatalf("a config stored before refresh_ahead and the host bound existed reads as %v", got)
	}
}

func TestConfigInvalidateRereadsStorage(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.ReadOperation, "config", nil) // caches the defaults
	// Another node writes config: storage changes under us, then Vault invalidates.
	c := defaultConfig()
	c.LogSize = 42
	entry, _ := logical.StorageEntryJSON("config", c)
	if err := s.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["log_size"]; got != defaultLogSize {
		t.Fatalf("cached read = %v, want the cached default until invalidated", got)
	}
	b.InvalidateKey(context.Background(), "config")
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["log_size"]; got != 42 {
		t.Fatalf("after invalidate log_size = %v, want 42", got)
	}
}

func TestConfigNotifyCredentialMustBeDeliverable(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "nope"}), "notify_credential")
	mustOK(t, b, s, logical.CreateOperation, "credentials/pw", map[string]any{"type": "basic", "username": "u", "password": "p"})
	wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "pw"}), "notify_credential")
	mustOK(t, b, s, logical.CreateOperation, "credentials/tokenonly", map[string]any{"type": "bearer", "token": "t"})
	wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "tokenonly"}), "notify_credential")
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": "https://hooks.example.com/x"})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["notify_credential"]; got != "hook" {
		t.Fatalf("notify_credential = %v", got)
	}
}

// TestConfigConcurrentPartialUpdates: two callers updating different fields at the
// same time both land, in memory and in storage.
func TestConfigConcurrentPartialUpdates(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	for i := range 250 {
		// log_size stays within its cap (maxLogSize) for every round.
		logSize, timeout := 10+i, int64(10+i)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, data := range []map[string]any{{"log_size": logSize}, {"request_timeout": timeout}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := b.HandleRequest(context.Background(), &logical.Request{
					Operation: logical.UpdateOperation, Path: "config", Data: data, Storage: s,
				})
				if err != nil || resp.IsError() {
					t.Errorf("update %v: %v %v", data, resp, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data
		if got["log_size"] != logSize || got["request_timeout"] != timeout {
			t.Fatalf("round %d: log_size %v (want %d), request_timeout %v (want %d): an update was lost",
				i, got["log_size"], logSize, got["request_timeout"], timeout)
		}
		stored := defaultConfig()
		entry, err := s.Get(context.Background(), configPath)
		if err != nil || entry == nil || entry.DecodeJSON(stored) != nil {
			t.Fatalf("round %d: stored config: %v %v", i, entry, err)
		}
		if stored.LogSize != logSize || stored.RequestTimeout != time.Duration(timeout)*time.Second {
			t.Fatalf("round %d: stored log_size %d, request_timeout %s: an update was lost", i, stored.LogSize, stored.RequestTimeout)
		}
	}
}

// A cross-field config rule names the value in force it conflicts with: suspend_after
// beyond the configured purge_after says what purge_after is.
func TestConfigConflictNamesTheValueInForce(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	credWant400(t, b, s, logical.UpdateOperation, "config", map[string]any{"suspend_after": "400d"},
		"purge_after", "purge_after is 365 days, suspend_after 400 days")
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"purge_after": "300d"})
	credWant400(t, b, s, logical.UpdateOperation, "config", map[string]any{"suspend_after": "400d"},
		"purge_after", "must be longer than suspend_after: purge_after is 300 days, suspend_after 400 days")
	credWant400(t, b, s, logical.UpdateOperation, "config", map[string]any{"suspend_after": "20d", "warn_before": "30d,7d"},
		"warn_before", "30 days is not shorter than suspend_after 20 days")
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["suspend_after"]; got != int64(180*24*3600) {
		t.Fatalf("a refused write changed suspend_after: %v", got)
	}
}
