package netpolicy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"
)

// Guard applies the policy in force to every connection its dialer opens: the check
// runs on the resolved address right before connecting (net.Dialer's Control hook), so
// a name that resolves to a denied address, a redirect, and a name whose address
// changes between two lookups (DNS rebinding) are judged by where the connection
// actually goes. A name with several addresses connects to the first allowed one.
//
// With a proxy (HTTPS_PROXY in the environment) the connection is to the proxy, and it
// is the proxy's address that is judged; a request's literal address (an IP, or
// localhost) is still refused before it is handed to the proxy, but a name is
// resolved by the proxy, which then decides where it goes.
type Guard struct {
	policy func(context.Context) (*Policy, error)
	// Resolver resolves names; nil is the system's. Set it before the first dial.
	Resolver *net.Resolver
}

// NewGuard returns a guard that asks policy for the policy in force at each connection.
// A policy that cannot be had refuses the connection.
func NewGuard(policy func(context.Context) (*Policy, error)) *Guard {
	return &Guard{policy: policy}
}

// Control is the net.Dialer ControlContext hook: it refuses a connection to an address
// the policy does not allow with ErrDenied.
func (g *Guard) Control(ctx context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return ErrDenied // not an IP address and port: nothing this guard can judge
	}
	p, err := g.policy(ctx)
	if err != nil {
		return fmt.Errorf("%w: the policy could not be read", ErrDenied)
	}
	if !p.Allows(ap.Addr()) {
		return ErrDenied
	}
	return nil
}

// Dialer returns a dialer with the guard's check and resolver, and the connect timeout
// and keep-alive of http.DefaultTransport's.
func (g *Guard) Dialer() *net.Dialer {
	return &net.Dialer{
		Timeout:        30 * time.Second,
		KeepAlive:      30 * time.Second,
		Resolver:       g.Resolver,
		ControlContext: g.Control,
	}
}

// DialContext opens a connection through Dialer. The connection is judged again
// before each write once the policy in force is another than the one it was opened
// under, so a kept-alive connection an HTTP transport reuses after the operator denied
// its address is refused like a new one.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	p, err := g.policy(ctx)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%w: the policy could not be read", ErrDenied)}
	}
	conn, err := g.Dialer().DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		_ = conn.Close() // refused: the close error changes nothing
		return nil, &net.OpError{Op: "dial", Net: network, Err: ErrDenied}
	}
	c := &guardedConn{Conn: conn, guard: g, addr: ap.Addr()}
	c.judged.Store(p)
	return c, nil
}

// guardedConn is a connection the guard allowed under the policy judged; a write
// under another policy judges its address again.
type guardedConn struct {
	net.Conn
	guard  *Guard
	addr   netip.Addr
	judged atomic.Pointer[Policy]
}

func (c *guardedConn) Write(b []byte) (int, error) {
	p, err := c.guard.policy(context.Background())
	switch {
	case err != nil:
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: fmt.Errorf("%w: the policy could not be read", ErrDenied)}
	case p != c.judged.Load():
		if !p.Allows(c.addr) {
			return 0, &net.OpError{Op: "write", Net: "tcp", Err: ErrDenied}
		}
		c.judged.Store(p)
	}
	return c.Conn.Write(b)
}

// Transport returns a clone of http.DefaultTransport (its timeouts, connection limits
// and proxy from the environment) whose every connection passes the guard, and whose
// requests to a literal address the policy denies are refused before any proxy.
func (g *Guard) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = g.DialContext
	proxy := t.Proxy
	t.Proxy = func(req *http.Request) (*url.URL, error) {
		if err := g.checkLiteral(req.Context(), req.URL.Hostname()); err != nil {
			return nil, err
		}
		if proxy == nil {
			return nil, nil
		}
		return proxy(req)
	}
	return t
}

// checkLiteral refuses a host whose literal address the policy denies (CheckHost).
func (g *Guard) checkLiteral(ctx context.Context, host string) error {
	p, err := g.policy(ctx)
	if err != nil {
		return &net.OpError{Op: "proxyconnect", Net: "tcp", Err: fmt.Errorf("%w: the policy could not be read", ErrDenied)}
	}
	if err := p.CheckHost(host); err != nil {
		return &net.OpError{Op: "proxyconnect", Net: "tcp", Err: err}
	}
	return nil
}
