// Package dnstest is a DNS server for tests: it answers A and AAAA questions over UDP
// on a loopback port from a function, so a test decides what a name resolves to on
// each lookup (a name that resolves to a denied address, one whose address changes
// between lookups, one that does not resolve). Resolver points a net.Resolver at it.
package dnstest

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Answer says what a lookup of name returns: its IPv4 and IPv6 addresses (the A and
// AAAA answers), or nil for a name that does not exist (NXDOMAIN). n counts the
// lookups of name so far (A questions only), from 1.
type Answer func(name string, n int) []netip.Addr

// Server is a running DNS server.
type Server struct {
	conn   net.PacketConn
	answer Answer

	mu      sync.Mutex
	lookups map[string]int
}

// Start runs a server until the test ends.
func Start(t testing.TB, answer Answer) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s := &Server{conn: conn, answer: answer, lookups: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return s
}

// Addr is the server's address.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Resolver is a pure-Go resolver that sends every question to s.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", s.Addr())
		},
	}
}

// Lookups is how many A questions about name s has answered.
func (s *Server) Lookups(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups[strings.TrimSuffix(strings.ToLower(name), ".")]
}

func (s *Server) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.respond(buf[:n]); resp != nil {
			_, _ = s.conn.WriteTo(resp, from)
		}
	}
}

const (
	typeA    = 1
	typeAAAA = 28
)

// respond answers one query: its first question only, which is all a resolver asks.
func (s *Server) respond(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) < 1 {
		return nil
	}
	// The question: labels up to the root, then type and class.
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	question := q[12 : i+5]
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	name := strings.ToLower(strings.Join(labels, "."))

	n := 0
	if qtype == typeA {
		s.mu.Lock()
		s.lookups[name]++
		n = s.lookups[name]
		s.mu.Unlock()
	} else {
		s.mu.Lock()
		n = max(s.lookups[name], 1)
		s.mu.Unlock()
	}
	addrs := s.answer(name, n)

	resp := make([]byte, 12, 512)
	copy(resp[0:2], q[0:2])                                                        // ID
	flags := uint16(0x8000|0x0400|0x0080) | binary.BigEndian.Uint16(q[2:4])&0x0100 // QR, AA, RA, RD copied
	if addrs == nil {
		flags |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[2:4], flags)
	binary.BigEndian.PutUint16(resp[4:6], 1)
	resp = append(resp, question...)
	count := 0
	for _, a := range addrs {
		var rdata []byte
		switch {
		case qtype == typeA && a.Is4():
			b := a.As4()
			rdata = b[:]
		case qtype == typeAAAA && a.Is6() && !a.Is4In6():
			b := a.As16()
			rdata = b[:]
		default:
			continue
		}
		resp = append(resp, 0xc0, 0x0c) // the question's name
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, 1)                  // IN
		resp = binary.BigEndian.AppendUint32(resp, 0)                  // TTL: nothing cached
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata))) //nolint:gosec // G115: rdata is an A/AAAA/TXT record of the test server's own, far under 64 KiB
		resp = append(resp, rdata...)
		count++
	}
	binary.BigEndian.PutUint16(resp[6:8], uint16(count))
	return resp
}
