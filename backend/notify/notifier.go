package notify

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// Settings are the engine settings a delivery reads, afresh each time.
type Settings struct {
	Credential string        // notify_credential: where to post; "" turns notifications off
	Channel    string        // notify_channel: the Slack channel
	Timeout    time.Duration // request_timeout: the bound of one post
}

// Deps is what the outbox needs from the mount. It owns its storage keys and nothing
// else: the rest it reads through these.
type Deps struct {
	Storage   func() logical.Storage // the mount's storage, for background work
	Now       func() time.Time
	Logger    func() hclog.Logger
	WriteSafe func() bool // the node may write (WriteSafeReplicationState)
	Settings  func(ctx context.Context, s logical.Storage) (Settings, error)
	// Target reads the notify credential name: how it is posted to (TargetOf), a zero
	// Target when it is gone or cannot receive notifications.
	Target func(ctx context.Context, s logical.Storage, name string) (Target, error)
	// Transport is the transport of a post to a target with extra trust anchors ca
	// (the network policy's guard applies to it).
	Transport func(ca string) (http.RoundTripper, error)
	// Attempted counts one attempt ("" delivered, else its failure kind); Dropped one
	// notification a full outbox could not keep.
	Attempted func(failure string)
	Dropped   func()
	// Backoff is the wait before attempt+1 at a notification; nil is Backoff.
	Backoff func(attempt int) time.Duration
}

// Wait is the outbox delivery job's wait: a pass at once when woken (Wake), else when
// the next attempt is due, and at least every PollInterval; false when ctx ends.
func (o *Outbox) Wait(ctx context.Context) bool {
	timer := time.NewTimer(o.nextWake(o.d.Now()))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-o.kick:
	case <-timer.C:
	}
	return true
}

// nextWake is how long the delivery job may wait: until the earliest attempt due, within
// [time.Second, PollInterval].
func (o *Outbox) nextWake(now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	wait := PollInterval
	for _, e := range o.entries {
		at := e.NextAttempt
		if at.Before(o.pausedUntil) {
			at = o.pausedUntil
		}
		wait = min(wait, at.Sub(now))
	}
	return max(wait, time.Second)
}

// Deliver makes one pass over the notifications due: one attempt each, oldest
// first. A delivered one leaves the outbox; a failed one is tried again after a capped
// backoff. When the receiver itself fails (no answer, 5xx, 429, no usable target) the
// pass stops and the whole outbox waits out that backoff; a refusal of one
// notification (another 4xx) holds back only that one.
//
// Stopping the delivery job cancels ctx, and with it the post in flight: Clean does not
// wait out request_timeout for a receiver that hangs.
func (o *Outbox) Deliver(ctx context.Context) {
	s := o.d.Storage()
	if s == nil || !o.d.WriteSafe() {
		return
	}
	o.passMu.Lock()
	defer o.passMu.Unlock()
	now := o.d.Now().UTC()
	due, ok := o.dueAt(ctx, s, now)
	if !ok || len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(a, b *Entry) int { return strings.Compare(a.ID, b.ID) })

	set, err := o.d.Settings(ctx, s)
	if err != nil {
		o.d.Logger().Warn("reading config failed; notifications will be retried", "error", err)
		return
	}
	if set.Credential == "" {
		// The operator turned notifications off: what waits goes too.
		o.removeAll(ctx, s, due)
		return
	}
	for _, e := range due {
		if ctx.Err() != nil {
			return // stopping
		}
		n, delivered, ok := o.begin(e)
		if !ok {
			continue // dropped for a purge warning meanwhile
		}
		var res attemptResult
		if !delivered {
			res = o.attempt(ctx, s, set, n)
		}
		switch o.finish(ctx, s, e, delivered, res, now) {
		case passStop:
			return
		case passNext:
			continue
		}
		o.d.Logger().Warn("notification not delivered; will retry",
			"notify_credential", set.Credential, "credential", n.Credential, "event", n.Event, "attempt", e.Attempts, "failure", res.failure,
			"next_attempt", RFC3339(e.NextAttempt))
		if res.targetDown {
			return
		}
	}
}

// Each step of a pass that touches the entries holds o.mu in a function of its own,
// released by defer: a panic in the middle of one (recovered by the job runner) must
// not leave the outbox locked for every later Enqueue.

// dueAt loads the outbox if need be and returns the entries due at now; ok is false
// when the pass has nothing to do (storage failed, or the receiver's pause runs).
func (o *Outbox) dueAt(ctx context.Context, s logical.Storage, now time.Time) (due []*Entry, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadLocked(ctx, s); err != nil {
		o.d.Logger().Warn("reading the notification outbox failed; will retry", "error", err)
		return nil, false
	}
	if now.Before(o.pausedUntil) {
		return nil, false
	}
	for _, e := range o.entries {
		if e.delivered || !now.Before(e.NextAttempt) {
			due = append(due, e)
		}
	}
	return due, true
}

// removeAll removes the given entries.
func (o *Outbox) removeAll(ctx context.Context, s logical.Storage, due []*Entry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range due {
		o.removeLocked(ctx, s, e)
	}
}

// begin marks e as being posted and returns what to post; ok is false when e has left
// the outbox meanwhile. What arrives for the same notification while e is posted
// waits in an entry of its own.
func (o *Outbox) begin(e *Entry) (n Notification, delivered, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.entries[e.ID] != e {
		return Notification{}, false, false
	}
	e.posting = !e.delivered
	return e.Notification, e.delivered, true
}

// passStep is what a pass does after an attempt.
type passStep int

const (
	passNext   passStep = iota // on to the next entry
	passFailed                 // e failed and is rescheduled: log it, and stop if the receiver is down
	passStop                   // the pass is stopping
)

// finish records the attempt's outcome on e: delivered entries leave the outbox,
// failed ones are rescheduled after the capped backoff (and the whole outbox paused
// when the receiver itself failed).
func (o *Outbox) finish(ctx context.Context, s logical.Storage, e *Entry, delivered bool, res attemptResult, now time.Time) passStep {
	o.mu.Lock()
	defer o.mu.Unlock()
	e.posting = false
	if ctx.Err() != nil {
		return passStop
	}
	if o.entries[e.ID] != e {
		return passNext
	}
	if !delivered {
		o.d.Attempted(res.failure)
	}
	if res.failure == "" {
		e.delivered = true
		o.removeLocked(ctx, s, e)
		return passNext
	}
	e.Attempts++
	e.LastFailure = res.failure
	e.NextAttempt = now.Add(max(o.d.Backoff(e.Attempts), time.Second))
	if err := o.putLocked(ctx, s, e); err != nil {
		o.d.Logger().Warn("storing a notification's attempts failed", "error", err)
	}
	if res.targetDown {
		o.pausedUntil = e.NextAttempt
	}
	return passFailed
}

// attemptResult is the outcome of one attempt at a notification.
type attemptResult struct {
	failure    string // "" when delivered, else its kind
	targetDown bool   // the receiver failed, not this notification: pause the outbox
}

// Attempt posts n once to the notify credential now, outside the outbox, and returns
// the failure kind ("" when delivered): what a pass would record for it.
func (o *Outbox) Attempt(ctx context.Context, n Notification) string {
	s := o.d.Storage()
	set, err := o.d.Settings(ctx, s)
	if err != nil {
		return "storage_error"
	}
	return o.attempt(ctx, s, set, n).failure
}

// attempt posts n once to the notify credential. No lock is held meanwhile.
func (o *Outbox) attempt(ctx context.Context, s logical.Storage, set Settings, n Notification) attemptResult {
	dest, err := o.d.Target(ctx, s, set.Credential)
	if err != nil {
		return attemptResult{failure: "storage_error", targetDown: true}
	}
	if dest.URL == "" {
		return attemptResult{failure: "no_target", targetDown: true}
	}
	transport, err := o.d.Transport(dest.CA)
	if err != nil {
		return attemptResult{failure: "tls_material", targetDown: true}
	}
	client := &http.Client{
		Timeout:   set.Timeout,
		Transport: transport,
		// A redirect would resend the body (and a bearer token) wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	status, answer, err := postOnce(ctx, client, dest, dest.body(n, set.Channel))
	var pe *postError
	switch {
	case errors.As(err, &pe):
		return attemptResult{failure: pe.kind, targetDown: true}
	case err != nil:
		return attemptResult{failure: "no_answer", targetDown: true}
	case status >= 300:
		refused := status >= 400 && status < 500 && status != http.StatusTooManyRequests
		return attemptResult{failure: "http_" + strconv.Itoa(status), targetDown: !refused}
	}
	var sr *slackRefusal
	if err := dest.check(answer); errors.As(err, &sr) {
		return attemptResult{failure: "slack_" + sr.code, targetDown: sr.transient()}
	}
	return attemptResult{}
}
