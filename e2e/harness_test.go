//go:build e2e

// Package e2e runs the plugin inside a real Vault server, driven through the real vault
// CLI, the HTTP API client and Terraform. scripts/test.sh builds the pieces and sets:
//
//	VAULT_BIN       the vault binary (server and CLI)
//	PLUGIN_DIR      the folder holding the freshly built plugin binary
//	PLUGIN_VERSION  the version it reports and is registered with
//	E2E_PREVIOUS_PLUGIN, E2E_PREVIOUS_VERSION  the previous release's plugin binary
//	                and the version it reports (upgrade_test.go)
//	TF_MIRROR       a Terraform filesystem mirror holding the Vault provider
//	E2E_TERRAFORM   the terraform binary (default: terraform on the PATH)
//	E2E_PROMETHEUS  the prometheus binary, promtool beside it (default: on the PATH)
//	E2E_RACE_LOG_DIR  where the race-enabled plugin (make build-race) writes its race
//	                reports: the harness registers the plugin with GORACE pointing
//	                there, and the run fails when any report is there at its end
//
// A test whose outside program is missing (sshd, oidc-provider, Terraform, Prometheus)
// fails under CI=true and skips elsewhere.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

const pluginName = "vault-plugin-secrets-integrations"

// shared is one dev server for the tests that need no server of their own; each test
// mounts the plugin at a path of its own, so they run in parallel without interfering.
var shared *vaultServer

func TestMain(m *testing.M) {
	for _, env := range []string{"VAULT_BIN", "PLUGIN_DIR", "PLUGIN_VERSION"} {
		if os.Getenv(env) == "" {
			fmt.Fprintf(os.Stderr, "e2e: %s is not set; run the end-to-end tests with `make test` or `make e2e`\n", env)
			os.Exit(2)
		}
	}
	if dir := os.Getenv("E2E_RACE_LOG_DIR"); dir != "" {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			fmt.Fprintf(os.Stderr, "e2e: E2E_RACE_LOG_DIR=%s is not a folder (%v)\n", dir, err)
			os.Exit(2)
		}
	}
	var err error
	shared, err = startVault(serverOptions{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: starting the shared Vault server: %v\n", err)
		os.Exit(1)
	}
	if err := shared.registerPlugin(); err != nil {
		shared.stop()
		fmt.Fprintf(os.Stderr, "e2e: registering the plugin: %v\n%s", err, shared.logTail())
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- shared Vault server log (tail) ---\n%s", shared.logTail())
	}
	shared.stop()
	if raceReports() && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// raceGORACE is the GORACE setting the plugin is registered with when E2E_RACE_LOG_DIR
// names a folder: each plugin process writes its reports to race.<pid> there and
// runs on after one (halt_on_error=0), so one run finds every race the tests reach.
func raceGORACE() []string {
	dir := os.Getenv("E2E_RACE_LOG_DIR")
	if dir == "" {
		return nil
	}
	return []string{"GORACE=log_path=" + filepath.Join(dir, "race") + " halt_on_error=0"}
}

// raceReports prints every race report the plugin processes wrote to E2E_RACE_LOG_DIR
// and reports whether there was any. Every server is stopped by then (its plugins with
// it), so every report is written.
func raceReports() bool {
	dir := os.Getenv("E2E_RACE_LOG_DIR")
	if dir == "" {
		return false
	}
	files, err := filepath.Glob(filepath.Join(dir, "race.*"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: listing race reports in %s: %v\n", dir, err)
		return true
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte(err.Error())
		}
		fmt.Fprintf(os.Stderr, "--- race report %s ---\n%s\n", f, b)
	}
	if len(files) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the race-enabled plugin reported %d data race file(s) in %s\n", len(files), dir)
	}
	return len(files) > 0
}

type serverOptions struct {
	// persistent runs a non-dev server on file storage, initialised and unsealed by the
	// harness, so it can be restarted with its data.
	persistent bool
	// unregistered leaves plugin registration to the test (Terraform does it).
	unregistered bool
	// raftNode runs a persistent server on integrated storage with this node ID.
	raftNode string
	// joinTo makes a raft node join that leader's cluster instead of initialising.
	joinTo *vaultServer
	// pluginDir is the server's plugin directory (default PLUGIN_DIR): a folder of
	// the test's own holding more than one build.
	pluginDir string
	// pluginEnv is registered with the plugin ("KEY=value"): the plugin process gets
	// it, the server does not. GORACE is added when E2E_RACE_LOG_DIR is set.
	pluginEnv []string
	// ownPluginCopy runs the server on a copy of the plugin binary taken at start (in
	// its own directory), not on the file in pluginDir (PLUGIN_DIR). Vault registers the
	// binary by checksum and checks it again at every plugin start: a rebuild of the
	// binary during a long run (make build, make build-heapprof) makes the next reload
	// fail with "checksums did not match", and the mount then answers every request
	// with that error until it is reloaded with a matching binary. The long benchmark
	// sections use it.
	ownPluginCopy bool
}

// vaultServer is one real Vault server process listening on loopback.
type vaultServer struct {
	opts      serverOptions
	addr      string
	token     string
	unsealKey string
	dir       string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	client    *api.Client
}

// newVault starts a server of the test's own, stopped when the test ends.
func newVault(t *testing.T, opts serverOptions) *vaultServer {
	t.Helper()
	v, err := startVault(opts)
	if err != nil {
		t.Fatalf("starting Vault: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Vault server log (tail):\n%s", v.logTail())
		}
		v.stop()
	})
	if !opts.unregistered {
		if err := v.registerPlugin(); err != nil {
			t.Fatalf("registering the plugin: %v", err)
		}
	}
	return v
}

func startVault(opts serverOptions) (*vaultServer, error) {
	dir, err := os.MkdirTemp("", "vault-e2e-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if opts.ownPluginCopy {
		src := opts.pluginDir
		if src == "" {
			src = pluginDir()
		}
		own := filepath.Join(dir, "plugins")
		if err := copyExecutable(filepath.Join(src, pluginName), filepath.Join(own, pluginName)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("copying the plugin binary: %w", err)
		}
		opts.pluginDir = own
	}
	v := &vaultServer{
		opts:    opts,
		addr:    fmt.Sprintf("http://127.0.0.1:%d", port),
		dir:     dir,
		logPath: filepath.Join(dir, "vault.log"),
	}
	if opts.raftNode != "" {
		opts.persistent = true
		v.opts = opts
	}
	if !opts.persistent {
		v.token = "root-" + filepath.Base(dir)
	} else {
		storage := fmt.Sprintf("storage \"file\" { path = %q }", filepath.Join(dir, "data"))
		cluster, clusterListen := "", ""
		if opts.raftNode != "" {
			clusterPort, err := freePort()
			if err != nil {
				return nil, err
			}
			storage = fmt.Sprintf("storage \"raft\" {\n  path    = %q\n  node_id = %q\n}", filepath.Join(dir, "raft"), opts.raftNode)
			cluster = fmt.Sprintf("cluster_addr = \"https://127.0.0.1:%d\"", clusterPort)
			clusterListen = fmt.Sprintf("cluster_address = \"127.0.0.1:%d\"", clusterPort)
			if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
				return nil, err
			}
		}
		cfg := fmt.Sprintf(`
%s
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
  %s
}
plugin_directory = %q
api_addr         = %q
%s
disable_mlock    = true
# The kill tests read what storage holds (sys/raw) to judge what a kill lost.
raw_storage_endpoint = true
`, storage, port, clusterListen, v.pluginDir(), v.addr, cluster)
		if err := os.WriteFile(filepath.Join(dir, "config.hcl"), []byte(cfg), 0o600); err != nil {
			return nil, err
		}
	}
	if err := v.launch(); err != nil {
		v.stop()
		return nil, err
	}
	return v, nil
}

// launch starts the server process and waits until it answers (and, for a persistent
// server, until it is initialised and unsealed).
func (v *vaultServer) launch() error {
	var args []string
	if v.opts.persistent {
		args = []string{"server", "-config=" + filepath.Join(v.dir, "config.hcl")}
	} else {
		args = []string{"server", "-dev", "-dev-root-token-id=" + v.token,
			"-dev-listen-address=" + strings.TrimPrefix(v.addr, "http://"),
			"-dev-plugin-dir=" + v.pluginDir()}
	}
	logFile, err := os.OpenFile(v.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Getenv("VAULT_BIN"), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "VAULT_LOG_LEVEL=debug")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	v.cmd = cmd
	v.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(v.exited) }()

	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	cfg.Timeout = 60 * time.Second
	client, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	v.client = client
	if v.token != "" {
		client.SetToken(v.token)
	}
	// Poll until the listener answers; the server process is ours, so its exit ends the wait.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := client.Sys().SealStatus()
		if err == nil {
			break
		}
		select {
		case <-v.exited:
			return fmt.Errorf("vault exited during start-up:\n%s", v.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault did not answer within 60s: %v", err)
		}
	}
	if v.opts.persistent {
		return v.initAndUnseal()
	}
	return nil
}

func (v *vaultServer) initAndUnseal() error {
	if leader := v.opts.joinTo; leader != nil && v.unsealKey == "" {
		if _, err := v.client.Sys().RaftJoin(&api.RaftJoinRequest{LeaderAPIAddr: leader.addr}); err != nil {
			return fmt.Errorf("joining the raft cluster of %s: %w", leader.addr, err)
		}
		v.unsealKey, v.token = leader.unsealKey, leader.token
		v.client.SetToken(v.token)
	}
	status, err := v.client.Sys().InitStatus()
	if err != nil {
		return err
	}
	if !status {
		resp, err := v.client.Sys().Init(&api.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		v.unsealKey, v.token = resp.Keys[0], resp.RootToken
		v.client.SetToken(v.token)
	}
	if _, err := v.client.Sys().Unseal(v.unsealKey); err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	// The active node needs a moment after unseal to mount everything, and a joining
	// node to catch up as a standby; wait for it. A node joining a cluster that holds a
	// large mount (the scale benchmark's million credentials) first receives the whole
	// of it as a Raft snapshot.
	wait := 60 * time.Second
	if v.opts.joinTo != nil {
		wait = 15 * time.Minute
	}
	deadline := time.Now().Add(wait)
	for {
		h, err := v.client.Sys().Health()
		if err == nil && h.Initialized && !h.Sealed && (h.Standby == (v.opts.joinTo != nil)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault not active or standby %s after unseal: %v", wait, err)
		}
		select {
		case <-v.exited:
			return fmt.Errorf("vault exited after unseal:\n%s", v.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// restart stops the server cleanly and starts it again on the same storage.
func (v *vaultServer) restart(t *testing.T) {
	t.Helper()
	if !v.opts.persistent {
		t.Fatal("restart needs a persistent server")
	}
	v.halt()
	if err := v.launch(); err != nil {
		t.Fatalf("restarting Vault: %v", err)
	}
}

// halt sends SIGINT (Vault's clean shutdown) and waits; SIGKILL after 30 s.
func (v *vaultServer) halt() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(os.Interrupt)
	select {
	case <-v.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
		<-v.exited
	}
	// Plugin processes belong to the server's process group; none may outlive it.
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
}

// kill ends the server and its plugins with SIGKILL (the process group), as a crash
// would: no seal, no unmount, no flush.
func (v *vaultServer) kill() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.exited
}

// crash kills the server with SIGKILL and starts it again on the same storage.
func (v *vaultServer) crash(t *testing.T) {
	t.Helper()
	if !v.opts.persistent {
		t.Fatal("crash needs a persistent server")
	}
	v.kill()
	if err := v.launch(); err != nil {
		t.Fatalf("starting Vault after SIGKILL: %v", err)
	}
}

// pluginPIDs lists the running processes of this plugin that the server started.
func (v *vaultServer) pluginPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm is cut at 15 characters.
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open || !strings.HasPrefix(pluginName, s[open+1:closing]) {
			continue
		}
		var pid, ppid int
		var state string
		if _, err := fmt.Sscanf(s[:open]+s[closing+1:], "%d %s %d", &pid, &state, &ppid); err == nil &&
			ppid == v.cmd.Process.Pid && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (v *vaultServer) stop() {
	v.halt()
	if os.Getenv("E2E_KEEP") == "" { // E2E_KEEP=1 keeps each server's directory and log

		os.RemoveAll(v.dir)
	}
}

func (v *vaultServer) logTail() string {
	b, err := os.ReadFile(v.logPath)
	if err != nil {
		return err.Error()
	}
	const keep = 8000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

// registerPlugin registers the built binary with its sha256 and version.
func (v *vaultServer) registerPlugin() error {
	sum, err := fileSHA256(filepath.Join(v.pluginDir(), pluginName))
	if err != nil {
		return err
	}
	return v.client.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name:    pluginName,
		Type:    api.PluginTypeSecrets,
		Command: pluginName,
		SHA256:  sum,
		Version: os.Getenv("PLUGIN_VERSION"),
		Env:     append(raceGORACE(), v.opts.pluginEnv...),
	})
}

var mountSeq atomic.Int64

// mount enables the plugin at a fresh path of the test's own and returns it (no
// trailing slash); the mount is disabled when the test ends.
func (v *vaultServer) mount(t *testing.T) string {
	t.Helper()
	name := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	path := fmt.Sprintf("int-%s-%d", strings.Trim(name, "-"), mountSeq.Add(1))
	v.mountAt(t, path)
	t.Cleanup(func() { _ = v.client.Sys().Unmount(path) })
	return path
}

func (v *vaultServer) mountAt(t *testing.T, path string) {
	t.Helper()
	err := v.client.Sys().Mount(path, &api.MountInput{
		Type:   pluginName,
		Config: api.MountConfigInput{PluginVersion: os.Getenv("PLUGIN_VERSION")},
	})
	if err != nil {
		t.Fatalf("enabling the plugin at %s: %v", path, err)
	}
}

// cli runs the real vault CLI against this server and returns its stdout; stderr is
// folded into the error.
func (v *vaultServer) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Getenv("VAULT_BIN"), args...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.addr, "VAULT_TOKEN="+v.token, "VAULT_FORMAT=", "VAULT_NAMESPACE=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("vault %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustCLI is cli that fails the test on error.
func (v *vaultServer) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := v.cli(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// statusCode is the HTTP status of an API error, 0 when err is not one.
func statusCode(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// missingPrerequisite ends t for want of an outside program the scripts provide: a
// failure under CI=true (a green CI run must have run every test), a skip elsewhere.
func missingPrerequisite(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// toolPath is the outside program name as scripts/test.sh found it: the path in the
// environment variable env when set (it must be executable), else name on the PATH.
// Neither ends the test through missingPrerequisite, with hint saying what provides it.
func toolPath(t *testing.T, env, name, hint string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if info, err := os.Stat(p); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			t.Fatalf("%s=%s is not an executable file (%v)", env, p, err)
		}
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		missingPrerequisite(t, fmt.Sprintf("%s is not installed (%s unset, none on the PATH): %s", name, env, hint))
	}
	return p
}

// pluginDir is the server's plugin directory.
func (v *vaultServer) pluginDir() string {
	if v.opts.pluginDir != "" {
		return v.opts.pluginDir
	}
	return pluginDir()
}

func pluginDir() string {
	d, _ := filepath.Abs(os.Getenv("PLUGIN_DIR"))
	return d
}

// copyExecutable copies the file at from to to (its directory made), executable.
func copyExecutable(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
