// The device polling job: polls the token endpoint for every pending device
// authorization (device_flow.go) at its interval, five seconds slower after each
// slow_down (RFC 8628 section 3.5), until the person consents (the tokens are stored
// as a consent's), refuses (needs_reauth, reason access_denied), or the code expires.
//
// One loop job on the active node: it reads the pending attempts from storage when it
// starts (Initialize on a node that may write, so after a leader change the new
// active node resumes polling from the seal-wrapped authorizations/ entries), and then
// waits for the earliest poll due. A credential has one attempt at a time: a new
// authorize replaces it, and a repoint or a delete drops it (dropSecondary); a poll's
// answer is acted on only while its attempt is still the credential's pending one.

package backend

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// deviceLoadRetry is how long the job waits before reading the pending attempts again
// after storage refused.
const deviceLoadRetry = 10 * time.Second

// devicePoller is the schedule of the device polling job: per credential, the attempt
// to poll and when. It holds no secret (the device code is read from storage for each
// poll) and no lock across a network call.
type devicePoller struct {
	mu         sync.Mutex
	due        map[string]deviceDue // by credential name
	loaded     bool                 // the attempts in storage were read
	loadFailed bool
	wakeCh     chan struct{}
	// after arms the wait for the next poll; tests replace it.
	after func(d time.Duration) <-chan time.Time
}

// deviceDue is one scheduled poll.
type deviceDue struct {
	name    string
	attempt string // the pending authorization's State
	at      time.Time
}

func newDevicePoller() *devicePoller {
	return &devicePoller{due: make(map[string]deviceDue), wakeCh: make(chan struct{}, 1), after: time.After}
}

// wake makes the job's wait judge the schedule again.
func (p *devicePoller) wake() {
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

// schedule files the next poll of name's attempt at at, replacing whatever was filed
// for name (a new authorize replaces the attempt), and wakes the job.
func (p *devicePoller) schedule(name, attempt string, at time.Time) {
	p.mu.Lock()
	p.due[name] = deviceDue{name: name, attempt: attempt, at: at}
	p.mu.Unlock()
	p.wake()
}

// reschedule files the next poll of attempt, unless name has another attempt filed now.
func (p *devicePoller) reschedule(name, attempt string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.due[name]; ok && d.attempt == attempt {
		p.due[name] = deviceDue{name: name, attempt: attempt, at: at}
	}
}

// unschedule stops polling attempt, unless name has another attempt filed now.
func (p *devicePoller) unschedule(name, attempt string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.due[name]; ok && d.attempt == attempt {
		delete(p.due, name)
	}
}

// next is the earliest poll filed (ok false: none), and whether the attempts in
// storage are still to be read (load), and whether reading them last failed.
func (p *devicePoller) next() (at time.Time, ok, load, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return time.Time{}, false, true, p.loadFailed
	}
	for _, d := range p.due {
		if !ok || d.at.Before(at) {
			at, ok = d.at, true
		}
	}
	return at, ok, false, false
}

// takeDue returns the polls due at now, in name order, and files each a minute on:
// the poll files its own next time, and one that ends early (a panic) is tried again.
func (p *devicePoller) takeDue(now time.Time) []deviceDue {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []deviceDue
	for name, d := range p.due {
		if !d.at.After(now) {
			out = append(out, d)
			p.due[name] = deviceDue{name: name, attempt: d.attempt, at: now.Add(time.Minute)}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// pending reports the attempt filed for name ("" for none), for tests.
func (p *devicePoller) pending(name string) (deviceDue, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.due[name]
	return d, ok
}

// awaitDevicePoll is the job's Wait: until the earliest poll is due (or the attempts
// are to be read), judged again whenever the schedule changes.
func (b *integrationsBackend) awaitDevicePoll(ctx context.Context) bool {
	p := b.deviceFlow
	for {
		at, ok, load, failed := p.next()
		var timer <-chan time.Time
		switch {
		case load && !failed:
			return true
		case load:
			timer = p.after(deviceLoadRetry)
		case ok:
			d := at.Sub(b.now())
			if d <= 0 {
				return true
			}
			timer = p.after(d)
		}
		select {
		case <-ctx.Done():
			return false
		case <-p.wakeCh:
		case <-timer: // nil when nothing is filed: only a wake or the end
			return true
		}
	}
}

// pollDevices is the job's step: read the pending attempts once, then make the polls
// that are due, one at a time (the attempts are few: each waits for a person).
func (b *integrationsBackend) pollDevices(ctx context.Context, s logical.Storage) error {
	if err := b.loadDevicePolls(ctx, s); err != nil {
		b.Logger().Error("reading pending device authorizations failed; trying again", "error", err)
		return err
	}
	for _, d := range b.deviceFlow.takeDue(b.now()) {
		if ctx.Err() != nil {
			return nil
		}
		b.pollDevice(ctx, s, d)
	}
	return nil
}

// loadDevicePolls files a poll, one interval on, for every device authorization in
// storage, once per job start.
func (b *integrationsBackend) loadDevicePolls(ctx context.Context, s logical.Storage) error {
	p := b.deviceFlow
	p.mu.Lock()
	loaded := p.loaded
	p.mu.Unlock()
	if loaded {
		return nil
	}
	fail := func(err error) error {
		p.mu.Lock()
		p.loadFailed = true
		p.mu.Unlock()
		return err
	}
	names, err := s.List(ctx, authorizationPrefix)
	if err != nil {
		return fail(fmt.Errorf("listing pending authorizations: %w", err))
	}
	now := b.now()
	found := make(map[string]deviceDue)
	for _, name := range names {
		a, err := b.authorizations.load(ctx, s, name)
		if err != nil {
			return fail(err)
		}
		if a != nil && a.device() {
			found[name] = deviceDue{name: name, attempt: a.State, at: now.Add(a.Interval)}
		}
	}
	p.mu.Lock()
	for name, d := range found {
		if _, ok := p.due[name]; !ok { // an authorize since is newer
			p.due[name] = d
		}
	}
	p.loaded, p.loadFailed = true, false
	p.mu.Unlock()
	return nil
}

// devicePoll is what one poll needs, read under the credential's lock.
type devicePoll struct {
	name, attempt, code string
	interval            time.Duration
	oc                  oauth.Config
	ticket              tokenTicket
}

// pollDevice makes one poll of d's attempt and acts on the answer.
func (b *integrationsBackend) pollDevice(ctx context.Context, s logical.Storage, d deviceDue) {
	start, err := b.devicePollStart(ctx, s, d)
	if err != nil {
		b.Logger().Error("reading a pending device authorization failed", "credential", d.name, "error", err)
		b.deviceFlow.reschedule(d.name, d.attempt, b.now().Add(oauth.DefaultDeviceInterval))
		return
	}
	if start == nil {
		return
	}
	// Nobody waits on a poll: behind every reader at the token host.
	tok, err := b.tokens.brokerOf().PollDevice(oauth.WithPriority(ctx, oauth.Background), start.name, start.oc, start.code)
	now := b.now().UTC()
	if err == nil {
		b.deviceConsented(ctx, s, start, tok)
		return
	}
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		// The Broker closed (the job is stopping): the next active node resumes.
		b.deviceFlow.reschedule(start.name, start.attempt, now.Add(start.interval))
		return
	}
	switch {
	case oe.Code == oauth.CodeAuthorizationPending:
		b.deviceFlow.reschedule(start.name, start.attempt, now.Add(start.interval))
	case oe.Code == oauth.CodeSlowDown:
		b.deviceSlowDown(ctx, s, start, oe.RetryAfter, now)
	case oe.Code == oauth.CodeExpiredToken:
		b.deviceEnded(ctx, s, start, "", "the device code expired before the person consented: authorize again", now)
	case oe.Permanent():
		// access_denied, and every other refusal (GitHub: incorrect_client_credentials,
		// device_flow_disabled): the attempt ends and the credential needs a person.
		b.deviceEnded(ctx, s, start, lifecycle.Reason(oe.Code), "the device authorization was refused: "+oe.Error(), now)
	default:
		// The provider's trouble, or the request bucket: the attempt stands.
		b.recordEvent(start.name, usage.EventAuthorized, false, "", "a device authorization poll failed; polling goes on: "+oe.Error())
		b.deviceFlow.reschedule(start.name, start.attempt, now.Add(max(start.interval, oe.RetryAfter)))
	}
}

// devicePollStart reads d's attempt and its credential under the credential's lock:
// nil when there is nothing to poll (the attempt was replaced, dropped or completed,
// or it expired, which ends it here).
func (b *integrationsBackend) devicePollStart(ctx context.Context, s logical.Storage, d deviceDue) (*devicePoll, error) {
	held, unlock := b.credentials.lock(d.name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, d.name)
	if err != nil {
		return nil, err
	}
	p, err := b.authorizations.load(ctx, s, d.name)
	if err != nil {
		return nil, err
	}
	if c == nil || p == nil || !p.device() || p.State != d.attempt || !c.typeDef().DeviceFlow() {
		b.deviceFlow.unschedule(d.name, d.attempt)
		return nil, nil
	}
	if !b.now().Before(p.ExpiresAt) {
		if err := b.authorizations.drop(ctx, s, held); err != nil {
			return nil, err
		}
		b.deviceFlow.unschedule(d.name, d.attempt)
		b.recordEvent(d.name, usage.EventAuthorized, false, "", "the device authorization expired before the person consented: authorize again")
		return nil, nil
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return nil, err
	}
	return &devicePoll{name: d.name, attempt: d.attempt, code: p.DeviceCode, interval: p.Interval, oc: oc,
		ticket: b.tokens.consentTicket(held, c)}, nil
}

// deviceSlowDown slows the attempt down by five seconds for this and every later
// poll, or to the interval the answer named (GitHub's) when that is longer, and stores
// the interval, so a new active node keeps to it.
func (b *integrationsBackend) deviceSlowDown(ctx context.Context, s logical.Storage, start *devicePoll, named time.Duration, now time.Time) {
	interval := max(oauth.SlowedDown(start.interval), min(named, oauth.MaxDeviceInterval))
	held, unlock := b.credentials.lock(start.name)
	p, err := b.authorizations.load(ctx, s, start.name)
	if err == nil && p != nil && p.State == start.attempt {
		p.Interval = interval
		err = b.authorizations.keep(ctx, s, held, *p)
	}
	unlock()
	if err != nil {
		b.Logger().Error("storing a device authorization's slower interval failed", "credential", start.name, "error", err)
	}
	b.deviceFlow.reschedule(start.name, start.attempt, now.Add(interval))
}

// deviceEnded ends the attempt (expired, or refused: reason is then the provider's
// code, and the credential needs re-authorization), if it is still the pending one.
func (b *integrationsBackend) deviceEnded(ctx context.Context, s logical.Storage, start *devicePoll, reason lifecycle.Reason, detail string, now time.Time) {
	defer b.deviceFlow.unschedule(start.name, start.attempt)
	held, unlock := b.credentials.lock(start.name)
	n, err := b.endDeviceAttempt(ctx, s, held, start, reason, now)
	unlock()
	if err != nil {
		b.Logger().Error("ending a device authorization failed", "credential", start.name, "error", err)
		return
	}
	if n == nil {
		return
	}
	b.recordEvent(start.name, usage.EventAuthorized, false, "", detail)
	if reason == "" {
		return
	}
	b.notifyState(ctx, n, "needs_reauth", fmt.Sprintf("The device authorization was refused (%s); authorize the credential again.", reason))
	if err := b.afterCredentialChange(ctx, s, start.name); err != nil {
		b.Logger().Error("indexing a credential failed", "credential", start.name, "error", err)
	}
}

// endDeviceAttempt drops the attempt and, for a refusal, stores needs_reauth; under
// the credential's lock h. It returns the credential as it is then, nil when the
// attempt was no longer the pending one.
func (b *integrationsBackend) endDeviceAttempt(ctx context.Context, s logical.Storage, h credentialHeld, start *devicePoll, reason lifecycle.Reason, now time.Time) (*credential, error) {
	p, err := b.authorizations.load(ctx, s, start.name)
	if err != nil || p == nil || p.State != start.attempt {
		return nil, err
	}
	if err := b.authorizations.drop(ctx, s, h); err != nil {
		return nil, err
	}
	c, err := b.credentials.get(ctx, s, start.name)
	if err != nil || c == nil {
		return nil, err
	}
	if reason == "" || b.tokens.generation(start.name) != start.ticket.gen {
		return c, nil
	}
	n := c.clone()
	n.State = lifecycle.ConsentRefused(n.State, reason, now)
	return n, b.credentials.put(ctx, s, h, n)
}

// deviceConsented stores the tokens of a completed device authorization exactly as a
// consent's (putConsent: the refresh token in the same write, before anything else),
// if its attempt is still the pending one, and says so: state, event, notification.
func (b *integrationsBackend) deviceConsented(ctx context.Context, s logical.Storage, start *devicePoll, tok *oauth.Token) {
	defer b.deviceFlow.unschedule(start.name, start.attempt)
	held, unlock := b.credentials.lock(start.name)
	n, err := b.storeDeviceConsent(ctx, s, held, start, tok)
	unlock()
	if err != nil {
		var ae *errAuthorization
		if errors.As(err, &ae) {
			b.recordEvent(start.name, usage.EventAuthorized, false, "", ae.msg)
			return
		}
		b.Logger().Error("storing a device authorization's consent failed", "credential", start.name, "error", err)
		return
	}
	detail := "device authorization completed: consent stored"
	if issue := n.State.AuthorizationIssue(); issue != "" {
		detail += "; " + issue
	}
	b.recordEvent(start.name, usage.EventAuthorized, true, "", detail)
	msg := fmt.Sprintf("Consent completed for credential %q (device authorization): the engine holds its tokens.", start.name)
	if n.State.AuthorizationIssue() == lifecycle.IssueNoRefreshToken {
		msg = noRefreshTokenMessage(start.name)
	}
	b.notifyState(ctx, n, "consent-completed", msg)
	if err := b.afterCredentialChange(ctx, s, start.name); err != nil {
		b.Logger().Error("indexing a credential failed", "credential", start.name, "error", err)
	}
}

func (b *integrationsBackend) storeDeviceConsent(ctx context.Context, s logical.Storage, h credentialHeld, start *devicePoll, tok *oauth.Token) (*credential, error) {
	p, err := b.authorizations.load(ctx, s, start.name)
	if err != nil {
		return nil, err
	}
	if p == nil || p.State != start.attempt {
		return nil, &errAuthorization{"a device authorization completed after it was replaced or cancelled: its tokens were discarded"}
	}
	if err := b.tokens.putConsent(ctx, s, start.ticket, tok); err != nil && !errors.Is(err, errRefreshKept) && !errors.Is(err, errUnsaved) {
		// errRefreshKept and errUnsaved: the consented refresh token is held (stored,
		// or in memory until storage takes it), so the consent stands.
		if isDiscarded(err) {
			_ = b.authorizations.drop(ctx, s, h) // its device code is spent; a failure leaves it to expire
			return nil, &errAuthorization{"the credential was changed while its device authorization completed: its tokens were discarded; authorize again"}
		}
		return nil, err
	}
	// Spent: the device code is single-use.
	if err := b.authorizations.drop(ctx, s, h); err != nil {
		return nil, err
	}
	c, err := b.credentials.get(ctx, s, start.name)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, &errAuthorization{"the credential was deleted while its device authorization completed"}
	}
	now := b.now().UTC()
	n := c.clone()
	n.State = lifecycle.Reauthorized(n.State, now)
	if tok.RefreshToken == "" {
		n.State = lifecycle.AuthorizedWithoutRefreshToken(n.State, now)
	}
	return n, b.credentials.put(ctx, s, h, n)
}
