// Package verify runs the network checks of credentials/<name>/verify: one GET with a
// credential's authorization, Slack's auth.test, and an SSH sign-in that requires the
// server's host key to match the stored fingerprint. The catalog (credtype) says which
// check a type gets and with what; the backend records the outcome (lifecycle).
//
// Every check is bounded like the oauth package's token client: a timeout over the
// whole exchange, the endpoint rule (credtype.EndpointAllowed) on every URL including
// redirects, no redirect to another host, and a cap on what is read. Where it may
// connect is the caller's dialer's (Checker.Transport and Dial: the backend's
// netpolicy guard). An outcome's
// detail never carries a secret or the remote side's text. The package imports no
// Vault package.
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"
)

// Bounds of one check.
const (
	// DefaultTimeout is used when Checker.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// MaxBody caps what is read of an HTTP answer (Slack's is a small JSON object).
	MaxBody = 64 << 10
	// maxRedirects bounds same-host redirects.
	maxRedirects = 3
)

// Checker runs checks. The zero value uses DefaultTimeout and http.DefaultTransport.
type Checker struct {
	// Timeout bounds one check from connecting to the last byte read.
	Timeout time.Duration
	// Transport is the base HTTP transport; nil is a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Dial opens the TCP connection of an SSH check; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Transports gives an HTTP check of a credential with a ca_certificate its
	// transport; nil is a cache of its own over Transport.
	Transports *tlsclient.Cache
}

// Outcome is a check's result (lifecycle.VerifyOK or VerifyFailed) and its detail.
type Outcome struct {
	Result string
	Detail string
}

func ok(detail string) Outcome     { return Outcome{lifecycle.VerifyOK, detail} }
func failed(detail string) Outcome { return Outcome{lifecycle.VerifyFailed, detail} }

func (c Checker) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Run performs the network check of plan (VerifyHTTP, VerifySlack or VerifySSH).
func (c Checker) Run(ctx context.Context, plan credtype.VerifyPlan) Outcome {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	switch plan.Method {
	case credtype.VerifyHTTP, credtype.VerifySlack:
		return c.http(ctx, plan)
	case credtype.VerifySSH:
		return c.ssh(ctx, plan)
	}
	return failed("no network check for " + string(plan.Method))
}

// checkRedirect follows a redirect only to the same host and under the endpoint rule:
// the request carries the credential.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return errors.New("too many redirects")
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) || !allowed(req.URL) {
		return errRedirect
	}
	return nil
}

var errRedirect = errors.New("redirect to another host refused")

func allowed(u *url.URL) bool {
	return credtype.EndpointAllowed(strings.ToLower(u.Scheme), u.Hostname())
}

func (c Checker) http(ctx context.Context, plan credtype.VerifyPlan) Outcome {
	u, err := url.Parse(plan.URL)
	if err != nil || !allowed(u) {
		return failed("the URL is not https (http only to loopback hosts)")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, plan.URL, nil)
	if err != nil {
		return failed("the URL cannot be requested")
	}
	if plan.Header != "" {
		req.Header.Set(plan.Header, plan.HeaderValue)
	}
	req.Header.Set("Accept", "application/json")
	req.Close = true // rare calls: no idle connection left to a server nobody else uses
	transports := c.Transports
	if transports == nil {
		transports = tlsclient.NewCache(c.Transport, 1)
	}
	transport, err := transports.For(tlsclient.Material{CACertificates: plan.CACertificate})
	if err != nil {
		return failed("the stored ca_certificate does not parse")
	}
	client := &http.Client{Transport: transport, CheckRedirect: checkRedirect, Timeout: c.timeout()}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, errRedirect) {
			return failed("the server redirected to another host, which was not followed")
		}
		return failed("no answer: " + networkKind(err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return failed(fmt.Sprintf("refused: HTTP %d", resp.StatusCode))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return failed(fmt.Sprintf("unexpected answer: HTTP %d", resp.StatusCode))
	case plan.Method != credtype.VerifySlack:
		return ok(fmt.Sprintf("HTTP %d", resp.StatusCode))
	case err != nil || len(body) > MaxBody:
		return failed("the answer could not be read")
	}
	return slackAnswer(body)
}

// slackAnswer reads auth.test's {"ok": …, "error": …}; only a safe error code is kept.
func slackAnswer(body []byte) Outcome {
	var r struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &r) != nil {
		return failed("the answer is not Slack's JSON")
	}
	if r.OK {
		return ok("auth.test ok")
	}
	code, safe := oauth.SafeCode(r.Error)
	if !safe {
		code = "unknown"
	}
	return failed("slack refused the token: " + code)
}

// networkKind names a failed connection or exchange by its kind only
// (netpolicy.FailureKind), as the token client does: error texts can name the
// address, the port or the DNS server, or quote the remote side.
func networkKind(err error) string {
	if kind := netpolicy.FailureKind(err); kind != "" {
		return kind + ": " + netpolicy.Describe(kind)
	}
	return "the exchange failed"
}

// errHostKey is the host key callback's refusal: the key the server offered.
type errHostKey struct{ offered ssh.PublicKey }

func (e *errHostKey) Error() string { return "host key mismatch" }

// hostKeyGroups are the host key algorithms asked for in turn. A server with several
// host keys shows the one the client prefers, and a SHA256 fingerprint does not say
// which type of key it is of: when the key shown is not the pinned one, the others
// are asked for, each on a new connection, before the check fails.
var hostKeyGroups = [][]string{
	{ssh.KeyAlgoED25519},
	{ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521},
	{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
}

// hostKeyGroup is the index in hostKeyGroups of the algorithms that show a key of
// type keyType (RSA keys are of type ssh-rsa, shown as rsa-sha2-*); -1 for none.
func hostKeyGroup(keyType string) int {
	if keyType == ssh.KeyAlgoRSA {
		keyType = ssh.KeyAlgoRSASHA512
	}
	for i, g := range hostKeyGroups {
		if slices.Contains(g, keyType) {
			return i
		}
	}
	return -1
}

// ssh connects, requires the pinned host key, and signs in; it runs nothing.
func (c Checker) ssh(ctx context.Context, plan credtype.VerifyPlan) Outcome {
	var offered []string
	seen := map[int]bool{}
	// Attempt -1 takes the client's own preference; then each group not yet seen.
	for attempt := -1; attempt < len(hostKeyGroups); attempt++ {
		var algos []string
		if attempt >= 0 {
			if seen[attempt] {
				continue
			}
			seen[attempt], algos = true, hostKeyGroups[attempt]
		}
		out, hk := c.sshAttempt(ctx, plan, algos)
		if hk == nil {
			if attempt >= 0 && out.Detail == detailNoCommonHostKey {
				continue // the server has no key of this type
			}
			return out
		}
		offered = append(offered, ssh.FingerprintSHA256(hk.offered))
		seen[hostKeyGroup(hk.offered.Type())] = true
	}
	return failed("host key mismatch: the server offered " + strings.Join(offered, " and ") + ", not host_key_fingerprint")
}

const detailNoCommonHostKey = "the server has no host key of the types asked for"

// sshAttempt is one connection: the host key it was shown when that is not the
// pinned one, else the outcome.
func (c Checker) sshAttempt(ctx context.Context, plan credtype.VerifyPlan, hostKeyAlgos []string) (Outcome, *errHostKey) {
	dial := c.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", plan.Address)
	if err != nil {
		return failed("no connection: " + networkKind(err)), nil
	}
	defer func() { _ = conn.Close() }()
	// The handshake and authentication run within the check's deadline, and end
	// with it however the server behaves.
	if dl, set := ctx.Deadline(); set {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	auth := []ssh.AuthMethod{ssh.Password(plan.Password)}
	if plan.Signer != nil {
		auth = []ssh.AuthMethod{ssh.PublicKeys(plan.Signer)}
	}
	cfg := &ssh.ClientConfig{
		User: plan.Username,
		Auth: auth,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if ssh.FingerprintSHA256(key) != plan.Fingerprint {
				return &errHostKey{offered: key}
			}
			return nil
		},
		HostKeyAlgorithms: hostKeyAlgos,
		Timeout:           c.timeout(),
	}
	client, chans, reqs, err := ssh.NewClientConn(conn, plan.Address, cfg)
	var hk *errHostKey
	switch {
	case errors.As(err, &hk):
		return Outcome{}, hk
	case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
		// x/crypto/ssh's own text for every offered method refused.
		return failed("the server refused the " + authName(plan) + " for " + plan.Username), nil
	case err != nil && strings.Contains(err.Error(), "no common algorithm for host key"):
		return failed(detailNoCommonHostKey), nil
	case err != nil && ctx.Err() != nil:
		return failed("no answer: timeout"), nil
	case err != nil:
		return failed("the SSH handshake failed: " + networkKind(err)), nil
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for ch := range chans {
			_ = ch.Reject(ssh.Prohibited, "no channels")
		}
	}()
	_ = client.Close() // nothing runs: signed in, then gone
	return ok("host key matches; signed in as " + plan.Username), nil
}

func authName(plan credtype.VerifyPlan) string {
	if plan.Signer != nil {
		return "key"
	}
	return "password"
}
