//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// A real Prometheus (Debian's package; scripts/lib.sh prometheus_bin installs it)
// scrapes <mount>/metrics on loopback with a Vault token whose policy allows that path
// only, and the counters it stores move with the access reads made. promtool checks
// the exposition.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	t.Parallel()
	promBin := toolPath(t, "E2E_PROMETHEUS", "prometheus", "scripts/test.sh installs Debian's prometheus package as root (prometheus_bin in scripts/lib.sh)")
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/credentials/billing-db", "type=basic", "username=svc", "password=s3cret-m")

	// The scraper's token may read metrics and nothing else.
	policy := "metrics-" + mount
	if err := shared.client.Sys().PutPolicy(policy, fmt.Sprintf("path %q { capabilities = [\"read\"] }", mount+"/metrics")); err != nil {
		t.Fatal(err)
	}
	secret, err := shared.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, TTL: "1h", NoDefaultPolicy: true})
	if err != nil {
		t.Fatal(err)
	}
	scrapeToken := secret.Auth.ClientToken
	if code, _ := metricsBody(shared.addr, mount, "not-a-token"); code != http.StatusForbidden {
		t.Fatalf("metrics without a valid token: %d, want 403", code)
	}
	scoped := clientWithToken(t, shared, scrapeToken)
	if _, err := scoped.Logical().Read(mount + "/access/billing-db"); statusCode(err) != http.StatusForbidden {
		t.Fatalf("the scrape token read access/: %v, want 403", err)
	}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(tokenFile, []byte(scrapeToken), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultHost := strings.TrimPrefix(shared.addr, "http://")
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: integrations
    metrics_path: /v1/%s/metrics
    params:
      format: ['prometheus']
    authorization:
      type: Bearer
      credentials_file: %s
    static_configs:
      - targets: ["%s"]
`, mount, tokenFile, vaultHost)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", port)
	var promLog bytes.Buffer
	cmd := exec.Command(promBin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &promLog, &promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	})

	okReads := `integrations_access_reads_total{kind="static",result="ok"}`
	// The series exists from the start (0), so Prometheus shows it once it scraped.
	waitForQuery(t, promAddr, okReads, 0)
	const reads = 5
	for range reads {
		shared.mustCLI(t, "read", "-field=username", mount+"/access/billing-db")
	}
	waitForQuery(t, promAddr, okReads, reads)
	waitForQuery(t, promAddr, `integrations_credentials{status="active"}`, 1)
	waitForQuery(t, promAddr, `up{job="integrations"}`, 1)

	// promtool lints the exposition as served.
	code, body := metricsBody(shared.addr, mount, scrapeToken)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, body)
	}
	if strings.Contains(body, "billing-db") || strings.Contains(body, "s3cret") {
		t.Fatalf("the exposition names the credential or its secret:\n%s", body)
	}
	promtool := filepath.Join(filepath.Dir(promBin), "promtool")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// metricsBody GETs <mount>/metrics?format=prometheus with token and returns the status
// and body.
func metricsBody(addr, mount, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, addr+"/v1/"+mount+"/metrics?format=prometheus", nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode == http.StatusOK && !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		return 0, "content type " + ct
	}
	return resp.StatusCode, string(b)
}

// clientWithToken is an API client for v acting with token.
func clientWithToken(t *testing.T, v *vaultServer, token string) *api.Client {
	t.Helper()
	c, err := v.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// waitForQuery polls Prometheus's HTTP API until query evaluates to want, bounded
// by a deadline (scrapes run every second; a minute means something is broken).
func waitForQuery(t *testing.T, promAddr, query string, want float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	last := "no answer"
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(query), nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var out struct {
				Status string `json:"status"`
				Data   struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err == nil && len(out.Data.Result) == 1 {
				s, _ := out.Data.Result[0].Value[1].(string)
				if v, perr := strconv.ParseFloat(s, 64); perr == nil && v == want {
					cancel()
					return
				}
				last = s
			} else if err == nil {
				last = fmt.Sprintf("%d series", len(out.Data.Result))
			}
		}
		cancel()
		time.Sleep(250 * time.Millisecond) // the next scrape is at most a second away
	}
	t.Fatalf("Prometheus: %s is %s after a minute, want %v", query, last, want)
}
