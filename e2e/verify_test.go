//go:build e2e

package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// sshd is a real OpenSSH server started by the test on a free loopback port, with a
// host key and config of its own. scripts/lib.sh (prepare_sshd) installs Debian's
// openssh-server where it is missing and creates the test user; its password comes in
// E2E_SSH_PASSWORD.
type sshd struct {
	addr        string // 127.0.0.1:port
	fingerprint string // of the host key, as ssh-keygen -lf prints it
	user        string
	password    string
	userKey     string // OpenSSH private key whose public half is authorized
}

func startSSHD(t *testing.T) *sshd {
	t.Helper()
	bin, user, password := os.Getenv("E2E_SSHD"), os.Getenv("E2E_SSH_USER"), os.Getenv("E2E_SSH_PASSWORD")
	if bin == "" || user == "" || password == "" {
		msg := "no sshd prepared for the SFTP verification tests (E2E_SSHD, E2E_SSH_USER, E2E_SSH_PASSWORD unset): run them through scripts/test.sh e2e as root, which installs openssh-server (prepare_sshd in scripts/lib.sh)"
		missingPrerequisite(t, msg)
	}
	dir := t.TempDir()
	// sshd reads authorized_keys as the test user: it must reach the file (the host
	// key stays 0600, root's).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	writePEMKey(t, filepath.Join(dir, "host_ed25519"), hostPriv)
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	userSigner, _ := ssh.NewSignerFromKey(userPriv)
	userKey := writePEMKey(t, filepath.Join(dir, "user_ed25519"), userPriv)
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(userSigner.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	config := strings.Join([]string{
		fmt.Sprintf("Port %d", port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_ed25519"),
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication yes",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AllowUsers " + user,
		"Subsystem sftp internal-sftp",
		"LogLevel VERBOSE",
	}, "\n") + "\n"
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "sshd.log")
	cmd := exec.Command(bin, "-D", "-f", cfgPath, "-E", logPath)
	if out, err := exec.Command(bin, "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sshd refuses its config: %v\n%s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("sshd log:\n%s", log)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("sshd did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond) // readiness poll of a process we do not control
	}
	return &sshd{addr: addr, fingerprint: ssh.FingerprintSHA256(hostSigner.PublicKey()), user: user, password: password, userKey: userKey}
}

func writePEMKey(t *testing.T, path string, key ed25519.PrivateKey) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	text := pem.EncodeToMemory(block)
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	return string(text)
}

// verifyCredential writes credentials/<name>/verify and returns its answer.
func verifyCredential(t *testing.T, mount, name string) map[string]any {
	t.Helper()
	return decode(t, shared.mustCLI(t, "write", "-format=json", "-f", mount+"/credentials/"+name+"/verify")).Data
}

func wantResult(t *testing.T, got map[string]any, result string, detail ...string) {
	t.Helper()
	if got["result"] != result {
		t.Fatalf("result %v (%v), want %s", got["result"], got["detail"], result)
	}
	for _, d := range detail {
		if !strings.Contains(fmt.Sprint(got["detail"]), d) {
			t.Errorf("detail %q lacks %q", got["detail"], d)
		}
	}
	if !isNonEmptyString(got["checked_at"]) || got["latency_ms"] == nil {
		t.Errorf("answer lacks checked_at or latency_ms: %v", got)
	}
}

func TestVerifySFTPAgainstOpenSSH(t *testing.T) {
	t.Parallel()
	srv := startSSHD(t)
	mount := shared.mount(t)
	host := "host=sftp://" + srv.addr + "/"
	write := func(name string, args ...string) {
		shared.mustCLI(t, append([]string{"write", mount + "/credentials/" + name}, args...)...)
	}
	write("pw", "type=sftp_password", host, "host_key_fingerprint="+srv.fingerprint, "username="+srv.user, "password="+srv.password)
	write("pw-wrong", "type=sftp_password", host, "host_key_fingerprint="+srv.fingerprint, "username="+srv.user, "password=not-"+srv.password)
	write("pw-fp", "type=sftp_password", host, "host_key_fingerprint="+fixtures.HostKeyFingerprint(), "username="+srv.user, "password="+srv.password)
	write("key", "type=sftp_ssh_key", host, "host_key_fingerprint="+srv.fingerprint, "username="+srv.user, "private_key="+srv.userKey)
	write("key-wrong", "type=sftp_ssh_key", host, "host_key_fingerprint="+srv.fingerprint, "username="+srv.user, "private_key="+fixtures.SSHKey(""))
	write("key-fp", "type=sftp_ssh_key", host, "host_key_fingerprint="+fixtures.HostKeyFingerprint(), "username="+srv.user, "private_key="+srv.userKey)
	// The same key with a passphrase: decrypted once, when written; verify signs with the
	// kept copy, access/ returns the key and passphrase as written.
	raw, err := ssh.ParseRawPrivateKey([]byte(srv.userKey))
	if err != nil {
		t.Fatal(err)
	}
	encBlock, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "", []byte("e2e-passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	encKey := string(pem.EncodeToMemory(encBlock))
	write("key-enc", "type=sftp_ssh_key", host, "host_key_fingerprint="+srv.fingerprint, "username="+srv.user, "private_key="+encKey, "passphrase=e2e-passphrase")

	wantResult(t, verifyCredential(t, mount, "pw"), "ok", "host key matches")
	wantResult(t, verifyCredential(t, mount, "pw-wrong"), "failed", "refused the password")
	wantResult(t, verifyCredential(t, mount, "pw-fp"), "failed", "host key mismatch", srv.fingerprint)
	wantResult(t, verifyCredential(t, mount, "key"), "ok")
	wantResult(t, verifyCredential(t, mount, "key-enc"), "ok")
	enc := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/access/key-enc")).Data
	if enc["private_key"] != encKey || enc["passphrase"] != "e2e-passphrase" {
		t.Error("access/ of key-enc does not return private_key and passphrase as written")
	}
	wantResult(t, verifyCredential(t, mount, "key-wrong"), "failed", "refused the key")
	wantResult(t, verifyCredential(t, mount, "key-fp"), "failed", srv.fingerprint)

	got := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/pw-wrong")).Data
	if got["verify_result"] != "failed" || got["health"] != "red" || !isNonEmptyString(got["verified_at"]) {
		t.Errorf("management read after a failed verification: verify_result %v health %v verified_at %v", got["verify_result"], got["health"], got["verified_at"])
	}
	alerts := shared.mustCLI(t, "read", "-format=json", mount+"/alerts")
	if !strings.Contains(alerts, "verify_failed") {
		t.Errorf("alerts lack verify_failed:\n%s", alerts)
	}
	assertNothingShows(t, shared, mount, "pw", srv.password)
}

func TestVerifyOAuthAndVerifyURL(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	p := newIDP(t, oauthtest.Options{})
	shared.mustCLI(t, "write", mount+"/credentials/cc", "type=oauth2_client_credentials", "token_url="+p.TokenURL(),
		"client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
	shared.mustCLI(t, "write", mount+"/credentials/cc-bad", "type=oauth2_client_credentials", "token_url="+p.TokenURL(),
		"client_id="+oauthtest.ClientID, "client_secret=wrong")
	wantResult(t, verifyCredential(t, mount, "cc"), "ok", "token minted")
	if n := p.Requests(); n != 1 {
		t.Fatalf("%d token requests after verify, want 1", n)
	}
	// The verified token is the cached one.
	if got := readAccess(t, shared, mount, "cc"); got["access_token"] != p.LastIssued(t).Access || p.Requests() != 1 {
		t.Errorf("access after verify minted again (%d requests)", p.Requests())
	}
	wantResult(t, verifyCredential(t, mount, "cc-bad"), "failed", "invalid_client")
	if got := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/cc-bad")).Data; got["status"] != "needs_reauth" {
		t.Errorf("a permanently refused verification left status %v, want needs_reauth", got["status"])
	}

	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != "svc" || pw != "right-password" {
			http.Error(w, "no", http.StatusUnauthorized)
		}
	}))
	t.Cleanup(api.Close)
	shared.mustCLI(t, "write", mount+"/credentials/basic", "type=basic", "username=svc", "password=right-password", "verify_url="+api.URL+"/whoami")
	shared.mustCLI(t, "write", mount+"/credentials/basic-wrong", "type=basic", "username=svc", "password=wrong-password", "verify_url="+api.URL+"/whoami")
	shared.mustCLI(t, "write", mount+"/credentials/hook", "type=webhook", "url="+api.URL+"/hook")
	wantResult(t, verifyCredential(t, mount, "basic"), "ok", "HTTP 200")
	wantResult(t, verifyCredential(t, mount, "basic-wrong"), "failed", "HTTP 401")
	wantResult(t, verifyCredential(t, mount, "hook"), "unsupported")
	list := shared.mustCLI(t, "list", "-format=json", "-detailed", mount+"/credentials")
	if !strings.Contains(list, `"verify_result"`) {
		t.Errorf("list key_info lacks verify_result:\n%s", list)
	}
	logs := shared.mustCLI(t, "read", "-format=json", mount+"/credentials/basic-wrong/logs")
	if !strings.Contains(logs, `"verify"`) || strings.Contains(logs, "wrong-password") {
		t.Errorf("logs: want a verify event and no secret:\n%s", logs)
	}
}
