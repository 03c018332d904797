//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/youmark/pkcs8"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/loadgen"
)

// The largest scrypt parameters a private_key may ask for (credtype's caps): 128·N·r =
// 128 MiB of memory, 128·N·r·p = 256 MiB of work.
const (
	kdfScryptN, kdfScryptR, kdfScryptP = 1 << 17, 8, 2
	kdfWrites                          = 50
)

// kdfResult is one storm of parallel writes of the largest accepted scrypt key, with a
// wrong password (the hostile case: each write derives in full, then is refused),
// against a fresh Vault dev server, while another mount of the same plugin process is
// read through access/.
type kdfResult struct {
	plugin         string // the plugin binary (this build, or BENCH_BASELINE)
	writes         int
	took           time.Duration
	statuses       map[int]int // HTTP status → writes answered with it
	retryAfterMin  int         // over the 503s: the body's retry_after
	retryAfterMax  int
	retryHeader    int // 503s that carried a Retry-After header matching the body
	stored         int // credentials the storm left stored (want 0: every write was refused)
	rssBefore      float64
	peakRSS        float64 // MB: VmHWM of the plugin process, started fresh for the storm
	reads, readErr int     // access/ reads of the other mount during the storm
	readMax        time.Duration
	readP50        time.Duration
	serverErr      string // the first 5xx other than 503, if any
}

// benchKDF runs the storm against this build (BENCH_KDF_WRITES, default 50 writes)
// and, when BENCH_BASELINE names an older build, against it too with
// BENCH_KDF_BASELINE_WRITES (default 6: the issue's own figure; an unbounded build
// holds 128 MiB per write, so 50 would ask for 6.4 GiB).
func benchKDF(t *testing.T, rep *benchReport) {
	key, cert := kdfKey(t)
	k := kdfStorm(t, pluginName, envInt(t, "BENCH_KDF_WRITES", kdfWrites), key, cert)
	rep.kdf = append(rep.kdf, k)
	// The properties the limits promise; the report states them too.
	switch {
	case k.peakRSS >= 512:
		t.Errorf("kdf: plugin peak RSS %.0f MB, want under 512 MB", k.peakRSS)
	case k.serverErr != "":
		t.Errorf("kdf: a write was answered %s, want 400 or 503", k.serverErr)
	case k.stored != 0:
		t.Errorf("kdf: %d credentials stored by writes with a wrong password", k.stored)
	case k.reads == 0 || k.readErr != 0:
		t.Errorf("kdf: the other mount answered %d of %d access/ reads during the storm", k.reads-k.readErr, k.reads)
	case k.statuses[http.StatusServiceUnavailable] > 0 && k.retryHeader != k.statuses[http.StatusServiceUnavailable]:
		t.Errorf("kdf: %d of %d 503s carried a Retry-After header matching retry_after", k.retryHeader, k.statuses[http.StatusServiceUnavailable])
	}
	if base := os.Getenv("BENCH_BASELINE"); base != "" {
		rep.kdf = append(rep.kdf, kdfStorm(t, base, envInt(t, "BENCH_KDF_BASELINE_WRITES", 6), key, cert))
	}
}

// kdfKey is an EC key encrypted as PKCS#8 with the largest accepted scrypt parameters,
// and its certificate.
func kdfKey(t *testing.T) (keyPEM, certPEM string) {
	t.Helper()
	key := fixtures.NewKey("p256")
	der, err := pkcs8.MarshalPrivateKey(key, []byte("the-right-password"), &pkcs8.Opts{
		Cipher: pkcs8.AES256CBC,
		KDFOpts: pkcs8.ScryptOpts{CostParameter: kdfScryptN, BlockSize: kdfScryptR,
			ParallelizationParameter: kdfScryptP, SaltSize: 16},
	})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}))
	return keyPEM, fixtures.SelfSigned(key, "kdf-bench", time.Now().AddDate(1, 0, 0))
}

// kdfStorm starts a fresh dev server (so the plugin process's peak RSS is this run's),
// mounts binary twice — "kdf" for the storm, "kdf-other" for the reads — and sends
// writes parallel writes of the key with a wrong password to "kdf".
func kdfStorm(t *testing.T, binary string, writes int, keyPEM, certPEM string) *kdfResult {
	r := &kdfResult{plugin: binary, writes: writes, statuses: map[int]int{}, retryAfterMin: -1}
	v, err := startVault(serverOptions{unregistered: true})
	if err != nil {
		t.Fatalf("starting Vault: %v", err)
	}
	defer v.stop()
	sum, err := fileSHA256(filepath.Join(pluginDir(), binary))
	if err != nil {
		t.Fatalf("plugin %s: %v", binary, err)
	}
	if err := v.client.Sys().RegisterPlugin(&api.RegisterPluginInput{Name: binary, Type: api.PluginTypeSecrets, Command: binary, SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"kdf", "kdf-other"} {
		// As the README mounts it: Vault passes the engine's Retry-After on.
		if err := v.client.Sys().Mount(m, &api.MountInput{Type: binary,
			Config: api.MountConfigInput{AllowedResponseHeaders: []string{"Retry-After"}}}); err != nil {
			t.Fatalf("mounting %s: %v", m, err)
		}
	}
	mustDo(t, v, http.MethodPost, "kdf-other/credentials/svc", map[string]any{"type": "basic", "username": "svc", "password": "pw-other-mount"})
	mustDo(t, v, http.MethodGet, "kdf-other/access/svc", nil)
	pid, err := childPID(v, binary)
	if err != nil {
		t.Fatal(err)
	}
	r.rssBefore, _ = procMB(pid, "VmRSS:")

	// The other mount's reads: two readers, each sending its next read when the last
	// answered, for as long as the storm lasts.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	var reads, readErr atomic.Int64
	get := loadgen.Get(v.addr+"/v1/kdf-other/access/svc", v.token, "pw-other-mount")
	readClient := loadgen.NewClient(2)
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				err := get(t.Context(), readClient)
				d := time.Since(t0)
				reads.Add(1)
				if err != nil {
					readErr.Add(1)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}

	client := loadgen.NewClient(writes)
	type answer struct {
		status, retryAfter int
		header             string
		body               string
	}
	answers := make([]answer, writes)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"type": "certificate", "certificate": certPEM,
				"private_key": keyPEM, "private_key_password": "a-wrong-password"})
			req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/kdf/credentials/k-%02d", v.addr, i), bytes.NewReader(body))
			req.Header.Set("X-Vault-Token", v.token)
			resp, err := client.Do(req)
			if err != nil {
				answers[i] = answer{status: -1, body: err.Error()}
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			var out struct {
				RetryAfter int `json:"retry_after"`
			}
			_ = json.Unmarshal(raw, &out)
			answers[i] = answer{status: resp.StatusCode, retryAfter: out.RetryAfter, header: resp.Header.Get("Retry-After"), body: string(raw)}
		}()
	}
	wg.Wait()
	r.took = time.Since(start)
	close(stop)
	readers.Wait()

	for _, a := range answers {
		r.statuses[a.status]++
		switch {
		case a.status == http.StatusServiceUnavailable:
			if r.retryAfterMin < 0 || a.retryAfter < r.retryAfterMin {
				r.retryAfterMin = a.retryAfter
			}
			r.retryAfterMax = max(r.retryAfterMax, a.retryAfter)
			if a.header != "" && a.header == strconv.Itoa(a.retryAfter) {
				r.retryHeader++
			}
		case a.status >= 500 || a.status < 0:
			if r.serverErr == "" {
				r.serverErr = fmt.Sprintf("%d: %.200s", a.status, a.body)
			}
		}
	}
	if names, err := listAll(v, "kdf"); err == nil {
		r.stored = len(names)
	}
	r.peakRSS, err = procMB(pid, "VmHWM:")
	if err != nil {
		t.Fatalf("plugin peak RSS: %v", err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.reads, r.readErr = int(reads.Load()), int(readErr.Load())
	if len(lat) > 0 {
		r.readMax, r.readP50 = lat[len(lat)-1], loadgen.Quantile(lat, .5)
	}
	t.Logf("kdf %s: %d writes in %s: %v (retry_after %d–%d s, %d with the header), %d stored; plugin RSS %.0f MB before, peak %.0f MB; other mount: %d reads, %d failed, p50 %s, slowest %s",
		binary, writes, r.took.Round(time.Millisecond), r.statuses, r.retryAfterMin, r.retryAfterMax, r.retryHeader, r.stored,
		r.rssBefore, r.peakRSS, r.reads, r.readErr, ms(r.readP50), ms(r.readMax))
	return r
}

// procMB reads a "<field> <n> kB" line of /proc/<pid>/status, in MB.
func procMB(pid int, field string) (float64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// renderKDF is the report's section on parallel key derivations, and its reading.
func renderKDF(r *benchReport, read func(format string, args ...any)) string {
	if len(r.kdf) == 0 {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## 7. Parallel key derivations\n\nParallel writes of a `certificate` whose private_key is the largest encrypted key the engine accepts — PKCS#8 with scrypt N=2^17, r=8, p=2 (128·N·r = 128 MiB of memory, 128·N·r·p = 256 MiB of work) — each with a wrong password, so each derives in full and is refused: the hostile case. A fresh Vault dev server per row, so the plugin process's peak RSS (VmHWM) is the storm's; both mounts are of the same plugin process (it is multiplexed) and allow `Retry-After`. Meanwhile two clients read `access/` of a basic credential on the other mount, each sending its next read when the last answered.\n\n")
	w("| plugin | parallel writes | took | answers | retry_after (503s) | stored | plugin RSS before | **peak RSS** | other mount: reads (failed) | p50 | slowest |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range r.kdf {
		var codes []int
		for c := range k.statuses {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d × %d", k.statuses[c], c))
		}
		ra := "—"
		if k.retryAfterMin >= 0 {
			ra = fmt.Sprintf("%d–%d s (%d with the header)", k.retryAfterMin, k.retryAfterMax, k.retryHeader)
		}
		w("| %s | %d | %s | %s | %s | %d | %s | **%s** | %d (%d) | %s | %s |\n", k.plugin, k.writes, k.took.Round(time.Millisecond), strings.Join(parts, ", "), ra, k.stored,
			mb(k.rssBefore), mb(k.peakRSS), k.reads, k.readErr, ms(k.readP50), ms(k.readMax))
	}
	w("\n400 is the wrong password, found after the derivation ran; 503 is a write that got no turn of the engine's key-work limits (2 derivations at once, 256 MiB of KDF memory, for the whole plugin process) within 10 s, or found 32 writes already waiting, answered with `retry_after` and a `Retry-After` header, having changed nothing. Before the limits, each write held its own 128 MiB at once, whatever the others did; the other mount's reads shared the two cores with every derivation.\n\n")
	for _, k := range r.kdf {
		if k.plugin != pluginName {
			read("Before the key-work limits (%s): %d parallel writes took the plugin to a peak RSS of %s (the issue measured 6 writes → 768 MiB allocated; an unbounded build holds 128 MiB per write in flight).", k.plugin, k.writes, mb(k.peakRSS))
			continue
		}
		read("Parallel key derivations: %d parallel writes of the largest accepted scrypt key: plugin peak RSS %s (target < 512 MB: %s); %d answered 5xx other than 503 (target 0: %s); %d stored (target 0: %s); the other mount answered %d of %d access/ reads during the storm, slowest %s (target: all, at least one: %s).",
			k.writes, mb(k.peakRSS), yesNo(k.peakRSS > 0 && k.peakRSS < 512), countServerErrors(k), yesNo(k.serverErr == ""), k.stored, yesNo(k.stored == 0),
			k.reads-k.readErr, k.reads, ms(k.readMax), yesNo(k.readErr == 0 && k.reads > 0))
	}
	return b.String()
}

// countServerErrors is how many writes were answered 5xx other than 503, or failed.
func countServerErrors(k *kdfResult) int {
	n := 0
	for c, count := range k.statuses {
		if (c >= 500 && c != http.StatusServiceUnavailable) || c < 0 {
			n += count
		}
	}
	return n
}
