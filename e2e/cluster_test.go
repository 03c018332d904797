//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestClusterLeaderChange runs the engine on a three-node Vault cluster with integrated
// storage: writes and reads sent to standbys are forwarded to the active node, and when
// the leader steps down, the new one serves every credential and the usage counted
// before the change. Not parallel: like the kill tests, it runs alone before the
// parallel tests start, because Raft servers started beside them on two cores miss
// heartbeats (README, "one at a time").
func TestClusterLeaderChange(t *testing.T) {
	n1 := newVault(t, serverOptions{raftNode: "n1"})
	n2 := newVault(t, serverOptions{raftNode: "n2", joinTo: n1, unregistered: true})
	n3 := newVault(t, serverOptions{raftNode: "n3", joinTo: n1, unregistered: true})
	nodes := []*vaultServer{n1, n2, n3}
	waitForVoters(t, n1, 3)
	n1.mountAt(t, "integrations")

	// Written through a standby: forwarded to the active node.
	if _, err := n2.client.Logical().Write("integrations/credentials/svc", map[string]any{
		"type": "basic", "username": "svc", "password": "cluster-secret",
	}); err != nil {
		t.Fatalf("write through standby n2: %v", err)
	}
	const reads = 30
	for i := range reads {
		node := nodes[i%3]
		s, err := node.client.Logical().Read("integrations/access/svc")
		if err != nil || s == nil || s.Data["password"] != "cluster-secret" {
			t.Fatalf("access through %s: %v %v", node.addr, s, err)
		}
	}

	if err := n1.client.Sys().StepDown(); err != nil {
		t.Fatalf("step-down: %v", err)
	}
	leader := waitForNewLeader(t, nodes, n1)
	t.Logf("leader moved from %s to %s", n1.addr, leader.addr)

	// Everything is there on the new leader, including the usage counted by the old
	// one (flushed when the old leader's mount was torn down).
	s, err := n1.client.Logical().Read("integrations/credentials/svc")
	if err != nil || s == nil {
		t.Fatalf("read through the old leader, now a standby: %v", err)
	}
	if got := fmt.Sprint(s.Data["access_count"]); got != fmt.Sprint(reads) {
		t.Errorf("access_count after leader change = %s, want %d", got, reads)
	}
	if !isNonEmptyString(s.Data["last_accessed"]) {
		t.Errorf("last_accessed lost in the leader change: %v", s.Data["last_accessed"])
	}
	a, err := leader.client.Logical().Read("integrations/access/svc")
	if err != nil || a == nil || a.Data["password"] != "cluster-secret" {
		t.Fatalf("access on the new leader: %v %v", a, err)
	}
	// And the new leader takes writes.
	if _, err := n3.client.Logical().Write("integrations/credentials/after", map[string]any{
		"type": "webhook", "url": "https://hooks.example.com/after",
	}); err != nil {
		t.Fatalf("write after the leader change: %v", err)
	}
}

// waitForVoters shortens autopilot's stabilization time, then polls until the joined
// nodes are promoted to voters, so a step-down has somewhere to go.
func waitForVoters(t *testing.T, leader *vaultServer, want int) {
	t.Helper()
	waitForVotersWithin(t, leader, want, 90*time.Second)
}

// waitForVotersWithin is waitForVoters with a deadline of its own: nodes joining a
// large mount first install it as a Raft snapshot and catch up with the log.
func waitForVotersWithin(t *testing.T, leader *vaultServer, want int, within time.Duration) {
	t.Helper()
	if _, err := leader.client.Logical().Write("sys/storage/raft/autopilot/configuration", map[string]any{
		"server_stabilization_time": "1s", "cleanup_dead_servers": false,
	}); err != nil {
		t.Fatalf("autopilot configuration: %v", err)
	}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		st, err := leader.client.Sys().RaftAutopilotState()
		if err == nil && st != nil && len(st.Voters) == want && st.Healthy {
			return
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster's state
	}
	t.Fatalf("fewer than %d healthy voters after %s", want, within)
}

// waitForNewLeader polls the nodes until one other than old is active.
func waitForNewLeader(t *testing.T, nodes []*vaultServer, old *vaultServer) *vaultServer {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n == old {
				continue
			}
			var h *api.HealthResponse
			h, err := n.client.Sys().Health()
			if err == nil && !h.Standby && !h.Sealed {
				return n
			}
		}
		time.Sleep(200 * time.Millisecond) // polling a server's state, not synchronising our own goroutines
	}
	t.Fatal("no new leader within 90s")
	return nil
}
