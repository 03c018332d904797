//go:build e2e

package e2e

// TestBenchmarkReport is the benchmark driver behind `make bench`: it measures the
// engine from outside, as a user would, through real Vault dev servers, and writes
// BENCHMARKS.md (and BENCHMARKS.png beside it). It runs only when BENCH_REPORT names
// the file to write; `make test` leaves it out. Knobs (see scripts/bench.sh):
//
//	BENCH_REPORT             the Markdown file to write (the PNG goes beside it)
//	BENCH_DURATION           length of one load round (default 5s)
//	BENCH_ROUNDS             alternating rounds per target and concurrency (default 5)
//	BENCH_ROLLOVER_LIFETIME  token lifetime in the rollover run (default 60s)
//	BENCH_ROLLOVERS          rollovers to run through (default 3)
//	BENCH_PROVIDER_LATENCY   the OAuth token endpoint's added latency (default 350ms)
//	BENCH_REFRESH_AHEAD      on|off for the rollover run, when the engine has it (default on)
//	BENCH_SCALE              mount sizes (default 1000,10000,100000)
//	BENCH_SCALE_STORAGE      dev (a dev server, in memory; default) or raft (one integrated-storage node on disk) for the scale section
//	BENCH_SCALE_CREATE       batch (credentials-batch, 1,000 a request, 2 at a time; default) or single (32 clients creating credentials/<name>) for the scale section
//	BENCH_HEAPPROF           a directory: heap profiles of the plugin after creation and after the reload (PLUGIN_DIR must hold a -tags heapprof build: make build-heapprof)
//	BENCH_SWEEP_WAIT         wait for a periodic tick before the after-sweep RSS (default 65s; 0 skips)
//	BENCH_ONLY               sections to run: load,rollover,herd,scale,startup,kdf,batch (default all);
//	                         providers runs only when named (bench_providers_test.go has its knobs)
//	BENCH_BATCH_N, BENCH_BATCH_RUNS  the batch section's size and runs (bench_batch_test.go)
//	BENCH_KDF_WRITES         parallel writes of the largest scrypt key in the kdf section (default 50)
//	BENCH_KDF_BASELINE_WRITES  the same against BENCH_BASELINE, when set (default 6)
//	BENCH_BASELINE           an older build of this plugin in the plugin directory, read beside it in the load rounds
//	BENCH_INPROC             `go test -bench` output to fold into the report
//
// The results of the scale, startup and providers sections are kept in benchmarks/
// beside BENCH_REPORT and rendered by later runs that do not measure them
// (benchkept_test.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/githubtest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/loadgen"
)

type benchSettings struct {
	duration, lifetime, providerLatency, sweepWait time.Duration
	rounds, rollovers                              int
	refreshAhead                                   bool
	sizes                                          []int
	only                                           map[string]bool
	inproc                                         string
	scaleStorage                                   string // "dev" (in memory) or "raft" (one node on disk)
	scaleCreate                                    string // "batch" (credentials-batch) or "single" (credentials/<name>)
}

func (s benchSettings) quick() bool {
	full := s.duration >= 5*time.Second && s.rounds >= 3 && s.lifetime >= 60*time.Second && s.rollovers >= 3
	has100k := false
	for _, n := range s.sizes {
		has100k = has100k || n >= 100000
	}
	return !full || !has100k || len(s.only) > 0
}

func (s benchSettings) run(section string) bool { return len(s.only) == 0 || s.only[section] }

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func benchSettingsFromEnv(t *testing.T) benchSettings {
	s := benchSettings{
		duration:        envDuration(t, "BENCH_DURATION", 5*time.Second),
		lifetime:        envDuration(t, "BENCH_ROLLOVER_LIFETIME", 60*time.Second),
		providerLatency: envDuration(t, "BENCH_PROVIDER_LATENCY", 350*time.Millisecond),
		sweepWait:       envDuration(t, "BENCH_SWEEP_WAIT", 65*time.Second),
		rounds:          envInt(t, "BENCH_ROUNDS", 5),
		rollovers:       envInt(t, "BENCH_ROLLOVERS", 3),
		refreshAhead:    os.Getenv("BENCH_REFRESH_AHEAD") != "off",
		sizes:           []int{1000, 10000, 100000},
		only:            map[string]bool{},
		inproc:          os.Getenv("BENCH_INPROC"),
		scaleStorage:    os.Getenv("BENCH_SCALE_STORAGE"),
		scaleCreate:     os.Getenv("BENCH_SCALE_CREATE"),
	}
	switch s.scaleCreate {
	case "":
		s.scaleCreate = "batch"
	case "batch", "single":
	default:
		t.Fatalf("BENCH_SCALE_CREATE=%q: batch or single", s.scaleCreate)
	}
	switch s.scaleStorage {
	case "":
		s.scaleStorage = "dev"
	case "dev", "raft":
	default:
		t.Fatalf("BENCH_SCALE_STORAGE=%q: dev or raft", s.scaleStorage)
	}
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		s.sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 200 {
				t.Fatalf("BENCH_SCALE=%q: want sizes of at least 200, comma-separated", v)
			}
			s.sizes = append(s.sizes, n)
		}
		sort.Ints(s.sizes)
	}
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		for _, f := range strings.Split(v, ",") {
			s.only[strings.TrimSpace(f)] = true
		}
	}
	if s.lifetime < 4*time.Second {
		t.Fatalf("BENCH_ROLLOVER_LIFETIME=%v: at least 4s", s.lifetime)
	}
	return s
}

// benchReport is everything the run measured; render turns it into BENCHMARKS.md.
type benchReport struct {
	settings     benchSettings
	started      time.Time
	took         time.Duration
	load         map[string]map[int]*loadgen.Result   // target → clients → merged rounds
	loadRounds   map[string]map[int][]*loadgen.Result // target → clients → each round
	loadCPU      map[string]map[int]*cpuPerRequest
	loadTargets  []string
	loadClients  []int
	rollover     *rolloverResult
	herd         *herdResult
	scale        []*scaleResult
	startup      []*startupResult
	kdf          []*kdfResult // this build, then BENCH_BASELINE's when set
	batch        []*batchBenchResult
	providers    *providersResult
	refreshAhead string // "on", "off", or "not in this engine"
	notes        []string
}

func (r *benchReport) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func TestBenchmarkReport(t *testing.T) {
	out := os.Getenv("BENCH_REPORT")
	if out == "" {
		t.Skip("BENCH_REPORT is not set: run `make bench`")
	}
	s := benchSettingsFromEnv(t)
	rep := &benchReport{settings: s, started: time.Now()}
	// Each result of the long sections is kept when its section finishes, so a later
	// run can render it (benchkept_test.go).
	kept := newKeptStore(out, rep)
	keep := func(what string, err error) {
		if err != nil {
			t.Errorf("keeping %s: %v", what, err)
		}
	}
	if s.run("load") {
		benchLoad(t, s, rep)
	}
	if s.run("rollover") {
		benchRollover(t, s, rep)
	}
	if s.run("herd") {
		benchHerd(t, s, rep)
	}
	if s.run("scale") {
		for _, n := range s.sizes {
			sr := benchScale(t, s, rep, n)
			rep.scale = append(rep.scale, sr)
			keep(scaleKey(sr), kept.saveScale(s, sr))
		}
	}
	if s.run("startup") {
		for _, n := range s.sizes {
			sr := benchStartup(t, rep, n)
			rep.startup = append(rep.startup, sr)
			keep(startupKey(sr), kept.saveStartup(s, sr))
		}
	}
	if s.run("kdf") {
		benchKDF(t, rep)
	}
	if s.run("batch") {
		benchBatch(t, rep) // bench_batch_test.go
	}
	if benchProvidersWanted() { // long: only when BENCH_ONLY names it (bench_providers_test.go)
		rep.providers = benchProviders(t)
		keep(providersKey, kept.saveProviders(rep.providers))
	}
	// Then the kept results of earlier runs, for what this run did not measure.
	earlier, err := loadKept(kept.dir)
	keep("the results of earlier runs", err) // a file that cannot be read is left out
	rep.addKept(earlier)
	rep.took = time.Since(rep.started)
	md := rep.render(t)
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	png := strings.TrimSuffix(out, filepath.Ext(out)) + ".png"
	if err := rep.plot(png); err != nil {
		t.Fatalf("plot: %v", err)
	}
	t.Logf("wrote %s and %s in %s", out, png, rep.took.Round(time.Second))
}

// ---- helpers ----------------------------------------------------------------

// benchHTTP is the driver's own client for setup requests (not the measured load).
var benchHTTP = loadgen.NewClient(64)

// vaultDo sends one API request to v and decodes the answer's JSON (nil for 204).
func vaultDo(v *vaultServer, method, path string, body any) (map[string]any, int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, v.addr+"/v1/"+path, rd)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("X-Vault-Token", v.token)
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	var out map[string]any
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &out)
	}
	if resp.StatusCode >= 300 {
		return out, resp.StatusCode, fmt.Errorf("%s %s: status %d: %.300s", method, path, resp.StatusCode, raw)
	}
	return out, resp.StatusCode, nil
}

func mustDo(t *testing.T, v *vaultServer, method, path string, body any) map[string]any {
	t.Helper()
	out, _, err := vaultDo(v, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// latencyProvider starts an oauthtest provider whose token endpoint answers after
// delay, as a real provider does, and records when each request arrived.
type latencyProvider struct {
	*oauthtest.Provider
	mu       sync.Mutex
	arrivals []time.Time
}

func newLatencyProvider(t *testing.T, ttl, delay time.Duration) *latencyProvider {
	lp := &latencyProvider{Provider: oauthtest.New(t, oauthtest.Options{AccessTTL: ttl})}
	lp.SetFault(func(http.ResponseWriter, *http.Request) bool {
		lp.mu.Lock()
		lp.arrivals = append(lp.arrivals, time.Now())
		lp.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay) // the provider's own latency: holds this request only
		}
		return false
	})
	return lp
}

func (lp *latencyProvider) arrivalsSince(t0 time.Time) []time.Duration {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var out []time.Duration
	for _, a := range lp.arrivals {
		if !a.Before(t0) {
			out = append(out, a.Sub(t0))
		}
	}
	return out
}

// setRefreshAhead writes config refresh_ahead when the engine has the field and
// reports whether it does.
func setRefreshAhead(t *testing.T, v *vaultServer, mount string, on bool) bool {
	_, _, _ = vaultDo(v, http.MethodPost, mount+"/config", map[string]any{"refresh_ahead": on})
	cfg := mustDo(t, v, http.MethodGet, mount+"/config", nil)
	data, _ := cfg["data"].(map[string]any)
	got, ok := data["refresh_ahead"]
	if ok && got != on {
		t.Fatalf("config refresh_ahead is %v after writing %v", got, on)
	}
	return ok
}

func mountPlugin(t *testing.T, v *vaultServer, path string) {
	t.Helper()
	if err := v.client.Sys().Mount(path, &api.MountInput{Type: pluginName,
		Config: api.MountConfigInput{PluginVersion: os.Getenv("PLUGIN_VERSION")}}); err != nil {
		t.Fatalf("mounting %s: %v", path, err)
	}
}

func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}

// ---- a. closed-loop load ----------------------------------------------------

func benchLoad(t *testing.T, s benchSettings, rep *benchReport) {
	v := shared
	constBin := filepath.Join(pluginDir(), constPluginName)
	sum, err := fileSHA256(constBin)
	if err != nil {
		t.Fatalf("baseline plugin not built (%v): run `make bench`", err)
	}
	if err := v.client.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: constPluginName, Type: api.PluginTypeSecrets, Command: constPluginName, SHA256: sum,
	}); err != nil {
		t.Fatal(err)
	}
	if err := v.client.Sys().Mount("load-const", &api.MountInput{Type: constPluginName}); err != nil {
		t.Fatal(err)
	}
	mountPlugin(t, v, "load-int")
	mustDo(t, v, http.MethodPost, "secret/data/bench", map[string]any{"data": map[string]any{"username": "svc-user", "password": "pw-0123456789"}})
	mustDo(t, v, http.MethodPost, "load-int/credentials/svc", map[string]any{"type": "basic", "username": "svc-user", "password": "pw-0123456789"})
	p := newLatencyProvider(t, 2*time.Hour, 0)
	mustDo(t, v, http.MethodPost, "load-int/credentials/oauth", map[string]any{"type": "oauth2_client_credentials",
		"token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret})
	// A GitHub App (the suite's GitHub, internal/githubtest), narrowed to one repository.
	gh := githubtest.New(123456, "Iv23liBench", &fixtures.GitHubAppKey().PublicKey,
		&githubtest.Installation{ID: 7890, Account: "octo-org", Repositories: []string{"octo-repo"}, Permissions: map[string]string{"contents": "read"}})
	ghSrv := httptest.NewServer(gh.Handler())
	t.Cleanup(ghSrv.Close)
	gh.SetBaseURL(ghSrv.URL)
	mustDo(t, v, http.MethodPost, "load-int/credentials/gh", map[string]any{"type": "github_app", "app_id": "123456",
		"private_key": fixtures.GitHubAppKeyPEM(), "installation_id": "7890", "repositories": []string{"octo-repo"}, "base_url": ghSrv.URL})

	// proc is the plugin binary that answers the target (none for KV, built into Vault):
	// its CPU time per request is measured beside Vault's.
	type target struct{ name, path, want, proc string }
	targets := []target{
		{"constant plugin", "load-const/access/svc", "pw-0123456789", constPluginName},
		{constTokenTarget, "load-const/access/oauth", "access_token", constPluginName},
		{"KV v2 read", "secret/data/bench", "pw-0123456789", ""},
		{"access/ static (basic)", "load-int/access/svc", "pw-0123456789", pluginName},
		{"access/ cached OAuth token", "load-int/access/oauth", "access_token", pluginName},
		{gitHubAppTarget, "load-int/access/gh", `"token"`, pluginName},
		{"credentials/<name> read", "load-int/credentials/svc", `"type":"basic"`, pluginName},
	}
	// The JWT-bearer types' cached reads (jwtbearer_test.go's servers).
	for _, j := range jwtBearerLoadTargets(t, v) {
		targets = append(targets, target{j.name, j.path, j.want, pluginName})
	}
	// BENCH_BASELINE names an older build of this plugin in the plugin directory: its
	// access/ reads join the rounds, so a change in the ratio can be told from noise.
	if base := os.Getenv("BENCH_BASELINE"); base != "" {
		sum, err := fileSHA256(filepath.Join(pluginDir(), base))
		if err != nil {
			t.Fatalf("BENCH_BASELINE=%s: %v", base, err)
		}
		if err := v.client.Sys().RegisterPlugin(&api.RegisterPluginInput{Name: base, Type: api.PluginTypeSecrets, Command: base, SHA256: sum}); err != nil {
			t.Fatal(err)
		}
		if err := v.client.Sys().Mount("load-base", &api.MountInput{Type: base}); err != nil {
			t.Fatal(err)
		}
		mustDo(t, v, http.MethodPost, "load-base/credentials/svc", map[string]any{"type": "basic", "username": "svc-user", "password": "pw-0123456789"})
		mustDo(t, v, http.MethodPost, "load-base/credentials/oauth", map[string]any{"type": "oauth2_client_credentials",
			"token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret})
		targets = append(targets,
			target{"baseline " + base + ": access/ static (basic)", "load-base/access/svc", "pw-0123456789", base},
			target{"baseline " + base + ": access/ cached OAuth token", "load-base/access/oauth", "access_token", base})
		defer func() { _ = v.client.Sys().Unmount("load-base") }()
	}
	clients := []int{4, 16, 64}
	rep.load = map[string]map[int]*loadgen.Result{}
	rounds := map[string]map[int][]*loadgen.Result{}
	for _, tg := range targets {
		rep.loadTargets = append(rep.loadTargets, tg.name)
		rounds[tg.name] = map[int][]*loadgen.Result{}
		// Warm: the OAuth token is minted here, and every connection path is hot.
		if r := loadgen.Run(context.Background(), loadgen.Config{Workers: 4, Count: 200}, loadgen.Get(v.addr+"/v1/"+tg.path, v.token, tg.want)); r.Errors > 0 {
			t.Fatalf("%s: %d errors warming up: %s", tg.name, r.Errors, r.FirstErr)
		}
	}
	rep.loadClients = clients
	// Every plugin process is started by the warm-up reads above.
	procs := map[string]int{}
	for _, tg := range targets {
		if tg.proc == "" || procs[tg.proc] != 0 {
			continue
		}
		pid, err := childPID(v, tg.proc)
		if err != nil {
			t.Fatal(err)
		}
		procs[tg.proc] = pid
	}
	rep.loadCPU = map[string]map[int]*cpuPerRequest{}
	cpuOf := func(tg target) (vault, plugin int64) {
		var err1, err2 error
		vault, err1 = processCPU(v.cmd.Process.Pid)
		if tg.proc != "" {
			plugin, err2 = processCPU(procs[tg.proc])
		}
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("reading CPU times for %s: %v", tg.name, err)
		}
		return vault, plugin
	}
	mints := p.Requests()
	for round := range s.rounds {
		for _, c := range clients {
			// Rotate the order every round so no target always runs first or last.
			for i := range targets {
				tg := targets[(i+round)%len(targets)]
				client := loadgen.NewClient(c)
				vault0, plugin0 := cpuOf(tg)
				r := loadgen.Run(context.Background(), loadgen.Config{Workers: c, Duration: s.duration, Client: client},
					loadgen.Get(v.addr+"/v1/"+tg.path, v.token, tg.want))
				vault1, plugin1 := cpuOf(tg)
				client.CloseIdleConnections()
				if r.Errors > 0 {
					t.Fatalf("%s at %d clients: %d of %d requests failed: %s", tg.name, c, r.Errors, r.N(), r.FirstErr)
				}
				rounds[tg.name][c] = append(rounds[tg.name][c], r)
				if rep.loadCPU[tg.name] == nil {
					rep.loadCPU[tg.name] = map[int]*cpuPerRequest{}
				}
				if rep.loadCPU[tg.name][c] == nil {
					rep.loadCPU[tg.name][c] = &cpuPerRequest{plugin: tg.proc != ""}
				}
				rep.loadCPU[tg.name][c].add(vault1-vault0, plugin1-plugin0, r.N())
				t.Logf("load round %d: %-28s %2d clients %8.0f req/s p50 %s p99 %s", round+1, tg.name, c, r.Rate(), ms(r.Quantile(.5)), ms(r.Quantile(.99)))
			}
		}
	}
	if extra := p.Requests() - mints; extra != 0 {
		rep.note("the cached OAuth token target made %d provider requests during the load rounds (want 0)", extra)
	}
	if n := gh.TokenRequests(); n != 1 {
		rep.note("the cached GitHub App token target made %d token requests to GitHub (want 1: the warm-up's mint)", n)
	}
	rep.loadRounds = rounds
	for name, byC := range rounds {
		rep.load[name] = map[int]*loadgen.Result{}
		for c, rs := range byC {
			rep.load[name][c] = loadgen.Merge(rs...)
		}
	}
	_ = v.client.Sys().Unmount("load-const")
	_ = v.client.Sys().Unmount("load-int")
}

// constTokenTarget is the constant plugin answering an OAuth token's shape: the ceiling
// for the cached OAuth read's answer.
const constTokenTarget = "constant plugin, OAuth-shaped answer"

// cpuPerRequest sums, over a target's load rounds at one concurrency, the CPU time the
// Vault server and the plugin process answering it used, and the requests answered.
// Closed-loop throughput on a shared machine moves with whatever else runs; the CPU
// each request costs moves far less, so it tells a slower path from a noisy round.
type cpuPerRequest struct {
	plugin                  bool // the target is answered by a plugin process
	vaultTicks, pluginTicks int64
	requests                int
}

func (c *cpuPerRequest) add(vault, plugin int64, requests int) {
	c.vaultTicks += vault
	c.pluginTicks += plugin
	c.requests += requests
}

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// perRequest is the CPU time of ticks spread over the requests.
func (c *cpuPerRequest) perRequest(ticks int64) time.Duration {
	if c.requests == 0 {
		return 0
	}
	return time.Duration(ticks) * clockTick / time.Duration(c.requests)
}

// ---- b. rollover ------------------------------------------------------------

type rolloverWindow struct {
	at                  time.Duration // first provider request of the rollover, from the run's start
	requests            int           // provider requests in it
	n                   int
	p99, max, steadyMax time.Duration
	slow                int // reads in the window as slow as a provider request
}

type rolloverResult struct {
	workers              int
	lifetime, buffer     time.Duration
	latency              time.Duration
	duration             time.Duration
	total                *loadgen.Result
	steadyP99, steadyMax time.Duration
	windows              []rolloverWindow
	requests             int
	series               []loadgen.Sample // for the plot: the slowest read of each 100 ms
}

const rolloverHalfWindow = time.Second // "within 2 s of a rollover": ±1 s around it

func benchRollover(t *testing.T, s benchSettings, rep *benchReport) {
	v := shared
	mountPlugin(t, v, "roll")
	defer func() { _ = v.client.Sys().Unmount("roll") }() // cleanup: the server goes away with the test
	buffer := (s.lifetime / 6).Truncate(time.Second)
	if buffer < time.Second {
		buffer = time.Second
	}
	mustDo(t, v, http.MethodPost, "roll/config", map[string]any{"expiry_buffer": fmt.Sprintf("%ds", int(buffer.Seconds()))})
	switch {
	case !setRefreshAhead(t, v, "roll", s.refreshAhead):
		rep.refreshAhead = "not in this engine"
	case s.refreshAhead:
		rep.refreshAhead = "on"
	default:
		rep.refreshAhead = "off"
	}
	p := newLatencyProvider(t, s.lifetime, s.providerLatency)
	mustDo(t, v, http.MethodPost, "roll/credentials/cc", map[string]any{"type": "oauth2_client_credentials",
		"token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret})
	mustDo(t, v, http.MethodGet, "roll/access/cc", nil) // the first mint, outside the measurement
	period := s.lifetime - buffer
	dur := time.Duration(float64(period)*(float64(s.rollovers)+0.6)) + 2*time.Second
	const workers = 8
	t.Logf("rollover: %d clients for %s, tokens of %s, expiry_buffer %s, provider latency %s, refresh_ahead %s",
		workers, dur.Round(time.Second), s.lifetime, buffer, s.providerLatency, rep.refreshAhead)
	res := loadgen.Run(context.Background(), loadgen.Config{Workers: workers, Duration: dur},
		loadgen.Get(v.addr+"/v1/roll/access/cc", v.token, "access_token"))
	if res.Errors > 0 {
		t.Fatalf("rollover: %d of %d reads failed: %s", res.Errors, res.N(), res.FirstErr)
	}
	arrivals := p.arrivalsSince(res.Began) // relative to the run's start, as the samples are
	rr := &rolloverResult{workers: workers, lifetime: s.lifetime, buffer: buffer, latency: s.providerLatency,
		duration: res.Elapsed, total: res, requests: len(arrivals)}
	// A rollover is a cluster of provider requests (within 2 s of each other).
	for _, a := range arrivals {
		if n := len(rr.windows); n > 0 && a-rr.windows[n-1].at < 2*time.Second {
			rr.windows[n-1].requests++
			continue
		}
		rr.windows = append(rr.windows, rolloverWindow{at: a, requests: 1})
	}
	in := func(sm loadgen.Sample, c time.Duration) bool {
		return sm.Start+sm.Latency >= c-rolloverHalfWindow && sm.Start <= c+rolloverHalfWindow
	}
	slowAt := s.providerLatency * 8 / 10
	var steady []time.Duration
	for _, sm := range res.Samples {
		near := false
		for i := range rr.windows {
			if in(sm, rr.windows[i].at) {
				near = true
			}
		}
		if !near {
			steady = append(steady, sm.Latency)
			if sm.Latency > rr.steadyMax {
				rr.steadyMax = sm.Latency
			}
		}
	}
	sort.Slice(steady, func(i, j int) bool { return steady[i] < steady[j] })
	rr.steadyP99 = loadgen.Quantile(steady, .99)
	for i := range rr.windows {
		w := &rr.windows[i]
		var lat []time.Duration
		for _, sm := range res.Samples {
			if in(sm, w.at) {
				lat = append(lat, sm.Latency)
				if sm.Latency >= slowAt {
					w.slow++
				}
			}
		}
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		w.n, w.p99 = len(lat), loadgen.Quantile(lat, .99)
		if len(lat) > 0 {
			w.max = lat[len(lat)-1]
		}
		// A steady window of the same length: midway to the next rollover (or back to
		// the previous one for the last).
		mid := w.at + period/2
		if i+1 < len(rr.windows) {
			mid = (w.at + rr.windows[i+1].at) / 2
		} else if i > 0 {
			mid = (w.at + rr.windows[i-1].at) / 2
		}
		for _, sm := range res.Samples {
			if in(sm, mid) && sm.Latency > w.steadyMax {
				w.steadyMax = sm.Latency
			}
		}
	}
	// The plot's series: the slowest read of every 100 ms.
	buckets := map[int]time.Duration{}
	for _, sm := range res.Samples {
		b := int(sm.Start / (100 * time.Millisecond))
		if sm.Latency > buckets[b] {
			buckets[b] = sm.Latency
		}
	}
	for b, l := range buckets {
		rr.series = append(rr.series, loadgen.Sample{Start: time.Duration(b) * 100 * time.Millisecond, Latency: l})
	}
	sort.Slice(rr.series, func(i, j int) bool { return rr.series[i].Start < rr.series[j].Start })
	rep.rollover = rr
}

// ---- c. herd ----------------------------------------------------------------

type herdResult struct {
	readers, requests, errors int
	max, p50                  time.Duration
	refreshAhead              string
}

func benchHerd(t *testing.T, s benchSettings, rep *benchReport) {
	v := shared
	mountPlugin(t, v, "herd")
	defer func() { _ = v.client.Sys().Unmount("herd") }() // cleanup: the server goes away with the test
	hr := &herdResult{readers: 1000, refreshAhead: "not in this engine"}
	if setRefreshAhead(t, v, "herd", false) {
		hr.refreshAhead = "off"
	}
	const ttl = 2 * time.Second
	p := newLatencyProvider(t, ttl, s.providerLatency)
	mustDo(t, v, http.MethodPost, "herd/credentials/cc", map[string]any{"type": "oauth2_client_credentials",
		"token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret})
	mustDo(t, v, http.MethodGet, "herd/access/cc", nil)
	p.SetAccessTTL(2 * time.Hour) // the herd's token is good for the rest of the run
	// Wall-clock expiry of the provider's 2 s token: the readers below meet an expired one.
	time.Sleep(ttl + 500*time.Millisecond)
	before := p.Requests()
	client := loadgen.NewClient(hr.readers)
	defer client.CloseIdleConnections()
	get := loadgen.Get(v.addr+"/v1/herd/access/cc", v.token, "access_token")
	var (
		wg     sync.WaitGroup
		errs   atomic.Int64
		mu     sync.Mutex
		lat    []time.Duration
		starts = make(chan struct{})
	)
	for range hr.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-starts
			t0 := time.Now()
			err := get(context.Background(), client)
			d := time.Since(t0)
			if err != nil {
				errs.Add(1)
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	close(starts)
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	hr.requests, hr.errors = int(p.Requests()-before), int(errs.Load())
	hr.max, hr.p50 = lat[len(lat)-1], loadgen.Quantile(lat, .5)
	rep.herd = hr
}

// ---- d. scale ---------------------------------------------------------------

// scaleResult is the scale section at one size and storage. Its exported fields are
// what a kept result holds (benchkept_test.go); durations are kept as nanoseconds.
type scaleResult struct {
	N                 int           `json:"n"`
	Storage           string        `json:"storage"`     // "dev" or "raft" (BENCH_SCALE_STORAGE)
	Create            string        `json:"create"`      // "batch" or "single" (BENCH_SCALE_CREATE)
	CreateTime        time.Duration `json:"create_time"` // creating the n credentials
	Warm              time.Duration `json:"warm"`        // reading every OAuth credential once (caching its token)
	CreateErrors      int           `json:"create_errors"`
	RSSCreated        float64       `json:"rss_created"` // MB; 0 = not measured
	RSSListed         float64       `json:"rss_listed"`
	RSSSwept          float64       `json:"rss_swept"`
	RSSReloaded       float64       `json:"rss_reloaded"` // MB, once the reloaded mount lists completely
	ListFirst         time.Duration `json:"list_first"`
	ListLast          time.Duration `json:"list_last"`
	ListTag           time.Duration `json:"list_tag"`
	ListBusy          time.Duration `json:"list_busy"` // first page while the warm-up's background work runs
	Settle            time.Duration `json:"settle"`    // how long that background work took to end
	ListType          time.Duration `json:"list_type"`
	FullList          time.Duration `json:"full_list"`
	Alerts            time.Duration `json:"alerts"`
	FullListNames     int           `json:"full_list_names"`
	ReloadCall        time.Duration `json:"reload_call"`
	ReloadErr         string        `json:"reload_err,omitempty"`
	ReloadAccess      time.Duration `json:"reload_access"`
	ReloadList        time.Duration `json:"reload_list"`
	IndexComplete     time.Duration `json:"index_complete"` // reload → alerts no longer says the index is being built
	AlertsAfterReload time.Duration `json:"alerts_after_reload"`
	ListAfterReload   time.Duration `json:"list_after_reload"`
	Lookup            time.Duration `json:"lookup"` // a device account by hostname + ip + username
	LookupAfterReload time.Duration `json:"lookup_after_reload"`
	TokenMints        int64         `json:"token_mints"`
	// On Raft (BENCH_SCALE_STORAGE=raft) the node is then restarted (benchScaleRestart).
	RestartActive time.Duration `json:"restart_active"` // start → node active
	RestartAccess time.Duration `json:"restart_access"` // active → first served access/
	RestartIndex  time.Duration `json:"restart_index"`  // active → index complete
	RSSRestarted  float64       `json:"rss_restarted"`  // MB, once the index is complete
	// Then grown to three nodes and its leader killed (benchScaleLeaderChange).
	Failover       failover      `json:"failover"`
	FailoverAccess time.Duration `json:"failover_access"` // new leader active → first served access/
	FailoverIndex  time.Duration `json:"failover_index"`  // new leader active → index complete
	RSSFailover    float64       `json:"rss_failover"`    // MB, the new leader's plugin once the index is complete

	from *keptRun // the earlier run that measured it (benchkept_test.go); nil for this run's
}

// awaitIndexComplete polls the scale mount's alerts until they no longer warn that
// the index is being built, and returns how long after from that was; after is what
// from was (for the failure at deadline).
func awaitIndexComplete(t *testing.T, v *vaultServer, from, deadline time.Time, after string) time.Duration {
	t.Helper()
	for {
		// alerts warns while the index scan runs; the first answer without the warning
		// is the index complete.
		out, _, err := vaultDo(v, http.MethodGet, "scale/alerts", nil)
		if w, _ := out["warnings"].([]any); err == nil && !strings.Contains(fmt.Sprint(w), "still being built") {
			return time.Since(from)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the index was not complete within 10 minutes", after)
		}
		time.Sleep(100 * time.Millisecond) // poll interval of the outside observer
	}
}

// awaitServed polls v with a read of path until it is served, and returns how long
// after from that was; after says what from was (for the failure at deadline).
func awaitServed(t *testing.T, v *vaultServer, path string, from, deadline time.Time, after string) time.Duration {
	t.Helper()
	for {
		_, _, err := vaultDo(v, http.MethodGet, path, nil)
		if err == nil {
			return time.Since(from)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not served by %s: %v", after, path, deadline.Format(time.TimeOnly), err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval of the outside observer
	}
}

// benchScaleRestart stops the one Raft node cleanly (SIGINT: the mount's Clean runs,
// as at a reload) and starts it again, then times from the moment it reports active
// to the first served access/ (probe) and to the index complete (alerts without its
// warning), as the startup section does at smaller sizes.
func benchScaleRestart(t *testing.T, v *vaultServer, sr *scaleResult, probe string) {
	t.Helper()
	v.halt()
	start := time.Now()
	if err := v.launch(); err != nil { // returns once the node is unsealed and active
		t.Fatalf("scale %d: restarting Vault: %v", sr.N, err)
	}
	active := time.Now()
	sr.RestartActive = active.Sub(start)
	deadline := active.Add(10 * time.Minute)
	sr.RestartAccess = awaitServed(t, v, probe, active, deadline, fmt.Sprintf("scale %d: the restart", sr.N))
	sr.RestartIndex = awaitIndexComplete(t, v, active, deadline, fmt.Sprintf("scale %d: the restart", sr.N))
	sr.RSSRestarted, _ = pluginRSS(v)
	t.Logf("scale %d: restart → active %s, → access %s, → index complete %s, rss %.0f MB", sr.N,
		sr.RestartActive.Round(time.Millisecond), sr.RestartAccess.Round(time.Millisecond), sr.RestartIndex.Round(time.Millisecond), sr.RSSRestarted)
}

// benchScaleLeaderChange grows the restarted node to a three-node cluster (the two
// new nodes receive the mount as a Raft snapshot), kills the leader with SIGKILL and
// times from the moment a survivor reports active to the first served access/ (probe)
// and to the index complete, as the startup section does at smaller sizes.
func benchScaleLeaderChange(t *testing.T, v *vaultServer, sr *scaleResult, probe string) {
	t.Helper()
	sr.Failover = killLeader(t, v, fmt.Sprintf("scale-%d", sr.N))
	defer sr.Failover.Stop()
	leader, active := sr.Failover.Leader, sr.Failover.Active
	deadline := active.Add(10 * time.Minute)
	sr.FailoverAccess = awaitServed(t, leader, probe, active, deadline, fmt.Sprintf("scale %d: the leader change", sr.N))
	sr.FailoverIndex = awaitIndexComplete(t, leader, active, deadline, fmt.Sprintf("scale %d: the leader change", sr.N))
	sr.RSSFailover, _ = pluginRSS(leader)
	t.Logf("scale %d: two nodes joined in %s; leader killed → active %s, → access %s, → index complete %s, rss %.0f MB", sr.N,
		sr.Failover.Join.Round(time.Millisecond), sr.Failover.Elected.Round(time.Millisecond), sr.FailoverAccess.Round(time.Millisecond), sr.FailoverIndex.Round(time.Millisecond), sr.RSSFailover)
}

// scaleCertPEMs are a few distinct RSA-2048 certificate/key pairs (~3 KB of PEM each),
// reused across the certificate credentials so creation is fast.
func scaleCertPEMs(t *testing.T, n int) [][2]string {
	t.Helper()
	out := make([][2]string, n)
	for i := range out {
		out[i][0], out[i][1] = fixtures.RSACertificate(fmt.Sprintf("bench-%d.example.com", i), time.Now().AddDate(1, 0, 0))
	}
	return out
}

// createBatches creates credentials 0..n-1 of the scale mix on mount through
// credentials-batch, 1,000 items a request, two requests at a time, and fails the test
// unless every item was created.
func createBatches(t *testing.T, v *vaultServer, mount string, n int, tokenURL string, certs [][2]string, sshKey string) {
	t.Helper()
	const per = 1000
	var notCreated atomic.Int64
	failed, first := parallel((n+per-1)/per, 2, func(k int) error {
		items := make([]any, 0, per)
		for i := k * per; i < min(n, (k+1)*per); i++ {
			it := scaleMix(i, tokenURL, certs, sshKey)
			it["name"] = scaleName(i)
			items = append(items, it)
		}
		out, _, err := vaultDo(v, http.MethodPost, mount+"/credentials-batch", map[string]any{"items": items})
		if err != nil {
			notCreated.Add(int64(len(items)))
			return err
		}
		data, _ := out["data"].(map[string]any)
		if c, _ := data["created_count"].(float64); int(c) != len(items) {
			notCreated.Add(int64(len(items) - int(c)))
			return fmt.Errorf("batch %d: created %v of %d: %.300v", k, data["created_count"], len(items), data["failed"])
		}
		return nil
	})
	if failed > 0 {
		t.Fatalf("%s %d: %d items not created by credentials-batch (e.g. %s)", mount, n, notCreated.Load(), first)
	}
}

func scaleName(i int) string { return fmt.Sprintf("cred-%06d", i) }

// scaleMix is the fixed mix of BENCHMARKS.md, by i mod 10: 0 bearer, 1 and 3 device
// accounts (issue 28: they took half of what was 0–3 bearer/api_key), 2 api_key, 4–5
// basic, 6–7 OAuth client credentials, 8 certificate, 9 SFTP (password or key).
func scaleMix(i int, tokenURL string, certs [][2]string, sshKey string) map[string]any {
	var m map[string]any
	switch i % 10 {
	case 0:
		m = map[string]any{"type": "bearer", "token": fmt.Sprintf("tok-%d", i), "url": "https://api.example.com/v1"}
	case 1, 3:
		m = map[string]any{"type": "device_account", "hostname": scaleHost(i), "ip": scaleIP(i), "username": scaleUser(i), "password": fmt.Sprintf("pw-%d", i)}
	case 2:
		m = map[string]any{"type": "api_key", "key": fmt.Sprintf("key-%d", i), "header_name": "X-Api-Token", "url": "https://api.example.com"}
	case 4, 5:
		m = map[string]any{"type": "basic", "username": "svc-user", "password": fmt.Sprintf("pw-%d", i)}
	case 6, 7:
		m = map[string]any{"type": "oauth2_client_credentials", "token_url": tokenURL,
			"client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret}
	case 8:
		c := certs[(i/10)%len(certs)]
		m = map[string]any{"type": "certificate", "certificate": c[0], "private_key": c[1]}
	default:
		m = map[string]any{"type": "sftp_password", "host": "sftp://files.example.com:22/", "host_key_fingerprint": fixtures.HostKeyFingerprint(),
			"username": "transfer", "password": fmt.Sprintf("pw-%d", i)}
		if (i/10)%2 == 1 {
			m = map[string]any{"type": "sftp_ssh_key", "host": "sftp://files.example.com:2222/", "host_key_fingerprint": fixtures.HostKeyFingerprint(),
				"username": "transfer", "private_key": sshKey}
		}
	}
	m["tags"] = []string{fmt.Sprintf("shard-%d", i%20)}
	return m
}

// scaleHost, scaleIP and scaleUser are device account i's triple: one host per ten
// credentials (two accounts on each), distinct for every i up to 2^24.
func scaleHost(i int) string { return fmt.Sprintf("host-%d.corp.example", i/10) }
func scaleIP(i int) string   { return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255) }
func scaleUser(i int) string { return fmt.Sprintf("svc-%d", i) }

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the errors.
func parallel(n, workers int, f func(i int) error) (int, string) {
	var next, failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	s, _ := first.Load().(string)
	return int(failed.Load()), s
}

// pluginProc reads /proc/<pid>/<file> of the integrations plugin process under v.
func pluginProc(v *vaultServer, file string) ([]byte, error) {
	pid, err := pluginPID(v)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
}

// pluginRSS is the resident set of the integrations plugin process under v, in MB.
func pluginRSS(v *vaultServer) (float64, error) {
	status, err := pluginProc(v, "status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS in the plugin's /proc status")
}

// pluginCPU returns the CPU time (user + system, in clock ticks) the plugin process
// of v has used.
func pluginCPU(v *vaultServer) (int64, error) {
	pid, err := pluginPID(v)
	if err != nil {
		return 0, err
	}
	return processCPU(pid)
}

// processCPU returns the CPU time (user + system of all its threads, in clock ticks of
// 10 ms) process pid has used.
func processCPU(pid int) (int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// After "pid (comm)": state is field 3 of proc(5), utime 14 and stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, errors.Join(err1, err2)
}

// waitIdle waits until v's plugin process and v's server each use under 5% of a core
// over a second (the background work the plugin started has ended, including the
// storage writes Vault does for it, as seen from outside), at most max, and returns
// how long that took.
func waitIdle(v *vaultServer, limit time.Duration) (time.Duration, error) {
	const window = time.Second
	const idleTicks = 5 // of the 100 a second on Linux
	start := time.Now()
	cpus := func() (plugin, vault int64, err error) {
		plugin, err1 := pluginCPU(v)
		vault, err2 := processCPU(v.cmd.Process.Pid)
		return plugin, vault, errors.Join(err1, err2)
	}
	lastPlugin, lastVault, err := cpus()
	if err != nil {
		return 0, err
	}
	for time.Since(start) < limit {
		time.Sleep(window) // the observation window itself, not a stand-in for a signal
		plugin, vault, err := cpus()
		if err != nil {
			return time.Since(start), err
		}
		if plugin-lastPlugin < idleTicks && vault-lastVault < idleTicks {
			return time.Since(start), nil
		}
		lastPlugin, lastVault = plugin, vault
	}
	return time.Since(start), fmt.Errorf("still busy after %s", limit)
}

// pluginPID finds the child of v's server process running the plugin binary.
func pluginPID(v *vaultServer) (int, error) { return childPID(v, pluginName) }

// childPID finds the child of v's server process running the plugin binary named
// binary.
func childPID(v *vaultServer, binary string) (int, error) {
	parent := v.cmd.Process.Pid
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if filepath.Base(string(argv0)) == binary {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process under Vault (pid %d)", binary, parent)
}

// timeRead is the median of k reads of path (each checked).
func timeRead(t *testing.T, v *vaultServer, path string, k int) time.Duration {
	t.Helper()
	r := loadgen.Run(context.Background(), loadgen.Config{Workers: 1, Count: k, Client: benchHTTP}, loadgen.Get(v.addr+"/v1/"+path, v.token, ""))
	if r.Errors > 0 {
		t.Fatalf("reading %s: %s", path, r.FirstErr)
	}
	return r.Quantile(.5)
}

// listAll pages through mount's credentials 1,000 at a time and returns the names.
func listAll(v *vaultServer, mount string) ([]string, error) {
	var names []string
	after := ""
	for {
		q := url.Values{"list": {"true"}, "limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		out, code, err := vaultDo(v, http.MethodGet, mount+"/credentials?"+q.Encode(), nil)
		if code == http.StatusNotFound && after != "" {
			return names, nil // Vault answers an empty list with 404: nothing after the last page
		}
		if err != nil {
			return names, err
		}
		data, _ := out["data"].(map[string]any)
		keys, _ := data["keys"].([]any)
		for _, k := range keys {
			names = append(names, fmt.Sprint(k))
		}
		if len(keys) < 1000 {
			return names, nil
		}
		after = names[len(names)-1]
	}
}

func benchScale(t *testing.T, s benchSettings, rep *benchReport, n int) *scaleResult {
	sr := &scaleResult{N: n, Storage: s.scaleStorage, Create: s.scaleCreate}
	// A run takes minutes to hours: the server runs on its own copy of the binary, so
	// a rebuild of PLUGIN_DIR meanwhile cannot fail the reload below (see ownPluginCopy).
	opts := serverOptions{ownPluginCopy: true}
	if s.scaleStorage == "raft" {
		// As production runs: one node of integrated storage on disk.
		opts.raftNode = fmt.Sprintf("scale-%d", n)
	}
	var v *vaultServer
	profDir := os.Getenv("BENCH_HEAPPROF")
	if profDir != "" {
		// A plugin built with -tags heapprof (make build-heapprof) writes a heap
		// profile on SIGUSR1 (and, after returning freed heap, on SIGUSR2).
		profDir = filepath.Join(profDir, fmt.Sprintf("scale-%d", n))
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			t.Fatal(err)
		}
		opts.pluginEnv = []string{"INTEGRATIONS_HEAPPROF_DIR=" + profDir}
	}
	profile := func(label string) {
		if profDir == "" {
			return
		}
		pid, err := pluginPID(v)
		if err != nil {
			t.Logf("heap profile %s: %v", label, err)
			return
		}
		rss, _ := pluginRSS(v)
		for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2} {
			_ = syscall.Kill(pid, sig)
			time.Sleep(3 * time.Second) // a profile of a large heap takes a moment; nothing waits on it
		}
		after, _ := pluginRSS(v)
		t.Logf("heap profile %s: pid %d, rss %.0f MB, %.0f MB after FreeOSMemory (%s)", label, pid, rss, after, profDir)
	}
	v, err := startVault(opts) // v is the one declared above, which profile reads
	if err != nil {
		t.Fatalf("starting Vault: %v", err)
	}
	defer v.stop()
	if err := v.registerPlugin(); err != nil {
		t.Fatal(err)
	}
	mountPlugin(t, v, "scale")
	// The warm-up mints a token for every OAuth credential (20% of the mix) from one
	// local test provider: under the default per-host bound (token_host_rate 20/s, the
	// pace a real provider accepts) a million-credential mount would spend hours there,
	// measuring the bound, not the mount. This section measures the mount, so it lifts
	// the bound to its maxima; the providers section measures the bound.
	if _, _, err := vaultDo(v, http.MethodPost, "scale/config", map[string]any{"token_host_rate": 10000, "token_host_concurrency": 1000}); err != nil {
		t.Fatalf("scale config: %v", err)
	}
	p := newLatencyProvider(t, 2*time.Hour, 0)
	certs := scaleCertPEMs(t, 4)
	sshKey := fixtures.SSHKey("")
	const workers = 32
	start := time.Now()
	if s.scaleCreate == "single" {
		sr.CreateErrors, _ = parallel(n, workers, func(i int) error {
			_, _, err := vaultDo(v, http.MethodPost, "scale/credentials/"+scaleName(i), scaleMix(i, p.TokenURL(), certs, sshKey))
			return err
		})
	} else {
		createBatches(t, v, "scale", n, p.TokenURL(), certs, sshKey)
	}
	sr.CreateTime = time.Since(start)
	if sr.CreateErrors > 0 {
		_, first := parallel(1, 1, func(int) error {
			_, _, err := vaultDo(v, http.MethodPost, "scale/credentials/probe", scaleMix(0, p.TokenURL(), certs, sshKey))
			return err
		})
		t.Fatalf("%d of %d creations failed (e.g. %s)", sr.CreateErrors, n, first)
	}
	start = time.Now()
	if failed, first := parallel(n, workers, func(i int) error {
		if i%10 != 6 && i%10 != 7 {
			return nil
		}
		_, _, err := vaultDo(v, http.MethodGet, "scale/access/"+scaleName(i), nil)
		return err
	}); failed > 0 {
		t.Fatalf("%d OAuth warm-up reads failed: %s", failed, first)
	}
	sr.Warm, sr.TokenMints = time.Since(start), p.Requests()
	t.Logf("scale %d: created in %s, %d OAuth tokens cached in %s", n, sr.CreateTime.Round(time.Millisecond), sr.TokenMints, sr.Warm.Round(time.Millisecond))
	if sr.RSSCreated, err = pluginRSS(v); err != nil {
		rep.note("RSS at %d: %v", n, err)
	}
	profile("after creation")
	const k = 15
	// The warm-up's reads leave background work behind (the usage flush renews 20% of
	// the mount's inactivity windows): a first page read now shares the machine with
	// it. The other figures are read once the plugin and Vault are idle again.
	sr.ListBusy = timeRead(t, v, "scale/credentials?list=true&limit=100", k)
	if sr.Settle, err = waitIdle(v, 5*time.Minute); err != nil {
		rep.note("scale %d: the plugin and Vault did not go idle: %v", n, err)
	}
	sr.ListFirst = timeRead(t, v, "scale/credentials?list=true&limit=100", k)
	sr.ListLast = timeRead(t, v, "scale/credentials?list=true&limit=100&after="+scaleName(n-101), k)
	sr.ListTag = timeRead(t, v, "scale/credentials?list=true&limit=100&tag=shard-7", k)
	sr.ListType = timeRead(t, v, "scale/credentials?list=true&limit=100&type=certificate", k)
	sr.Alerts = timeRead(t, v, "scale/alerts", 5)
	dev := (n-1)/10*10 + 1 // the last device account
	if dev >= n {
		dev -= 10
	}
	lookup := "scale/lookup?" + url.Values{"hostname": {scaleHost(dev)}, "ip": {scaleIP(dev)}, "username": {scaleUser(dev)}}.Encode()
	sr.Lookup = timeRead(t, v, lookup, k)
	start = time.Now()
	names, err := listAll(v, "scale")
	sr.FullList, sr.FullListNames = time.Since(start), len(names)
	if err != nil || len(names) != n {
		t.Fatalf("full list: %d names of %d (%v)", len(names), n, err)
	}
	sr.RSSListed, _ = pluginRSS(v)
	if s.sweepWait > 0 {
		// Vault calls the engine's periodic function about once a minute; the sweep
		// runs in it. Waiting past one tick is the only outside view of it.
		time.Sleep(s.sweepWait)
		sr.RSSSwept, _ = pluginRSS(v)
	}
	// Reload the mount's plugin: a new backend over the same storage.
	probe := "scale/access/" + scaleName(4) // a basic credential
	start = time.Now()
	_, rerr := v.client.Sys().ReloadPlugin(&api.ReloadPluginInput{Mounts: []string{"scale/"}})
	sr.ReloadCall = time.Since(start)
	if rerr != nil {
		sr.ReloadErr = rerr.Error()
	}
	deadline := start.Add(10 * time.Minute)
	for {
		_, _, err := vaultDo(v, http.MethodGet, probe, nil)
		if err == nil {
			sr.ReloadAccess = time.Since(start)
			break
		}
		// A mount whose reload could not start the plugin answers every request with
		// the reload's error until it is reloaded again: waiting cannot help.
		if rerr != nil && strings.Contains(err.Error(), "checksums did not match") {
			t.Fatalf("scale %d: the reload failed (%v) and the mount answers %v: the plugin binary changed since it was registered", n, rerr, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("scale %d: no access/ served within 10 minutes of the reload (the reload call: %v; the last answer: %v)", n, rerr, err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval of the outside observer
	}
	sr.IndexComplete = awaitIndexComplete(t, v, start, deadline, fmt.Sprintf("scale %d: the reload", n))
	for {
		names, err := listAll(v, "scale")
		if err == nil && len(names) == n {
			sr.ReloadList = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scale %d: no complete list within 10 minutes of the reload (%d names, %v)", n, len(names), err)
		}
	}
	sr.RSSReloaded, _ = pluginRSS(v)
	profile("after reload")
	sr.AlertsAfterReload = timeRead(t, v, "scale/alerts", 5)
	sr.ListAfterReload = timeRead(t, v, "scale/credentials?list=true&limit=100", k)
	sr.LookupAfterReload = timeRead(t, v, lookup, k)
	if s.scaleStorage == "raft" {
		benchScaleRestart(t, v, sr, probe)
		benchScaleLeaderChange(t, v, sr, probe)
	}
	t.Logf("scale %d: list while busy %s, idle after %s; list %s/%s alerts %s rss %.0f/%.0f/%.0f MB, reload → access %s, → index complete %s, → full list %s",
		n, ms(sr.ListBusy), sr.Settle.Round(time.Second), ms(sr.ListFirst), ms(sr.ListLast), ms(sr.Alerts), sr.RSSCreated, sr.RSSListed, sr.RSSSwept,
		sr.ReloadAccess.Round(time.Millisecond), sr.IndexComplete.Round(time.Millisecond), sr.ReloadList.Round(time.Millisecond))
	return sr
}

// ---- machine ----------------------------------------------------------------

func machine() (cores, mem, vaultVersion, commit string) {
	out, _ := exec.Command("nproc").Output()
	cores = strings.TrimSpace(string(out))
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				mem = fmt.Sprintf("%.1f GiB", kb/1024/1024)
			}
		}
	}
	out, _ = exec.Command(os.Getenv("VAULT_BIN"), "version").Output()
	vaultVersion = strings.TrimSpace(string(out))
	out, _ = exec.Command("git", "describe", "--always", "--dirty").Output()
	commit = strings.TrimSpace(string(out))
	return
}

var _ = syscall.Getpid
var _ = math.Inf
var _ = runtime.NumCPU
