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
	restartCreate  time.Duration // creating the n credentials (context)
	restartActive  time.Duration // launch → unsealed and active (Vault's)
	restartAccess  time.Duration // active → first served access/
	restartList    time.Duration // active → complete list
	restartTokens  int64         // provider requests after the restart, to serve the probes
	failoverCreate time.Duration
	electedAfter   time.Duration // SIGKILL of the leader → a survivor reports active (Vault's)
	failoverAccess time.Duration // active → first access/ served by the new leader
	failoverList   time.Duration // active → complete list through the new leader
	failoverTokens int64         // provider requests after the kill, to serve the probes
}

// benchStartup measures the restart and the leader change at n credentials, in the
// scale benchmark's mix.
func benchStartup(t *testing.T, rep *benchReport, n int) *startupResult {
	sr := &startupResult{n: n}
	p := newLatencyProvider(t, 2*time.Hour, 0)
	certs := scaleCertPEMs(t, 4)
	sshKey := fixtures.SSHKey("")
	const mount = "startup"
	basic := "startup/access/" + scaleName(4) // a basic credential
	oauth := "startup/access/" + scaleName(6) // an OAuth credential with a cached token
	create := func(v *vaultServer) time.Duration {
		start := time.Now()
		failed, first := parallel(n, 32, func(i int) error {
			_, _, err := vaultDo(v, http.MethodPost, "startup/credentials/"+scaleName(i), scaleMix(i, p.TokenURL(), certs, sshKey))
			return err
		})
		if failed > 0 {
			t.Fatalf("startup %d: %d creations failed (e.g. %s)", n, failed, first)
		}
		took := time.Since(start)
		if _, _, err := vaultDo(v, http.MethodGet, oauth, nil); err != nil { // caches its token
			t.Fatalf("startup %d: warming %s: %v", n, oauth, err)
		}
		return took
	}
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

	// Restart: one node on integrated storage.
	func() {
		// Its own copy of the binary: a rebuild of PLUGIN_DIR meanwhile would fail the
		// restart's plugin start (see ownPluginCopy). Likewise each node below.
		v, err := startVault(serverOptions{raftNode: "solo", ownPluginCopy: true})
		if err != nil {
			t.Fatalf("starting Vault: %v", err)
		}
		defer v.stop()
		if err := v.registerPlugin(); err != nil {
			t.Fatal(err)
		}
		mountPlugin(t, v, mount)
		sr.restartCreate = create(v)
		v.halt()
		before := p.Requests()
		start := time.Now()
		if err := v.launch(); err != nil { // returns once the node is unsealed and active
			t.Fatalf("restarting Vault: %v", err)
		}
		active := time.Now()
		sr.restartActive = active.Sub(start)
		sr.restartAccess = served(v, basic, active)
		served(v, oauth, active)
		sr.restartList = listed(v, active)
		sr.restartTokens = p.Requests() - before
	}()

	// Leader change: three nodes, the leader killed with SIGKILL.
	func() {
		n1, err := startVault(serverOptions{raftNode: "n1", ownPluginCopy: true})
		if err != nil {
			t.Fatalf("starting Vault: %v", err)
		}
		defer n1.stop()
		nodes := []*vaultServer{n1}
		for _, id := range []string{"n2", "n3"} {
			v, err := startVault(serverOptions{raftNode: id, joinTo: n1, ownPluginCopy: true})
			if err != nil {
				t.Fatalf("starting Vault %s: %v", id, err)
			}
			defer v.stop()
			nodes = append(nodes, v)
		}
		if err := n1.registerPlugin(); err != nil {
			t.Fatal(err)
		}
		waitForVoters(t, n1, 3)
		mountPlugin(t, n1, mount)
		sr.failoverCreate = create(n1)
		before := p.Requests()
		kill := time.Now()
		_ = syscall.Kill(-n1.cmd.Process.Pid, syscall.SIGKILL) // the server and its plugins
		<-n1.exited
		leader := pollActive(t, nodes[1:])
		active := time.Now()
		sr.electedAfter = active.Sub(kill)
		sr.failoverAccess = served(leader, basic, active)
		served(leader, oauth, active)
		sr.failoverList = listed(leader, active)
		sr.failoverTokens = p.Requests() - before
	}()
	t.Logf("startup %d: restart → active %s, → access %s, → list %s; leader killed → active %s, → access %s, → list %s",
		n, sr.restartActive.Round(time.Millisecond), sr.restartAccess.Round(time.Millisecond), sr.restartList.Round(time.Millisecond),
		sr.electedAfter.Round(time.Millisecond), sr.failoverAccess.Round(time.Millisecond), sr.failoverList.Round(time.Millisecond))
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
		sr.failoverCreate.Round(time.Millisecond), sr.electedAfter.Round(time.Millisecond), sr.failoverAccess.Round(time.Millisecond), sr.failoverList.Round(time.Millisecond), sr.failoverTokens)
}
