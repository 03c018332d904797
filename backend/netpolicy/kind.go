package netpolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
)

// Failure kinds: how a connection or an exchange over it failed, named without an
// address, a port, a host name or a DNS server. They are the only words about a
// network failure that reach an answer, stored state, an alert, a log line, an event
// or a notification.
const (
	KindDenied            = "denied_network"     // the policy refused the address
	KindDNS               = "dns_failure"        // the name did not resolve
	KindConnectionRefused = "connection_refused" // nothing listens there
	KindUnreachable       = "unreachable"        // no route to the host or network
	KindTimeout           = "timeout"            // no complete answer in time
	KindTLS               = "tls_failure"        // the TLS handshake failed (certificate, protocol)
	KindConnectionReset   = "connection_reset"   // the peer reset the connection
	KindConnectionClosed  = "connection_closed"  // the peer closed it before answering in full
	KindCanceled          = "canceled"           // the caller gave up
	KindNetwork           = "network"            // another transport failure
)

// FailureKind names a failed connection or exchange by kind; "" when err is nil or
// not a transport failure (an error of the caller's own making). It reads only the
// error's types and system error numbers, never its text, which can quote an address
// or the remote side.
func FailureKind(err error) string {
	var (
		dnsErr  *net.DNSError
		addrErr *net.AddrError
		certErr *tls.CertificateVerificationError
		hostErr x509.HostnameError
		authErr x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		opErr   *net.OpError
		netErr  net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrDenied):
		return KindDenied
	case errors.As(err, &dnsErr), errors.As(err, &addrErr):
		// An AddrError is a name that resolved to no usable address (a .onion name,
		// which is never looked up, or one without an address of the family asked).
		return KindDNS
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &authErr),
		errors.As(err, &invalid), errors.As(err, &recErr), errors.As(err, &alert):
		return KindTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindConnectionRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return KindUnreachable
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return KindConnectionReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindConnectionClosed
	case errors.As(err, &opErr):
		if opErr.Op == "remote error" {
			return KindTLS // a TLS alert from the peer
		}
		return KindNetwork
	}
	return ""
}

// descriptions say what each kind means, from local facts only.
var descriptions = map[string]string{
	KindDenied:            "the address is in a network the engine may not connect to (config denied_networks and allowed_networks)",
	KindDNS:               "the host name did not resolve to a usable address",
	KindConnectionRefused: "the endpoint refused the connection",
	KindUnreachable:       "the endpoint's network is unreachable",
	KindTimeout:           "no complete answer within the time limit",
	KindTLS:               "the TLS handshake failed (certificate verification or protocol)",
	KindConnectionReset:   "the connection was reset",
	KindConnectionClosed:  "the connection was closed before a complete answer",
	KindCanceled:          "the request was cancelled",
	KindNetwork:           "the connection failed",
}

// Describe is a sentence about a failure kind, naming nothing but the kind's meaning;
// "" for an unknown kind.
func Describe(kind string) string { return descriptions[kind] }
