//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/ratelimitidp"
)

// The per-token-host bound on a real Vault, judged from the provider's side: a token
// endpoint that answers 429 (Retry-After: 1) to every request beyond 30 in the last
// second, and 300 client_credentials credentials there read at once, then read
// steadily for two token lifetimes (refresh ahead renews them, and they were minted
// together, so they fall due together). With the default bound (token_host_rate 20,
// token_host_concurrency 10) the endpoint never sees more than its limit in any
// second, sends no 429 at all (the exact count: 0), every read is served and no
// credential leaves active. The mount's metrics show the host with its pace.
//
// The engine paces the starts of its requests; their arrivals bunch a little
// (scheduling of the race-enabled plugin on a loaded machine, connection setup): in a
// first run against a limit of 25 the endpoint saw 25 in one second from a 20/s pace.
// A third of headroom is what docs/API.md advises (token_host_rate about two thirds
// of the provider's limit).
func TestTokenHostBound(t *testing.T) {
	t.Parallel()
	const (
		creds    = 300
		limit    = 30
		lifetime = 40 * time.Second
		steady   = 2 * lifetime
	)
	idp := ratelimitidp.New(limit, lifetime)
	defer idp.Close()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/config", "expiry_buffer=5s")
	if got := shared.mustCLI(t, "read", "-field=token_host_rate", mount+"/config"); strings.TrimSpace(got) != "20" {
		t.Fatalf("token_host_rate default %q, want 20", got)
	}

	names := make([]string, creds)
	for i := range names {
		names[i] = fmt.Sprintf("tenant-%03d", i)
	}
	forEachName(t, names, 8, func(name string) error {
		_, err := shared.client.Logical().Write(mount+"/credentials/"+name, map[string]any{
			"type": "oauth2_client_credentials", "token_url": idp.TokenURL(),
			"client_id": "client-" + name, "client_secret": "secret-" + name,
		})
		return err
	})

	transport := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 2 * time.Minute}
	trace := &httptrace.ClientTrace{}

	// Every credential read at once: 300 first mints queue at the host and leave at 20
	// a second, 15 s in all, inside the 30 s request timeout. Then each token is
	// renewed about every 25 s (due 35 s after issue, its window opening 10 s before,
	// less its spread): 12 a second.
	start := time.Now()
	forEachName(t, names, 64, func(name string) error {
		_, err := accessToken(client, trace, shared, mount+"/access/"+name)
		return err
	})
	t.Logf("first mints of %d credentials: %v; the endpoint: %+v", creds, time.Since(start).Round(time.Millisecond), idp.Stats())

	// Steady reads across all of them for two lifetimes.
	var reads, failed atomic.Int64
	var mu sync.Mutex
	var slowest []time.Duration
	var firstErr atomic.Value
	deadline := time.Now().Add(steady)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var worst time.Duration
			for i := w; time.Now().Before(deadline); i += 16 {
				t0 := time.Now()
				_, err := accessToken(client, trace, shared, mount+"/access/"+names[i%creds])
				worst = max(worst, time.Since(t0))
				reads.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			mu.Lock()
			slowest = append(slowest, worst)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	st := idp.Stats()
	t.Logf("steady: %d reads over %v (slowest per worker %v); the endpoint: %+v", reads.Load(), steady, slices.Max(slowest).Round(time.Millisecond), st)
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d steady reads failed, the first: %v", n, reads.Load(), firstErr.Load())
	}
	if st.Refused != 0 {
		t.Errorf("the endpoint sent %d 429s; the engine's bound (20/s) is under its limit (%d/s), so none is owed", st.Refused, limit)
	}
	if st.MaxInSecond > limit {
		t.Errorf("the endpoint saw %d requests in one second, above its limit %d", st.MaxInSecond, limit)
	}
	// Each credential was minted once and renewed by refresh ahead at least once.
	if st.Served < creds+creds {
		t.Errorf("the endpoint served %d tokens for %d credentials over more than two lifetimes: refresh ahead did not renew them", st.Served, creds)
	}
	forEachName(t, names, 16, func(name string) error {
		c, err := shared.client.Logical().Read(mount + "/credentials/" + name)
		if err != nil {
			return err
		}
		if c.Data["status"] != "active" {
			return fmt.Errorf("%s is %v, want active", name, c.Data["status"])
		}
		return nil
	})

	code, body := metricsBody(shared.addr, mount, shared.token)
	host := strings.TrimSuffix(idp.TokenURL(), "/oauth2/token")
	for _, want := range []string{
		fmt.Sprintf("integrations_token_host_rate{host=%q} 20", host),
		fmt.Sprintf("integrations_token_host_pauses_total{host=%q} 0", host),
		fmt.Sprintf("integrations_token_host_requests_queued{host=%q,priority=\"background\"}", host),
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("metrics (%d) lack %s", code, want)
		}
	}
	if strings.Contains(body, "tenant-0") {
		t.Error("the host metrics carry a credential name")
	}
}

// forEachName runs do for every name on workers goroutines and fails t with the first
// error.
func forEachName(t *testing.T, names []string, workers int, do func(name string) error) {
	t.Helper()
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				if err := do(n); err != nil {
					errs <- fmt.Errorf("%s: %w", n, err)
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	if err, ok := <-errs; ok {
		t.Fatalf("%v (and %d more)", err, len(errs))
	}
}
