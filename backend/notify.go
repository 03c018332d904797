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
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// Notification delivery bounds. Notifications wait in the outbox (see outbox.go), so a
// receiver that is slow, down or refusing holds up neither a request nor the sweep.
const (
	notifyBodyLimit = 64 << 10
	// notifyMaxBackoff caps the wait between two attempts at one notification.
	notifyMaxBackoff = time.Hour
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
	// Count is how many notifications of this credential and event kind the outbox
	// coalesced into this one, FirstTime and LastTime the times of the first and the
	// last (Time is the last's too). Entries an older version stored have none: tally
	// fills them in.
	Count     int    `json:"count,omitempty"`
	FirstTime string `json:"first_time,omitempty"`
	LastTime  string `json:"last_time,omitempty"`
}

// tally is n as it is posted: an entry stored before coalescing counts once, at its
// own time.
func (n notification) tally() notification {
	if n.Count < 1 {
		n.Count = 1
	}
	if n.FirstTime == "" {
		n.FirstTime = n.Time
	}
	if n.LastTime == "" {
		n.LastTime = n.Time
	}
	return n
}

// coalesce is n (waiting) with later, of the same credential and kind, folded in: the
// later message, due date, type and time, and one count more per occurrence.
func (n notification) coalesce(later notification) notification {
	n, later = n.tally(), later.tally()
	n.Count += later.Count
	n.Type, n.Message, n.Due, n.Mount = later.Type, later.Message, later.Due, later.Mount
	n.Time, n.LastTime = later.Time, later.LastTime
	return n
}

// notify announces a sweep action: hclog, a Vault event, and the notify credential.
func (b *integrationsBackend) notify(ctx context.Context, c *credential, a lifecycle.Action) {
	event := map[lifecycle.ActionKind]string{
		lifecycle.ActionWarnSuspend: "suspension-warning",
		lifecycle.ActionWarnPurge:   "purge-warning",
		lifecycle.ActionSuspend:     "suspended",
		lifecycle.ActionPurge:       "purged",
	}[a.Kind]
	if reason := a.AlertReason(); reason != "" {
		// An upstream expiry is announced under its alert's reason: client-secret-expiring, certificate-expired, ...
		event = strings.ReplaceAll(reason, "_", "-")
	}
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
	// The message is the engine's own text, but part of it can come from elsewhere (a
	// provider's error code): it goes out as one bounded line.
	n.Message = oneLine(n.Message, maxNotifyMessage)
	b.Logger().Warn(n.Message, "credential", n.Credential, "event", n.Event, "due", n.Due)
	// Servers without event support answer with an error; the log line above stands.
	if err := logical.SendEvent(ctx, b.Backend, "integrations/credential-"+n.Event,
		"credential", n.Credential, "type", n.Type, "message", n.Message, "due", n.Due); err != nil {
		b.eventNotSent(err)
	}
	b.enqueue(ctx, n)
}

// eventNotSent logs a Vault event that could not be sent. A server without event
// support (one that answers gRPC Unimplemented, as the open-source fork does, or a
// mount given no event sender) is said once per mount, at Info: it is how that
// server is, not a failure, and every notification meets it. Any other error is
// logged at Debug each time.
func (b *integrationsBackend) eventNotSent(err error) {
	if status.Code(err) == codes.Unimplemented || errors.Is(err, framework.ErrNoEvents) {
		if b.eventsMissing.CompareAndSwap(false, true) {
			b.Logger().Info("this Vault server does not support Vault events: notifications go to this log and the notify credential only", "error", err)
		}
		return
	}
	b.Logger().Debug("vault event not sent", "error", err)
}

// slackPostMessageURL is Slack's Web API method for posting a message as the bot whose
// token a slack credential holds.
const slackPostMessageURL = "https://slack.com/api/chat.postMessage"

// notifyDestination is how one notify credential is posted to.
type notifyDestination struct {
	url    string
	header string // extra header and its value, e.g. Authorization
	value  string
	slack  bool   // Slack's Web API: a message body, and errors reported in a 200 answer
	ca     string // the target's ca_certificate: extra trust anchors
}

// body is what is posted: the notification as JSON, or a Slack message.
func (d notifyDestination) body(n notification, channel string) []byte {
	n = n.tally()
	var v any = n
	if d.slack {
		// Everything in the text is escaped as Slack's formatting rules ask, so no part
		// of it can mention anyone (<!channel>, <@U…>) or become a link.
		text := fmt.Sprintf("[%s] %s: %s", slackEscape(strings.TrimSuffix(n.Mount, "/")), slackEscape(n.Credential), slackEscape(n.Message))
		if n.Count > 1 {
			text += fmt.Sprintf(" (%d times since %s)", n.Count, slackEscape(n.FirstTime))
		}
		v = map[string]string{"channel": channel, "text": text}
	}
	b, _ := json.Marshal(v)
	return b
}

// slackRefusal is Slack's {"ok": false} answer, reduced to its error code.
type slackRefusal struct {
	code string // slackErrorCode: a safe code (oauth.SafeCode) or "unknown"
}

func (e *slackRefusal) Error() string { return "slack refused the message: " + e.code }

// transient reports whether the refusal is worth retrying soon (Slack's "ratelimited").
func (e *slackRefusal) transient() bool { return e.code == "ratelimited" }

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
		return &slackRefusal{code: "not_json"}
	}
	if r.OK {
		return nil
	}
	return &slackRefusal{code: slackErrorCode(r.Error)}
}

// slackEscaper escapes the three characters Slack's message formatting gives meaning to.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }

// slackErrorCode keeps Slack's error field only when it is a safe code (channel_not_found,
// not_authed, …) by the rule every provider's error code follows (oauth.SafeCode).
// Anything else is provider text, which is never echoed.
func slackErrorCode(code string) string {
	if c, ok := oauth.SafeCode(code); ok {
		return c
	}
	return "unknown"
}

// maxNotifyMessage bounds a notification's message, in logs, events and posts.
const maxNotifyMessage = 512

// oneLine makes s safe for a log line: every control character (newlines included)
// becomes a space, and it is cut to at most limit bytes on a rune boundary.
func oneLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// notifyTarget is where and how a notify credential is posted to, as its type in the
// catalog says (credtype.Type.NotifyTarget); url is empty for a credential that cannot
// receive notifications.
func notifyTarget(c *credential, slackURL string) notifyDestination {
	t, ok := c.typeDef().NotifyTarget(&c.Values)
	if !ok {
		return notifyDestination{}
	}
	d := notifyDestination{url: t.URL, slack: t.SlackAPI, ca: t.CACertificate}
	if t.SlackAPI {
		d.url = slackURL
	}
	if t.Authorization != "" {
		d.header, d.value = "Authorization", t.Authorization
	}
	return d
}

func postOnce(ctx context.Context, client *http.Client, d notifyDestination, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	// Notifications are rare: a fresh connection each time, so a keep-alive connection
	// the receiver (or a load balancer in front of it) has closed meanwhile never turns
	// a delivery into a failure.
	req.Close = true
	req.Header.Set("Content-Type", "application/json")
	if d.slack {
		req.Header.Set("Content-Type", "application/json; charset=utf-8") // Slack warns without the charset
	}
	if d.header != "" {
		req.Header.Set(d.header, d.value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, transportFailure(err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, notifyBodyLimit))
	return resp.StatusCode, answer, nil
}

// postError is a POST that got no answer, named by kind only. The URL can itself be a
// secret (Slack's and Teams' webhooks are), and the error text of a broken exchange
// can quote what the receiver sent: neither reaches a log line.
type postError struct{ kind string }

func (e *postError) Error() string { return "posting notification: " + e.kind }

func transportFailure(err error) error {
	if kind := netpolicy.FailureKind(err); kind != "" {
		return &postError{kind}
	}
	return &postError{"no_answer"}
}

// jitteredBackoff is the wait before attempt+1 at a notification: half of
// min(2^attempt seconds, notifyMaxBackoff) plus a random part up to the other half, so
// it grows, is capped, and many engines retrying one receiver do not retry in step.
func jitteredBackoff(attempt int) time.Duration {
	ceiling := notifyMaxBackoff
	if attempt < 20 {
		ceiling = min(time.Second<<max(attempt, 1), notifyMaxBackoff)
	}
	return ceiling/2 + time.Duration(rand.Int64N(int64(ceiling/2)+1)) //nolint:gosec // G404: retry jitter spreads load and guards nothing, so math/rand is right
}

// checkNotifyCredential refuses a notify_credential that does not exist or cannot
// receive notifications (the catalog says which can: credtype.NotifyRule), and a Slack
// target without notify_channel. A newly named one is refused also when its URL is a
// literal address the network policy denies; a policy tightened under a target
// already named is not refused for it (its deliveries fail as denied_network, shown
// in alerts).
func (b *integrationsBackend) checkNotifyCredential(ctx context.Context, s logical.Storage, cfg *engineConfig, named bool) error {
	name := cfg.NotifyCredential
	if name == "" {
		return nil
	}
	c, err := b.credentials.get(ctx, s, name)
	if err != nil {
		return err
	}
	if c == nil {
		return fieldErr("notify_credential", fmt.Sprintf("names no credential (create %q first)", name))
	}
	dest := notifyTarget(c, b.slackPostURL)
	switch {
	case dest.url == "":
		return fieldErr("notify_credential", "must name "+credtype.NotifyRule())
	case dest.slack && cfg.NotifyChannel == "":
		return fieldErr("notify_channel", "is required when notify_credential posts through the Slack API")
	case named && checkEndpoints(cfg, c.typeDef(), &c.Values) != nil:
		return fieldErr("notify_credential", "names a credential whose URL is an address in a network the engine may not connect to (config denied_networks and allowed_networks)")
	}
	return nil
}
