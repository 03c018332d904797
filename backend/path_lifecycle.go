package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// lifecycleActions are the manual actions on one credential.
var lifecycleActions = []struct {
	action, verb, synopsis string
}{
	{"suspend", "suspend", "Suspend a credential by hand: access is refused until it is unsuspended."},
	{"unsuspend", "unsuspend", "Make a suspended credential usable again; its inactivity window restarts."},
	{"reset-inactivity", "reset-inactivity-of", "Restart a credential's inactivity window, as if it had just been used."},
}

func pathLifecycle(b *integrationsBackend) []*framework.Path {
	var paths []*framework.Path
	for _, a := range lifecycleActions {
		action := a.action
		paths = append(paths, &framework.Path{
			Pattern: "credentials/" + framework.GenericNameRegex("name") + "/" + action + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "credential",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": {Type: framework.TypeString, Description: "Name of the credential.", Required: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: writeOperation(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
					return b.lifecycleAction(ctx, req, d, action)
				}, a.verb, ""),
			},
			HelpSynopsis: a.synopsis,
			HelpDescription: a.synopsis + " The action is logged in the credential's events." +
				examples("vault write -f integrations/credentials/billing-db/"+action),
		})
	}
	paths = append(paths, &framework.Path{
		Pattern: "credentials/" + framework.GenericNameRegex("name") + "/logs/?$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credential-logs",
		},
		Fields: map[string]*framework.FieldSchema{
			"name":        {Type: framework.TypeString, Description: "Name of the credential.", Required: true},
			"status":      {Type: framework.TypeString, Description: "Only events with this outcome: success or failure.", Query: true},
			"integration": {Type: framework.TypeString, Description: "Only events of this integration (" + credtype.IntegrationRule + ").", Query: true},
			"event":       {Type: framework.TypeString, Description: fmt.Sprintf("Only events of this kind, e.g. access, token_minted, warning (at most %d bytes).", maxLogQuery), Query: true},
			"since":       {Type: framework.TypeString, Description: fmt.Sprintf("Only events at or after this RFC 3339 time (at most %d bytes).", maxLogQuery), Query: true},
			"until":       {Type: framework.TypeString, Description: fmt.Sprintf("Only events at or before this RFC 3339 time (at most %d bytes).", maxLogQuery), Query: true},
			"limit":       {Type: framework.TypeInt, Description: "At most this many events (newest first).", Query: true},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathLogsRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
			},
			logical.ListOperation: &framework.PathOperation{
				Callback:     b.pathLogsList,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
			},
		},
		HelpSynopsis: "The most recent events of a credential: accesses, tokens minted, warnings, state changes.",
		HelpDescription: "Newest first; the engine keeps log_size events per credential (default 250). Filter by status, integration, event kind and time range. " +
			"A read answers the events as records (for -format=json); a list answers the same events as a table, one row per event numbered newest first, with the records beside it for -format=json." +
			examples("vault list -detailed integrations/credentials/billing-db/logs", "vault read -format=json integrations/credentials/billing-db/logs status=failure limit=20"),
	}, &framework.Path{
		Pattern: "alerts/?$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "alerts",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathAlertsRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
			},
			logical.ListOperation: &framework.PathOperation{
				Callback:     b.pathAlertsList,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
			},
		},
		HelpSynopsis: "Everything that needs a person: pending suspensions and purges, re-authorizations, expiries, failures.",
		HelpDescription: "Each alert names the credential, the reason, its severity and when it takes (or took) effect. A client secret or certificate expiring upstream shows as client_secret_expiring or certificate_expiring from the largest warn_before threshold (yellow), then client_secret_expired or certificate_expired (red); the engine never suspends for them. Notifications not delivered to notify_credential show as notification_undelivered (with event, attempts and queued_at) and drops of a full outbox as notifications_dropped. " +
			"A read answers the alerts as records (for -format=json); a list answers them as a table, one row per alert numbered in the read's order (red first), with the records beside it for -format=json." +
			examples("vault list -detailed integrations/alerts", "vault read -format=json integrations/alerts"),
	})
	return paths
}

func (b *integrationsBackend) lifecycleAction(ctx context.Context, req *logical.Request, d *framework.FieldData, action string) (*logical.Response, error) {
	name := d.Get("name").(string)
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentialOr404(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	now := b.now().UTC()
	n := c.clone()
	state := b.currentState(c)
	var event, detail string
	switch action {
	case "suspend":
		n.State, event, detail = lifecycle.Suspend(state, lifecycle.ReasonManual, now), usage.EventSuspended, "suspended by hand"
	case "unsuspend":
		if !state.ExpiresAt.IsZero() && !now.Before(state.ExpiresAt) {
			return logical.ErrorResponse(fieldErr("expires_at", "has passed: update the credential's expires_at before unsuspending it").Error()), nil
		}
		n.State, event, detail = lifecycle.Unsuspend(state, now), usage.EventUnsuspended, "unsuspended by hand"
	default:
		n.State, event, detail = lifecycle.Touch(state, now), usage.EventInactivityReset, "inactivity window restarted by hand"
	}
	if err := b.credentials.put(ctx, req.Storage, held, n); err != nil {
		return nil, err
	}
	b.recordEvent(name, event, true, requestIntegration(req), detail)
	if err := b.afterCredentialChange(ctx, req.Storage, name); err != nil {
		return nil, err
	}
	return b.credentialResponse(ctx, req.Storage, n)
}

func (b *integrationsBackend) pathLogsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	data, resp, err := b.logsView(ctx, req, d)
	if data == nil {
		return resp, err
	}
	return &logical.Response{Data: data}, nil
}

// pathLogsList is the logs as a table (recordsList): a row per event, newest first.
func (b *integrationsBackend) pathLogsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	data, resp, err := b.logsView(ctx, req, d)
	if data == nil {
		return resp, err
	}
	return recordsList(data["events"].([]map[string]any), data), nil
}

// logsView is the answer of credentials/<name>/logs: the filtered events and the usage
// summary. A nil data comes with the answer to give instead (a 400 naming the field,
// or nothing for a credential that does not exist) or an error.
func (b *integrationsBackend) logsView(ctx context.Context, req *logical.Request, d *framework.FieldData) (map[string]any, *logical.Response, error) {
	name := d.Get("name").(string)
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, nil, err
	}
	f := usage.Filter{
		Status:      d.Get("status").(string),
		Integration: d.Get("integration").(string),
		Event:       d.Get("event").(string),
		Limit:       d.Get("limit").(int),
	}
	if f.Status != "" && f.Status != usage.StatusSuccess && f.Status != usage.StatusFailure {
		return nil, logical.ErrorResponse(fieldErr("status", "must be success or failure").Error()), nil
	}
	if f.Integration != "" && !credtype.ValidIntegration(f.Integration) {
		return nil, logical.ErrorResponse(fieldErr("integration", "must be "+credtype.IntegrationRule).Error()), nil
	}
	for _, q := range []string{"event", "since", "until"} {
		if len(d.Get(q).(string)) > maxLogQuery {
			return nil, logical.ErrorResponse(fieldErr(q, fmt.Sprintf("must be at most %d bytes", maxLogQuery)).Error()), nil
		}
	}
	for _, tf := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := d.Get(tf.name).(string); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, logical.ErrorResponse(fieldErr(tf.name, "must be an RFC 3339 time such as 2026-11-24T08:00:00Z").Error()), nil
			}
			*tf.dst = t
		}
	}
	u, err := b.usage.load(ctx, req.Storage, name)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, nil, err
	}
	u.Merge(b.activity.recorder.Peek(name), cfg.LogSize)
	events := u.Filter(f)
	out := make([]map[string]any, 0, len(events))
	for _, ev := range events {
		out = append(out, map[string]any{
			"time": rfc3339Nano(ev.Time), "event": ev.Event, "status": ev.Status,
			"integration": ev.Integration, "detail": ev.Detail,
		})
	}
	return map[string]any{"events": out, "access_count": u.Count, "last_accessed": rfc3339(u.LastAccessed)}, nil, nil
}

// maxLogQuery bounds the event kind and time filters of credentials/<name>/logs: event
// kinds and RFC 3339 times are far shorter.
const maxLogQuery = 64

func (b *integrationsBackend) pathAlertsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	out, warning, err := b.alertsView(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: map[string]any{"alerts": out}}
	if warning != "" {
		resp.AddWarning(warning)
	}
	return resp, nil
}

// pathAlertsList is the alerts as a table (recordsList): a row per alert, in the
// read's order.
func (b *integrationsBackend) pathAlertsList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	out, warning, err := b.alertsView(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	resp := recordsList(out, map[string]any{"alerts": out})
	if warning != "" {
		resp.AddWarning(warning)
	}
	return resp, nil
}

// alertsView is every alert, red first then by due time, as the answer's records, and
// a warning when the lifecycle index is still being built.
func (b *integrationsBackend) alertsView(ctx context.Context, s logical.Storage) ([]map[string]any, string, error) {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, "", err
	}
	now := b.now().UTC()
	var alerts []lifecycle.Alert
	for _, name := range b.alertCandidates(now) {
		c, err := b.credentials.get(ctx, s, name)
		if err != nil {
			return nil, "", err
		}
		if c == nil {
			continue
		}
		sum, err := b.usage.summary(ctx, s, name)
		if err != nil {
			return nil, "", err
		}
		alerts = append(alerts, b.policyFor(cfg, c).Alerts(name, b.healthInput(c, sum), now)...)
	}
	undelivered, err := b.outbox.Alerts(ctx, s, now)
	if err != nil {
		return nil, "", err
	}
	alerts = append(alerts, undelivered...)
	slices.SortStableFunc(alerts, func(a, b lifecycle.Alert) int {
		if a.Severity != b.Severity {
			return strings.Compare(a.Severity, b.Severity) // "red" before "yellow"
		}
		return a.Due.Compare(b.Due)
	})
	out := make([]map[string]any, 0, len(alerts))
	for _, a := range alerts {
		alert := map[string]any{
			"name": a.Name, "reason": a.Reason, "severity": a.Severity,
			"due": rfc3339(a.Due), "detail": a.Detail,
		}
		if a.Event != "" {
			alert["event"], alert["attempts"], alert["queued_at"] = a.Event, a.Attempts, rfc3339(a.QueuedAt)
		}
		out = append(out, alert)
	}
	if !b.indexComplete(cfg) {
		a := b.activity
		return out, fmt.Sprintf("The lifecycle index is still being built (%d of %d credentials indexed): these alerts may be incomplete. Read alerts again shortly.", a.scanned.Load(), a.total.Load()), nil
	}
	return out, "", nil
}

// alertCandidates names, sorted, every credential that may have an alert at now: those
// the alerting index files at or before now, those whose stored run of failures is
// long enough, and those with a failure not yet flushed. Its cost follows their
// number, not the number of credentials stored.
func (b *integrationsBackend) alertCandidates(now time.Time) []string {
	a := b.activity
	names := a.alerting.Due(now, 0)
	names = append(names, b.usage.failingCandidates()...)
	names = append(names, a.recorder.WithFailures()...)
	slices.Sort(names)
	return slices.Compact(names)
}
