//go:build e2e

package e2e

// The "providers" section of the benchmark driver (BENCH_ONLY=providers; never in the
// default run, never in make test): many client_credentials credentials at one
// provider that answers 429 above its limit (e2e/internal/ratelimitidp), minted at
// once and then read steadily. Knobs:
//
//	BENCH_PROVIDER_CREDENTIALS  credentials at the provider (default 20000)
//	BENCH_PROVIDER_LIMIT        the provider's requests a second before it answers 429 (default 100)
//	BENCH_PROVIDER_TTL          the provider's token lifetime (default 15m)
//	BENCH_PROVIDER_RATE         the engine's token_host_rate (default two thirds of the limit)
//	BENCH_PROVIDER_STEADY       the steady reads after every credential holds a token (default 30m)
//
// Validate the harness with a short run, e.g.
// BENCH_ONLY=providers BENCH_PROVIDER_CREDENTIALS=2000 BENCH_PROVIDER_TTL=2m BENCH_PROVIDER_STEADY=3m.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/ratelimitidp"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/loadgen"
)

// providersResult is the providers section's run. Its exported fields are what a kept
// result holds (benchkept_test.go).
type providersResult struct {
	Creds           int                `json:"creds"`
	Limit           int                `json:"limit"`
	Rate            int                `json:"rate"`
	TTL             time.Duration      `json:"ttl"`
	Steady          time.Duration      `json:"steady"`
	Create          time.Duration      `json:"create"`
	AllHeld         time.Duration      `json:"all_held"`
	FirstPassErrors int                `json:"first_pass_errors"`
	Mint            ratelimitidp.Stats `json:"mint"`         // from the first request to every credential holding a token
	SteadyStats     ratelimitidp.Stats `json:"steady_stats"` // the steady phase alone
	Reads           int                `json:"reads"`
	ReadErrors      int                `json:"read_errors"`
	P50             time.Duration      `json:"p50"`
	P99             time.Duration      `json:"p99"`
	P999            time.Duration      `json:"p999"`
	Max             time.Duration      `json:"max"`
	FromProvider    float64            `json:"from_provider"` // access/ reads by token source over the steady phase (metrics)
	FromCache       float64            `json:"from_cache"`
	Pauses          float64            `json:"pauses"` // host pauses over the whole run (metrics)
	NotActive       int                `json:"not_active"`
	FirstError      string             `json:"first_error,omitempty"`
	FirstReadErr    string             `json:"first_read_err,omitempty"`

	from *keptRun // the earlier run that measured it (benchkept_test.go); nil for this run's
}

func benchProviders(t *testing.T) *providersResult {
	r := &providersResult{
		Creds:  envInt(t, "BENCH_PROVIDER_CREDENTIALS", 20000),
		Limit:  envInt(t, "BENCH_PROVIDER_LIMIT", 100),
		TTL:    envDuration(t, "BENCH_PROVIDER_TTL", 15*time.Minute),
		Steady: envDuration(t, "BENCH_PROVIDER_STEADY", 30*time.Minute),
	}
	r.Rate = envInt(t, "BENCH_PROVIDER_RATE", max(1, r.Limit*2/3))
	v := shared
	const mount = "providers"
	mountPlugin(t, v, mount)
	defer func() { _ = v.client.Sys().Unmount(mount) }() // cleanup: the server goes away with the test
	mustDo(t, v, http.MethodPost, mount+"/config", map[string]any{"token_host_rate": r.Rate})
	idp := ratelimitidp.New(r.Limit, r.TTL)
	defer idp.Close()

	name := func(i int) string { return fmt.Sprintf("tenant-%06d", i) }
	t0 := time.Now()
	if n, first := parallel(r.Creds, 32, func(i int) error {
		_, code, err := vaultDo(v, http.MethodPost, mount+"/credentials/"+name(i), map[string]any{
			"type": "oauth2_client_credentials", "token_url": idp.TokenURL(),
			"client_id": "client-" + name(i), "client_secret": "secret-" + name(i)})
		if err != nil || code >= 300 {
			return fmt.Errorf("create %s: %d %v", name(i), code, err)
		}
		return nil
	}); n > 0 {
		t.Fatalf("%d creates failed, the first: %s", n, first)
	}
	r.Create = time.Since(t0)
	t.Logf("providers: %d credentials created in %s", r.Creds, r.Create.Round(time.Second))

	// Until every credential holds a token: passes over those not served yet, 64
	// readers at once (a read the host's queue cannot reach before request_timeout is
	// refused at once and retried in the next pass).
	client := loadgen.NewClient(64)
	defer client.CloseIdleConnections()
	read := func(i int) error {
		return loadgen.Get(v.addr+"/v1/"+mount+"/access/"+name(i), v.token, "access_token")(context.Background(), client)
	}
	idp.Reset()
	t0 = time.Now()
	pending := make([]int, r.Creds)
	for i := range pending {
		pending[i] = i
	}
	for pass := 0; len(pending) > 0; pass++ {
		var mu sync.Mutex
		var left []int
		parallel(len(pending), 64, func(k int) error {
			if err := read(pending[k]); err != nil {
				mu.Lock()
				left = append(left, pending[k])
				if r.FirstError == "" {
					r.FirstError = err.Error()
				}
				mu.Unlock()
			}
			return nil
		})
		r.FirstPassErrors += len(left)
		pending = left
		if time.Since(t0) > 2*time.Hour {
			t.Fatalf("providers: %d credentials still hold no token after %s", len(pending), time.Since(t0))
		}
	}
	r.AllHeld = time.Since(t0)
	r.Mint = idp.Stats()
	t.Logf("providers: every credential holds a token after %s (%d reads refused on the way); the provider: %+v", r.AllHeld.Round(time.Second), r.FirstPassErrors, r.Mint)

	// Steady reads across all of them.
	before := scrapeCounters(t, v, mount)
	idp.Reset()
	var (
		reads, errs atomic.Int64
		mu          sync.Mutex
		lat         []time.Duration
		wg          sync.WaitGroup
		next        atomic.Int64
	)
	end := time.Now().Add(r.Steady)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				i := int(next.Add(1) % int64(r.Creds))
				t1 := time.Now()
				err := read(i)
				mine = append(mine, time.Since(t1))
				reads.Add(1)
				if err != nil && errs.Add(1) == 1 {
					mu.Lock()
					r.FirstReadErr = err.Error()
					mu.Unlock()
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.SteadyStats = idp.Stats()
	after := scrapeCounters(t, v, mount)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.Reads, r.ReadErrors = int(reads.Load()), int(errs.Load())
	r.P50, r.P99, r.P999, r.Max = loadgen.Quantile(lat, .5), loadgen.Quantile(lat, .99), loadgen.Quantile(lat, .999), lat[len(lat)-1]
	r.FromProvider = after[`integrations_token_reads_total{source="provider"}`] - before[`integrations_token_reads_total{source="provider"}`]
	r.FromCache = after[`integrations_token_reads_total{source="cache"}`] - before[`integrations_token_reads_total{source="cache"}`]
	r.Pauses = after["pauses"]

	var notActive atomic.Int64
	parallel(r.Creds, 32, func(i int) error {
		body, _, err := vaultDo(v, http.MethodGet, mount+"/credentials/"+name(i), nil)
		data, _ := body["data"].(map[string]any)
		if err != nil || data["status"] != "active" {
			notActive.Add(1)
		}
		return nil
	})
	r.NotActive = int(notActive.Load())
	t.Logf("providers: steady %s: %d reads (%d errors), p50 %s p99 %s max %s; reads from the provider %v, from the cache %v; the provider: %+v; not active: %d",
		r.Steady, r.Reads, r.ReadErrors, ms(r.P50), ms(r.P99), ms(r.Max), r.FromProvider, r.FromCache, r.SteadyStats, r.NotActive)
	return r
}

var promLine = regexp.MustCompile(`^(integrations_token_reads_total\{source="(?:provider|cache)"\}|integrations_token_host_pauses_total\{[^}]*\}) ([0-9.e+]+)$`)

// scrapeCounters reads the token-source counters and the sum of the host pauses from
// the mount's metrics.
func scrapeCounters(t *testing.T, v *vaultServer, mount string) map[string]float64 {
	code, body := metricsBody(v.addr, mount, v.token)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		m := promLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f, _ := strconv.ParseFloat(m[2], 64)
		if strings.HasPrefix(m[1], "integrations_token_host_pauses_total") {
			out["pauses"] += f
			continue
		}
		out[m[1]] = f
	}
	return out
}

func (r *providersResult) render(w func(string, ...any), runs *earlierRuns) {
	w("## Provider-friendly minting at scale\n\n%d OAuth client-credentials credentials at one provider (e2e/internal/ratelimitidp) whose tokens live %s and which answers 429 (Retry-After: 1) to every request beyond %d in the last second; the engine's token_host_rate %d/s (token_host_concurrency default). The credentials are created, then read by 64 clients in passes until every one has been served a token; then %d clients read across all of them for %s.\n\n",
		r.Creds, r.TTL, r.Limit, r.Rate, 32, r.Steady)
	if r.from != nil {
		w("These figures are from an earlier run%s (kept in benchmarks/): %s.\n\n", markSuffix(runs.mark(r.from)), r.from.describe())
	}
	w("| | |\n|---|---|\n")
	w("| created | %d in %s |\n", r.Creds, r.Create.Round(time.Second))
	w("| every credential holds a token after | **%s** (%d reads refused on the way: the host's queue would not reach them within request_timeout; retried in the next pass) |\n", r.AllHeld.Round(time.Second), r.FirstPassErrors)
	w("| first mints, provider side | %d requests, most in any 1 s window **%d**, 429s sent **%d**, most in flight %d |\n", r.Mint.Requests, r.Mint.MaxInSecond, r.Mint.Refused, r.Mint.MaxInFlight)
	w("| steady reads | %d over %s, %d errors |\n", r.Reads, r.Steady, r.ReadErrors)
	w("| reader latency | p50 %s, p99 %s, p99.9 %s, max %s |\n", ms(r.P50), ms(r.P99), ms(r.P999), ms(r.Max))
	w("| reads that waited on the provider (token_reads_total{source=\"provider\"}) | **%.0f** of %.0f |\n", r.FromProvider, r.FromProvider+r.FromCache)
	w("| steady, provider side | %d requests, most in any 1 s window **%d**, 429s sent **%d**, most in flight %d |\n", r.SteadyStats.Requests, r.SteadyStats.MaxInSecond, r.SteadyStats.Refused, r.SteadyStats.MaxInFlight)
	w("| host pauses (429/503) over the run | %.0f |\n", r.Pauses)
	w("| credentials not active at the end | **%d** |\n\n", r.NotActive)
	if r.FirstError != "" {
		w("First refused read while minting: `%s`\n\n", strings.ReplaceAll(trimTo(r.FirstError, 300), "`", "'"))
	}
	if r.FirstReadErr != "" {
		w("First failed steady read: `%s`\n\n", strings.ReplaceAll(trimTo(r.FirstReadErr, 300), "`", "'"))
	}
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// benchProvidersWanted: the section runs only when BENCH_ONLY names it.
func benchProvidersWanted() bool {
	for _, f := range strings.Split(os.Getenv("BENCH_ONLY"), ",") {
		if strings.TrimSpace(f) == "providers" {
			return true
		}
	}
	return false
}
