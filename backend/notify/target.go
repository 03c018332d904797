package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

const (
	// bodyLimit bounds what is read of a receiver's answer.
	bodyLimit = 64 << 10
	// MaxBackoff caps the wait between two attempts at one notification.
	MaxBackoff = time.Hour
	// SlackPostMessageURL is Slack's Web API method for posting a message as the bot
	// whose token a slack credential holds.
	SlackPostMessageURL = "https://slack.com/api/chat.postMessage"
)

// Target is how one notify credential is posted to; URL is empty for a credential that
// cannot receive notifications.
type Target struct {
	URL    string
	header string // extra header and its value, e.g. Authorization
	value  string
	Slack  bool   // Slack's Web API: a message body, and errors reported in a 200 answer
	CA     string // the target's ca_certificate: extra trust anchors
}

// TargetOf is where and how a credential is posted to, as its type in the catalog says
// (credtype.Type.NotifyTarget: t and ok); slackURL stands for Slack's chat.postMessage.
func TargetOf(t credtype.NotifyTarget, ok bool, slackURL string) Target {
	if !ok {
		return Target{}
	}
	d := Target{URL: t.URL, Slack: t.SlackAPI, CA: t.CACertificate}
	if t.SlackAPI {
		d.URL = slackURL
	}
	if t.Authorization != "" {
		d.header, d.value = "Authorization", t.Authorization
	}
	return d
}

// body is what is posted: the notification as JSON, or a Slack message.
func (d Target) body(n Notification, channel string) []byte {
	n = n.tally()
	var v any = n
	if d.Slack {
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
func (d Target) check(answer []byte) error {
	if !d.Slack {
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

func postOnce(ctx context.Context, client *http.Client, d Target, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	// Notifications are rare: a fresh connection each time, so a keep-alive connection
	// the receiver (or a load balancer in front of it) has closed meanwhile never turns
	// a delivery into a failure.
	req.Close = true
	req.Header.Set("Content-Type", "application/json")
	if d.Slack {
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
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
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

// Backoff is the wait before attempt+1 at a notification: half of
// min(2^attempt seconds, MaxBackoff) plus a random part up to the other half, so it
// grows, is capped, and many engines retrying one receiver do not retry in step.
func Backoff(attempt int) time.Duration {
	ceiling := MaxBackoff
	if attempt < 20 {
		ceiling = min(time.Second<<max(attempt, 1), MaxBackoff)
	}
	return ceiling/2 + time.Duration(rand.Int64N(int64(ceiling/2)+1)) //nolint:gosec // G404: retry jitter spreads load and guards nothing, so math/rand is right
}
