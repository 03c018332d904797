package oauth

import (
	"fmt"
	"sync"
	"time"
)

// The token requests the Broker sends for one key (one credential) are limited by a
// token bucket, whatever asks for them: reads, refresh ahead, keep-alive, verify, a
// write that cleared the backoff (Forget), a code exchange. A bucket holds
// RequestBurst requests and refills at RequestsPerMinute; it outlives Forget, so a
// loop of writes and verifications cannot turn the backoff's reset into a stream of
// requests. The sustained rate leaves room for a device-code poll every 5 s (12 a
// minute) beside a refresh.
const (
	// RequestBurst is how many token requests one credential may make at once.
	RequestBurst = 10
	// RequestsPerMinute is the sustained rate of one credential's token requests.
	RequestsPerMinute = 20
)

// requestInterval is the refill period of one request in the bucket.
const requestInterval = time.Minute / RequestsPerMinute

// CodeThrottled is the Error code of a token request the engine did not send
// because the credential's request bucket was empty (see RequestBurst). It is
// transient: Error.RetryAfter says when the next request may be sent.
const CodeThrottled = "throttled"

// requestLimiter is the per-key token bucket, kept as a generic cell rate
// (GCRA): per key only the theoretical arrival time of the next request. A key
// whose bucket is full again holds nothing, so memory follows the keys that made
// requests in the last RequestBurst·requestInterval, not every key ever seen.
type requestLimiter struct {
	burst    int
	interval time.Duration

	mu      sync.Mutex
	tat     map[string]time.Time // when the key's bucket is full again
	pruneAt int                  // the map size at which full buckets are swept out
}

func newRequestLimiter(burst int, interval time.Duration) *requestLimiter {
	return &requestLimiter{burst: burst, interval: interval, tat: make(map[string]time.Time), pruneAt: minPrune}
}

// minPrune is the smallest map size that triggers a sweep of full buckets.
const minPrune = 1024

// take spends one request of key's bucket at now. It reports whether the request
// may be sent; when not, retryAt is when the bucket next holds one.
func (l *requestLimiter) take(key string, now time.Time) (ok bool, retryAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := l.tat[key]
	if tat.Before(now) {
		tat = now
	}
	// The bucket is empty when the next request's arrival would be more than
	// burst−1 intervals ahead of now.
	tolerance := time.Duration(l.burst-1) * l.interval
	if earliest := tat.Add(-tolerance); earliest.After(now) {
		return false, earliest
	}
	l.tat[key] = tat.Add(l.interval)
	if len(l.tat) >= l.pruneAt {
		l.pruneLocked(now)
	}
	return true, time.Time{}
}

// next is when key may next make a request: the zero time when it may now.
func (l *requestLimiter) next(key string, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	earliest := l.tat[key].Add(-time.Duration(l.burst-1) * l.interval)
	if earliest.After(now) {
		return earliest
	}
	return time.Time{}
}

// pruneLocked drops the keys whose bucket is full at now: they are as if never seen.
func (l *requestLimiter) pruneLocked(now time.Time) {
	for k, tat := range l.tat {
		if !tat.After(now) {
			delete(l.tat, k)
		}
	}
	l.pruneAt = max(2*len(l.tat), minPrune)
}

// size is how many keys hold a bucket that is not full, for tests.
func (l *requestLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tat)
}

// throttled is the Error of a request the bucket did not let through.
// RetryAfter is rounded up to whole seconds, so a caller waiting it out finds a
// request in the bucket.
func throttled(now, retryAt time.Time) *Error {
	wait := (retryAt.Sub(now) + time.Second - 1).Truncate(time.Second)
	return &Error{Class: Transient, Code: CodeThrottled, RetryAfter: wait,
		detail: fmt.Sprintf("no request was sent: at most %d token requests per credential at once and %d a minute",
			RequestBurst, RequestsPerMinute)}
}
