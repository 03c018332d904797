//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// loadOutcome is one request of the steady traffic in TestKillLeaderUnderLoad.
type loadOutcome struct {
	node       int
	op         string
	start, end time.Time
	status     int // 0 when it succeeded; -1 for a transport error
	err        string
	wrong      string
}

// loadClient is an API client for v that makes each request once and gives up after
// 10 s, so that a request to a node that lost its leader shows as what it is.
func loadClient(t *testing.T, v *vaultServer) *api.Client {
	c := noRetryClient(t, v)
	c.SetClientTimeout(10 * time.Second)
	return c
}

// TestKillLeaderUnderLoad: a three-node Raft cluster serves steady traffic through
// every node — access reads of a static and an OAuth credential, writes, authorization
// starts — when its leader is killed with SIGKILL. Once a new leader is elected,
// everything written before the kill is there: credentials, the cached token (not
// minted again), the rotated refresh token, a pending authorization, a suspended
// credential; usage is there as storage held it at the kill. No reader gets a wrong
// secret, and no request fails except while a node has no leader.
func TestKillLeaderUnderLoad(t *testing.T) {
	n1 := newVault(t, serverOptions{raftNode: "k1"})
	n2 := newVault(t, serverOptions{raftNode: "k2", joinTo: n1, unregistered: true})
	n3 := newVault(t, serverOptions{raftNode: "k3", joinTo: n1, unregistered: true})
	nodes := []*vaultServer{n1, n2, n3}
	waitForVoters(t, n1, 3)
	const mount = "integrations"
	n1.mountAt(t, mount)
	n1.mustCLI(t, "write", mount+"/config", fmt.Sprintf("usage_flush_interval=%d", int(flushInterval.Seconds())),
		"callback_base_url="+n1.addr)

	// What is written before the kill.
	pCC := newIDP(t, oauthtest.Options{AccessTTL: 2 * time.Hour})
	pCode := newIDP(t, oauthtest.Options{Domain: n1.addr, AccessTTL: 30 * time.Second, Rotate: true})
	n1.mustCLI(t, "write", mount+"/credentials/static", "type=basic", "username=svc", "password=cluster-secret")
	n1.mustCLI(t, "write", mount+"/credentials/counted", "type=basic", "username=c", "password=counted-secret")
	n1.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials",
		"token_url="+pCC.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
	ccToken := readAccess(t, n1, mount, "cc")["access_token"]
	for _, name := range []string{"code", "pending", "flow"} {
		n1.mustCLI(t, "write", mount+"/credentials/"+name, "type=oauth2_authorization_code",
			"auth_url="+pCode.AuthURL(), "token_url="+pCode.TokenURL(), "client_id="+oauthtest.ClientID,
			"client_secret="+oauthtest.ClientSecret, "scopes=offline_access")
	}
	// code: authorized, then refreshed once, so its refresh token is a rotated one.
	callback(t, n1, pCode, startAuthorization(t, n1, mount, "code"))
	first := pCode.LastIssued(t)
	// An update drops the cached token and keeps the refresh token: the next read
	// refreshes. The tokens from then on live two hours.
	pCode.SetAccessTTL(2 * time.Hour)
	n1.mustCLI(t, "patch", mount+"/credentials/code", "description=rotate")
	codeToken := readAccess(t, n1, mount, "code")["access_token"]
	second := pCode.LastIssued(t)
	if second.Refresh == "" || second.Refresh == first.Refresh || codeToken != second.Access {
		t.Fatal("the refresh before the kill did not rotate the refresh token")
	}
	// pending: an authorization started and not completed.
	pendingURL := startAuthorization(t, n1, mount, "pending")
	n1.mustCLI(t, "write", mount+"/credentials/held", "type=basic", "username=h", "password=held-secret")
	n1.mustCLI(t, "write", "-force", mount+"/credentials/held/suspend")

	// Steady traffic through every node.
	clients := make([]*api.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = loadClient(t, n)
	}
	var (
		mu       sync.Mutex
		outcomes []loadOutcome
		written  []string
		dead     atomic.Bool  // n1 was killed: the workers stop sending to it
		counting atomic.Bool  // the readers of "counted" run until the kill
		inCount  atomic.Int64 // reads of "counted" in flight
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	counting.Store(true)
	worker := func(w int) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			node := (w + i) % len(nodes)
			if node == 0 && dead.Load() {
				continue
			}
			c := clients[node]
			o := loadOutcome{node: node, start: time.Now()}
			var err error
			var sec *api.Secret
			switch i % 5 {
			case 0:
				o.op = "read static"
				if sec, err = c.Logical().Read(mount + "/access/static"); err == nil && (sec == nil || sec.Data["password"] != "cluster-secret") {
					o.wrong = outcome(sec, nil)
				}
			case 1:
				o.op = "read cc"
				if sec, err = c.Logical().Read(mount + "/access/cc"); err == nil && (sec == nil || sec.Data["access_token"] != ccToken) {
					o.wrong = "another token"
				}
			case 2:
				o.op = "write"
				name := fmt.Sprintf("w-%d-%d", w, i)
				if _, err = c.Logical().Write(mount+"/credentials/"+name, map[string]any{"type": "webhook", "url": "https://hooks.example.com/" + name}); err == nil {
					mu.Lock()
					written = append(written, name)
					mu.Unlock()
				}
			case 3:
				o.op = "authorize"
				if sec, err = c.Logical().Write(mount+"/credentials/flow/authorize", nil); err == nil && (sec == nil || sec.Data["auth_url"] == nil) {
					o.wrong = "no auth_url"
				}
			case 4:
				// Counted in flight before counting is checked, so that once counting
				// is off and nothing is in flight no read of "counted" is under way.
				inCount.Add(1)
				if !counting.Load() {
					inCount.Add(-1)
					continue
				}
				o.op = "read counted"
				if sec, err = c.Logical().Read(mount + "/access/counted"); err == nil && (sec == nil || sec.Data["password"] != "counted-secret") {
					o.wrong = outcome(sec, nil)
				}
				inCount.Add(-1)
			}
			o.end = time.Now()
			if err != nil {
				o.status, o.err = statusCode(err), err.Error()
				if o.status == 0 {
					o.status = -1
				}
			}
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}
	}
	const workers = 6
	for w := range workers {
		wg.Add(1)
		go worker(w)
	}
	// countedOK is how many reads of "counted" succeeded so far.
	countedOK := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		var n int64
		for _, o := range outcomes {
			if o.op == "read counted" && o.status == 0 {
				n++
			}
		}
		return n
	}
	// Under load, until the flush is seen to store reads made under it (storage
	// catches up with what was counted at some point); then the reads of "counted"
	// stop, storage is read, and the leader is killed. Order, not time: what storage
	// held at the kill must survive it.
	for countedOK() < 20 {
		time.Sleep(50 * time.Millisecond) // polling the workers' progress
	}
	n1.waitStoredCount(t, mount, "counted", countedOK())
	counting.Store(false)
	for inCount.Load() != 0 {
		time.Sleep(10 * time.Millisecond) // polling for the last read of "counted" to end
	}
	held := n1.storedCount(t, mount, "counted")
	dead.Store(true)
	killed := time.Now()
	n1.kill()
	leader := pollActive(t, nodes[1:])
	elected := time.Now()
	// Traffic goes on until every survivor has served 50 requests since the election.
	// The 90 s are a hang, not slowness: a survivor that never serves fails the test.
	var served map[int]int
	for deadline := time.Now().Add(90 * time.Second); ; {
		mu.Lock()
		served = map[int]int{}
		for _, o := range outcomes {
			if o.start.After(elected) && o.status == 0 {
				served[o.node]++
			}
		}
		mu.Unlock()
		if served[1] >= 50 && served[2] >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("90 s after the election the survivors had served %d and %d requests, want 50 each", served[1], served[2])
			break
		}
		time.Sleep(100 * time.Millisecond) // polling the workers' progress
	}
	close(stop)
	wg.Wait()

	// The traffic: no wrong secret ever; no failure before the kill; on a survivor,
	// failures only until its first successful answer after the kill (the new leader
	// serving through it): a request it starts after that answer must succeed.
	firstServed := map[int]time.Time{}
	for _, o := range outcomes {
		if o.node != 0 && o.status == 0 && o.start.After(killed) {
			if at, ok := firstServed[o.node]; !ok || o.end.Before(at) {
				firstServed[o.node] = o.end
			}
		}
	}
	var before, after, failed int
	lastFailure := map[int]time.Time{}
	statuses := map[string]int{}
	samples := map[int]string{} // one error text per status
	for _, o := range outcomes {
		if o.wrong != "" {
			t.Errorf("%s through node %d got a wrong answer: %s", o.op, o.node+1, o.wrong)
		}
		if o.end.Before(killed) {
			before++
		} else {
			after++
		}
		if o.status == 0 {
			continue
		}
		if o.node == 0 {
			if o.end.Before(killed) {
				t.Errorf("%s through the leader failed before the kill: %d", o.op, o.status)
			}
			continue // in flight to the node that was killed
		}
		if o.end.Before(killed) {
			t.Errorf("%s through node %d failed before the kill: %d", o.op, o.node+1, o.status)
		}
		if first, ok := firstServed[o.node]; ok && o.start.After(first) {
			t.Errorf("%s through node %d failed (%d), started %s after the node's first answer under the new leader",
				o.op, o.node+1, o.status, o.start.Sub(first).Round(time.Millisecond))
		}
		failed++
		statuses[fmt.Sprintf("%s %d", o.op, o.status)]++
		if _, ok := samples[o.status]; !ok {
			samples[o.status] = o.err
		}
		if o.start.After(lastFailure[o.node]) {
			lastFailure[o.node] = o.start
		}
	}
	var window time.Duration
	for _, at := range lastFailure {
		window = max(window, at.Sub(killed))
	}
	t.Logf("leader killed: new leader %s after %s; %d requests before the kill, %d after; %d failed on the survivors, the last started %s after the kill: %v",
		leader.addr, elected.Sub(killed).Round(time.Millisecond), before, after, failed, window.Round(time.Millisecond), statuses)
	for status, text := range samples {
		t.Logf("a failure with status %d: %s", status, text)
	}
	// Everything written before the kill (and every write that succeeded) is there.
	c := leader.client
	list, err := c.Logical().List(mount + "/credentials")
	if err != nil || list == nil {
		t.Fatalf("list on the new leader: %v", err)
	}
	have := map[string]bool{}
	for _, k := range list.Data["keys"].([]any) {
		have[k.(string)] = true
	}
	mu.Lock()
	for _, name := range append(written, "static", "counted", "cc", "code", "pending", "flow", "held") {
		if !have[name] {
			t.Errorf("credential %s, written before it was acknowledged, is gone", name)
		}
	}
	mu.Unlock()
	if held, err := c.Logical().Read(mount + "/credentials/held"); err != nil || held.Data["status"] != "suspended" {
		t.Errorf("the suspended credential after the kill: %v %v", held, err)
	}

	// Usage: what storage held at the kill is there; only what it did not hold yet
	// (counted since the last flush) may be lost.
	var countedReads int
	for _, o := range outcomes {
		if o.op == "read counted" {
			countedReads++
		}
	}
	st, err := c.Logical().Read(mount + "/credentials/counted")
	if err != nil || st == nil {
		t.Fatalf("read counted: %v", err)
	}
	stored := jsonInt(st.Data["access_count"])
	t.Logf("usage: %d reads of counted before the kill, storage held %d at the kill, %d stored after it (%d lost)",
		countedReads, held, stored, int64(countedReads)-stored)
	if stored < held || stored > int64(countedReads) {
		t.Errorf("access_count %d after the kill, want from the %d storage held at the kill to the %d reads made", stored, held, countedReads)
	}

	// The cached token was not minted again, by the load or after it.
	if got := readAccess(t, leader, mount, "cc")["access_token"]; got != ccToken || pCC.Requests() != 1 {
		t.Errorf("cc after the kill: token changed=%v, %d provider requests (want the one before the kill)", got != ccToken, pCC.Requests())
	}
	// The rotated refresh token: served as it was, and the next refresh sends it.
	codeBefore := pCode.Requests()
	if got := readAccess(t, leader, mount, "code")["access_token"]; got != codeToken || pCode.Requests() != codeBefore {
		t.Errorf("code after the kill: token changed=%v, %d provider requests", got != codeToken, pCode.Requests()-codeBefore)
	}
	leader.mustCLI(t, "patch", mount+"/credentials/code", "description=after the kill")
	readAccess(t, leader, mount, "code")
	if sent := pCode.LastRequest(t).Form.Get("refresh_token"); pCode.Requests() != codeBefore+1 || sent != second.Refresh {
		t.Error("after the kill the refresh did not send the rotated refresh token")
	}
	// The pending authorization completes through the new leader.
	callback(t, leader, pCode, pendingURL)
	if tok := readAccess(t, leader, mount, "pending")["access_token"]; tok != pCode.LastIssued(t).Access {
		t.Errorf("the authorization pending at the kill: access %v", tok)
	}
}

// startAuthorization starts an authorization of name and returns the consent URL.
func startAuthorization(t *testing.T, v *vaultServer, mount, name string) string {
	t.Helper()
	return decode(t, v.mustCLI(t, "write", "-force", "-format=json", mount+"/credentials/"+name+"/authorize")).Data["auth_url"].(string)
}

// callback consents at the provider and brings its redirect to v's callback (the
// redirect names the node the authorization started on, which may be gone).
func callback(t *testing.T, v *vaultServer, p *oauthtest.Provider, authURL string) {
	t.Helper()
	back := p.Authorize(t, authURL)
	to, _ := url.Parse(v.addr)
	back.Scheme, back.Host = to.Scheme, to.Host
	resp, err := browser(false).Get(back.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback through %s: %d", v.addr, resp.StatusCode)
	}
}

// jsonInt reads a number the API client decoded as json.Number.
func jsonInt(v any) int64 {
	var n int64
	_, _ = fmt.Sscan(fmt.Sprint(v), &n)
	return n
}
