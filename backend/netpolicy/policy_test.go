package netpolicy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustNew(t *testing.T, denied, allowed []string) *Policy {
	t.Helper()
	p, err := New(denied, allowed)
	if err != nil {
		t.Fatalf("New(%q, %q): %v", denied, allowed, err)
	}
	return p
}

// The defaults refuse this network, the unspecified addresses, link-local and the
// metadata services, in every spelling, and allow loopback, the private ranges and
// the internet.
func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	p := Default()
	for _, a := range []string{
		"0.0.0.0", "0.1.2.3", "::", "169.254.169.254", "169.254.170.2", "169.254.0.23", "fe80::1",
		"fd00:ec2::254", "fd00:ec2::23", "100.100.100.200", "192.0.0.192",
		"::ffff:169.254.169.254", // IPv4-mapped
		"64:ff9b::a9fe:a9fe",     // NAT64 of 169.254.169.254
		"fe80::1%eth0",           // zoned
	} {
		if p.Allows(netip.MustParseAddr(a)) {
			t.Errorf("the default policy allows %s", a)
		}
	}
	for _, a := range []string{"127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd12::1", "100.64.0.1", "93.184.216.34", "2606:4700::1", "::ffff:10.0.0.1"} {
		if !p.Allows(netip.MustParseAddr(a)) {
			t.Errorf("the default policy refuses %s", a)
		}
	}
	if p.Allows(netip.Addr{}) {
		t.Error("the invalid address is allowed")
	}
}

// Deny wins over allow; an allow list admits only what it lists.
func TestDenyWinsOverAllow(t *testing.T) {
	t.Parallel()
	p := mustNew(t, []string{"10.1.0.0/16"}, []string{"10.0.0.0/8", "2001:db8::/32"})
	cases := map[string]bool{
		"10.2.3.4": true, "10.1.2.3": false, "192.168.1.1": false, "127.0.0.1": false,
		"2001:db8::1": true, "2001:db9::1": false, "::ffff:10.2.3.4": true,
	}
	for a, want := range cases {
		if got := p.Allows(netip.MustParseAddr(a)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", a, got, want)
		}
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	got, err := Canonical([]string{" 10.0.0.0/8", "127.0.0.1", "::1", "::ffff:192.168.0.0/112", "10.0.0.0/8", "2001:DB8::/32"})
	want := []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128", "192.168.0.0/16", "2001:db8::/32"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Canonical = %q, %v; want %q", got, err, want)
	}
	if got, err := Canonical(nil); err != nil || len(got) != 0 {
		t.Fatalf("Canonical(nil) = %q, %v", got, err)
	}
}

// Every bad list is refused by position and rule, never quoting the entry.
func TestListErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("1", MaxNetworkBytes+1)
	many := make([]string, MaxNetworks+1)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	for _, c := range []struct {
		name    string
		list    []string
		entry   int
		problem string
	}{
		{"not a network", []string{"10.0.0.0/8", "<script>"}, 2, "is not a CIDR"},
		{"host name", []string{"metadata.google.internal"}, 1, "is not a CIDR"},
		{"host bits", []string{"10.0.0.5/8"}, 1, "host bits"},
		{"zone", []string{"fe80::1%eth0"}, 1, "zone"},
		{"empty", []string{""}, 1, "is empty"},
		{"too long", []string{long}, 1, "too long"},
		{"too many", many, 0, "entries"},
		{"bad bits", []string{"10.0.0.0/33"}, 1, "is not a CIDR"},
	} {
		_, err := New(nil, c.list)
		var le *ListError
		if !errors.As(err, &le) || !le.Allowed || le.Entry != c.entry || !strings.Contains(err.Error(), c.problem) || !strings.Contains(err.Error(), Rule) {
			t.Errorf("%s: %v, want entry %d %q of the allowed list", c.name, err, c.entry, c.problem)
			continue
		}
		for _, e := range c.list[:min(len(c.list), 2)] {
			if e != "" && e != "10.0.0.0/8" && e != "10.0.0.1" && strings.Contains(err.Error(), e) {
				t.Errorf("%s: the error quotes the entry: %v", c.name, err)
			}
		}
		if _, err := New(c.list, nil); !errors.As(err, &le) || le.Allowed {
			t.Errorf("%s in the denied list: %v", c.name, err)
		}
	}
}

// CheckHost judges the hosts a credential names literally: IP literals in every
// spelling a system resolver connects to, and localhost; names wait for DNS.
func TestCheckHost(t *testing.T) {
	t.Parallel()
	p := mustNew(t, []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "169.254.0.0/16"}, nil)
	denied := []string{"127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "[::1]", "::1", "::ffff:127.0.0.1",
		"localhost", "LOCALHOST.", "api.localhost", "10.0.0.5", "012.0.0.5", "169.254.169.254", "0xa9fea9fe"}
	for _, h := range denied {
		if err := p.CheckHost(h); !errors.Is(err, ErrDenied) {
			t.Errorf("CheckHost(%q) = %v, want ErrDenied", h, err)
		}
	}
	allowed := []string{"example.com", "192.168.1.1", "10.example.com", "1e100.net", "localhost.example.com", "2001:db8::1", "08.0.0.1"}
	for _, h := range allowed {
		if err := p.CheckHost(h); err != nil {
			t.Errorf("CheckHost(%q) = %v, want nil", h, err)
		}
	}
	// localhost is refused when either loopback address is.
	if err := mustNew(t, []string{"::1/128"}, nil).CheckHost("localhost"); !errors.Is(err, ErrDenied) {
		t.Errorf("localhost with ::1 denied: %v", err)
	}
	if err := Default().CheckHost("localhost"); err != nil {
		t.Errorf("localhost under the defaults: %v", err)
	}
}

func TestParseInetAton(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"127.1": "127.0.0.1", "2130706433": "127.0.0.1", "0x7f000001": "127.0.0.1", "10.1.2": "10.1.0.2",
		"0300.0250.1.1": "192.168.1.1", "1.2.3.4": "1.2.3.4",
	} {
		if a, ok := parseInetAton(in); !ok || a.String() != want {
			t.Errorf("parseInetAton(%q) = %v %v, want %s", in, a, ok, want)
		}
	}
	for _, in := range []string{"", "1.2.3.4.5", "256.1", "1.16777216", "a.b", "1..2", "08", "0x", "4294967296", "example"} {
		if a, ok := parseInetAton(in); ok {
			t.Errorf("parseInetAton(%q) = %v, want no address", in, a)
		}
	}
}

func FuzzPolicy(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "::ffff:1.2.3.0/120", "0.0.0.0/0", "fe80::/10"} {
		f.Add(s, "127.0.0.1")
	}
	f.Fuzz(func(t *testing.T, entry, addr string) {
		p, err := New([]string{entry}, nil)
		if err != nil {
			return
		}
		// A canonical list parses to itself.
		again, err := Canonical(p.Denied())
		if err != nil || !slices.Equal(again, p.Denied()) {
			t.Fatalf("canonical %q does not parse to itself: %q %v", p.Denied(), again, err)
		}
		if a, err := netip.ParseAddr(addr); err == nil {
			pfx := netip.MustParsePrefix(p.Denied()[0])
			if pfx.Contains(a.WithZone("").Unmap()) && p.Allows(a) {
				t.Fatalf("%s is inside denied %s but allowed", a, pfx)
			}
		}
	})
}
