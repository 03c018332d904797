package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// sshServer is an in-process SSH server on loopback that accepts user "u" with
// password "pw" or the key allowed, and counts sessions opened (none may be).
type sshServer struct {
	addr         string
	fingerprint  string // of the ed25519 host key
	fingerprints []string
	sessions     atomic.Int64
}

// newSSHServer serves with an ed25519 host key and the extra ones given.
func newSSHServer(t *testing.T, allowed ssh.PublicKey, extra ...ssh.Signer) *sshServer {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if c.User() == "u" && string(pw) == "pw" {
				return nil, nil
			}
			return nil, errors.New("no")
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if allowed != nil && c.User() == "u" && bytes.Equal(k.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("no")
		},
	}
	cfg.AddHostKey(hostKey)
	fps := []string{ssh.FingerprintSHA256(hostKey.PublicKey())}
	for _, k := range extra {
		cfg.AddHostKey(k)
		fps = append(fps, ssh.FingerprintSHA256(k.PublicKey()))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := &sshServer{addr: l.Addr().String(), fingerprint: fps[0], fingerprints: fps}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return
				}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					srv.sessions.Add(1)
					_ = ch.Reject(ssh.Prohibited, "test")
				}
			}()
		}
	}()
	return srv
}

func TestSSHCheck(t *testing.T) {
	t.Parallel()
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	userKey, _ := ssh.NewSignerFromKey(userPriv)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewSignerFromKey(otherPriv)
	srv := newSSHServer(t, userKey.PublicKey())
	wrongFP := "SHA256:" + strings.Repeat("A", 43)
	cases := []struct {
		name   string
		plan   credtype.VerifyPlan
		result string
		detail string
	}{
		{"password", credtype.VerifyPlan{Password: "pw"}, lifecycle.VerifyOK, "signed in as u"},
		{"wrong password", credtype.VerifyPlan{Password: "nope"}, lifecycle.VerifyFailed, "refused the password"},
		{"key", credtype.VerifyPlan{Signer: userKey}, lifecycle.VerifyOK, "host key matches"},
		{"wrong key", credtype.VerifyPlan{Signer: otherKey}, lifecycle.VerifyFailed, "refused the key"},
		{"wrong fingerprint", credtype.VerifyPlan{Password: "pw", Fingerprint: wrongFP}, lifecycle.VerifyFailed, "offered " + srv.fingerprint},
	}
	for _, tc := range cases {
		tc.plan.Method, tc.plan.Address, tc.plan.Username = credtype.VerifySSH, srv.addr, "u"
		if tc.plan.Fingerprint == "" {
			tc.plan.Fingerprint = srv.fingerprint
		}
		out := Checker{Timeout: 10 * time.Second}.Run(context.Background(), tc.plan)
		if out.Result != tc.result || !strings.Contains(out.Detail, tc.detail) {
			t.Errorf("%s: %+v, want %s with %q", tc.name, out, tc.result, tc.detail)
		}
		if strings.Contains(out.Detail, "nope") {
			t.Errorf("%s: detail carries the password: %q", tc.name, out.Detail)
		}
	}
	if n := srv.sessions.Load(); n != 0 {
		t.Errorf("the check opened %d channels; it must run nothing", n)
	}
}

// A server with several host keys shows the one the client prefers; whichever is
// pinned is found, and a pin of none names every key offered.
func TestSSHCheckServerWithSeveralHostKeys(t *testing.T) {
	t.Parallel()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSigner, _ := ssh.NewSignerFromKey(ecKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, _ := ssh.NewSignerFromKey(rsaKey)
	srv := newSSHServer(t, nil, ecSigner, rsaSigner)
	for i, fp := range srv.fingerprints {
		plan := credtype.VerifyPlan{Method: credtype.VerifySSH, Address: srv.addr, Username: "u", Password: "pw", Fingerprint: fp}
		if out := (Checker{Timeout: 10 * time.Second}).Run(context.Background(), plan); out.Result != lifecycle.VerifyOK {
			t.Errorf("host key %d pinned: %+v", i, out)
		}
	}
	plan := credtype.VerifyPlan{Method: credtype.VerifySSH, Address: srv.addr, Username: "u", Password: "pw", Fingerprint: "SHA256:" + strings.Repeat("A", 43)}
	out := Checker{Timeout: 10 * time.Second}.Run(context.Background(), plan)
	for _, fp := range srv.fingerprints {
		if out.Result != lifecycle.VerifyFailed || !strings.Contains(out.Detail, fp) {
			t.Errorf("no key pinned: %+v lacks %s", out, fp)
		}
	}
}

// A server that accepts the connection and never speaks is bounded by the timeout.
func TestSSHCheckSilentServerTimesOut(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	plan := credtype.VerifyPlan{Method: credtype.VerifySSH, Address: l.Addr().String(), Username: "u", Password: "pw", Fingerprint: "SHA256:x"}
	out := Checker{Timeout: 200 * time.Millisecond}.Run(context.Background(), plan)
	if out.Result != lifecycle.VerifyFailed || !strings.Contains(out.Detail, "timeout") {
		t.Errorf("silent server: %+v, want failed with timeout", out)
	}
}

func TestHTTPCheckRefusesPlainHTTPElsewhere(t *testing.T) {
	t.Parallel()
	plan := credtype.VerifyPlan{Method: credtype.VerifyHTTP, URL: "http://example.com/", Header: "Authorization", HeaderValue: "Bearer x"}
	out := Checker{}.Run(context.Background(), plan)
	if out.Result != lifecycle.VerifyFailed || !strings.Contains(out.Detail, "https") {
		t.Errorf("plain http to a remote host: %+v", out)
	}
}
