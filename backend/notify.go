package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"
)

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
	n := notify.Notification{Event: event, Credential: c.Name, Type: c.Type, Message: a.Message(), Due: rfc3339(due)}
	b.deliver(ctx, n)
}

// notifyState announces a state change outside the sweep, such as needs_reauth.
func (b *integrationsBackend) notifyState(ctx context.Context, c *credential, event, message string) {
	b.deliver(ctx, notify.Notification{Event: event, Credential: c.Name, Type: c.Type, Message: message})
}

func (b *integrationsBackend) deliver(ctx context.Context, n notify.Notification) {
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
	b.outbox.Enqueue(ctx, n)
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

// notifyTarget is where and how c is posted to, as its type in the catalog says.
func (b *integrationsBackend) notifyTarget(c *credential) notify.Target {
	t, ok := c.typeDef().NotifyTarget(&c.Values)
	return notify.TargetOf(t, ok, b.slackPostURL)
}

// newOutbox is the notifications' outbox and delivery (package notify) with what it
// reads from the mount.
func (b *integrationsBackend) newOutbox() *notify.Outbox {
	return notify.New(notify.Deps{
		Storage:   func() logical.Storage { return b.storage },
		Now:       b.now,
		Logger:    func() hclog.Logger { return b.Logger() },
		WriteSafe: func() bool { return b.WriteSafeReplicationState() },
		Settings: func(ctx context.Context, s logical.Storage) (notify.Settings, error) {
			cfg, err := b.loadConfig(ctx, s)
			if err != nil {
				return notify.Settings{}, err
			}
			return notify.Settings{Credential: cfg.NotifyCredential, Channel: cfg.NotifyChannel, Timeout: cfg.RequestTimeout}, nil
		},
		Target: func(ctx context.Context, s logical.Storage, name string) (notify.Target, error) {
			c, err := b.credentials.get(ctx, s, name)
			if err != nil || c == nil {
				return notify.Target{}, err
			}
			return b.notifyTarget(c), nil
		},
		Transport: func(ca string) (http.RoundTripper, error) {
			return b.tlsTransports().For(tlsclient.Material{CACertificates: ca})
		},
		Attempted: b.metrics.notificationAttempt,
		Dropped:   func() { b.metrics.notifications.WithLabelValues("dropped").Inc() },
	})
}

// deliveryStep is one pass of the outbox delivery job.
func (b *integrationsBackend) deliveryStep(ctx context.Context, _ logical.Storage) error {
	b.outbox.Deliver(ctx)
	return nil
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
	dest := b.notifyTarget(c)
	switch {
	case dest.URL == "":
		return fieldErr("notify_credential", "must name "+credtype.NotifyRule())
	case dest.Slack && cfg.NotifyChannel == "":
		return fieldErr("notify_channel", "is required when notify_credential posts through the Slack API")
	case named && checkEndpoints(cfg, c.typeDef(), &c.Values) != nil:
		return fieldErr("notify_credential", "names a credential whose URL is an address in a network the engine may not connect to (config denied_networks and allowed_networks)")
	}
	return nil
}
