//go:build e2e

package e2e

import (
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// Refresh ahead on a real Vault, judged by order, not by time: the provider holds
// every token request until the test releases it (as the in-process
// TestRefreshAheadReaderNeverWaits does), so a read answered while a request is held
// did not wait for the provider.
//
// With refresh_ahead=false first, a read of a due token is answered only with the
// token issued after the release: the hold sees a waiting reader. With
// refresh_ahead=true, a read in the refresh window starts one request; while it is
// held, concurrent reads are all answered with the current token and start nothing
// more; after the release the new token is served.
func TestOAuthRefreshAhead(t *testing.T) {
	t.Parallel()
	const readers = 8
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/config", "expiry_buffer=1s")
	transport := &http.Transport{MaxConnsPerHost: readers, MaxIdleConnsPerHost: readers,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 2 * time.Minute}
	trace := &httptrace.ClientTrace{}
	read := func(name string) string {
		t.Helper()
		tok, err := accessToken(client, trace, shared, mount+"/access/"+name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return tok
	}
	// hold makes p hold every token request until release; arrived receives one
	// value per request held.
	hold := func(p *oauthtest.Provider) (arrived <-chan struct{}, release func()) {
		a := make(chan struct{}, 64)
		gate := make(chan struct{})
		var once sync.Once
		release = func() { once.Do(func() { close(gate) }) }
		t.Cleanup(release)
		p.SetFault(func(http.ResponseWriter, *http.Request) bool {
			a <- struct{}{}
			<-gate
			return false
		})
		return a, release
	}
	waitArrived := func(arrived <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-arrived:
		case <-time.After(time.Minute): // a failure bound only
			t.Fatalf("no token request for %s", what)
		}
	}
	// mint creates credential name on a provider issuing tokens of the given
	// lifetime and reads it once; it returns the provider, the token, and times no
	// later and no earlier than its issue.
	mint := func(name string, lifetime time.Duration) (p *oauthtest.Provider, tok string, from, by time.Time) {
		p = newIDP(t, oauthtest.Options{AccessTTL: lifetime})
		shared.mustCLI(t, "write", mount+"/credentials/"+name, "type=oauth2_client_credentials",
			"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)
		from = time.Now()
		tok = read(name)
		return p, tok, from, time.Now()
	}

	// refresh_ahead=false: 4 s tokens fall due 3 s after issue. Wait for that point of
	// the clock (a condition on the clock, not a guess about the server), then read
	// with the provider held: the answer is the token issued after the release, so
	// the reader waited for the provider.
	shared.mustCLI(t, "write", mount+"/config", "refresh_ahead=false")
	pOff, firstOff, _, issuedOff := mint("cc-off", 4*time.Second)
	time.Sleep(time.Until(issuedOff.Add(3 * time.Second)))
	arrived, release := hold(pOff)
	answer := make(chan string, 1)
	go func() {
		tok, err := accessToken(client, trace, shared, mount+"/access/cc-off")
		if err != nil {
			tok = "error: " + err.Error()
		}
		answer <- tok
	}()
	waitArrived(arrived, "the due token (refresh_ahead=false)")
	select {
	case tok := <-answer:
		t.Fatalf("refresh_ahead=false: a read of the due token was answered (token is the first: %v) while its refresh was held", tok == firstOff)
	default:
	}
	release()
	if got := <-answer; got == firstOff || got != pOff.LastIssued(t).Access {
		t.Fatalf("refresh_ahead=false: the read of the due token got another token (the first: %v), want the token issued after the release", got == firstOff)
	}

	// refresh_ahead=true: 20 s tokens fall due 19 s after issue, and the refresh
	// window opens min(max(20s/5, 10s), (20s-1s)/2) = 9.5 s after it. Reads from 10 s
	// on are in the window and, until 19 s, have a token to serve: the reads made
	// while the request is held must be answered in those 9 s, a margin wide enough
	// for a loaded machine (past it they would wait for the release and fail below).
	shared.mustCLI(t, "write", mount+"/config", "refresh_ahead=true")
	p, first, mintFrom, issued := mint("cc-on", 20*time.Second)
	due := mintFrom.Add(19 * time.Second) // the earliest the token can fall due
	time.Sleep(time.Until(issued.Add(10 * time.Second)))
	arrived, release = hold(p)
	requests0 := p.Requests()
	// One read in the window starts the refresh; the others come while it is held.
	// All of them, the first included, must be answered before the release.
	var wg sync.WaitGroup
	answers := make(chan string, readers+1)
	readAsync := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := accessToken(client, trace, shared, mount+"/access/cc-on")
			if err != nil {
				tok = "error: " + err.Error()
			}
			answers <- tok
		}()
	}
	readAsync()
	waitArrived(arrived, "refresh ahead")
	for range readers {
		readAsync()
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(time.Until(due)):
		t.Fatalf("refresh_ahead=true: reads not answered while the refresh was held (%d of %d answered)", len(answers), readers+1)
	}
	if time.Now().After(due) {
		t.Fatal("refresh_ahead=true: the reads ended past the due point; the hold proves nothing")
	}
	close(answers)
	for got := range answers {
		if got != first {
			t.Fatalf("refresh_ahead=true: a read while the refresh was held got another token (empty: %v), want the current token", got == "")
		}
	}
	if n := p.Requests() - requests0; n != 1 {
		t.Fatalf("refresh_ahead=true: %d token requests while one was held, want 1", n)
	}
	release()
	fresh := ""
	for end := time.Now().Add(time.Minute); fresh == "" || fresh == first; {
		fresh = read("cc-on")
		if time.Now().After(end) {
			t.Fatal("refresh_ahead=true: the refreshed token is never served")
		}
	}
	if fresh != p.LastIssued(t).Access || p.Requests()-requests0 != 1 {
		t.Fatalf("refresh_ahead=true: served another token after %d requests, want the one token issued by the single refresh", p.Requests()-requests0)
	}
}
