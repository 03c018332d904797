//go:build e2e

package e2e

import (
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// Refresh ahead on a real Vault: steady reads of one OAuth credential whose provider
// issues 4-second tokens and takes 300 ms to answer, through several rollovers.
// expiry_buffer is 1 s, so a token falls due 3 s after issue and its refresh window
// opens min(max(4s/5, 10s), (4s-1s)/2) = 1.5 s after issue.
//
// The assertion is about waiting, not speed: a read that waits for the provider takes
// at least the injected latency, so with refresh ahead no read may take that long, and
// every provider request is one rollover (each token issued is served, none is asked
// for twice). The same load with refresh_ahead=false first shows that the measurement
// sees the waiting readers.
func TestOAuthRefreshAhead(t *testing.T) {
	t.Parallel()
	const (
		lifetime        = 4 * time.Second
		providerLatency = 300 * time.Millisecond
		workers         = 4
		rollovers       = 3
	)
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/config", "expiry_buffer=1s")

	transport := &http.Transport{MaxConnsPerHost: workers, MaxIdleConnsPerHost: workers,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	trace := &httptrace.ClientTrace{}

	type read struct {
		start   time.Time
		latency time.Duration
		token   string
	}
	// run reads access/<name> from workers in a closed loop for long enough to see
	// `rollovers` rollovers at the due point, and returns every read, the provider
	// requests made meanwhile and the tokens the provider issued meanwhile.
	run := func(name string) ([]read, int64, []string) {
		p := newIDP(t, oauthtest.Options{AccessTTL: lifetime})
		shared.mustCLI(t, "write", mount+"/credentials/"+name, "type=oauth2_client_credentials",
			"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
		if _, err := accessToken(client, trace, shared, mount+"/access/"+name); err != nil {
			t.Fatal(err)
		}
		// The provider's latency, as a real one has: it answers every token request
		// providerLatency after receiving it.
		p.SetFault(func(http.ResponseWriter, *http.Request) bool {
			time.Sleep(providerLatency)
			return false
		})
		requests0, issued0 := p.Requests(), len(p.Issued())
		deadline := time.Now().Add(time.Duration(rollovers+1) * (lifetime - time.Second))
		var (
			mu    sync.Mutex
			reads []read
			wg    sync.WaitGroup
			fail  atomic.Value
		)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					t0 := time.Now()
					tok, err := accessToken(client, trace, shared, mount+"/access/"+name)
					d := time.Since(t0)
					if err != nil {
						fail.Store(err)
						return
					}
					mu.Lock()
					reads = append(reads, read{t0, d, tok})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err, _ := fail.Load().(error); err != nil {
			t.Fatalf("%s: read failed: %v", name, err)
		}
		// A refresh the last reads started may still be at the provider: read on
		// until the newest token issued is the one served.
		for end := time.Now().Add(20 * time.Second); ; {
			tok, err := accessToken(client, trace, shared, mount+"/access/"+name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if tok == p.LastIssued(t).Access {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("%s: the newest token issued is never served", name)
			}
		}
		var issued []string
		for _, tok := range p.Issued()[issued0:] {
			issued = append(issued, tok.Access)
		}
		return reads, p.Requests() - requests0, issued
	}
	// summarise counts the reads that took as long as a provider request, and the
	// tokens served, in first-served order.
	summarise := func(reads []read) (slow int, slowest time.Duration, served []string) {
		seen := map[string]bool{}
		first := ""
		for i, r := range reads {
			if i == 0 {
				first = r.token
			}
			if r.latency >= providerLatency {
				slow++
			}
			slowest = max(slowest, r.latency)
			if !seen[r.token] && r.token != first {
				served = append(served, r.token)
			}
			seen[r.token] = true
		}
		return slow, slowest, served
	}

	// refresh_ahead=false: the reader that finds the token due waits.
	shared.mustCLI(t, "write", mount+"/config", "refresh_ahead=false")
	offReads, offRequests, _ := run("cc-off")
	offSlow, offSlowest, _ := summarise(offReads)
	t.Logf("refresh_ahead=false: %d reads, %d provider requests, %d reads ≥ %s, slowest %s",
		len(offReads), offRequests, offSlow, providerLatency, offSlowest.Round(time.Millisecond))
	if offRequests < rollovers || offSlow == 0 {
		t.Fatalf("refresh_ahead=false: %d rollovers and %d reads waiting on the provider; the measurement cannot see waiting", offRequests, offSlow)
	}

	shared.mustCLI(t, "write", mount+"/config", "refresh_ahead=true")
	reads, requests, issued := run("cc-on")
	slow, slowest, served := summarise(reads)
	t.Logf("refresh_ahead=true: %d reads, %d provider requests, %d tokens issued and served, %d reads ≥ %s, slowest %s",
		len(reads), requests, len(served), slow, providerLatency, slowest.Round(time.Millisecond))
	if requests < rollovers {
		t.Fatalf("%d rollovers, want at least %d", requests, rollovers)
	}
	if slow != 0 {
		t.Fatalf("%d reads took as long as a provider request (≥ %s; slowest %s): a reader waited on the provider", slow, providerLatency, slowest)
	}
	// One provider request per rollover: each request issued one token, and every
	// token issued was served, in order (a second request for a rollover would issue
	// a token nobody is served).
	if int64(len(issued)) != requests {
		t.Fatalf("%d provider requests issued %d tokens", requests, len(issued))
	}
	// The tokens read by the final catch-up reads are not in reads: compare what
	// was served with what was issued, allowing the last issued to be seen only there.
	if len(served) != len(issued) && len(served) != len(issued)-1 {
		t.Fatalf("%d tokens issued, %d served to readers: not one provider request per rollover", len(issued), len(served))
	}
	for i, tok := range served {
		if tok != issued[i] {
			t.Fatalf("rollover %d served a token other than the one issued for it", i+1)
		}
	}
}
