// The notifier: the goroutine that delivers the outbox, one attempt per notification
// per pass, with backoff while the receiver fails. outbox.go keeps what waits.

package backend

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"
)

// awaitDelivery is the outbox delivery job's wait: a pass at once when woken, else when
// the next attempt is due, and at least every outboxPollInterval.
func (b *integrationsBackend) awaitDelivery(ctx context.Context) bool {
	timer := time.NewTimer(b.outbox.nextWake(b.now()))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-b.outbox.kick:
	case <-timer.C:
	}
	return true
}

// deliveryStep is one delivery pass. Clean must not wait out request_timeout for a
// receiver that hangs: stopping the job cancels ctx, and with it the post in flight.
func (b *integrationsBackend) deliveryStep(ctx context.Context, _ logical.Storage) error {
	b.deliverOutbox(ctx)
	return nil
}

// nextWake is how long the notifier may sleep: until the earliest attempt due, within
// [time.Second, outboxPollInterval].
func (o *outbox) nextWake(now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	wait := outboxPollInterval
	for _, e := range o.entries {
		at := e.NextAttempt
		if at.Before(o.pausedUntil) {
			at = o.pausedUntil
		}
		wait = min(wait, at.Sub(now))
	}
	return max(wait, time.Second)
}

// deliverOutbox makes one pass over the notifications due: one attempt each, oldest
// first. A delivered one leaves the outbox; a failed one is tried again after a capped
// backoff. When the receiver itself fails (no answer, 5xx, 429, no usable target) the
// pass stops and the whole outbox waits out that backoff; a refusal of one
// notification (another 4xx) holds back only that one.
func (b *integrationsBackend) deliverOutbox(ctx context.Context) {
	if b.storage == nil || !b.WriteSafeReplicationState() {
		return
	}
	o := b.outbox
	o.passMu.Lock()
	defer o.passMu.Unlock()
	now := b.now().UTC()
	o.mu.Lock()
	if err := o.loadLocked(ctx, b.storage); err != nil {
		o.mu.Unlock()
		b.Logger().Warn("reading the notification outbox failed; will retry", "error", err)
		return
	}
	if now.Before(o.pausedUntil) {
		o.mu.Unlock()
		return
	}
	var due []*outboxEntry
	for _, e := range o.entries {
		if e.delivered || !now.Before(e.NextAttempt) {
			due = append(due, e)
		}
	}
	o.mu.Unlock()
	if len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(a, b *outboxEntry) int { return strings.Compare(a.ID, b.ID) })

	cfg, err := b.loadConfig(ctx, b.storage)
	if err != nil {
		b.Logger().Warn("reading config failed; notifications will be retried", "error", err)
		return
	}
	if cfg.NotifyCredential == "" {
		// The operator turned notifications off: what waits goes too.
		o.mu.Lock()
		for _, e := range due {
			o.removeLocked(ctx, b, e)
		}
		o.mu.Unlock()
		return
	}
	for _, e := range due {
		if ctx.Err() != nil {
			return // stopping
		}
		var res attemptResult
		o.mu.Lock()
		if o.entries[e.ID] != e { // dropped for a purge warning meanwhile
			o.mu.Unlock()
			continue
		}
		delivered := e.delivered
		n := e.Notification
		e.posting = !delivered // what arrives meanwhile waits in an entry of its own
		o.mu.Unlock()
		if !delivered {
			res = b.attemptDelivery(ctx, cfg, n)
		}
		o.mu.Lock()
		e.posting = false
		if ctx.Err() != nil {
			o.mu.Unlock()
			return
		}
		if o.entries[e.ID] != e {
			o.mu.Unlock()
			continue
		}
		if !delivered {
			b.metrics.notificationAttempt(res.failure)
		}
		if res.failure == "" {
			e.delivered = true
			o.removeLocked(ctx, b, e)
			o.mu.Unlock()
			continue
		}
		e.Attempts++
		e.LastFailure = res.failure
		e.NextAttempt = now.Add(max(b.notifyBackoff(e.Attempts), time.Second))
		if err := o.putLocked(ctx, b.storage, e); err != nil {
			b.Logger().Warn("storing a notification's attempts failed", "error", err)
		}
		if res.targetDown {
			o.pausedUntil = e.NextAttempt
		}
		o.mu.Unlock()
		b.Logger().Warn("notification not delivered; will retry",
			"notify_credential", cfg.NotifyCredential, "credential", n.Credential, "event", n.Event, "attempt", e.Attempts, "failure", res.failure,
			"next_attempt", rfc3339(e.NextAttempt))
		if res.targetDown {
			return
		}
	}
}

// attemptResult is the outcome of one attempt at a notification.
type attemptResult struct {
	failure    string // "" when delivered, else its kind
	targetDown bool   // the receiver failed, not this notification: pause the outbox
}

// attemptDelivery posts n once to the notify credential. No lock is held meanwhile.
func (b *integrationsBackend) attemptDelivery(ctx context.Context, cfg *engineConfig, n notification) attemptResult {
	target, err := b.credentials.get(ctx, b.storage, cfg.NotifyCredential)
	if err != nil {
		return attemptResult{failure: "storage_error", targetDown: true}
	}
	if target == nil {
		return attemptResult{failure: "no_target", targetDown: true}
	}
	dest := notifyTarget(target, b.slackPostURL)
	if dest.url == "" {
		return attemptResult{failure: "no_target", targetDown: true}
	}
	transport, err := b.tlsTransports().For(tlsclient.Material{CACertificates: dest.ca})
	if err != nil {
		return attemptResult{failure: "tls_material", targetDown: true}
	}
	client := &http.Client{
		Timeout:   cfg.RequestTimeout,
		Transport: transport,
		// A redirect would resend the body (and a bearer token) wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	status, answer, err := postOnce(ctx, client, dest, dest.body(n, cfg.NotifyChannel))
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
