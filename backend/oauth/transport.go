package oauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxRedirects is how many same-host redirects a token request may follow.
const maxRedirects = 3

var errTooManyRedirects = fmt.Errorf("%w: too many redirects", errRedirectRefused)

// exchangeTrace records what the transport saw during one token request, so
// a failure can be classified after x/oauth2 has flattened the error into a
// string. One trace belongs to one request goroutine; it travels in the
// request context (traceKey) so the HTTP client itself stays shared.
type exchangeTrace struct {
	status     int    // status of the last response received
	retryAfter string // its Retry-After header (429 and 503 only), for the host gate
	readErr    error  // first error reading the response body
}

type traceKey struct{}

func (t *exchangeTrace) noteReadErr(err error) {
	if t != nil && t.readErr == nil {
		t.readErr = err
	}
}

// boundedTransport caps every response body at limit bytes. Unlike the silent
// truncation inside x/oauth2 (io.LimitReader), exceeding the cap is an error,
// so an oversized answer is reported as such instead of as unparseable JSON.
type boundedTransport struct {
	base  http.RoundTripper
	limit int64
}

// RoundTrip sends req with the base transport and wraps the response body.
func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	tr, _ := req.Context().Value(traceKey{}).(*exchangeTrace)
	if tr != nil {
		tr.status = resp.StatusCode
		tr.retryAfter = ""
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			tr.retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if resp.ContentLength > t.limit {
		// Refuse before reading anything we would throw away.
		_ = resp.Body.Close() // refused unread: the close error changes nothing
		tr.noteReadErr(errResponseTooLarge)
		return nil, errResponseTooLarge
	}
	resp.Body = &limitedBody{rc: resp.Body, limit: t.limit, trace: tr}
	return resp, nil
}

// limitedBody returns errResponseTooLarge once more than limit bytes arrive.
type limitedBody struct {
	rc       io.ReadCloser
	limit    int64
	read     int64
	exceeded bool
	trace    *exchangeTrace
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.exceeded {
		return 0, errResponseTooLarge
	}
	// Read at most one byte past the limit: enough to know it was exceeded.
	if room := b.limit - b.read + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if b.read > b.limit {
		b.exceeded = true
		b.trace.noteReadErr(errResponseTooLarge)
		return n - int(b.read-b.limit), errResponseTooLarge
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.trace.noteReadErr(err)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// checkRedirect follows at most maxRedirects redirects, only on the original
// host and only to endpoints CheckEndpoint accepts: a token request carries
// the client secret, and a redirect elsewhere would hand it over.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return errTooManyRedirects
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
		return fmt.Errorf("%w: to another host", errRedirectRefused)
	}
	if err := checkEndpointURL(req.URL); err != nil {
		return fmt.Errorf("%w: %w", errRedirectRefused, err)
	}
	return nil
}
