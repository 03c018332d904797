package netpolicy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/dnstest"
)

// fixedGuard is a guard whose policy is p, swapped by set.
type fixedGuard struct {
	*Guard
	p atomic.Pointer[Policy]
}

func newFixedGuard(p *Policy) *fixedGuard {
	g := &fixedGuard{}
	g.p.Store(p)
	g.Guard = NewGuard(func(context.Context) (*Policy, error) { return g.p.Load(), nil })
	return g
}

var denyLoopback = []string{"127.0.0.0/8", "::1/128"}

// acceptOrder listens on 127.0.0.1 and reports the remote address of every connection
// it accepts, in order.
func acceptOrder(t *testing.T) (net.Listener, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			got <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	return ln, got
}

// A denied address is refused before connecting: the listener sees only the
// connection made after it.
func TestGuardRefusesBeforeConnecting(t *testing.T) {
	t.Parallel()
	ln, accepted := acceptOrder(t)
	g := newFixedGuard(mustNew(t, denyLoopback, nil))
	_, err := g.DialContext(context.Background(), "tcp", ln.Addr().String())
	if !errors.Is(err, ErrDenied) || FailureKind(err) != KindDenied {
		t.Fatalf("dial to a denied address: %v (kind %q), want denied_network", err, FailureKind(err))
	}
	g.p.Store(Default())
	c, err := g.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial under the defaults: %v", err)
	}
	defer c.Close()
	if first := <-accepted; first != c.LocalAddr().String() {
		t.Fatalf("the listener accepted %s first, not the allowed connection %s: the denied dial connected", first, c.LocalAddr())
	}
}

// The guard judges the address a name resolves to, at every connection: a name that
// resolves to a denied address is refused, and one whose address changes between
// lookups (DNS rebinding) is judged afresh.
func TestGuardJudgesResolvedAddress(t *testing.T) {
	t.Parallel()
	ln, _ := acceptOrder(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dns := dnstest.Start(t, func(name string, n int) []netip.Addr {
		switch {
		case name == "denied.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		case name == "rebind.test" && n == 1:
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}
		case name == "rebind.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		return nil
	})
	g := newFixedGuard(mustNew(t, []string{"127.0.0.1/32"}, nil))
	g.Resolver = dns.Resolver()
	if _, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort("denied.test", port)); FailureKind(err) != KindDenied {
		t.Fatalf("a name resolving to a denied address: %v, want denied_network", err)
	}
	// 127.0.0.2 is allowed (nothing listens on it at this port, or something does):
	// either way the first dial is not refused by the policy, the second is.
	_, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort("rebind.test", port))
	if FailureKind(err) == KindDenied {
		t.Fatalf("first lookup (allowed address) refused by the policy: %v", err)
	}
	if _, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort("rebind.test", port)); FailureKind(err) != KindDenied {
		t.Fatalf("second lookup (rebound to a denied address): %v, want denied_network", err)
	}
	if n := dns.Lookups("rebind.test"); n != 2 {
		t.Fatalf("rebind.test looked up %d times, want 2 (once per connection)", n)
	}
	if _, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort("missing.test", port)); FailureKind(err) != KindDNS {
		t.Fatalf("a name that does not resolve: %v, want dns_failure", err)
	}
}

// A policy that cannot be read refuses.
func TestGuardFailsClosed(t *testing.T) {
	t.Parallel()
	ln, _ := acceptOrder(t)
	g := NewGuard(func(context.Context) (*Policy, error) { return nil, errors.New("storage down") })
	if _, err := g.DialContext(context.Background(), "tcp", ln.Addr().String()); FailureKind(err) != KindDenied {
		t.Fatalf("dial without a policy: %v, want denied_network", err)
	}
}

// Every connection an HTTP transport of the guard makes passes it, redirects
// included.
func TestGuardTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	g := newFixedGuard(Default())
	client := &http.Client{Transport: g.Transport()}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("under the defaults: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // the connection is kept alive for the next request
	g.p.Store(mustNew(t, denyLoopback, nil))
	if _, err := client.Post(srv.URL, "text/plain", strings.NewReader("once")); FailureKind(err) != KindDenied {
		t.Fatalf("loopback denied, on the kept-alive connection: %v, want denied_network", err)
	}
	if _, err := client.Get(srv.URL); FailureKind(err) != KindDenied {
		t.Fatalf("loopback denied: %v, want denied_network", err)
	}
}

// FailureKind names a refused port and an unresolvable name by kind, and the
// description of every kind names no address, port or DNS server.
func TestFailureKindNamesNoAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(refused)
	dns := dnstest.Start(t, func(string, int) []netip.Addr { return nil })
	g := newFixedGuard(Default())
	g.Resolver = dns.Resolver()
	_, dnsPort, _ := net.SplitHostPort(dns.Addr())
	for _, c := range []struct {
		addr, kind string
	}{
		{refused, KindConnectionRefused},
		{net.JoinHostPort("nowhere.test", port), KindDNS},
		{net.JoinHostPort("nowhere.onion", port), KindDNS}, // never looked up (RFC 7686)
	} {
		_, err := g.DialContext(context.Background(), "tcp", c.addr)
		kind := FailureKind(err)
		if kind != c.kind {
			t.Fatalf("dial %s: kind %q (%v), want %s", c.addr, kind, err, c.kind)
		}
		// The raw error names what must not get out; the kind and its description do not.
		for _, said := range []string{kind, Describe(kind)} {
			for _, secret := range []string{"127.0.0.1", port, dnsPort, "nowhere"} {
				if strings.Contains(said, secret) {
					t.Errorf("%q names %q", said, secret)
				}
			}
		}
	}
	for _, k := range []string{KindDenied, KindDNS, KindConnectionRefused, KindUnreachable, KindTimeout, KindTLS, KindConnectionReset, KindConnectionClosed, KindCanceled, KindNetwork} {
		if Describe(k) == "" {
			t.Errorf("kind %s has no description", k)
		}
	}
	if FailureKind(nil) != "" || FailureKind(errors.New("not a transport failure")) != "" {
		t.Error("FailureKind names what is not a transport failure")
	}
}

// Behind a proxy the connection goes to the proxy, but a request to a literal address
// the policy denies is refused before it is handed over.
func TestGuardTransportProxy(t *testing.T) {
	t.Parallel()
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		proxied.Add(1)
		_, _ = io.WriteString(w, "from the proxy")
	}))
	t.Cleanup(proxy.Close)
	g := newFixedGuard(Default())
	tr := g.Transport()
	proxyURL, _ := url.Parse(proxy.URL)
	inner := tr.Proxy
	tr.Proxy = func(req *http.Request) (*url.URL, error) {
		if u, err := inner(req); err != nil || u != nil {
			return u, err
		}
		return proxyURL, nil // as HTTP_PROXY would
	}
	client := &http.Client{Transport: tr}
	resp, err := client.Get("http://allowed.example/")
	if err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	resp.Body.Close()
	for _, target := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://2852039166/"} {
		if _, err := client.Get(target); FailureKind(err) != KindDenied {
			t.Errorf("%s through the proxy: %v, want denied_network", target, err)
		}
	}
	if n := proxied.Load(); n != 1 {
		t.Fatalf("the proxy received %d requests, want only the allowed one", n)
	}
}
