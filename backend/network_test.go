package backend

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/dnstest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// deniedLoopback is the production policy of the README's hardening section, less the
// private ranges: the defaults and loopback.
var deniedLoopback = append(slices.Clone(netpolicy.DefaultDenied), "127.0.0.0/8", "::1/128")

func denyNetworks(t *testing.T, b *integrationsBackend, s logical.Storage, networks ...string) {
	t.Helper()
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"denied_networks": strings.Join(networks, ",")})
}

// sshTarget is an SSH server on loopback accepting user "u" with password "pw"; it
// counts the connections it accepted.
type sshTarget struct {
	addr, fingerprint string
	accepted          atomic.Int64
}

func newSSHTarget(t *testing.T) *sshTarget {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if c.User() == "u" && string(pw) == "pw" {
			return nil, nil
		}
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	st := &sshTarget{addr: l.Addr().String(), fingerprint: ssh.FingerprintSHA256(hostKey.PublicKey())}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			st.accepted.Add(1)
			go func() {
				defer conn.Close()
				sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return
				}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					_ = ch.Reject(ssh.Prohibited, "test")
				}
			}()
		}
	}()
	return st
}

// countingServer answers 200 with a JSON object and counts its requests.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Under the default policy every kind of outbound connection reaches loopback servers;
// once the operator denies loopback, each is refused at connect time as
// denied_network, and the servers receive nothing: token requests (access/ and verify),
// an HTTP verification, an SSH verification and a notification delivery.
func TestDeniedLoopbackRefusedOnEveryPath(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, providerConfig{})
	web, webHits := countingServer(t)
	hook, hookHits := countingServer(t)
	sshd := newSSHTarget(t)
	b, s, _ := newTestBackend(t)
	ctx := context.Background()

	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "header"))
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc2", clientCredentials(p, "body"))
	mustOK(t, b, s, logical.CreateOperation, "credentials/web", map[string]any{"type": "bearer", "token": "t", "verify_url": web.URL})
	// A name that resolves to loopback (from the hosts file), not an address.
	mustOK(t, b, s, logical.CreateOperation, "credentials/web-name", map[string]any{"type": "bearer", "token": "t",
		"verify_url": strings.Replace(web.URL, "127.0.0.1", "localhost", 1)})
	mustOK(t, b, s, logical.CreateOperation, "credentials/files", map[string]any{"type": "sftp_password",
		"host": "sftp://" + sshd.addr + "/", "host_key_fingerprint": sshd.fingerprint, "username": "u", "password": "pw"})
	mustOK(t, b, s, logical.CreateOperation, "credentials/hook", map[string]any{"type": "webhook", "url": hook.URL})
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"})
	n := notify.Notification{Event: "suspension-warning", Credential: "web", Type: "bearer", Message: "test"}

	// The defaults reach loopback: local providers in development, and every test.
	accessOK(t, b, s, "cc", nil)
	wantVerify(t, verifyResult(t, b, s, "web"), lifecycle.VerifyOK)
	wantVerify(t, verifyResult(t, b, s, "web-name"), lifecycle.VerifyOK)
	wantVerify(t, verifyResult(t, b, s, "files"), lifecycle.VerifyOK)
	if failure := b.outbox.Attempt(ctx, n); failure != "" {
		t.Fatalf("notification under the defaults: %q", failure)
	}
	tokens, webs, sshs, hooks := p.requests.Load(), webHits.Load(), sshd.accepted.Load(), hookHits.Load()

	denyNetworks(t, b, s, deniedLoopback...)
	code, msg := accessErr(t, b, s, "cc2")
	if code != http.StatusBadGateway || !strings.Contains(msg, netpolicy.KindDenied) {
		t.Errorf("access/ of a credential never minted: %d %q, want 502 denied_network", code, msg)
	}
	wantVerify(t, verifyResult(t, b, s, "cc"), lifecycle.VerifyFailed, netpolicy.KindDenied) // a forced mint
	wantVerify(t, verifyResult(t, b, s, "web"), lifecycle.VerifyFailed, netpolicy.KindDenied)
	wantVerify(t, verifyResult(t, b, s, "web-name"), lifecycle.VerifyFailed, netpolicy.KindDenied)
	wantVerify(t, verifyResult(t, b, s, "files"), lifecycle.VerifyFailed, netpolicy.KindDenied)
	if failure := b.outbox.Attempt(ctx, n); failure != netpolicy.KindDenied {
		t.Errorf("notification with loopback denied: %q, want denied_network", failure)
	}
	// A notification target named now is judged as a credential's endpoint is.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": ""})
	wantFieldError(t, call(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook"}), "notify_credential")
	if got := []int64{p.requests.Load(), webHits.Load(), sshd.accepted.Load(), hookHits.Load()}; !slices.Equal(got, []int64{tokens, webs, sshs, hooks}) {
		t.Errorf("requests received (token, verify, ssh, notification): %v, before the policy %v", got, []int64{tokens, webs, sshs, hooks})
	}

	// Deleting config restores the defaults, and loopback is reachable again (cc2 is
	// in its backoff after the refusal: a credential not yet asked for shows it).
	mustOK(t, b, s, logical.DeleteOperation, "config", nil)
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc3", clientCredentials(p, "header"))
	accessOK(t, b, s, "cc3", nil)
}

// A same-host redirect whose host name then resolves to a denied address (DNS
// rebinding) is refused: the address is judged on the connection the redirect makes,
// for a token request and for an HTTP verification. Without the check the request
// would reach the internal server behind the denied address.
func TestRedirectToDeniedAddressRefused(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"token", "verify"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			public, internal, hits := rebindingServers(t)
			dns := dnstest.Start(t, func(name string, n int) []netip.Addr {
				if name != "example.com" {
					return nil
				}
				if n == 1 {
					return []netip.Addr{public}
				}
				return []netip.Addr{internal} // the redirect's lookup
			})
			b, s, _ := newTestBackend(t)
			b.guard.Resolver = dns.Resolver()
			denyNetworks(t, b, s, append(slices.Clone(netpolicy.DefaultDenied), internal.String()+"/32")...)
			ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hits.cert}))
			base := "https://example.com:" + hits.port
			if path == "token" {
				mustOK(t, b, s, logical.CreateOperation, "credentials/c", map[string]any{"type": "oauth2_client_credentials",
					"token_url": base + "/token", "client_id": "id", "client_secret": "secret", "ca_certificate": ca})
				code, msg := accessErr(t, b, s, "c")
				if code != http.StatusBadGateway || !strings.Contains(msg, netpolicy.KindDenied) {
					t.Errorf("token request redirected to a denied address: %d %q, want 502 denied_network", code, msg)
				}
			} else {
				mustOK(t, b, s, logical.CreateOperation, "credentials/c", map[string]any{"type": "bearer", "token": "t",
					"verify_url": base + "/verify", "ca_certificate": ca})
				wantVerify(t, verifyResult(t, b, s, "c"), lifecycle.VerifyFailed, netpolicy.KindDenied)
			}
			if hits.public.Load() != 1 || hits.internal.Load() != 0 {
				t.Errorf("requests: %d to the public address, %d to the internal one; want 1 and 0", hits.public.Load(), hits.internal.Load())
			}
			if n := dns.Lookups("example.com"); n != 2 {
				t.Errorf("example.com looked up %d times, want 2 (the redirect reconnects)", n)
			}
		})
	}
}

type rebindHits struct {
	public, internal atomic.Int64
	port             string
	cert             []byte // DER of the servers' certificate (httptest's, for example.com)
}

// rebindingServers serves TLS for example.com on 127.0.0.1 and 127.0.0.2 at one port:
// the first redirects every request to the same URL path under /real and closes the
// connection; the second, the "internal" service, answers as a provider would.
func rebindingServers(t *testing.T) (public, internal netip.Addr, hits *rebindHits) {
	t.Helper()
	hits = &rebindHits{}
	public, internal = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	var pl, il net.Listener
	for range 20 {
		var err error
		if pl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(pl.Addr().String())
		if il, err = net.Listen("tcp", "127.0.0.2:"+port); err == nil {
			hits.port = port
			break
		}
		pl.Close()
	}
	if hits.port == "" {
		t.Skip("no port free on both 127.0.0.1 and 127.0.0.2")
	}
	serve := func(l net.Listener, h http.HandlerFunc) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.Listener.Close()
		srv.Listener = l
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	pub := serve(pl, func(w http.ResponseWriter, r *http.Request) {
		hits.public.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, "/real"+r.URL.Path, http.StatusTemporaryRedirect) //nolint:gosec // G710: the test provider redirects on purpose: the client under test must refuse it
	})
	serve(il, func(w http.ResponseWriter, _ *http.Request) {
		hits.internal.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"internal-`+oauthtest.Marker+`","token_type":"Bearer","expires_in":3600}`)
	})
	hits.cert = pub.Certificate().Raw
	return public, internal, hits
}

// With loopback and a private range denied, a literal address (or localhost) in any
// endpoint field of any type is refused when the credential is written, with a 400
// naming the field, and nothing is stored; the metadata address is refused under the
// defaults too. The endpoint fields are the catalog's.
func TestDeniedLiteralRefusedAtWrite(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	const tokenURL = "https://idp.example.com/token"
	literal := func(field, host string) string {
		if field == "host" {
			return "sftp://" + host + ":22/"
		}
		return "https://" + host + "/x"
	}
	checked := map[string]bool{}
	examples := map[string]map[string]any{} // made once: some generate keys
	try := func(typeName, field, host string) *logical.Response {
		if examples[typeName] == nil {
			examples[typeName] = fixtures.Values(typeName, "m", tokenURL)
			if _, ok := examples[typeName]["passphrase"]; ok {
				// An unencrypted key: no bcrypt rounds on every write of the loop.
				examples[typeName]["private_key"] = fixtures.SSHKey("")
				delete(examples[typeName], "passphrase")
			}
		}
		data := maps.Clone(examples[typeName])
		data["type"] = typeName
		data[field] = literal(field, host)
		return call(t, b, s, logical.CreateOperation, "credentials/probe", data)
	}
	for _, typ := range credtype.All() {
		for _, field := range credtype.EndpointFields() {
			if _, ok := typ.Field(field); !ok {
				continue
			}
			// The metadata service is refused by default, in any spelling.
			for _, host := range []string{"169.254.169.254", "[::ffff:a9fe:a9fe]", "[fd00:ec2::254]"} {
				wantFieldError(t, try(typ.Name, field, host), field)
			}
			checked[field] = true
		}
	}
	denyNetworks(t, b, s, append(slices.Clone(deniedLoopback), "10.0.0.0/8")...)
	for _, typ := range credtype.All() {
		for _, field := range credtype.EndpointFields() {
			if _, ok := typ.Field(field); !ok {
				continue
			}
			for _, host := range []string{"127.0.0.1", "localhost", "[::1]", "10.1.2.3", "2130706433"} {
				resp := try(typ.Name, field, host)
				wantFieldError(t, resp, field)
				if !strings.Contains(resp.Error().Error(), "denied_networks") {
					t.Errorf("%s %s=%s: %v does not name the rule", typ.Name, field, host, resp.Error())
				}
			}
		}
	}
	if resp := call(t, b, s, logical.ReadOperation, "credentials/probe", nil); resp != nil {
		t.Fatalf("a refused write stored the credential: %v", resp.Data)
	}
	for _, f := range credtype.EndpointFields() {
		if !checked[f] {
			t.Errorf("no type has endpoint field %s", f)
		}
	}
	// A host name is judged when it resolves, and a device's address is not an
	// endpoint: both are written.
	mustOK(t, b, s, logical.CreateOperation, "credentials/named", map[string]any{"type": "bearer", "token": "t", "url": "https://10.example.com/"})
	mustOK(t, b, s, logical.CreateOperation, "credentials/device", map[string]any{"type": "device_account", "hostname": "db1", "ip": "10.1.2.3", "username": "root", "password": "pw"})
}

// The lists: read shows what is in force, a write keeps them canonical, a bad one is
// a 400 naming the field that changes nothing, and a config stored before they
// existed has the defaults.
func TestNetworkConfig(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	resp := mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{
		"denied_networks": "127.0.0.1,10.0.0.0/8,::ffff:192.168.0.0/112,10.0.0.0/8", "allowed_networks": []string{"0.0.0.0/0", "2001:DB8::/32"}})
	wantDenied := []string{"127.0.0.1/32", "10.0.0.0/8", "192.168.0.0/16"}
	wantAllowed := []string{"0.0.0.0/0", "2001:db8::/32"}
	for _, r := range []*logical.Response{resp, mustOK(t, b, s, logical.ReadOperation, "config", nil)} {
		if !slices.Equal(r.Data["denied_networks"].([]string), wantDenied) || !slices.Equal(r.Data["allowed_networks"].([]string), wantAllowed) {
			t.Fatalf("lists: %v %v, want %v %v", r.Data["denied_networks"], r.Data["allowed_networks"], wantDenied, wantAllowed)
		}
	}
	many := strings.TrimSuffix(strings.Repeat("10.0.0.1,", netpolicy.MaxNetworks+1), ",")
	for _, c := range []struct{ field, value string }{
		{"denied_networks", "10.0.0.0/8,not-a-network"},
		{"denied_networks", "10.0.0.5/8"},
		{"allowed_networks", "fe80::1%eth0"},
		{"allowed_networks", many},
		{"allowed_networks", strings.Repeat("1", 100)},
	} {
		resp := call(t, b, s, logical.UpdateOperation, "config", map[string]any{c.field: c.value, "log_size": 7})
		wantFieldError(t, resp, c.field)
		if !strings.Contains(resp.Error().Error(), "CIDR") {
			t.Errorf("%s=%.40s: %v does not state the rule", c.field, c.value, resp.Error())
		}
	}
	r := mustOK(t, b, s, logical.ReadOperation, "config", nil)
	if !slices.Equal(r.Data["denied_networks"].([]string), wantDenied) || r.Data["log_size"] == 7 {
		t.Fatalf("a refused write changed the config: %v", r.Data)
	}
	// An empty list denies nothing, and is kept as written.
	mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"denied_networks": ""})
	b.invalidate(context.Background(), configPath)
	if got := mustOK(t, b, s, logical.ReadOperation, "config", nil).Data["denied_networks"].([]string); len(got) != 0 {
		t.Fatalf("an empty denied list read back as %v", got)
	}

	// A config stored before the lists existed.
	entry, _ := logical.StorageEntryJSON(configPath, map[string]any{"log_size": 9, "request_timeout": int64(30e9), "expiry_buffer": int64(60e9),
		"usage_flush_interval": int64(10e9), "default_token_lifetime": int64(3600e9), "suspend_after": int64(180 * day), "purge_after": int64(365 * day)})
	if err := s.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	b.invalidate(context.Background(), configPath)
	r = mustOK(t, b, s, logical.ReadOperation, "config", nil)
	if r.Data["log_size"] != 9 || !slices.Equal(r.Data["denied_networks"].([]string), netpolicy.DefaultDenied) || len(r.Data["allowed_networks"].([]string)) != 0 {
		t.Fatalf("an old config: %v", r.Data)
	}
}

// A failed connection is named by its kind, never by the address, port or DNS server:
// to a refused port and to a name that does not resolve, in the access/ answer, the
// verification results (token, HTTP, SSH), the alerts, the log and a notification's
// failure.
func TestDialFailuresNameOnlyTheKind(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(refused)
	dns := dnstest.Start(t, func(string, int) []netip.Addr { return nil })
	_, dnsPort, _ := net.SplitHostPort(dns.Addr())
	logs := &lcLogBuffer{}
	b, s, _ := newBackendWith(t, backendOptions{initialize: true, logs: logs})
	b.guard.Resolver = dns.Resolver()
	ctx := context.Background()

	for _, c := range []struct {
		kind, hostPort string
		scheme         string
	}{
		{netpolicy.KindConnectionRefused, refused, "http"},
		{netpolicy.KindDNS, "nowhere.test:" + port, "https"},
	} {
		base := c.scheme + "://" + c.hostPort
		name := strings.ReplaceAll(c.kind, "_", "-")
		mustOK(t, b, s, logical.CreateOperation, "credentials/tok-"+name, map[string]any{"type": "oauth2_client_credentials",
			"token_url": base + "/token", "client_id": "id", "client_secret": "secret"})
		mustOK(t, b, s, logical.CreateOperation, "credentials/web-"+name, map[string]any{"type": "bearer", "token": "t", "verify_url": base + "/me"})
		mustOK(t, b, s, logical.CreateOperation, "credentials/ssh-"+name, map[string]any{"type": "sftp_password",
			"host": "sftp://" + c.hostPort + "/", "host_key_fingerprint": fixtures.HostKeyFingerprint(), "username": "u", "password": "pw"})
		mustOK(t, b, s, logical.CreateOperation, "credentials/hook-"+name, map[string]any{"type": "webhook", "url": base + "/hook"})

		var said []string
		_, msg := accessErr(t, b, s, "tok-"+name)
		said = append(said, msg)
		for _, cred := range []string{"tok-", "web-", "ssh-"} {
			got := verifyResult(t, b, s, cred+name)
			said = append(said, fmt.Sprint(got["detail"]))
			if !strings.Contains(fmt.Sprint(got["detail"]), c.kind) {
				t.Errorf("verify %s%s: %q, want the kind %s", cred, name, got["detail"], c.kind)
			}
		}
		if !strings.Contains(msg, c.kind) {
			t.Errorf("access/ %s: %q, want the kind %s", name, msg, c.kind)
		}
		mustOK(t, b, s, logical.UpdateOperation, "config", map[string]any{"notify_credential": "hook-" + name})
		failure := b.outbox.Attempt(ctx, notify.Notification{Event: "test", Credential: "x", Message: "m"})
		if failure != c.kind {
			t.Errorf("notification to %s: %q, want %s", name, failure, c.kind)
		}
		said = append(said, failure)
		for _, cred := range []string{"tok-", "web-", "ssh-"} {
			read := mustOK(t, b, s, logical.ReadOperation, "credentials/"+cred+name, nil).Data
			for _, f := range credtype.EndpointFields() {
				delete(read, f) // where the operator pointed it, as written
			}
			said = append(said, fmt.Sprint(read))
		}
		for _, text := range said {
			for _, leak := range []string{"127.0.0.1", ":" + port, port, dnsPort, "nowhere", "lookup", "dial"} {
				if strings.Contains(text, leak) {
					t.Errorf("%q names %q", text, leak)
				}
			}
		}
	}
	alerts := fmt.Sprint(mustOK(t, b, s, logical.ReadOperation, "alerts", nil).Data)
	for _, text := range []string{alerts, logs.String()} {
		for _, leak := range []string{"127.0.0.1", port, dnsPort, "nowhere.test", "lookup", "dial tcp"} {
			if strings.Contains(text, leak) {
				t.Errorf("alerts or logs name %q:\n%s", leak, text)
			}
		}
	}
}
