// Package netpolicy decides where the engine may connect: the operator's denied and
// allowed networks (config denied_networks and allowed_networks), the defaults that
// keep the engine from being a probe into the network it runs in (link-local, the
// unspecified addresses, the cloud metadata services), the check of a resolved address
// at connect time (Guard, a net.Dialer Control hook every outbound connection passes),
// and the naming of a failed connection by kind only (FailureKind), so no answer, log
// line or stored state names an address, a port or a DNS server.
//
// The scheme of an endpoint is the catalog's rule (credtype.EndpointAllowed), checked
// when a credential is written; the address is this package's, checked on every
// connection. The package imports no Vault package.
package netpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Bounds of one list (denied_networks, allowed_networks).
const (
	MaxNetworks     = 128
	MaxNetworkBytes = 64
)

// Rule is the rule of both lists, as types, errors and the API documentation state it.
var Rule = fmt.Sprintf("at most %d networks, each in CIDR notation (10.0.0.0/8, fd00::/8) or a bare IP address (one address: /32 or /128) of at most %d bytes, without host bits set or a zone", MaxNetworks, MaxNetworkBytes)

// DefaultDenied are the networks refused when the operator has not chosen: nothing on
// them is a provider, a receiver or an SFTP server, and some answer with credentials.
// Everything else, loopback and the private ranges included, stays reachable so local
// development providers, private SFTP hosts and on-premises services keep working.
var DefaultDenied = []string{
	// "This network": on Linux a connection to 0.0.0.0 reaches this host's own
	// services, and no other address in it is a destination.
	"0.0.0.0/8",
	// The IPv6 unspecified address, which likewise reaches this host.
	"::/128",
	// IPv4 link-local. It holds the metadata services of AWS, Google Cloud, Azure,
	// Oracle Cloud, DigitalOcean and others at 169.254.169.254, the AWS ECS task and
	// EKS Pod Identity credential endpoints (169.254.170.2, 169.254.170.23) and
	// Tencent Cloud's (169.254.0.23).
	"169.254.0.0/16",
	// IPv6 link-local.
	"fe80::/10",
	// AWS instance metadata over IPv6, and the EKS Pod Identity agent over IPv6.
	"fd00:ec2::254/128",
	"fd00:ec2::23/128",
	// Alibaba Cloud's metadata service.
	"100.100.100.200/32",
	// Oracle Cloud Infrastructure Classic's metadata service.
	"192.0.0.192/32",
}

// Policy is a parsed pair of lists. The zero Policy allows everything. A Policy is
// immutable: share it freely.
type Policy struct {
	denied  []netip.Prefix
	allowed []netip.Prefix
}

// Default is the policy of DefaultDenied with no allowed list.
func Default() *Policy {
	p, err := New(DefaultDenied, nil)
	if err != nil {
		panic("netpolicy: the default list does not parse: " + err.Error())
	}
	return p
}

// ListError is a list that breaks Rule; Entry is the 1-based position of the first
// entry at fault (0: the list as a whole). It never quotes the entry.
type ListError struct {
	Allowed bool // the allowed list, else the denied one
	Entry   int
	Problem string
}

func (e *ListError) Error() string {
	if e.Entry == 0 {
		return e.Problem + "; the list must hold " + Rule
	}
	return fmt.Sprintf("entry %d %s; the list must hold %s", e.Entry, e.Problem, Rule)
}

// New parses both lists. Entries are normalized (Canonical says how), duplicates
// dropped.
func New(denied, allowed []string) (*Policy, error) {
	d, err := parseList(denied)
	if err != nil {
		return nil, err
	}
	a, err := parseList(allowed)
	if err != nil {
		var le *ListError
		if errors.As(err, &le) {
			le.Allowed = true
		}
		return nil, err
	}
	return &Policy{denied: d, allowed: a}, nil
}

// Canonical returns a list in the form a Policy keeps it: each entry a masked prefix
// (a bare address becomes /32 or /128; an IPv4-mapped IPv6 prefix becomes its IPv4
// prefix), duplicates dropped, order kept. It fails as New does.
func Canonical(entries []string) ([]string, error) {
	ps, err := parseList(entries)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out, nil
}

// Denied is the deny list in canonical form, for a read of the config.
func (p *Policy) Denied() []string { return prefixStrings(p.denied) }

// Allowed is the allow list in canonical form, for a read of the config.
func (p *Policy) Allowed() []string { return prefixStrings(p.allowed) }

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, x := range ps {
		out[i] = x.String()
	}
	return out
}

func parseList(entries []string) ([]netip.Prefix, error) {
	if len(entries) > MaxNetworks {
		return nil, &ListError{Problem: fmt.Sprintf("has %d entries", len(entries))}
	}
	out := make([]netip.Prefix, 0, len(entries))
	for i, e := range entries {
		p, problem := parseEntry(strings.TrimSpace(e))
		if problem != "" {
			return nil, &ListError{Entry: i + 1, Problem: problem}
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func parseEntry(s string) (netip.Prefix, string) {
	if s == "" {
		return netip.Prefix{}, "is empty"
	}
	if len(s) > MaxNetworkBytes {
		return netip.Prefix{}, "is too long"
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, "has a zone"
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, "is not a CIDR or an IP address"
		}
		if p.Masked() != p {
			return netip.Prefix{}, "has host bits set (write the network address, such as 10.0.0.0/8)"
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, "is not a CIDR or an IP address"
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	// An IPv4-mapped prefix means its IPv4 addresses, which is how they are judged.
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, ""
}

// nat64 is the well-known NAT64 prefix (RFC 6052): an address in it reaches the IPv4
// address in its last 32 bits through a translator.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Allows reports whether the engine may connect to a: not in a denied network, and in
// an allowed one unless that list is empty. An IPv4-mapped IPv6 address is judged as
// its IPv4 address; one in the NAT64 prefix is refused also when the IPv4 address it
// reaches is denied.
func (p *Policy) Allows(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	if in(p.denied, a) {
		return false
	}
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		if in(p.denied, netip.AddrFrom4([4]byte(b[12:]))) {
			return false
		}
	}
	return len(p.allowed) == 0 || in(p.allowed, a)
}

func in(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ErrDenied is the refusal of a connection, or of a written endpoint, whose address
// the policy does not allow: the failure kind denied_network.
var ErrDenied = errors.New("the address is in a network the engine may not connect to (config denied_networks and allowed_networks)")

// CheckHost judges a host as written in a credential (a URL's or an SFTP address's
// host) by the addresses it stands for without asking DNS: an IP literal (with the
// IPv4 spellings a system resolver also reads as one, such as 127.1 or 2130706433),
// or localhost and the names under it (127.0.0.1 and ::1, refused when either is
// denied). Any other name is judged when it is resolved, at connect time. It returns
// ErrDenied or nil.
func (p *Policy) CheckHost(host string) error {
	for _, a := range LiteralAddrs(host) {
		if !p.Allows(a) {
			return ErrDenied
		}
	}
	return nil
}

// LiteralAddrs returns the addresses host stands for without a DNS lookup; none for a
// name that needs one.
func LiteralAddrs(host string) []netip.Addr {
	h := strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return []netip.Addr{a}
	}
	if a, ok := parseInetAton(h); ok {
		return []netip.Addr{a}
	}
	return nil
}

// parseInetAton reads the IPv4 forms inet_aton(3) accepts besides the dotted quad:
// one to four parts, each decimal, octal (leading 0) or hex (0x), the last filling the
// remaining bytes (127.1, 0x7f.0.0.1, 2130706433). A system resolver (getaddrinfo)
// connects to them as addresses, so they are judged as such.
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 || s == "" {
		return netip.Addr{}, false
	}
	var vals []uint64
	for _, part := range parts {
		base := 10
		switch {
		case part == "":
			return netip.Addr{}, false
		case len(part) > 2 && (part[:2] == "0x"):
			base, part = 16, part[2:]
		case len(part) > 1 && part[0] == '0':
			base, part = 8, part[1:]
		}
		v, err := strconv.ParseUint(part, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals = append(vals, v)
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if rest := 8 * (5 - len(vals)); last >= 1<<rest && rest < 32 {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true //nolint:gosec // G115: each byte() keeps the low 8 bits on purpose: the four octets of n
}
