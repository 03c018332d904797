package oauth

import (
	"context"
	"net/http"
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
func TestObserverSeesRequestsAndWaiters(t *testing.T) {
	t.Parallel()
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
	// Let the readers reach the single flight before the request is answered; the
	// count below holds however many did (a late one is served Broker's last token,
	// neither a request nor a waiter), so this only makes the test meaningful.
	for p.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	done.Wait()

	obs.mu.Lock()
	if got := obs.requests["client_credentials ok"]; got != 1 {
		t.Errorf("token requests ok = %d, want 1 (%v)", got, obs.requests)
	}
	if obs.waiters < 1 || obs.waiters > readers-1 {
		t.Errorf("waiters = %d, want between 1 and %d", obs.waiters, readers-1)
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
