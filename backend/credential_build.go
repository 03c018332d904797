// Building a credential from a write: merging the request into the stored credential
// and validating the result through the catalog.

package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
// one) and validates the result as a whole. It also returns the refresh token the
// request imports ("" when none), which saveCredential stores as the credential's
// token state, never among its values.
func (b *integrationsBackend) buildCredential(ctx context.Context, s logical.Storage, name string, raw map[string]any, existing *credential, patch bool) (*credential, string, error) {
	now := b.now().UTC()
	var t *credtype.Type
	if v, ok := raw["type"]; ok && v != nil {
		typeName, _ := v.(string)
		found, ok := credtype.Lookup(typeName)
		if !ok {
			return nil, "", fieldErr("type", "must be one of: "+strings.Join(typeNames(), ", "))
		}
		if existing != nil && found.Name != existing.Type {
			return nil, "", fieldErr("type", fmt.Sprintf("is fixed after create (this credential is %s); delete and recreate it to change the type", existing.Type))
		}
		t = found
	} else if existing != nil {
		t = existing.typeDef()
	} else {
		return nil, "", fieldErr("type", "is required when creating a credential")
	}

	c := &credential{Name: name, Type: t.Name, CreatedAt: now, State: lifecycle.NewState(now), Version: 1}
	if existing != nil {
		c = existing.clone()
		c.Version = existing.version() + 1
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
			if old, ok := existing.Values.Get(f.Name); ok {
				values[f.Name] = old
			}
		}
	}
	prepareOwnedKeyValues(values, raw, existing)
	for k := range raw {
		if requestParameter(k) {
			continue
		}
		if f, ok := t.Field(k); !ok {
			rule := fmt.Sprintf("is not a field of type %s", t.Name)
			if near, ok := t.Suggest(k); ok {
				rule += "; did you mean " + near + "?"
			}
			return nil, "", fieldErr(k, rule)
		} else if f.Lifecycle() {
			continue
		}
	}
	var prev *credtype.Previous
	if existing != nil {
		prev = &credtype.Previous{Values: &existing.Values, Secrets: existing.knownSecrets()}
	}
	validated, err := t.ValidateContext(ctx, values, now, prev)
	if err != nil {
		if existing != nil && !patch {
			err = patchHint(err, t, values, raw, b.mountPath()+"credentials/"+name)
		}
		return nil, "", err
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, "", err
	}
	if err := checkEndpoints(cfg, t, credtype.FieldMap(validated.Values)); err != nil {
		return nil, "", err
	}
	if err := checkRedirectedSecrets(t, existing, credtype.FieldMap(validated.Values), raw); err != nil {
		return nil, "", err
	}
	c.Values = t.Compact(validated.Values)
	c.Derived = validated.Derived
	c.Secrets = validated.Secrets
	c.NotAfter = validated.NotAfter
	c.State = lifecycle.WithUpstream(c.State, validated.Upstream())
	if err := b.settleGeneratedKeys(ctx, c, existing, now); err != nil {
		return nil, "", err
	}

	if err := b.applyLifecycleFields(ctx, s, c, raw, patch); err != nil {
		return nil, "", err
	}
	if existing != nil && (!patch || sentAny(raw, t.SettingFields())) {
		c.State = lifecycle.Reconfigured(c.State) // new settings deserve a new attempt
	}
	if existing != nil && (validated.RefreshToken != "" || secretsChanged(t, existing, credtype.FieldMap(validated.Values)) ||
		len(repointed(t, existing, credtype.FieldMap(validated.Values))) > 0) {
		c.State = lifecycle.SecretsChanged(c.State) // a failed verification was about the old ones
	}
	keepPreviousClient(t, c, existing, now) // client_secret_overlap
	if t.Consents() && forgetsGrant(t, existing, credtype.FieldMap(validated.Values)) {
		// No consent was given for these settings (saveCredential forgets the token
		// learnt under the old ones), unless the write imports a refresh token.
		c.State = lifecycle.AwaitingConsent(c.State, now)
	}
	if validated.RefreshToken != "" {
		// An imported refresh token stands for a completed consent.
		c.State = lifecycle.Reauthorized(c.State, now)
	}
	return c, validated.RefreshToken, nil
}

// patchHint adds to each required field an update omitted why it is required again
// (an update replaces the non-secret fields), and how to change only the fields the
// update sent (vault patch with those fields).
func patchHint(err error, t *credtype.Type, values, raw map[string]any, path string) error {
	var fes credtype.FieldErrors
	var fe *credtype.FieldError
	switch {
	case errors.As(err, &fes):
	case errors.As(err, &fe):
		fes = credtype.FieldErrors{fe}
	default:
		return err
	}
	var sent []string
	for k := range raw {
		if !requestParameter(k) {
			sent = append(sent, k)
		}
	}
	slices.Sort(sent)
	patch := "vault patch " + path + " <field>=… to change only some fields"
	if len(sent) > 0 {
		args := make([]string, len(sent))
		for i, k := range sent {
			args[i] = k + "=…"
		}
		patch = "vault patch " + path + " " + strings.Join(args, " ") + " to change only " + strings.Join(sent, ", ")
	}
	out := make(credtype.FieldErrors, len(fes))
	for i, e := range fes {
		out[i] = e
		if f, ok := t.Field(e.Field); ok && f.Required && values[e.Field] == nil {
			out[i] = &credtype.FieldError{Field: e.Field, Rule: e.Rule + fmt.Sprintf(
				"; an update (vault write) replaces every non-secret field: send %s again, or use %s", e.Field, patch)}
		}
	}
	return out
}

// fieldValue converts a raw request value to the catalog's wire type: []string for
// lists, string for strings, a map for maps (key=value pairs as the CLI sends them
// become one); durations, times and bools go as sent, for the catalog to parse.
func fieldValue(f credtype.Field, v any) any {
	switch f.Type {
	case credtype.FieldDuration, credtype.FieldTime, credtype.FieldBool:
		return v
	case credtype.FieldStringMap:
		return mapValue(v)
	case credtype.FieldList:
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

// mapValue reads a map field as framework.TypeKVPairs does: a JSON object as it is,
// or key=value pairs (`vault write ... authorization_params=access_type=offline
// authorization_params=login_hint=a@b`: one string, or a list of them; a value may
// hold '=' and ','). "" clears. Anything else goes as sent, for the catalog to refuse
// with its rule (never with the value).
func mapValue(v any) any {
	var pairs []string
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
		pairs = []string{x}
	case []string:
		pairs = x
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return v
			}
			pairs = append(pairs, s)
		}
	default:
		return v
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, val, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return v
		}
		out[k] = val
	}
	return out
}

// applyLifecycleFields applies description, tags, used_by, the window overrides and
// expires_at, as the catalog validates them, then holds the credential's effective
// policy to lifecycle's rules.
func (b *integrationsBackend) applyLifecycleFields(ctx context.Context, s logical.Storage, c *credential, raw map[string]any, patch bool) error {
	values := map[string]any{}
	for _, f := range c.typeDef().Fields {
		if !f.Lifecycle() {
			continue
		}
		switch v, sent := raw[f.Name]; {
		case sent && v != nil:
			values[f.Name] = fieldValue(f, v)
		case sent || !patch: // null clears, and an update clears what it omits
			values[f.Name] = nil
		}
	}
	common := credtype.Common{
		Description: c.Description, Tags: c.Tags, UsedBy: c.UsedBy,
		SuspendAfter: c.SuspendAfter, PurgeAfter: c.PurgeAfter, ExpiresAt: c.State.ExpiresAt,
		VerifyInterval: c.State.VerifyInterval,
	}
	if err := common.Set(values); err != nil {
		return err
	}
	windowsChanged := common.SuspendAfter != c.SuspendAfter || common.PurgeAfter != c.PurgeAfter
	c.State = lifecycle.NewLimits(c.State, common.ExpiresAt, windowsChanged, b.now().UTC())
	c.Description, c.Tags, c.UsedBy = common.Description, common.Tags, common.UsedBy
	c.SuspendAfter, c.PurgeAfter = common.SuspendAfter, common.PurgeAfter
	c.State.VerifyInterval = common.VerifyInterval
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return err
	}
	return policyErr(b.policyFor(cfg, c).Validate())
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
func checkRedirectedSecrets(t *credtype.Type, existing *credential, next credtype.Fields, raw map[string]any) error {
	if existing == nil {
		return nil
	}
	// Clearing a destination sends nothing to a place of the caller's choosing (an
	// override falls back to the preset's endpoint); what was learnt under the old
	// destination is still forgotten.
	changed := ""
	for _, f := range repointed(t, existing, next) {
		if next.Str(f) != "" {
			changed = f
			break
		}
	}
	if changed == "" {
		return nil
	}
	var missing []string
	for _, name := range t.SensitiveFields() {
		if existing.Values.Str(name) == "" {
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

// requestParameter reports whether k is a parameter of the write itself (the name
// in the path, the type, the check-and-set version), not a field of the credential.
func requestParameter(k string) bool {
	return k == "name" || k == "type" || k == fieldCAS
}

// sentAny reports whether the request names any of fields (null included).
func sentAny(raw map[string]any, fields []string) bool {
	for _, f := range fields {
		if _, ok := raw[f]; ok {
			return true
		}
	}
	return false
}

// secretsChanged reports whether a sensitive field of next differs from existing's.
func secretsChanged(t *credtype.Type, existing *credential, next credtype.Fields) bool {
	for _, f := range t.SensitiveFields() {
		if existing.Values.Str(f) != next.Str(f) {
			return true
		}
	}
	return false
}

// regranted reports whether next names another OAuth client than existing (a
// grant-owner field changed): the token state and pending authorization of the old
// client are forgotten, as after a repoint.
func regranted(t *credtype.Type, existing *credential, next credtype.Fields) bool {
	if existing == nil {
		return false
	}
	for _, f := range t.GrantOwnerFields() {
		if existing.Values.Str(f) != next.Str(f) {
			return true
		}
	}
	return false
}

// forgetsGrant reports whether writing next over existing (nil: a create) forgets
// the grant learnt so far: its token state, refresh token and pending authorization
// (saveCredential drops them) — a create, a repoint or another client. The one rule
// behind both what is dropped and awaiting_consent.
func forgetsGrant(t *credtype.Type, existing *credential, next credtype.Fields) bool {
	return existing == nil || len(repointed(t, existing, next)) > 0 || regranted(t, existing, next)
}

// repointed names the destination fields (the catalog says which fields are) whose
// values differ between the stored credential and next; none for a new credential.
// Clearing an optional destination (an override going back to the preset's default)
// counts too.
func repointed(t *credtype.Type, existing *credential, next credtype.Fields) []string {
	if existing == nil {
		return nil
	}
	var changed []string
	for _, f := range t.DestinationFields() {
		if existing.Values.Str(f) != next.Str(f) {
			changed = append(changed, f)
		}
	}
	return changed
}
