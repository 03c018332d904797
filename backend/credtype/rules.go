package credtype

import (
	"encoding/base64"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

const errHTTPSURL = ruleError("must be an https URL with a host (http only for loopback hosts)")

// checkHTTPSURL is the rule for every URL the engine or an integration sends
// credentials to: plain http would put them on the wire in clear, so it is only
// allowed where the wire is the loopback interface (tests, local dev providers).
func checkHTTPSURL(s string) (string, error) {
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return "", errHTTPSURL
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.Scheme == "" {
		return "", errHTTPSURL
	}
	if u.User != nil {
		return "", ruleError("must not contain user information (user:password@); credentials belong in their own fields")
	}
	if strings.Contains(s, "#") {
		return "", ruleError("must not contain a #fragment")
	}
	host, port, ok := splitHost(u)
	if !ok {
		return "", errHTTPSURL
	}
	if port != "" {
		if _, ok := parsePort(port); !ok {
			return "", ruleError("must have a port between 1 and 65535 when it has one")
		}
	}
	if !EndpointAllowed(strings.ToLower(u.Scheme), host) {
		return "", errHTTPSURL
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = joinHost(host, port)
	return u.String(), nil
}

const errSFTPHost = ruleError("must be sftp://host:port/ (scheme sftp, a host, a port between 1 and 65535, no path)")

// checkSFTPHost requires the port because SFTP servers for integrations often listen
// elsewhere than 22, and a silent default would pin the wrong host key.
func checkSFTPHost(s string) (string, error) {
	if strings.ContainsAny(s, "?#") || strings.ContainsFunc(s, unicode.IsSpace) {
		return "", errSFTPHost
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || !strings.EqualFold(u.Scheme, "sftp") {
		return "", errSFTPHost
	}
	if u.User != nil {
		return "", ruleError("must not contain user information (user@); the user belongs in username")
	}
	if u.Path != "" && u.Path != "/" {
		return "", errSFTPHost
	}
	host, port, ok := splitHost(u)
	if !ok || port == "" {
		return "", errSFTPHost
	}
	n, ok := parsePort(port)
	if !ok {
		return "", errSFTPHost
	}
	return "sftp://" + joinHost(host, strconv.Itoa(n)) + "/", nil
}

// splitHost returns the lower-cased host of u and its port, and whether the host is a
// plain host name or IP literal.
func splitHost(u *url.URL) (host, port string, ok bool) {
	host, port = u.Hostname(), u.Port()
	if host == "" || strings.HasSuffix(u.Host, ":") && port == "" {
		return "", "", false
	}
	if strings.Contains(u.Host, "[") {
		// A bracketed literal must be an IPv6 address: brackets around a name or an
		// IPv4 address are not URL syntax.
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", "", false
		}
		return a.String(), port, true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.String(), port, a.Zone() == ""
	}
	host = strings.ToLower(host)
	return host, port, validHostname(host)
}

func joinHost(host, port string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" {
		return host
	}
	return host + ":" + port
}

func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}

// EndpointAllowed is the one rule for where the engine sends or hands out credentials:
// scheme (lower-case) https, or http only to a loopback host, where the wire is this
// machine (tests, local development providers). The catalog's URL fields and the oauth
// package's endpoints and redirects all use it.
func EndpointAllowed(scheme, host string) bool {
	return scheme == "https" || scheme == "http" && isLoopback(host)
}

// isLoopback: localhost (with or without its trailing dot), 127.0.0.0/8 and ::1,
// IPv4-mapped forms included.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// validHostname accepts DNS names and the NetBIOS-style names devices carry: labels of
// letters, digits, '-' and '_', an optional trailing dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func checkHostname(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if !validHostname(s) {
		return "", ruleError("must be a host name: dot-separated labels of letters, digits, '-' or '_' (1-63 each, 253 in all)")
	}
	return s, nil
}

// checkIP stores the canonical form, so that lookups by hostname + ip + username match
// whichever spelling a caller uses (and an IPv4-mapped IPv6 address finds the IPv4).
func checkIP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", ruleError("must be an IPv4 or IPv6 address without zone")
	}
	return a.Unmap().String(), nil
}

var (
	md5FingerprintRe = regexp.MustCompile(`^(?i)(md5:)?([0-9a-f]{2}:){15}[0-9a-f]{2}$|^[0-9a-fA-F]{32}$`)
	strictRawStd     = base64.RawStdEncoding.Strict()
)

// checkHostKeyFingerprint accepts what `ssh-keygen -lf` prints. A fingerprint does not
// say which algorithm the host key uses; the SSH client checks that when it connects.
func checkHostKeyFingerprint(s string) (string, error) {
	if md5FingerprintRe.MatchString(s) {
		return "", ruleError("must be a SHA256 fingerprint: MD5 fingerprints are refused; use the SHA256:… form printed by `ssh-keygen -lf <host key>`")
	}
	prefix, b64, ok := strings.Cut(s, ":")
	// Some tools print the base64 with its one '=' of padding.
	b64 = strings.TrimSuffix(b64, "=")
	if !ok || !strings.EqualFold(prefix, "SHA256") || len(b64) != 43 {
		return "", ruleError("must be SHA256:<43 base64 characters>, as printed by `ssh-keygen -lf <host key>`")
	}
	if sum, err := strictRawStd.DecodeString(b64); err != nil || len(sum) != 32 {
		return "", ruleError("must be SHA256:<43 base64 characters> decoding to a 32-byte SHA-256 digest")
	}
	return "SHA256:" + b64, nil
}

// isTChar reports whether c may appear in an HTTP token (RFC 9110 section 5.6.2), the
// syntax of header names and authentication schemes.
func isTChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// checkHTTPToken checks the syntax; the field's maxLen bounds the length.
func checkHTTPToken(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if !isTChar(s[i]) {
			return "", ruleError("must contain only letters, digits and !#$%&'*+-.^_`|~ (an HTTP token)")
		}
	}
	return s, nil
}

// labelItem is a tag or used_by entry: commas would split it when sent as a
// comma-separated list.
func labelItem(s string) ([]string, error) {
	if strings.Contains(s, ",") {
		return nil, ruleError("must have items without commas")
	}
	return []string{s}, nil
}

// checkVisibleASCII is for values sent in an HTTP header, where anything else would
// be mangled or split the header.
func checkVisibleASCII(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return "", ruleError("must be printable ASCII without spaces")
		}
	}
	return s, nil
}

func checkNoSpace(s string) (string, error) {
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return "", ruleError("must not contain spaces")
	}
	return s, nil
}

// checkBasicUsername refuses ':' because HTTP Basic joins user and password with it
// (RFC 7617 section 2), so the server would split the name.
func checkBasicUsername(s string) (string, error) {
	if strings.Contains(s, ":") {
		return "", ruleError("must not contain ':' (HTTP Basic separates user and password with it)")
	}
	return s, nil
}

// checkSlackToken catches the common mistake of pasting the app's signing secret or
// client secret, which look like tokens but are not.
func checkSlackToken(s string) (string, error) {
	if _, err := checkVisibleASCII(s); err != nil {
		return "", err
	}
	if !strings.HasPrefix(s, "xox") && !strings.HasPrefix(s, "xapp-") {
		return "", ruleError(`must be a Slack token, beginning "xox" (xoxb-, xoxp-, xoxe.…) or "xapp-"`)
	}
	return s, nil
}

func checkRoutingKey(s string) (string, error) {
	if len(s) != 32 {
		return "", ruleError("must be 32 letters and digits (the Events API v2 integration key)")
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return "", ruleError("must be 32 letters and digits (the Events API v2 integration key)")
		}
	}
	return s, nil
}

var guidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// checkTenant refuses the multi-tenant aliases (common, organizations, consumers):
// the client credentials grant needs the one tenant the app is registered in.
func checkTenant(s string) (string, error) {
	s = strings.ToLower(s)
	if guidRe.MatchString(s) {
		return s, nil
	}
	if strings.Contains(strings.TrimSuffix(s, "."), ".") && validHostname(s) && !strings.Contains(s, "_") {
		return strings.TrimSuffix(s, "."), nil
	}
	return "", ruleError("must be a tenant ID (GUID) or a verified domain such as contoso.onmicrosoft.com")
}

// checkInstance keeps only the instance name, since the token endpoint is built from
// it; people often paste the whole host.
func checkInstance(s string) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".service-now.com")
	if !validHostname(s) || strings.ContainsAny(s, "._") {
		return "", ruleError(`must be a ServiceNow instance name such as "dev12345" (letters, digits and '-')`)
	}
	return s, nil
}

// scopeItems splits an item holding several space-separated scopes, which is how
// providers document them, and checks each against the RFC 6749 scope-token syntax.
func scopeItems(s string) ([]string, error) {
	parts := strings.Fields(s)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, ruleError(`must be scope tokens: printable ASCII except space, '"' and '\' (RFC 6749 section 3.3)`)
			}
		}
	}
	return parts, nil
}
