package oauth

import (
	"errors"
	"time"
)

// Observer is told what the Client and the Broker do, so the backend can count it
// (its Prometheus metrics) without this package knowing how. Its methods are called
// on the request's goroutine and must not block.
type Observer interface {
	// TokenRequest is one request to a provider's token endpoint: grant is the
	// grant asked for ("refresh_token" for a refresh of an authorization-code
	// token, "authorization_code" for a code exchange), result "ok" or the failure's
	// Class ("permanent", "transient"), and took how long it ran.
	TokenRequest(grant, result string, took time.Duration)
	// Waiter is a Broker caller that joined a request already in flight for its
	// key instead of starting one.
	Waiter()
	// Throttled is a token request the Broker did not send because its key's
	// request bucket was empty (RequestBurst, RequestsPerMinute).
	Throttled()
}

// ResultOK is the TokenRequest result of a request that returned a token.
const ResultOK = "ok"

// nopObserver observes nothing: a Client made without an Observer.
type nopObserver struct{}

func (nopObserver) TokenRequest(string, string, time.Duration) {}
func (nopObserver) Waiter()                                    {}
func (nopObserver) Throttled()                                 {}

// observe reports one token request of grant that started at start (on the wall
// clock: a duration, not a date) and ended with err, nil or an *Error.
func (c *Client) observe(grant string, start time.Time, err error) {
	result := ResultOK
	var e *Error
	if errors.As(err, &e) {
		result = e.Class.String()
	} else if err != nil {
		result = "unknown"
	}
	c.observer.TokenRequest(grant, result, time.Since(start))
}
