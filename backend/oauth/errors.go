package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
)

// Class says whether retrying a failed token request can help.
type Class int

// The zero Class is deliberately invalid so an unset Error is not mistaken for
// either outcome.
const (
	// Permanent failures need a person: the provider refused the client or the
	// grant, or the configuration is unusable. The backend marks the
	// credential needs_reauth.
	Permanent Class = iota + 1
	// Transient failures may pass on their own: network trouble, timeouts,
	// provider errors (5xx) and rate limiting. They are retried with backoff.
	Transient
)

// String names the class for logs and API responses.
func (c Class) String() string {
	switch c {
	case Permanent:
		return "permanent"
	case Transient:
		return "transient"
	}
	return "unknown"
}

// Error codes set by this package. When the provider sent an RFC 6749 "error"
// code, Error.Code is that code instead.
const (
	CodeNoRefreshToken   = "no_refresh_token"   // authorization-code credential never authorized
	CodeNetwork          = "network"            // a transport failure of no other kind (see below)
	CodeTimeout          = "timeout"            // no complete answer within the request timeout
	CodeCanceled         = "canceled"           // the caller's context was cancelled
	CodeRateLimited      = "rate_limited"       // 429 without an OAuth error code
	CodeResponseTooLarge = "response_too_large" // body above ClientOptions.MaxResponseBytes
	CodeBadResponse      = "bad_response"       // unparseable answer, or one without access_token
	CodeRedirectRefused  = "redirect_refused"   // redirect to another host, insecure target, too many
	CodeInsecureEndpoint = "insecure_endpoint"  // http to a non-loopback host
	CodeInvalidConfig    = "invalid_config"     // Config.Validate failed
	CodeTLSClientRefused = "tls_client_refused" // the endpoint's TLS refused the client (certificate)
)

// A failed connection's Code is its kind (netpolicy.FailureKind), which names no
// address, port or DNS server: denied_network, dns_failure, connection_refused,
// unreachable, tls_failure, connection_reset, connection_closed, timeout, canceled, or
// network (CodeNetwork) for another transport failure.

// OAuth error codes (RFC 6749 §5.2 and common extensions) by class. Codes not
// listed are classified by HTTP status.
var (
	permanentCodes = map[string]bool{
		"invalid_grant":          true, // refresh token revoked or expired, wrong password
		"invalid_client":         true, // wrong or deleted client secret
		"unauthorized_client":    true,
		"unsupported_grant_type": true,
		"invalid_scope":          true,
		"invalid_request":        true, // malformed request: retrying the same request cannot help
		"access_denied":          true,
		CodeNoRefreshToken:       true,
	}
	transientCodes = map[string]bool{
		"server_error":            true,
		"temporarily_unavailable": true,
		"slow_down":               true,
	}
)

// maxRetryAfter bounds a provider's Retry-After so a misbehaving answer
// cannot freeze a credential for days; backoff resumes after it.
const maxRetryAfter = time.Hour

var (
	errResponseTooLarge = errors.New("response exceeds the size limit")
	errRedirectRefused  = errors.New("redirect refused")
	errInsecureEndpoint = errors.New("must use https (http is allowed only for loopback hosts)")
)

// Error is a classified token-request failure. Its message names the code and
// the HTTP status and never includes the provider's response body (which may
// echo credentials), the client secret, tokens or passwords.
type Error struct {
	Class      Class
	Code       string        // OAuth "error" code from the provider, or one of the Code* constants
	Status     int           // provider HTTP status; 0 when no response was received
	RetryAfter time.Duration // from Retry-After on 429/503, capped at one hour

	// detail is a message this package composed from non-secret facts: a
	// local network error or a configuration rule. Never provider content.
	detail string
	// cause is kept only for context errors so errors.Is(err,
	// context.DeadlineExceeded) works; other causes may carry response bodies.
	cause error
}

// Error describes the failure without secrets or provider content.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("oauth2 token request: ")
	b.WriteString(e.Code)
	b.WriteString(" (")
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d, ", e.Status)
	}
	b.WriteString(e.Class.String())
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	b.WriteString(")")
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	return b.String()
}

// Describe is the failure as Error says it, without the token-request framing: the
// code, and the local facts of a network failure. For other exchanges that classify
// their transport errors here (the verification of a credential).
func (e *Error) Describe() string {
	if e.detail == "" {
		return e.Code
	}
	return e.Code + ": " + e.detail
}

// Unwrap exposes context errors only.
func (e *Error) Unwrap() error { return e.cause }

// Permanent reports whether the failure needs a person to fix it.
func (e *Error) Permanent() bool { return e.Class == Permanent }

// Classify turns whatever x/oauth2 or net/http returned into an *Error. It
// returns nil for nil and an *Error found in err's chain as is. Errors it
// cannot attribute to the network or to the provider's status are treated
// as a bad response (transient).
//
// Classify sees only the error value, so it cannot tell an oversized body from
// another read failure once x/oauth2 has flattened it into a string; Client
// records that while reading and classifies precisely.
func Classify(err error) *Error {
	return classify(err, nil, time.Now())
}

func classify(err error, tr *exchangeTrace, now time.Time) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	status := 0
	if tr != nil {
		status = tr.status
		// x/oauth2 formats body-read errors with %v, losing the chain; the
		// trace kept the original.
		if tr.readErr != nil {
			err = tr.readErr
		}
	}
	if errors.Is(err, errResponseTooLarge) {
		return &Error{Class: Transient, Code: CodeResponseTooLarge, Status: status}
	}

	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return classifyResponse(re, now)
	}

	switch {
	case errors.Is(err, errRedirectRefused):
		return &Error{Class: Permanent, Code: CodeRedirectRefused, Status: status, detail: redirectDetail(err)}
	case errors.Is(err, context.Canceled):
		return &Error{Class: Transient, Code: CodeCanceled, cause: context.Canceled}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &Error{Class: Transient, Code: CodeTimeout, Status: status,
			detail: "no complete response within the request timeout", cause: context.DeadlineExceeded}
	}
	if clientCertRefused(err) {
		return &Error{Class: Permanent, Code: CodeTLSClientRefused, Status: status,
			detail: "the token endpoint refused the TLS client certificate (or its absence)"}
	}
	if kind := netpolicy.FailureKind(err); kind != "" {
		return &Error{Class: Transient, Code: kind, Status: status, detail: netpolicy.Describe(kind)}
	}
	if tr != nil && tr.readErr != nil {
		// The connection failed mid-body in a way net does not describe
		// (an HTTP/2 stream reset, say).
		return &Error{Class: Transient, Code: CodeNetwork, Status: status,
			detail: "the connection failed while reading the response"}
	}
	var urlError interface{ Temporary() bool }
	if errors.As(err, &urlError) {
		// *url.Error and other transport errors, whose text can quote the provider.
		return &Error{Class: Transient, Code: CodeNetwork, Status: status, detail: "transport error"}
	}
	// What remains are x/oauth2's own complaints about a 2xx answer: not JSON
	// or form encoded, or missing access_token.
	return &Error{Class: Transient, Code: CodeBadResponse, Status: status,
		detail: "the provider's answer is not a usable token response"}
}

// classifyResponse classifies an answer from the provider: its OAuth error
// code first, then its HTTP status.
//
// The error code is provider text: only one SafeCode accepts is kept (and so
// looked up in permanentCodes and transientCodes); anything else is replaced by
// http_<status>, and the description and body are never read.
func classifyResponse(re *oauth2.RetrieveError, now time.Time) *Error {
	e := &Error{}
	var header http.Header
	if re.Response != nil {
		e.Status = re.Response.StatusCode
		header = re.Response.Header
	}
	if re.ErrorCode != "" {
		if code, ok := SafeCode(re.ErrorCode); ok {
			e.Code = code
		} else {
			e.Code = HTTPCode(e.Status)
		}
	}
	switch {
	case permanentCodes[e.Code]:
		e.Class = Permanent
	case transientCodes[e.Code]:
		e.Class = Transient
	case e.Status == http.StatusTooManyRequests:
		e.Class = Transient
		defaultCode(e, CodeRateLimited)
	case e.Status == http.StatusRequestTimeout:
		e.Class = Transient
		defaultCode(e, CodeTimeout)
	case e.Status >= 500:
		e.Class = Transient
		defaultCode(e, HTTPCode(e.Status))
	case e.Status >= 400:
		e.Class = Permanent
		defaultCode(e, HTTPCode(e.Status))
	case e.Code != "":
		// An error code in a 2xx answer (some servers do this) is a refusal.
		e.Class = Permanent
	default:
		// 1xx/3xx: a redirect without Location or similar oddity.
		e.Class = Transient
		e.Code = CodeBadResponse
	}
	if e.Class == Transient && header != nil &&
		(e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable) {
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
	}
	return e
}

// MaxCodeLen is the longest provider error code SafeCode keeps.
const MaxCodeLen = 64

// SafeCode returns s when it is safe to repeat a provider's (or any stranger's)
// error code in errors, stored state, logs, events, notifications and HTML: 1 to
// MaxCodeLen bytes of ASCII letters, digits, '_', '-', '.' and ':'. That is a
// subset of RFC 6749's error syntax (1*( %x20-21 / %x23-5B / %x5D-7E )) which
// every registered and common code fits (invalid_grant, AADSTS70000,
// urn:ietf:params:oauth:error:...); it leaves out spaces, line breaks, quotes and
// the characters that mean something in HTML or Slack text ('<', '>', '&', '!',
// '*', '`', '@'). Otherwise it returns "" and false, and the caller uses a code
// of its own (such as http_<status>).
func SafeCode(s string) (string, bool) {
	if s == "" || len(s) > MaxCodeLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '_', c == '-', c == '.', c == ':':
		default:
			return "", false
		}
	}
	return s, true
}

// HTTPCode is the generic code of an error answer without a usable OAuth error code:
// "http_" and its status, e.g. http_400.
func HTTPCode(status int) string { return "http_" + strconv.Itoa(status) }

func defaultCode(e *Error, code string) {
	if e.Code == "" {
		e.Code = code
	}
}

// parseRetryAfter reads delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func redirectDetail(err error) string {
	switch {
	case errors.Is(err, errInsecureEndpoint):
		return "redirect to an insecure endpoint"
	case errors.Is(err, errTooManyRedirects):
		return fmt.Sprintf("more than %d redirects", maxRedirects)
	default:
		return "redirect to another host"
	}
}

// clientCertAlerts are Go's names of the TLS alerts a server sends when it refuses
// the client's certificate (RFC 8446 §6.2): the mutual-TLS counterpart of
// invalid_client. They are crypto/tls's own strings for the alert code, not text
// from the server.
var clientCertAlerts = []string{
	"tls: bad certificate", "tls: unsupported certificate", "tls: revoked certificate",
	"tls: expired certificate", "tls: unknown certificate", "tls: unknown certificate authority",
	"tls: access denied", "tls: certificate required",
}

// clientCertRefused reports a remote TLS alert refusing the client's certificate.
// crypto/tls reports it as a *net.OpError "remote error" around an unexported alert
// type, so it is matched by the alert's name.
func clientCertRefused(err error) bool {
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "remote error" || opErr.Err == nil {
		return false
	}
	return slices.Contains(clientCertAlerts, opErr.Err.Error())
}
