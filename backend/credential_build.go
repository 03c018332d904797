// Building a credential from a write: merging the request into the stored credential
// and validating the result through the catalog.

package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// validationResponse turns a validation failure into a 400 naming the field; anything
// else is an internal error.
func validationResponse(err error) (*logical.Response, error) {
	var fe *credtype.FieldError
	if errors.As(err, &fe) { // FieldErrors unwraps to its *FieldError values
		return logical.ErrorResponse(err.Error()), nil
	}
	return nil, err
}

// buildCredential merges the request's fields into the existing credential (or a new
// one) and validates the result as a whole.
func (b *integrationsBackend) buildCredential(ctx context.Context, s logical.Storage, name string, raw map[string]any, existing *credential, patch bool) (*credential, error) {
	now := b.now().UTC()
	var t *credtype.Type
	if v, ok := raw["type"]; ok && v != nil {
		typeName, _ := v.(string)
		found, ok := credtype.Lookup(typeName)
		if !ok {
			return nil, fieldErr("type", "must be one of: "+strings.Join(typeNames(), ", "))
		}
		if existing != nil && found.Name != existing.Type {
			return nil, fieldErr("type", fmt.Sprintf("is fixed after create (this credential is %s); delete and recreate it to change the type", existing.Type))
		}
		t = found
	} else if existing != nil {
		t = existing.typeDef()
	} else {
		return nil, fieldErr("type", "is required when creating a credential")
	}

	c := &credential{Name: name, Type: t.Name, CreatedAt: now, State: lifecycle.State{
		Status: lifecycle.StatusActive, CreatedAt: now, ActivityAt: now,
	}}
	if existing != nil {
		c = existing.clone()
	}
	c.UpdatedAt = now

	// Type fields: what the request sends wins; an omitted secret is kept; an omitted
	// non-secret is kept by a patch and cleared by an update.
	values := make(map[string]any)
	for _, f := range t.Fields {
		if f.Lifecycle() {
			continue
		}
		v, sent := raw[f.Name]
		switch {
		case sent && v == nil: // JSON null: remove (patch semantics; harmless on update)
		case sent:
			values[f.Name] = fieldValue(f, v)
		case existing != nil && (patch || f.Sensitive):
			if old, ok := existing.Values[f.Name]; ok {
				values[f.Name] = old
			}
		}
	}
	for k := range raw {
		if k == "name" || k == "type" {
			continue
		}
		if f, ok := t.Field(k); !ok {
			return nil, fieldErr(k, fmt.Sprintf("is not a field of type %s", t.Name))
		} else if f.Lifecycle() {
			continue
		}
	}
	validated, err := t.Validate(values)
	if err != nil {
		return nil, err
	}
	if err := checkRedirectedSecrets(t, existing, validated.Values, raw); err != nil {
		return nil, err
	}
	c.Values = validated.Values
	c.Derived = validated.Derived
	c.Secrets = validated.Secrets
	c.NotAfter = validated.NotAfter

	if err := b.applyLifecycleFields(ctx, s, c, raw, patch); err != nil {
		return nil, err
	}
	if existing != nil && existing.State.Status == lifecycle.StatusNeedsReauth && !patch {
		// New settings deserve a new attempt; if the provider still refuses, the next
		// access marks the credential again.
		c.State.Status, c.State.Reason = lifecycle.StatusActive, ""
	}
	return c, nil
}

// fieldValue converts a raw request value to the catalog's wire type: []string for
// lists, string otherwise.
func fieldValue(f credtype.Field, v any) any {
	if f.Type == credtype.FieldList {
		var out []string
		switch l := v.(type) {
		case []string:
			out = l
		case []any:
			for _, e := range l {
				out = append(out, fmt.Sprint(e))
			}
		case string:
			for _, p := range strings.Split(l, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		default:
			out = []string{fmt.Sprint(v)}
		}
		return out
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// applyLifecycleFields validates and applies description, tags, used_by, the window
// overrides and expires_at.
func (b *integrationsBackend) applyLifecycleFields(ctx context.Context, s logical.Storage, c *credential, raw map[string]any, patch bool) error {
	before := *c
	get := func(name string) (any, bool) {
		v, ok := raw[name]
		if !ok && !patch {
			return nil, true // an update clears what it omits
		}
		return v, ok
	}
	if v, ok := get("description"); ok {
		d, _ := v.(string)
		if v != nil && d == "" {
			d = fmt.Sprint(v)
		}
		d, err := lifecycleField("description").NormalizeText(d)
		if err != nil {
			return fieldErr("description", err.Error())
		}
		c.Description = d
	}
	for _, lf := range []struct {
		name string
		dst  *[]string
	}{{"tags", &c.Tags}, {"used_by", &c.UsedBy}} {
		v, ok := get(lf.name)
		if !ok {
			continue
		}
		var list []string
		if v != nil {
			list = fieldValue(credtype.Field{Type: credtype.FieldList}, v).([]string)
		}
		list, err := lifecycleField(lf.name).NormalizeList(list)
		if err != nil {
			return fieldErr(lf.name, err.Error())
		}
		slices.Sort(list)
		*lf.dst = list
	}
	for _, wf := range []struct {
		name string
		dst  *time.Duration
	}{{"suspend_after", &c.SuspendAfter}, {"purge_after", &c.PurgeAfter}} {
		v, ok := get(wf.name)
		if !ok {
			continue
		}
		var dur time.Duration
		if s, isString := v.(string); isString && len(s) > lifecycleField(wf.name).MaxBytes() {
			return fieldErr(wf.name, fmt.Sprintf("must be at most %d bytes", lifecycleField(wf.name).MaxBytes()))
		}
		if v != nil && v != "" {
			secs, err := parseutil.ParseDurationSecond(v)
			if err != nil || secs <= 0 {
				return fieldErr(wf.name, "must be a positive duration such as 90d, 2160h or a number of seconds")
			}
			if err := lifecycle.CheckWindow(secs); err != nil {
				return fieldErr(wf.name, err.Error())
			}
			dur = secs
		}
		*wf.dst = dur
	}
	if v, ok := get("expires_at"); ok {
		var at time.Time
		text, isString := v.(string)
		if v != nil && !isString {
			return fieldErr("expires_at", "must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
		}
		if max := lifecycleField("expires_at").MaxBytes(); len(text) > max {
			return fieldErr("expires_at", fmt.Sprintf("must be at most %d bytes", max))
		}
		if text != "" {
			parsed, err := time.Parse(time.RFC3339, text)
			if err != nil {
				return fieldErr("expires_at", "must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
			}
			at = parsed.UTC()
		}
		c.State.ExpiresAt = at
	}
	// New limits start a new window at once, as the vendor does; so does a new expiry.
	if c.SuspendAfter != before.SuspendAfter || c.PurgeAfter != before.PurgeAfter || !c.State.ExpiresAt.Equal(before.State.ExpiresAt) {
		c.State = lifecycle.Touch(c.State, b.now().UTC())
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return err
	}
	p := b.policyFor(cfg, c)
	if p.PurgeAfter <= p.SuspendAfter {
		return fieldErr("purge_after", "must be longer than suspend_after (the engine default applies where a credential sets none)")
	}
	return nil
}

func typeNames() []string {
	var names []string
	for _, t := range credtype.All() {
		names = append(names, t.Name)
	}
	return names
}

// writeEvent names a write in the credential's log.
func writeEvent(existing *credential) string {
	if existing == nil {
		return usage.EventCreated
	}
	return usage.EventUpdated
}

// checkRedirectedSecrets refuses an update that points stored secrets somewhere new
// without sending them again. Otherwise someone allowed to update a credential but not
// to read it could have the engine (or an integration) deliver its secret to a server
// of their choosing.
func checkRedirectedSecrets(t *credtype.Type, existing *credential, next map[string]any, raw map[string]any) error {
	if existing == nil {
		return nil
	}
	// Clearing a destination sends nothing to a place of the caller's choosing (an
	// override falls back to the preset's endpoint); what was learnt under the old
	// destination is still forgotten.
	changed := ""
	for _, f := range repointed(t, existing, next) {
		if str(next[f]) != "" {
			changed = f
			break
		}
	}
	if changed == "" {
		return nil
	}
	var missing []string
	for _, name := range t.SensitiveFields() {
		if v, _ := existing.Values[name].(string); v == "" {
			continue // nothing stored to redirect
		}
		if _, sent := raw[name]; !sent {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fieldErr(changed, fmt.Sprintf("changes where this credential's secrets are sent: send %s again in the same request", strings.Join(missing, ", ")))
}

// repointed names the destination fields (the catalog says which fields are) whose
// values differ between the stored credential and next; none for a new credential.
// Clearing an optional destination (an override going back to the preset's default)
// counts too.
func repointed(t *credtype.Type, existing *credential, next map[string]any) []string {
	if existing == nil {
		return nil
	}
	var changed []string
	for _, f := range t.DestinationFields() {
		if str(existing.Values[f]) != str(next[f]) {
			changed = append(changed, f)
		}
	}
	return changed
}
