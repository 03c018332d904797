//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// The restart and kill tests are not parallel: each runs Vault servers of its own,
// and on two cores servers started alongside others delay each other's Raft. Go runs
// every non-parallel test before it releases the parallel ones, so these run one at a
// time, with only the shared (idle) dev server beside them.

// flushInterval is usage_flush_interval in the kill tests: what a kill may lose.
const flushInterval = 2 * time.Second

// survivors is what a restart must keep: a static credential with its usage, an OAuth
// credential with its cached token, and a suspended credential.
type survivors struct {
	mount  string
	p      *oauthtest.Provider
	token  any
	reads  int         // successful access reads of "static"
	times  []time.Time // when each of them was answered
	client *api.Client
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
			t.Fatalf("access/static: %v %v", sec, err)
		}
		s.reads++
		s.times = append(s.times, time.Now())
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
		t.Errorf("after %s: access/static %v", what, sec)
	}
	s.reads++
	s.times = append(s.times, time.Now())
	return count
}

// TestRestartKeepsEverything: a Vault on integrated storage stopped cleanly keeps
// credentials, the cached token (no new provider request), lifecycle state and every
// usage count; stopped with SIGKILL, it loses at most the usage counted in the last
// usage_flush_interval, and nothing else.
func TestRestartKeepsEverything(t *testing.T) {
	v := newVault(t, serverOptions{raftNode: "solo"})
	s := seedSurvivors(t, v)
	s.readStatic(t, v, 50)

	v.restart(t)
	counted := s.reads
	if got := s.check(t, v, "a clean restart"); got != counted {
		t.Errorf("access_count after a clean restart %d, want all %d", got, counted)
	}

	// SIGKILL right after a burst of reads: what the last flush had not written is
	// lost, nothing else.
	// Reads for three flush intervals, then the kill.
	for start := time.Now(); time.Since(start) < 3*flushInterval; {
		s.readStatic(t, v, 10)
	}
	counted = s.reads
	killed := time.Now()
	v.crash(t)
	// The reads of the last flush interval, and of one more for a flush under way
	// when the process died, are all a kill may cost.
	bound := 0
	for _, at := range s.times {
		if at.After(killed.Add(-2 * flushInterval)) {
			bound++
		}
	}
	got := s.check(t, v, "SIGKILL")
	lost := counted - got
	t.Logf("SIGKILL after %d counted reads: %d stored, %d lost; %d reads were answered in the last 2 x usage_flush_interval (%s)",
		counted, got, lost, bound, flushInterval)
	if lost < 0 {
		t.Errorf("access_count %d after SIGKILL, more than the %d reads made", got, counted)
	}
	if lost > bound {
		t.Errorf("SIGKILL lost %d counts, more than the %d reads of the last two flush intervals", lost, bound)
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
		at  time.Time
		err error
	}
	results := make(chan result, 1<<16)
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
			sec, err := c.Logical().Read(s.mount + "/access/static")
			if err == nil && (sec == nil || sec.Data["password"] != "restart-secret") {
				err = fmt.Errorf("wrong answer %v", sec)
			}
			results <- result{time.Now(), err}
		}
	}()
	// Let the readers run, then kill the plugin.
	for len(results) < 100 {
		time.Sleep(10 * time.Millisecond) // waiting for the readers' first answers
	}
	killed := time.Now()
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Poll until a new plugin process serves.
	deadline := time.Now().Add(2 * time.Minute)
	var back time.Time
	for back.IsZero() && time.Now().Before(deadline) {
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
	if back.IsZero() {
		t.Fatal("the plugin did not serve again within 2 minutes of its kill")
	}
	// A while more under load, then stop.
	settled := time.Now()
	for time.Since(settled) < 2*time.Second {
		time.Sleep(50 * time.Millisecond) // the readers run on
	}
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
		if r.at.After(back.Add(time.Second)) {
			t.Errorf("a read failed after the plugin was back: %v", r.err)
		}
		if failed == 0 {
			firstErr = r.at
		}
		failed++
		lastErr = r.at
	}
	gap := back.Sub(killed)
	t.Logf("plugin killed: served again after %s; %d reads served, %d failed (from %s to %s after the kill)",
		gap.Round(time.Millisecond), served, failed, firstErr.Sub(killed).Round(time.Millisecond), lastErr.Sub(killed).Round(time.Millisecond))
	s.check(t, v, "the plugin's kill")
}
