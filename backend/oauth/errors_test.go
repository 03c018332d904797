package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

func TestClassifyRetrieveError(t *testing.T) {
	t.Parallel()
	now := newFakeClock().Now()
	resp := func(status int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: h}
	}
	tests := []struct {
		name       string
		err        *oauth2.RetrieveError
		class      Class
		code       string
		retryAfter time.Duration
	}{
		{"invalid_grant", &oauth2.RetrieveError{Response: resp(400, ""), ErrorCode: "invalid_grant"}, Permanent, "invalid_grant", 0},
		{"invalid_request", &oauth2.RetrieveError{Response: resp(400, ""), ErrorCode: "invalid_request"}, Permanent, "invalid_request", 0},
		{"access_denied on 403", &oauth2.RetrieveError{Response: resp(403, ""), ErrorCode: "access_denied"}, Permanent, "access_denied", 0},
		{"unauthorized_client", &oauth2.RetrieveError{Response: resp(400, ""), ErrorCode: "unauthorized_client"}, Permanent, "unauthorized_client", 0},
		{"temporarily_unavailable on 400", &oauth2.RetrieveError{Response: resp(400, ""), ErrorCode: "temporarily_unavailable"}, Transient, "temporarily_unavailable", 0},
		{"invalid_client on 500 stays permanent", &oauth2.RetrieveError{Response: resp(500, ""), ErrorCode: "invalid_client"}, Permanent, "invalid_client", 0},
		{"404", &oauth2.RetrieveError{Response: resp(404, "")}, Permanent, "http_404", 0},
		{"408", &oauth2.RetrieveError{Response: resp(408, "")}, Transient, CodeTimeout, 0},
		{"429 negative retry-after", &oauth2.RetrieveError{Response: resp(429, "-5")}, Transient, CodeRateLimited, 0},
		{"429 garbage retry-after", &oauth2.RetrieveError{Response: resp(429, "soon")}, Transient, CodeRateLimited, 0},
		{"503 huge retry-after", &oauth2.RetrieveError{Response: resp(503, "9999999999")}, Transient, "http_503", maxRetryAfter},
		{"503 past date", &oauth2.RetrieveError{Response: resp(503, now.Add(-time.Hour).Format(http.TimeFormat))}, Transient, "http_503", 0},
		{"500 ignores retry-after", &oauth2.RetrieveError{Response: resp(500, "60")}, Transient, "http_500", 0},
		{"304", &oauth2.RetrieveError{Response: resp(304, "")}, Transient, CodeBadResponse, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.err.Body = []byte(oauthtest.Marker)
			tt.err.ErrorDescription = oauthtest.Marker
			e := classify(fmt.Errorf("wrapped: %w", tt.err), nil, now)
			if e.Class != tt.class || e.Code != tt.code || e.RetryAfter != tt.retryAfter {
				t.Fatalf("got %s %q retry %v, want %s %q %v", e.Class, e.Code, e.RetryAfter, tt.class, tt.code, tt.retryAfter)
			}
			if e.Status != tt.err.Response.StatusCode {
				t.Errorf("status = %d", e.Status)
			}
			assertNoLeak(t, e.Error())
		})
	}
}

func TestClassifyOther(t *testing.T) {
	t.Parallel()
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	orig := &Error{Class: Permanent, Code: "invalid_grant"}
	if got := Classify(fmt.Errorf("minting: %w", orig)); got != orig {
		t.Error("an *Error in the chain is not returned as is")
	}
	if got := Classify(context.DeadlineExceeded); got.Code != CodeTimeout || got.Class != Transient {
		t.Errorf("deadline: %+v", got)
	}
	if got := Classify(errors.New("oauth2: server response missing access_token")); got.Code != CodeBadResponse || got.Class != Transient {
		t.Errorf("missing access token: %+v", got)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	e := &Error{Class: Transient, Code: CodeRateLimited, Status: 429, RetryAfter: 30 * time.Second}
	if got, want := e.Error(), "oauth2 token request: rate_limited (HTTP 429, transient, retry after 30s)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e = &Error{Class: Permanent, Code: CodeInsecureEndpoint, detail: "token_url must use https"}
	if got := e.Error(); !strings.HasSuffix(got, "(permanent): token_url must use https") {
		t.Errorf("got %q", got)
	}
	if !e.Permanent() || Class(0).String() != "unknown" {
		t.Error("Permanent/String")
	}
}

// TestSafeCode pins what may be repeated of a stranger's error code: RFC 6749's
// syntax narrowed to letters, digits, '_', '-', '.' and ':', at most MaxCodeLen bytes.
func TestSafeCode(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"invalid_grant", "AADSTS70000", "urn:ietf:params:oauth:error:x", "slow_down", "a", strings.Repeat("a", MaxCodeLen)} {
		if got, good := SafeCode(ok); !good || got != ok {
			t.Errorf("SafeCode(%q) = %q, %v; want it kept", ok, got, good)
		}
	}
	for _, bad := range []string{"", "invalid grant", "invalid_grant\n", "a\rb", "<script>", "<!channel>", "a&b", `a"b`, `a\b`,
		"a*b", "`a`", "@here", "caf\u00e9", "a\x00b", strings.Repeat("a", MaxCodeLen+1)} {
		if got, good := SafeCode(bad); good || got != "" {
			t.Errorf("SafeCode(%q) = %q, %v; want it refused", bad, got, good)
		}
	}
}

// TestClassifyKeepsOnlySafeCodes: an error code that is not safe is replaced by
// http_<status> and classified by the status alone; in particular a lookalike of a
// permanent code does not count as one.
func TestClassifyKeepsOnlySafeCodes(t *testing.T) {
	t.Parallel()
	now := newFakeClock().Now()
	for _, tt := range []struct {
		code   string
		status int
		want   string
		class  Class
	}{
		{"invalid_grant\nX-Injected: 1", 400, "http_400", Permanent},
		{"<!channel>", 401, "http_401", Permanent},
		{strings.Repeat("x", 10<<10), 503, "http_503", Transient},
		{"server_error <b>", 500, "http_500", Transient},
		{"invalid_grant", 400, "invalid_grant", Permanent},
	} {
		re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: tt.status, Header: http.Header{}}, ErrorCode: tt.code,
			ErrorDescription: oauthtest.Marker, Body: []byte(oauthtest.Marker)}
		e := classify(re, nil, now)
		if e.Code != tt.want || e.Class != tt.class || strings.Contains(e.Error(), oauthtest.Marker) || strings.ContainsAny(e.Error(), "\n<") {
			t.Errorf("code %.30q on %d: %s %.60q (%.120q), want %s %q", tt.code, tt.status, e.Class, e.Code, e.Error(), tt.class, tt.want)
		}
	}
}
