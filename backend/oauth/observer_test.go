package oauth

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingObserver records what a Client and Broker report.
type countingObserver struct {
	mu        sync.Mutex
	requests  map[string]int // "grant result" -> count
	waiters   int
	throttled int
}

func (o *countingObserver) TokenRequest(grant, result string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if took < 0 {
		panic("negative duration")
	}
	if o.requests == nil {
		o.requests = map[string]int{}
	}
	o.requests[grant+" "+result]++
}

func (o *countingObserver) Waiter() {
	o.mu.Lock()
	o.waiters++
	o.mu.Unlock()
}

func (o *countingObserver) Throttled() {
	o.mu.Lock()
	o.throttled++
	o.mu.Unlock()
}

// TestObserverSeesRequestsAndWaiters: a pile of readers behind one request is one
// token request and readers-1 waiters; a provider failure is reported by its class;
// a token served from the cache is not a request.
//
// Not parallel: it counts the goroutines of the process waiting in Broker.Token.
func TestObserverSeesRequestsAndWaiters(t *testing.T) {
	p := newProvider(t, providerOptions{})
	release := make(chan struct{})
	var failing bool
	var mu sync.Mutex
	p.setBefore(func(w http.ResponseWriter, _ *http.Request) bool {
		<-release
		mu.Lock()
		defer mu.Unlock()
		if failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	clock := newFakeClock()
	obs := &countingObserver{}
	b := NewBroker(NewClient(ClientOptions{Timeout: 5 * time.Second, Now: clock.Now, Observer: obs}), clock.Now)
	cfg := p.config(AuthStyleHeader)
	var st savedTokens

	const readers = 20
	var started, done sync.WaitGroup
	started.Add(readers)
	done.Add(readers)
	for range readers {
		go func() {
			defer done.Done()
			started.Done()
			if _, err := b.Token(context.Background(), "cred", cfg, nil, time.Minute, st.persist); err != nil {
				t.Error(err)
			}
		}()
	}
	started.Wait()
	// The request is answered only once every reader waits on the single flight
	// (the one that started it, and readers-1 joined): the race is forced, not hoped
	// for.
	for deadline := time.Now().Add(30 * time.Second); p.requests.Load() != 1 || waitingInToken() != readers; {
		if time.Now().After(deadline) { // a failure bound only
			t.Fatalf("%d token requests, %d of %d readers waiting on the flight", p.requests.Load(), waitingInToken(), readers)
		}
		time.Sleep(time.Millisecond) // polling the goroutines' state
	}
	close(release)
	done.Wait()

	obs.mu.Lock()
	if got := obs.requests["client_credentials ok"]; got != 1 {
		t.Errorf("token requests ok = %d, want 1 (%v)", got, obs.requests)
	}
	if obs.waiters != readers-1 {
		t.Errorf("waiters = %d, want %d", obs.waiters, readers-1)
	}
	obs.mu.Unlock()

	mu.Lock()
	failing = true
	mu.Unlock()
	if _, err := b.Token(context.Background(), "other", cfg, nil, time.Minute, st.persist); err == nil {
		t.Fatal("a failing provider gave a token")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if got := obs.requests["client_credentials transient"]; got != 1 {
		t.Errorf("transient failures = %d, want 1 (%v)", got, obs.requests)
	}
}

// waitingInToken counts the goroutines blocked in Broker.Token's wait for a flight.
func waitingInToken() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[select") && strings.Contains(g, "oauth.(*Broker).Token(") {
			count++
		}
	}
	return count
}
