//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// The batch section of the benchmark driver (BENCH_ONLY=batch): the create rate of
// credentials-batch against single creates of credentials/<name>, from outside over
// HTTP, on one Vault dev server. Knobs:
//
//	BENCH_BATCH_N     credentials created per run (default 20000)
//	BENCH_BATCH_RUNS  runs of each way (default 3): the machine is shared, so the
//	                  report gives the best run and the spread

// batchBenchWay is one way of creating the credentials.
type batchBenchWay struct {
	name     string
	batch    int // items per request; 0: single creates of credentials/<name>
	requests int // requests in flight at once
}

var batchBenchWays = []batchBenchWay{
	{name: "single creates, 32 clients", requests: 32},
	{name: "credentials-batch of 1,000, 1 request at a time", batch: 1000, requests: 1},
	{name: "credentials-batch of 1,000, 2 requests at a time", batch: 1000, requests: 2},
	{name: "credentials-batch of 1,000, 4 requests at a time", batch: 1000, requests: 4},
}

// batchBenchResult is one mix's runs: the time each way took, per run.
type batchBenchResult struct {
	mix  string
	n    int
	took map[string][]time.Duration
}

func benchBatch(t *testing.T, rep *benchReport) {
	n := envInt(t, "BENCH_BATCH_N", 20000)
	runs := envInt(t, "BENCH_BATCH_RUNS", 3)
	v, err := startVault(serverOptions{})
	if err != nil {
		t.Fatalf("starting Vault: %v", err)
	}
	defer v.stop()
	if err := v.registerPlugin(); err != nil {
		t.Fatal(err)
	}
	loadStart := loadAverage()
	defer func() {
		rep.note("batch section: load average %s at its start, %s at its end, on %s cores shared with other work", loadStart, loadAverage(), cores())
	}()
	p := newLatencyProvider(t, 2*time.Hour, 0)
	certs := scaleCertPEMs(t, 4)
	sshKey := fixtures.SSHKey("")
	mixes := []struct {
		name string
		item func(i int) map[string]any
	}{
		{"bearer", func(i int) map[string]any {
			return map[string]any{"type": "bearer", "token": fmt.Sprintf("tok-%d", i), "tags": []string{fmt.Sprintf("shard-%d", i%20)}}
		}},
		{"the scale mix (section 4)", func(i int) map[string]any { return scaleMix(i, p.TokenURL(), certs, sshKey) }},
	}
	for _, mix := range mixes {
		res := &batchBenchResult{mix: mix.name, n: n, took: map[string][]time.Duration{}}
		for run := range runs {
			// Ways alternate within a run, so each sees the machine as the others did.
			for wi, way := range batchBenchWays {
				mount := fmt.Sprintf("batch-%d-%d", run, wi)
				mountPlugin(t, v, mount)
				took := batchCreate(t, v, mount, n, way, mix.item)
				res.took[way.name] = append(res.took[way.name], took)
				t.Logf("batch bench, %s, %s: %d in %s (%.0f/s)", mix.name, way.name, n, took.Round(time.Millisecond), float64(n)/took.Seconds())
				if err := v.client.Sys().Unmount(mount); err != nil {
					t.Fatalf("unmount %s: %v", mount, err)
				}
			}
		}
		rep.batch = append(rep.batch, res)
	}
}

// batchCreate creates n credentials on mount the given way and returns how long it
// took; any failure fails the benchmark.
func batchCreate(t *testing.T, v *vaultServer, mount string, n int, way batchBenchWay, item func(i int) map[string]any) time.Duration {
	name := func(i int) string { return fmt.Sprintf("cred-%07d", i) }
	start := time.Now()
	if way.batch == 0 {
		if failed, first := parallel(n, way.requests, func(i int) error {
			_, _, err := vaultDo(v, http.MethodPost, mount+"/credentials/"+name(i), item(i))
			return err
		}); failed > 0 {
			t.Fatalf("%d single creates failed: %s", failed, first)
		}
		return time.Since(start)
	}
	batches := (n + way.batch - 1) / way.batch
	var mu sync.Mutex
	var problems []string
	if failed, first := parallel(batches, way.requests, func(k int) error {
		items := make([]any, 0, way.batch)
		for i := k * way.batch; i < min(n, (k+1)*way.batch); i++ {
			it := item(i)
			it["name"] = name(i)
			items = append(items, it)
		}
		out, _, err := vaultDo(v, http.MethodPost, mount+"/credentials-batch", map[string]any{"items": items})
		if err != nil {
			return err
		}
		data, _ := out["data"].(map[string]any)
		if c, _ := data["created_count"].(float64); int(c) != len(items) {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("batch %d: created %v of %d: %.300v", k, data["created_count"], len(items), data["failed"]))
			mu.Unlock()
		}
		return nil
	}); failed > 0 {
		t.Fatalf("%d batch requests failed: %s", failed, first)
	}
	if len(problems) > 0 {
		t.Fatalf("batches did not create every item: %s", strings.Join(problems, "; "))
	}
	return time.Since(start)
}

func renderBatch(r *benchReport, read func(format string, args ...any)) string {
	if len(r.batch) == 0 {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Bulk create (credentials-batch)\n\nCredentials created over HTTP on one Vault dev server (in-memory storage), each run on a fresh mount, unmounted after it; the ways alternate within a run. The machine is shared with other work: each cell is the best run's rate, with the slowest run's after it (the spread). credentials-batch writes each batch's items 16 at a time (batchWorkers). The machine's load average at the start and end of the section is in the notes below.\n\n")
	w("| mix | credentials per run | way | runs | best | slowest | best vs single creates |\n|---|---:|---|---:|---:|---:|---:|\n")
	for _, res := range r.batch {
		single := bestRate(res.n, res.took[batchBenchWays[0].name])
		for _, way := range batchBenchWays {
			took := res.took[way.name]
			best, worst := bestRate(res.n, took), float64(res.n)/slices.Max(took).Seconds()
			w("| %s | %d | %s | %d | **%.0f/s** | %.0f/s | %.2f× |\n", res.mix, res.n, way.name, len(took), best, worst, best/single)
			if way.batch > 0 && way.requests == 1 {
				read("Bulk create, %s: %.0f credentials/s through credentials-batch one request at a time (target ≥ 1,500/s: %s), single creates %.0f/s.", res.mix, best, yesNo(best >= 1500), single)
			}
		}
	}
	w("\n")
	return b.String()
}

func bestRate(n int, took []time.Duration) float64 {
	if len(took) == 0 {
		return 0
	}
	return float64(n) / slices.Min(took).Seconds()
}

// loadAverage is the 1-, 5- and 15-minute load average (/proc/loadavg), or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// cores is the number of CPUs this process may use.
func cores() string { return strconv.Itoa(runtime.NumCPU()) }
