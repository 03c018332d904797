package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// Notification delivery bounds: a full queue drops (and logs) rather than blocking a
// request or the sweep.
const (
	notifyQueueSize = 256
	notifyAttempts  = 4
	notifyBodyLimit = 64 << 10
)

// notification is the JSON body POSTed to the notify credential, and the metadata of
// the Vault event.
type notification struct {
	Event      string `json:"event"`
	Credential string `json:"credential"`
	Type       string `json:"type"`
	Message    string `json:"message"`
	Due        string `json:"due,omitempty"`
	Mount      string `json:"mount"`
	Time       string `json:"time"`
}

// notify announces a sweep action: hclog, a Vault event, and the notify credential.
func (b *integrationsBackend) notify(ctx context.Context, c *credential, a lifecycle.Action) {
	event := map[lifecycle.ActionKind]string{
		lifecycle.ActionWarnSuspend: "suspension-warning",
		lifecycle.ActionWarnPurge:   "purge-warning",
		lifecycle.ActionSuspend:     "suspended",
		lifecycle.ActionPurge:       "purged",
	}[a.Kind]
	// A warning's Due is when the warning itself became due; the person reading it wants
	// when the suspension or purge it announces takes effect.
	due := a.Due.Add(a.Threshold)
	n := notification{Event: event, Credential: c.Name, Type: c.Type, Message: a.Message(), Due: rfc3339(due)}
	b.deliver(ctx, n)
}

// notifyState announces a state change outside the sweep, such as needs_reauth.
func (b *integrationsBackend) notifyState(ctx context.Context, c *credential, event, message string) {
	b.deliver(ctx, notification{Event: event, Credential: c.Name, Type: c.Type, Message: message})
}

func (b *integrationsBackend) deliver(ctx context.Context, n notification) {
	n.Mount, n.Time = b.mountPath(), rfc3339(b.now())
	b.Logger().Warn(n.Message, "credential", n.Credential, "event", n.Event, "due", n.Due)
	// Servers without event support answer with an error; the log line above stands.
	if err := logical.SendEvent(ctx, b.Backend, "integrations/credential-"+n.Event,
		"credential", n.Credential, "type", n.Type, "message", n.Message, "due", n.Due); err != nil {
		b.Logger().Debug("vault event not sent", "error", err)
	}
	select {
	case b.notifications <- n:
	default:
		b.Logger().Error("notification queue full; notification dropped", "credential", n.Credential, "event", n.Event)
	}
}

// runNotifier POSTs queued notifications to config.notify_credential until stop closes.
func (b *integrationsBackend) runNotifier(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case n := <-b.notifications:
			b.post(stop, n)
		}
	}
}

// post delivers one notification with bounded retries and jittered backoff.
func (b *integrationsBackend) post(stop <-chan struct{}, n notification) {
	// Clean must not wait out request_timeout for a receiver that hangs: stopping
	// cancels the request in flight.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	cfg, err := b.loadConfig(ctx, b.storage)
	if err != nil || cfg.NotifyCredential == "" {
		return
	}
	target, err := b.credentials.get(ctx, b.storage, cfg.NotifyCredential)
	if err != nil || target == nil {
		b.Logger().Warn("notify credential not found", "notify_credential", cfg.NotifyCredential)
		return
	}
	dest := notifyTarget(target, b.slackPostURL)
	if dest.url == "" {
		b.Logger().Warn("notify credential has no URL to post to", "notify_credential", cfg.NotifyCredential, "type", target.Type)
		return
	}
	body := dest.body(n, cfg.NotifyChannel)
	client := &http.Client{
		Timeout:   cfg.RequestTimeout,
		Transport: b.transport,
		// A redirect would resend the body (and a bearer token) wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for attempt := 1; attempt <= notifyAttempts; attempt++ {
		status, answer, err := postOnce(ctx, client, dest, body)
		if err == nil && status < 300 {
			if err = dest.check(answer); err == nil {
				return
			}
		}
		if ctx.Err() != nil {
			return // stopping
		}
		var transient *transientRefusal
		permanent := err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests ||
			err != nil && status < 300 && !errors.As(err, &transient)
		b.Logger().Warn("notification not delivered", "notify_credential", cfg.NotifyCredential, "attempt", attempt, "status", status, "error", err)
		if permanent || attempt == notifyAttempts {
			return
		}
		wait := b.notifyBackoff(attempt)
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
	}
}

// slackPostMessageURL is Slack's Web API method for posting a message as the bot whose
// token a slack credential holds.
const slackPostMessageURL = "https://slack.com/api/chat.postMessage"

// notifyDestination is how one notify credential is posted to.
type notifyDestination struct {
	url    string
	header string // extra header and its value, e.g. Authorization
	value  string
	slack  bool // Slack's Web API: a message body, and errors reported in a 200 answer
}

// body is what is posted: the notification as JSON, or a Slack message.
func (d notifyDestination) body(n notification, channel string) []byte {
	var v any = n
	if d.slack {
		text := fmt.Sprintf("[%s] %s: %s", strings.TrimSuffix(n.Mount, "/"), n.Credential, n.Message)
		v = map[string]string{"channel": channel, "text": text}
	}
	b, _ := json.Marshal(v)
	return b
}

// transientRefusal is a refusal worth retrying (Slack's "ratelimited").
type transientRefusal struct{ code string }

func (e *transientRefusal) Error() string { return "refused for now: " + e.code }

// check reads a successful answer: Slack reports failures as {"ok": false, "error": …}.
func (d notifyDestination) check(answer []byte) error {
	if !d.slack {
		return nil
	}
	var r struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(answer, &r); err != nil {
		return errors.New("slack answered with something other than JSON")
	}
	switch {
	case r.OK:
		return nil
	case r.Error == "ratelimited":
		return &transientRefusal{code: r.Error}
	default:
		return fmt.Errorf("slack refused the message: %s", r.Error)
	}
}

// notifyTarget is where and how a notify credential is posted to; url is empty for a
// credential that cannot receive notifications.
func notifyTarget(c *credential, slackURL string) notifyDestination {
	switch c.Type {
	case "webhook":
		return notifyDestination{url: str(c.Values["url"])}
	case "bearer":
		prefix := str(c.Values["header_prefix"])
		if prefix == "" {
			prefix = "Bearer"
		}
		return notifyDestination{url: str(c.Values["url"]), header: "Authorization", value: prefix + " " + str(c.Values["token"])}
	case "slack":
		return notifyDestination{url: slackURL, header: "Authorization", value: "Bearer " + str(c.Values["token"]), slack: true}
	}
	return notifyDestination{}
}

func postOnce(ctx context.Context, client *http.Client, d notifyDestination, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if d.slack {
		req.Header.Set("Content-Type", "application/json; charset=utf-8") // Slack warns without the charset
	}
	if d.header != "" {
		req.Header.Set(d.header, d.value)
	}
	resp, err := client.Do(req)
	if err != nil {
		// A webhook URL can itself be a secret (Slack's are): report the cause only.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("posting notification: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, notifyBodyLimit))
	return resp.StatusCode, answer, nil
}

// jitteredBackoff waits a random time up to 2^attempt seconds (full jitter), so many
// engines retrying one receiver do not retry in step.
func jitteredBackoff(attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(time.Second << attempt)))
}
