//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// faultRequestTimeout is the mount's request_timeout in TestProviderFaults: short, so
// a provider that never answers is given up on quickly.
const faultRequestTimeout = 3 * time.Second

// faultWaitBound bounds any caller's wait on a failing provider: request_timeout and a
// generous margin for a loaded machine. It is a correctness bound (the wait does not
// follow the provider), not a speed target.
const faultWaitBound = faultRequestTimeout + 15*time.Second

// providerFault is one way a token endpoint fails, and what the engine must make of it.
type providerFault struct {
	name string
	// fault answers in the provider's place; endpoint instead gives a token_url that
	// fails before any provider sees the request (then 0 provider requests).
	fault    oauthtest.Fault
	endpoint func(t *testing.T, p *oauthtest.Provider) (tokenURL string, restore func())
	status   int      // the caller's status
	msg      []string // what the caller's message names
	state    string   // the credential's status afterwards
}

// slowFault holds the request until the client gives up.
func slowFault(_ http.ResponseWriter, r *http.Request) bool {
	<-r.Context().Done()
	return true
}

// hugeFault answers 200 with a 64 MiB JSON body, streamed; the client stops at its cap.
func hugeFault(w http.ResponseWriter, _ *http.Request) bool {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	chunk := []byte(`"` + strings.Repeat(oauthtest.Marker, 1024/len(oauthtest.Marker)) + `",`)
	if _, err := w.Write([]byte(`{"access_token":"huge","token_type":"bearer","padding":[`)); err != nil {
		return true
	}
	for written := 0; written < 64<<20; written += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return true // the client hung up at its cap
		}
	}
	_, _ = w.Write([]byte(`""]}`))
	return true
}

// proxyToNowhere is a reverse proxy whose upstream is down: it answers 502 itself.
func proxyToNowhere(t *testing.T) oauthtest.Fault {
	dead := closedPort(t)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: dead})
	return func(w http.ResponseWriter, r *http.Request) bool {
		proxy.ServeHTTP(w, r)
		return true
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func jsonFault(status int, body string) oauthtest.Fault {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		oauthtest.WriteJSON(w, status, body)
		return true
	}
}

func providerFaults(t *testing.T) []providerFault {
	transient := func(name string, f oauthtest.Fault, msg ...string) providerFault {
		return providerFault{name: name, fault: f, status: http.StatusBadGateway, msg: msg, state: "active"}
	}
	permanent := func(name, code string) providerFault {
		// A client_credentials credential has no authorize: it is told to patch its settings.
		return providerFault{name: name, status: http.StatusForbidden, msg: []string{code, "vault patch"}, state: "needs_reauth",
			fault: jsonFault(http.StatusBadRequest, `{"error":"`+code+`","error_description":"`+oauthtest.Marker+`"}`)}
	}
	repoint := func(bad string) func(*testing.T, *oauthtest.Provider) (string, func()) {
		return func(_ *testing.T, _ *oauthtest.Provider) (string, func()) { return bad, nil }
	}
	return []providerFault{
		transient("timeout", slowFault, "timeout"),
		transient("500", oauthtest.Fail(http.StatusInternalServerError), "HTTP 500"),
		transient("502 from a proxy", proxyToNowhere(t), "HTTP 502"),
		transient("429 with Retry-After", oauthtest.Fail(http.StatusTooManyRequests, "Retry-After", "2"), "HTTP 429", "retry after 2s"),
		transient("malformed JSON", jsonFault(http.StatusOK, `{"access_token": "x", `+oauthtest.Marker), "bad_response"),
		transient("64 MiB response", hugeFault, "response_too_large"),
		{name: "unverifiable TLS", status: http.StatusBadGateway, msg: []string{"tls_failure", "TLS"}, state: "active",
			endpoint: func(t *testing.T, p *oauthtest.Provider) (string, func()) {
				// A real TLS server whose certificate no system root signs.
				s := httptest.NewTLSServer(http.HandlerFunc(p.ServeToken))
				t.Cleanup(s.Close)
				return s.URL + "/token", nil
			}},
		{name: "connection refused", status: http.StatusBadGateway, msg: []string{"connection_refused", "refused the connection"}, state: "active",
			endpoint: func(t *testing.T, p *oauthtest.Provider) (string, func()) {
				addr := closedPort(t)
				// The provider comes back on the same address.
				return "http://" + addr + "/token", func() {
					l, err := net.Listen("tcp", addr)
					if err != nil {
						t.Fatalf("listening again on %s: %v", addr, err)
					}
					s := &http.Server{Handler: http.HandlerFunc(p.ServeToken), ReadHeaderTimeout: 10 * time.Second}
					go func() { _ = s.Serve(l) }()
					t.Cleanup(func() { _ = s.Close() })
				}
			}},
		// Go refuses .onion names without sending a DNS query (RFC 7686).
		{name: "DNS failure", status: http.StatusBadGateway, msg: []string{"dns_failure", "did not resolve"}, state: "active",
			endpoint: repoint("https://token.provider-e2e.onion/token")},
		permanent("invalid_grant", "invalid_grant"),
		permanent("invalid_client", "invalid_client"),
		transient("no access_token", jsonFault(http.StatusOK, `{"token_type":"bearer","expires_in":3600,"note":"`+oauthtest.Marker+`"}`), "bad_response"),
		transient("negative expires_in", jsonFault(http.StatusOK, `{"access_token":"neg-`+randomHex(4)+`","token_type":"bearer","expires_in":-60}`), "bad_response"),
	}
}

// exists reports whether credentials/<name> is stored at mount.
func exists(v *vaultServer, mount, name string) bool {
	s, err := v.client.Logical().Read(mount + "/credentials/" + name)
	return err == nil && s != nil
}

// TestProviderFaults: every way a provider fails, one case each, through one real
// Vault: the caller's status and message (naming the fault, never a secret or the
// provider's body), the credential's state, the bound on the caller's wait, the
// provider requests it cost, and recovery once the provider is back.
func TestProviderFaults(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	if _, err := shared.client.Logical().Write(mount+"/config", map[string]any{
		"request_timeout": int(faultRequestTimeout.Seconds()), "default_token_lifetime": 600,
	}); err != nil {
		t.Fatal(err)
	}
	client := noRetryClient(t, shared)
	access := func(name string) (*api.Secret, time.Duration, error) {
		start := time.Now()
		s, err := client.Logical().Read(mount + "/access/" + name)
		return s, time.Since(start), err
	}
	// write creates the credential, or updates it as an operator fixing it would.
	write := func(t *testing.T, name, tokenURL string) {
		t.Helper()
		args := []string{"write", mount + "/credentials/" + name,
			"token_url=" + tokenURL, "client_id=" + oauthtest.ClientID, "client_secret=" + oauthtest.ClientSecret}
		if !exists(shared, mount, name) {
			args = append(args, "type=oauth2_client_credentials")
		}
		shared.mustCLI(t, args...)
	}
	status := func(t *testing.T, name string) string {
		t.Helper()
		return fmt.Sprint(decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/"+name)).Data["status"])
	}
	// recovered polls reads until one is served, for at most 30 s: the backoff after
	// one failure is under a second, a Retry-After here 2 s.
	recovered := func(t *testing.T, name string) (int, time.Duration) {
		t.Helper()
		start, reads := time.Now(), 0
		for time.Since(start) < 30*time.Second {
			reads++
			s, _, err := access(name)
			if err == nil && s != nil && s.Data["access_token"] != nil {
				return reads, time.Since(start)
			}
			time.Sleep(100 * time.Millisecond) // polling the engine's state
		}
		t.Fatalf("%s: not served 30 s after the provider came back", name)
		return 0, 0
	}

	for i, c := range providerFaults(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("fault-%02d", i)
			p := newIDP(t, oauthtest.Options{})
			tokenURL, comeBack := p.TokenURL(), func() { p.SetFault(nil) }
			if c.endpoint != nil {
				var back func()
				tokenURL, back = c.endpoint(t, p)
				// Without a way back for the endpoint, the operator points the
				// credential at a healthy one.
				comeBack = func() { write(t, name, p.TokenURL()) }
				if back != nil {
					comeBack = back
				}
			}
			p.SetFault(c.fault)
			write(t, name, tokenURL)

			s, wait, err := access(name)
			if err == nil {
				t.Fatalf("access succeeded: %s", outcome(s, nil))
			}
			if wait > faultWaitBound {
				t.Errorf("the caller waited %s, more than request_timeout %s and margin", wait, faultRequestTimeout)
			}
			if got := statusCode(err); got != c.status {
				t.Errorf("status %d, want %d: %v", got, c.status, err)
			}
			for _, m := range c.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("the message does not name %q: %v", m, err)
				}
			}
			for _, secret := range []string{oauthtest.ClientSecret, oauthtest.Marker} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the message shows %q: %v", secret, err)
				}
			}
			if st := status(t, name); st != c.state {
				t.Errorf("credential status %s, want %s", st, c.state)
			}
			wantRequests := int64(1)
			if c.endpoint != nil {
				wantRequests = 0
			}
			if n := p.Requests(); n != wantRequests {
				t.Errorf("%d provider requests for one failing read, want %d", n, wantRequests)
			}
			requests := p.Requests()

			if c.state == "needs_reauth" {
				// Refused for good: no second request until a person acts.
				if _, _, err := access(name); statusCode(err) != http.StatusForbidden || p.Requests() != requests {
					t.Fatalf("second read: %v after %d requests (want 403 without asking again)", err, p.Requests())
				}
				p.SetFault(nil)
				write(t, name, p.TokenURL())
			} else {
				comeBack()
			}
			reads, took := recovered(t, name)
			t.Logf("fault %q: %d, %d provider requests, waited %s; served again after %d reads, %s",
				c.name, statusCode(err), requests, wait.Round(time.Millisecond), reads, took.Round(time.Millisecond))
			if st := status(t, name); st != "active" {
				t.Errorf("status after recovery %s, want active", st)
			}
		})
	}

	t.Run("expires_in 0", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, oauthtest.Options{})
		p.SetFault(jsonFault(http.StatusOK, `{"access_token":"zero-`+randomHex(4)+`","token_type":"bearer","expires_in":0}`))
		write(t, "zero", p.TokenURL())
		s, _, err := access("zero")
		if err != nil {
			t.Fatalf("a token without a lifetime: %v", err)
		}
		// 0 says nothing of the lifetime: default_token_lifetime (600 s) applies.
		if in := fmt.Sprint(s.Data["expires_in"]); in != "600" && in != "599" {
			t.Fatalf("expires_in %s, want default_token_lifetime 600", in)
		}
		if _, _, err := access("zero"); err != nil || p.Requests() != 1 {
			t.Fatalf("second read: %v after %d requests, want the cached token", err, p.Requests())
		}
	})

	t.Run("1,000 failing reads", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, oauthtest.Options{})
		p.SetFault(oauthtest.Fail(http.StatusInternalServerError))
		write(t, "thousand", p.TokenURL())
		start := time.Now()
		const reads = 1000
		for i := range reads {
			if _, _, err := access("thousand"); statusCode(err) != http.StatusBadGateway {
				t.Fatalf("read %d: %v, want 502", i, err)
			}
		}
		elapsed := time.Since(start)
		// The n-th backoff window is drawn from (0, 2ⁿ⁻¹ s]: reads over a few seconds
		// fit a handful of windows. 12 would need windows 9 to 11 (ceilings of 256 s
		// and more) to fall under the seconds elapsed, together, which they do not.
		n := p.Requests()
		t.Logf("%d failing reads in %s: %d provider requests", reads, elapsed.Round(time.Millisecond), n)
		if n > 12 {
			t.Fatalf("%d provider requests for %d reads in %s: the backoff is not holding", n, reads, elapsed)
		}
		if st := status(t, "thousand"); st != "active" {
			t.Fatalf("status after 1,000 transient failures %s, want active", st)
		}
	})
}
