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
	n int
	// A single node on integrated storage, stopped cleanly and started again.
	restartCreate time.Duration // creating the n credentials with credentials-batch (context)
	restartActive time.Duration // launch → unsealed and active (Vault's)
	restartAccess time.Duration // active → first served access/
	restartList   time.Duration // active → complete list
	restartTokens int64         // provider requests after the restart, to serve the probes
	// The same node grown to three, then killed.
	failover       failover
	failoverAccess time.Duration // active → first access/ served by the new leader
	failoverList   time.Duration // active → complete list through the new leader
	failoverTokens int64         // provider requests after the kill, to serve the probes
}

// failover is a leader change measured by killLeader.
type failover struct {
	join    time.Duration // two nodes joining → three healthy voters (the mount sent as a Raft snapshot)
	elected time.Duration // SIGKILL of the leader → a survivor reports active (Vault's)
	leader  *vaultServer  // the survivor that took over
	active  time.Time     // when it reported active
	stop    func()        // stops the joined nodes
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
	fo.stop = func() {
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
			fo.stop()
			t.Fatalf("starting Vault %s: %v", id, err)
		}
		joined = append(joined, j)
	}
	waitForVotersWithin(t, v, 3, 30*time.Minute)
	fo.join = time.Since(start)
	kill := time.Now()
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL) // the server and its plugins
	<-v.exited
	fo.leader = pollActive(t, joined)
	fo.active = time.Now()
	fo.elected = fo.active.Sub(kill)
	return fo
}

// benchStartup measures the restart and the leader change at n credentials, in the
// scale benchmark's mix, on one cluster: created on one node, restarted, grown to three
// nodes and its leader killed.
func benchStartup(t *testing.T, rep *benchReport, n int) *startupResult {
	sr := &startupResult{n: n}
	p := newLatencyProvider(t, 2*time.Hour, 0)
	certs := scaleCertPEMs(t, 4)
	sshKey := fixtures.SSHKey("")
	const mount = "startup"
	basic := "startup/access/" + scaleName(4) // a basic credential
	oauth := "startup/access/" + scaleName(6) // an OAuth credential with a cached token
	// served polls until v serves path, and returns when it did.
	served := func(v *vaultServer, path string, from time.Time) time.Duration {
		deadline := from.Add(10 * time.Minute)
		for {
			if _, _, err := vaultDo(v, http.MethodGet, path, nil); err == nil {
				return time.Since(from)
			}
			if time.Now().After(deadline) {
				t.Fatalf("startup %d: %s not served within 10 minutes", n, path)
			}
			time.Sleep(5 * time.Millisecond) // poll interval of the outside observer
		}
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
	sr.restartCreate = time.Since(start)
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
	sr.restartActive = active.Sub(start)
	sr.restartAccess = served(v, basic, active)
	served(v, oauth, active)
	sr.restartList = listed(v, active)
	sr.restartTokens = p.Requests() - before

	// Leader change: two nodes join, then the leader is killed with SIGKILL.
	before = p.Requests()
	sr.failover = killLeader(t, v, "startup")
	defer sr.failover.stop()
	leader, active := sr.failover.leader, sr.failover.active
	sr.failoverAccess = served(leader, basic, active)
	served(leader, oauth, active)
	sr.failoverList = listed(leader, active)
	sr.failoverTokens = p.Requests() - before
	t.Logf("startup %d: restart → active %s, → access %s, → list %s; joined in %s, leader killed → active %s, → access %s, → list %s",
		n, sr.restartActive.Round(time.Millisecond), sr.restartAccess.Round(time.Millisecond), sr.restartList.Round(time.Millisecond),
		sr.failover.join.Round(time.Millisecond), sr.failover.elected.Round(time.Millisecond), sr.failoverAccess.Round(time.Millisecond), sr.failoverList.Round(time.Millisecond))
	if sr.restartTokens+sr.failoverTokens > 0 {
		rep.note("startup %d: %d token requests after a restart or leader change (the cached token should have been served)", n, sr.restartTokens+sr.failoverTokens)
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

func fmtStartup(sr *startupResult) string {
	return fmt.Sprintf("| %d | %s | %s | **%s** | %s | %d | %s | %s | **%s** | %s | %d |\n", sr.n,
		sr.restartCreate.Round(time.Millisecond), sr.restartActive.Round(time.Millisecond), sr.restartAccess.Round(time.Millisecond), sr.restartList.Round(time.Millisecond), sr.restartTokens,
		sr.failover.join.Round(time.Millisecond), sr.failover.elected.Round(time.Millisecond), sr.failoverAccess.Round(time.Millisecond), sr.failoverList.Round(time.Millisecond), sr.failoverTokens)
}
