//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// startupResult is how soon a mount of n credentials serves after Vault sets it up
// anew: on a restarted server, and on the node that becomes active when the leader of
// a three-node cluster is killed. Every time after "active" is the engine's; the
// time to get there is Vault's own (unsealing, or failover).
type startupResult struct {
	N int `json:"n"`
	// A single node on integrated storage, stopped cleanly and started again.
	RestartCreate time.Duration `json:"restart_create"` // creating the n credentials with credentials-batch (context)
	RestartActive time.Duration `json:"restart_active"` // launch → unsealed and active (Vault's)
	RestartAccess time.Duration `json:"restart_access"` // active → first served access/
	RestartList   time.Duration `json:"restart_list"`   // active → complete list
	RestartTokens int64         `json:"restart_tokens"` // provider requests after the restart, to serve the probes
	// The same node grown to three, then killed.
	Failover       failover      `json:"failover"`
	FailoverAccess time.Duration `json:"failover_access"` // active → first access/ served by the new leader
	FailoverList   time.Duration `json:"failover_list"`   // active → complete list through the new leader
	FailoverTokens int64         `json:"failover_tokens"` // provider requests after the kill, to serve the probes

	from *keptRun // the earlier run that measured it (benchkept_test.go); nil for this run's
}

// failover is a leader change measured by killLeader. Leader, Active and Stop belong
// to the run that measured it and are not kept.
type failover struct {
	Join    time.Duration `json:"join"`    // two nodes joining → three healthy voters (the mount sent as a Raft snapshot)
	Elected time.Duration `json:"elected"` // SIGKILL of the leader → a survivor reports active (Vault's)
	Leader  *vaultServer  `json:"-"`       // the survivor that took over
	Active  time.Time     `json:"-"`       // when it reported active
	Stop    func()        `json:"-"`       // stops the joined nodes
}

// killLeader grows v, the one node of a Raft cluster holding the mount, to three: two
// nodes join (prefix-2, prefix-3) and receive what v holds as a Raft snapshot, until
// autopilot counts three healthy voters. It then kills v with SIGKILL (the server and
// its plugins) and returns once a survivor reports active. The caller stops the
// survivors with stop.
func killLeader(t *testing.T, v *vaultServer, prefix string) failover {
	t.Helper()
	var fo failover
	var joined []*vaultServer
	fo.Stop = func() {
		for _, j := range joined {
			j.stop()
		}
	}
	start := time.Now()
	for _, id := range []string{prefix + "-2", prefix + "-3"} {
		// Its own copy of the binary, like every node of a long run (see ownPluginCopy);
		// the plugin's registration reaches it through storage.
		j, err := startVault(serverOptions{raftNode: id, joinTo: v, ownPluginCopy: true, unregistered: true})
		if err != nil {
			fo.Stop()
			t.Fatalf("starting Vault %s: %v", id, err)
		}
		joined = append(joined, j)
	}
	waitForVotersWithin(t, v, 3, 30*time.Minute)
	fo.Join = time.Since(start)
	kill := time.Now()
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL) // the server and its plugins
	<-v.exited
	fo.Leader = pollActive(t, joined)
	fo.Active = time.Now()
	fo.Elected = fo.Active.Sub(kill)
	return fo
}

// benchStartup measures the restart and the leader change at n credentials, in the
// scale benchmark's mix, on one cluster: created on one node, restarted, grown to three
// nodes and its leader killed.
func benchStartup(t *testing.T, rep *benchReport, n int) *startupResult {
	sr := &startupResult{N: n}
	p := newLatencyProvider(t, 2*time.Hour, 0)
	certs := scaleCertPEMs(t, 4)
	sshKey := fixtures.SSHKey("")
	const mount = "startup"
	basic := "startup/access/" + scaleName(4) // a basic credential
	oauth := "startup/access/" + scaleName(6) // an OAuth credential with a cached token
	served := func(v *vaultServer, path string, from time.Time) time.Duration {
		return awaitServed(t, v, path, from, from.Add(10*time.Minute), fmt.Sprintf("startup %d", n))
	}
	listed := func(v *vaultServer, from time.Time) time.Duration {
		deadline := from.Add(10 * time.Minute)
		for {
			names, err := listAll(v, mount)
			if err == nil && len(names) == n {
				return time.Since(from)
			}
			if time.Now().After(deadline) {
				t.Fatalf("startup %d: no complete list within 10 minutes (%d names, %v)", n, len(names), err)
			}
		}
	}

	// Its own copy of the binary: a rebuild of PLUGIN_DIR meanwhile would fail the
	// restart's plugin start (see ownPluginCopy). Likewise each node below.
	v, err := startVault(serverOptions{raftNode: "startup-1", ownPluginCopy: true})
	if err != nil {
		t.Fatalf("starting Vault: %v", err)
	}
	defer v.stop()
	if err := v.registerPlugin(); err != nil {
		t.Fatal(err)
	}
	mountPlugin(t, v, mount)
	start := time.Now()
	createBatches(t, v, mount, n, p.TokenURL(), certs, sshKey)
	sr.RestartCreate = time.Since(start)
	if _, _, err := vaultDo(v, http.MethodGet, oauth, nil); err != nil { // caches its token
		t.Fatalf("startup %d: warming %s: %v", n, oauth, err)
	}

	// Restart: the node stopped cleanly (SIGINT) and started again.
	v.halt()
	before := p.Requests()
	start = time.Now()
	if err := v.launch(); err != nil { // returns once the node is unsealed and active
		t.Fatalf("restarting Vault: %v", err)
	}
	active := time.Now()
	sr.RestartActive = active.Sub(start)
	sr.RestartAccess = served(v, basic, active)
	served(v, oauth, active)
	sr.RestartList = listed(v, active)
	sr.RestartTokens = p.Requests() - before

	// Leader change: two nodes join, then the leader is killed with SIGKILL.
	before = p.Requests()
	sr.Failover = killLeader(t, v, "startup")
	defer sr.Failover.Stop()
	leader, active := sr.Failover.Leader, sr.Failover.Active
	sr.FailoverAccess = served(leader, basic, active)
	served(leader, oauth, active)
	sr.FailoverList = listed(leader, active)
	sr.FailoverTokens = p.Requests() - before
	t.Logf("startup %d: restart → active %s, → access %s, → list %s; joined in %s, leader killed → active %s, → access %s, → list %s",
		n, sr.RestartActive.Round(time.Millisecond), sr.RestartAccess.Round(time.Millisecond), sr.RestartList.Round(time.Millisecond),
		sr.Failover.Join.Round(time.Millisecond), sr.Failover.Elected.Round(time.Millisecond), sr.FailoverAccess.Round(time.Millisecond), sr.FailoverList.Round(time.Millisecond))
	if sr.RestartTokens+sr.FailoverTokens > 0 {
		rep.note("startup %d: %d token requests after a restart or leader change (the cached token should have been served)", n, sr.RestartTokens+sr.FailoverTokens)
	}
	return sr
}

// pollActive returns the first of nodes to report itself active, polling each every
// 20 ms: the moment a survivor takes over is what the failover figures count from.
func pollActive(t *testing.T, nodes []*vaultServer) *vaultServer {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, v := range nodes {
			if h, err := v.client.Sys().Health(); err == nil && !h.Standby && !h.Sealed {
				return v
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state
	}
	t.Fatal("no survivor became active within 2 minutes")
	return nil
}

// fmtStartup is a row of the startup table; mark is its earlier run's, "" for this run.
func fmtStartup(sr *startupResult, mark string) string {
	return fmt.Sprintf("| %d%s | %s | %s | **%s** | %s | %d | %s | %s | **%s** | %s | %d |\n", sr.N, markSuffix(mark),
		sr.RestartCreate.Round(time.Millisecond), sr.RestartActive.Round(time.Millisecond), sr.RestartAccess.Round(time.Millisecond), sr.RestartList.Round(time.Millisecond), sr.RestartTokens,
		sr.Failover.Join.Round(time.Millisecond), sr.Failover.Elected.Round(time.Millisecond), sr.FailoverAccess.Round(time.Millisecond), sr.FailoverList.Round(time.Millisecond), sr.FailoverTokens)
}
