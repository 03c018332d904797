// The management view of a credential: its settings without secrets, with lifecycle
// and usage figures.

package backend

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// policyFor is the effective lifecycle policy of a credential: the engine's config with
// the credential's overrides. It stays a method because the sweep, the flush, the
// access path and the views all ask it, with the config they already hold.
func (b *integrationsBackend) policyFor(cfg *engineConfig, c *credential) lifecycle.Policy {
	return cfg.policy().Override(c.SuspendAfter, c.PurgeAfter)
}

// currentState is the credential's lifecycle state with unflushed accesses counted.
func (b *integrationsBackend) currentState(c *credential) lifecycle.State {
	st := c.State
	if last := b.usage.inflightAccess(c.Name); !last.IsZero() {
		st = lifecycle.Touch(st, last)
	}
	if last := b.activity.recorder.LastAccessed(c.Name); !last.IsZero() {
		st = lifecycle.Touch(st, last)
	}
	return st
}

// healthInput gathers what health and alerts are judged on.
func (b *integrationsBackend) healthInput(c *credential, sum usageSummary) lifecycle.HealthInput {
	_, transient := b.activity.transient.Load(c.Name)
	return lifecycle.HealthInput{
		State:               b.currentState(c),
		Accessed:            !sum.lastAccessed.IsZero(),
		ConsecutiveFailures: sum.consecutiveFailures,
		TransientFailure:    transient,
	}
}

// lifecycleView is the lifecycle and usage part of a credential's management view.
func (b *integrationsBackend) lifecycleView(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential) map[string]any {
	now := b.now()
	sum, err := b.usage.summary(ctx, s, c.Name)
	if err != nil {
		b.Logger().Warn("reading usage failed", "credential", c.Name, "error", err)
	}
	p := b.policyFor(cfg, c)
	in := b.healthInput(c, sum)
	st := in.State
	status := string(st.Status)
	reason := string(st.Reason)
	// A window that ran out is reported as such even before the sweep gets to it.
	var unavailable *lifecycle.UnavailableError
	if err := p.Usable(st, now); errors.As(err, &unavailable) && st.Status == lifecycle.StatusActive {
		status, reason = string(lifecycle.StatusSuspended), string(unavailable.Reason)
	}
	verifiedAt, verifyResult := "", ""
	if v := st.Verified; v != nil {
		verifiedAt, verifyResult = rfc3339(v.CheckedAt), v.Result
	}
	return map[string]any{
		"verified_at":   verifiedAt,
		"verify_result": verifyResult,
		"status":        status,
		"status_reason": reason,
		"health":        p.Health(in, now),
		"last_accessed": rfc3339(sum.lastAccessed),
		"access_count":  sum.count,
		"suspend_at":    rfc3339(p.SuspendAt(st)),
		"purge_at":      rfc3339(p.PurgeAt(st)),
		"expires_at":    rfc3339(st.ExpiresAt),
		"suspended_at":  rfc3339(st.SuspendedAt),
		// What is wrong with the last consent (no_refresh_token_issued), "" when nothing.
		"authorization_issue": st.AuthorizationIssue(),
	}
}

// credentialResponse is the management view of a credential: everything but secrets.
func (b *integrationsBackend) credentialResponse(ctx context.Context, s logical.Storage, c *credential) (*logical.Response, error) {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	t := c.typeDef()
	data := map[string]any{
		"name":        c.Name,
		"type":        c.Type,
		"kind":        string(t.Kind),
		"description": c.Description,
		"tags":        nonNil(c.Tags),
		"used_by":     nonNil(c.UsedBy),
		"created_at":  c.CreatedAt.Format(time.RFC3339),
		"updated_at":  c.UpdatedAt.Format(time.RFC3339),
		"version":     c.version(),
	}
	secretFields := []string{}
	for _, f := range t.Fields {
		v, set := c.Values.Get(f.Name)
		switch {
		case f.Lifecycle():
		case f.TokenState:
			if b.tokenStateSet(ctx, s, c) {
				secretFields = append(secretFields, f.Name)
			}
		case f.Sensitive:
			if set && v != "" {
				secretFields = append(secretFields, f.Name)
			}
		case set:
			data[f.Name] = v
		}
	}
	data["secret_fields"] = secretFields
	for k, v := range c.Derived {
		if _, taken := data[k]; !taken {
			data[k] = timeOrValue(v)
		}
	}
	if c.SuspendAfter > 0 {
		data["suspend_after"] = seconds(c.SuspendAfter)
	}
	if c.PurgeAfter > 0 {
		data["purge_after"] = seconds(c.PurgeAfter)
	}
	if c.State.VerifyInterval > 0 {
		data["verify_interval"] = seconds(c.State.VerifyInterval)
	}
	if c.PreviousClient != nil && c.State.Kept(b.now()) {
		// When the previous client secret is forgotten at the latest; never the secret.
		data["previous_client_secret_until"] = rfc3339(c.State.SecretOverlap.Until)
	}
	if err := ownedKeysView(c, b.now(), data); err != nil { // the generated keys' public side
		return nil, err
	}
	for k, v := range b.lifecycleView(ctx, s, cfg, c) {
		data[k] = v
	}
	if t.DeviceFlow() {
		if err := b.deviceView(ctx, s, c, data); err != nil {
			return nil, err
		}
	}
	return &logical.Response{Data: data}, nil
}

// timeOrValue renders times as RFC 3339 and leaves everything else alone.
func timeOrValue(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339)
	}
	return v
}
