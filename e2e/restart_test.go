//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// The restart and kill tests are not parallel: each runs Vault servers of its own,
// and on two cores servers started alongside others delay each other's Raft. Go runs
// every non-parallel test before it releases the parallel ones, so these run one at a
// time, with only the shared (idle) dev server beside them.

// flushInterval is usage_flush_interval in the kill tests: a kill loses what was
// counted since the last flush, what storage did not hold yet.
const flushInterval = 2 * time.Second

// survivors is what a restart must keep: a static credential with its usage, an OAuth
// credential with its cached token, and a suspended credential.
type survivors struct {
	mount string
	p     *oauthtest.Provider
	token any
	reads int // successful access reads of "static"
}

func seedSurvivors(t *testing.T, v *vaultServer) *survivors {
	t.Helper()
	s := &survivors{mount: v.mount(t), p: newIDP(t, oauthtest.Options{AccessTTL: 2 * time.Hour})}
	v.mustCLI(t, "write", s.mount+"/config", fmt.Sprintf("usage_flush_interval=%d", int(flushInterval.Seconds())))
	v.mustCLI(t, "write", s.mount+"/credentials/static", "type=basic", "username=svc", "password=restart-secret")
	v.mustCLI(t, "write", s.mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+s.p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
	v.mustCLI(t, "write", s.mount+"/credentials/held", "type=basic", "username=h", "password=held-secret")
	v.mustCLI(t, "write", "-force", s.mount+"/credentials/held/suspend")
	s.token = readAccess(t, v, s.mount, "cc")["access_token"]
	return s
}

// readStatic reads access/static n times and counts them.
func (s *survivors) readStatic(t *testing.T, v *vaultServer, n int) {
	t.Helper()
	c := noRetryClient(t, v)
	for range n {
		sec, err := c.Logical().Read(s.mount + "/access/static")
		if err != nil || sec == nil || sec.Data["password"] != "restart-secret" {
			t.Fatalf("access/static: %s", outcome(sec, err))
		}
		s.reads++
	}
}

// check asserts everything survived; it returns the stored access_count of static.
func (s *survivors) check(t *testing.T, v *vaultServer, what string) int {
	t.Helper()
	before := s.p.Requests()
	if got := readAccess(t, v, s.mount, "cc")["access_token"]; got != s.token {
		t.Errorf("after %s: the cached token changed", what)
	}
	if n := s.p.Requests() - before; n != 0 {
		t.Errorf("after %s: %d provider requests, want the stored token served", what, n)
	}
	held := decode(t, v.mustCLI(t, "read", "-format=json", s.mount+"/credentials/held")).Data
	if held["status"] != "suspended" {
		t.Errorf("after %s: the suspended credential is %v", what, held["status"])
	}
	if _, err := noRetryClient(t, v).Logical().Read(s.mount + "/access/held"); statusCode(err) != http.StatusForbidden {
		t.Errorf("after %s: access to the suspended credential: %v, want 403", what, err)
	}
	st := decode(t, v.mustCLI(t, "read", "-format=json", s.mount+"/credentials/static")).Data
	count, _ := strconv.Atoi(fmt.Sprint(st["access_count"]))
	if sec := readAccess(t, v, s.mount, "static"); sec["password"] != "restart-secret" {
		t.Errorf("after %s: access/static is not the stored password (%s)", what, fieldNames(sec))
	}
	s.reads++
	return count
}

// TestRestartKeepsEverything: a Vault on integrated storage stopped cleanly keeps
// credentials, the cached token (no new provider request), lifecycle state and every
// usage count; stopped with SIGKILL, it loses at most the usage counted in the last
// usage_flush_interval (what storage did not hold yet), and nothing else.
func TestRestartKeepsEverything(t *testing.T) {
	v := newVault(t, serverOptions{raftNode: "solo"})
	s := seedSurvivors(t, v)
	s.readStatic(t, v, 50)

	v.restart(t)
	counted := s.reads
	if got := s.check(t, v, "a clean restart"); got != counted {
		t.Errorf("access_count after a clean restart %d, want all %d", got, counted)
	}

	// SIGKILL after reads: what storage held at the kill survives, what it did not
	// hold yet is all a kill may lose. Judged by order, not by time: first the flush
	// is seen to store reads made under load (storage catches up with them), then
	// more reads, then what storage holds, then the kill.
	s.readStatic(t, v, 30)
	v.waitStoredCount(t, s.mount, "static", int64(s.reads))
	s.readStatic(t, v, 30)
	counted = s.reads
	held := v.storedCount(t, s.mount, "static")
	v.crash(t)
	got := s.check(t, v, "SIGKILL")
	t.Logf("SIGKILL after %d counted reads: storage held %d at the kill, %d stored after it (%d lost)",
		counted, held, got, counted-got)
	if got > counted {
		t.Errorf("access_count %d after SIGKILL, more than the %d reads made", got, counted)
	}
	if int64(got) < held {
		t.Errorf("access_count %d after SIGKILL, less than the %d storage held at the kill", got, held)
	}
}

// storedCount is the access count storage holds for a credential of mount (its
// usage/<name> entry, read through sys/raw: raw_storage_endpoint is on in the
// persistent servers' config), 0 when none is stored.
func (v *vaultServer) storedCount(t *testing.T, mount, name string) int64 {
	t.Helper()
	mounts, err := v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mounts[mount+"/"]
	if !ok || m.UUID == "" {
		t.Fatalf("mount %s not listed", mount)
	}
	sec, err := v.client.Logical().Read("sys/raw/logical/" + m.UUID + "/usage/" + name)
	if err != nil {
		t.Fatalf("sys/raw read of %s's usage: %v", name, err)
	}
	if sec == nil {
		return 0
	}
	var u struct {
		Count *int64 `json:"count"`
	}
	raw, _ := sec.Data["value"].(string)
	if err := json.Unmarshal([]byte(raw), &u); err != nil || u.Count == nil {
		t.Fatalf("the stored usage of %s has no count (%v)", name, err)
	}
	return *u.Count
}

// waitStoredCount waits until storage holds an access count of at least want for
// the credential: the flush ran after those reads. The minute it allows is a hang,
// not slowness (the flush interval is seconds).
func (v *vaultServer) waitStoredCount(t *testing.T, mount, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := v.storedCount(t, mount, name)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage holds %d accesses of %s a minute after %d were counted: the flush did not run", got, name, want)
		}
		time.Sleep(50 * time.Millisecond) // polling storage for the flush
	}
}

// TestPluginKilledUnderLoad: the plugin process (not Vault) is killed with SIGKILL
// while readers run; Vault starts it again and it serves every credential, and the
// cached token without asking the provider. The gap is measured.
func TestPluginKilledUnderLoad(t *testing.T) {
	v := newVault(t, serverOptions{raftNode: "plug"})
	s := seedSurvivors(t, v)
	c := noRetryClient(t, v)
	pids := v.pluginPIDs()
	if len(pids) != 1 {
		t.Fatalf("plugin processes %v, want one", pids)
	}
	type result struct {
		start, at time.Time
		err       error
	}
	// The reader stops when results is full rather than block on it: a restart so
	// slow that 65,536 reads fail meanwhile ends the test at once (overflow) instead
	// of hanging until the suite's timeout.
	const maxReads = 1 << 16
	results := make(chan result, maxReads)
	var overflow atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			sec, err := c.Logical().Read(s.mount + "/access/static")
			if err == nil && (sec == nil || sec.Data["password"] != "restart-secret") {
				err = fmt.Errorf("wrong answer (%s)", outcome(sec, nil))
			}
			select {
			case results <- result{start, time.Now(), err}:
			default:
				overflow.Store(true)
				return
			}
		}
	}()
	// waitReads waits until the reader has answered n reads in all.
	waitReads := func(n int, what string) {
		t.Helper()
		for len(results) < n {
			if overflow.Load() {
				t.Fatalf("%d reads made while waiting for %s", maxReads, what)
			}
			select {
			case <-done:
				t.Fatalf("the reader stopped while waiting for %s", what)
			case <-time.After(10 * time.Millisecond): // polling the reader's count
			}
		}
	}
	// Let the readers run, then kill the plugin.
	waitReads(100, "the readers' first answers")
	killed := time.Now()
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Poll until a new plugin process serves.
	deadline := time.Now().Add(2 * time.Minute)
	var back time.Time
	for back.IsZero() && time.Now().Before(deadline) && !overflow.Load() {
		sec, err := noRetryClient(t, v).Logical().Read(s.mount + "/access/static")
		if err == nil && sec != nil && sec.Data["password"] == "restart-secret" {
			if p := v.pluginPIDs(); len(p) == 1 && p[0] != pids[0] {
				back = time.Now()
			}
		}
		if back.IsZero() {
			time.Sleep(50 * time.Millisecond) // polling the server
		}
	}
	if overflow.Load() {
		t.Fatalf("the reader made %d reads before the plugin served again", maxReads)
	}
	if back.IsZero() {
		t.Fatal("the plugin did not serve again within 2 minutes of its kill")
	}
	// 100 reads more under load, then stop.
	waitReads(len(results)+100, "reads after the plugin was back")
	close(stop)
	<-done
	close(results)
	var failed, served int
	var firstErr, lastErr time.Time
	for r := range results {
		if r.err == nil {
			served++
			continue
		}
		if r.at.Before(killed) {
			t.Errorf("a read failed before the kill: %v", r.err)
		}
		// Ordering, not a margin: a read sent after a read was served by the new
		// plugin process must be served too.
		if r.start.After(back) {
			t.Errorf("a read sent after the plugin was back failed: %v", r.err)
		}
		if failed == 0 {
			firstErr = r.at
		}
		failed++
		lastErr = r.at
	}
	gap := back.Sub(killed)
	failures := "none failed"
	if failed > 0 {
		failures = fmt.Sprintf("%d failed, from %s to %s after the kill", failed,
			firstErr.Sub(killed).Round(time.Millisecond), lastErr.Sub(killed).Round(time.Millisecond))
	}
	t.Logf("plugin killed: served again after %s; %d reads served, %s", gap.Round(time.Millisecond), served, failures)
	s.check(t, v, "the plugin's kill")
}
