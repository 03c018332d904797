package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// Limits on list pages. The lifecycle metadata a credential carries (description,
// tags, used_by) is bounded by the catalog's rules for those fields.
const (
	defaultListLimit = 1000
	maxListLimit     = 10000
	// maxNameLen is the longest name nameRule allows, in bytes: the bound on the list
	// filters that take a name or part of one.
	maxNameLen = 128
)

// lifecycleField is the catalog's definition of a common lifecycle field, whose rule
// (size limits included) the backend enforces.
func lifecycleField(name string) credtype.Field {
	f, ok := credtype.SchemaField(name)
	if !ok || !f.Lifecycle() {
		panic("backend: catalog lacks lifecycle field " + name)
	}
	return f
}

// credentialFields is the path schema for credentials/<name>: name and type, then every
// field of every credential type, declared once from the catalog.
func credentialFields() map[string]*framework.FieldSchema {
	fields := map[string]*framework.FieldSchema{
		"name": {
			Type:        framework.TypeString,
			Description: "Name of the credential: letters, digits, '-', '_' or '.'.",
			Required:    true,
		},
		"type": {
			Type:        framework.TypeString,
			Description: "Credential type (see the types path). Fixed after create.",
		},
	}
	for _, name := range credtype.FieldNames() {
		f, _ := credtype.SchemaField(name)
		fields[name] = &framework.FieldSchema{
			Type:        schemaType(f.Type),
			Description: f.Description,
			DisplayAttrs: &framework.DisplayAttributes{
				Sensitive: f.Sensitive,
			},
		}
	}
	return fields
}

func schemaType(t credtype.FieldType) framework.FieldType {
	switch t {
	case credtype.FieldList:
		return framework.TypeCommaStringSlice
	case credtype.FieldDuration:
		return framework.TypeDurationSecond
	default:
		return framework.TypeString
	}
}

func pathCredentials(b *integrationsBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "credentials/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "credentials",
			},
			Fields: map[string]*framework.FieldSchema{
				"type":   {Type: framework.TypeString, Description: "Only credentials of this type (aliases accepted).", Query: true},
				"tag":    {Type: framework.TypeString, Description: fmt.Sprintf("Only credentials carrying this tag (at most %d bytes).", lifecycleField("tags").MaxBytes()), Query: true},
				"status": {Type: framework.TypeString, Description: "Only credentials in this status: active, suspended or needs_reauth.", Query: true},
				"filter": {Type: framework.TypeString, Description: fmt.Sprintf("Only credentials whose name contains this text (case-insensitive; at most %d bytes).", maxNameLen), Query: true},
				"after":  {Type: framework.TypeString, Description: fmt.Sprintf("Start the page after this name (the last name of the previous page; at most %d bytes).", maxNameLen), Query: true},
				"limit":  {Type: framework.TypeInt, Description: fmt.Sprintf("At most this many names (default %d, at most %d).", defaultListLimit, maxListLimit), Query: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathCredentialsList,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				},
			},
			HelpSynopsis:    "List credentials, with their type, status, health and tags.",
			HelpDescription: fmt.Sprintf("Lists credential names in order with key_info for each. Filter by type, tag, status or a name substring; page with after and limit. A page holds at most limit names (default %d); when it stops at its limit with more names after it, the response carries a warning naming the after value to continue from.", defaultListLimit),
		},
		{
			Pattern: "credentials/" + nameSegment + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "credential",
			},
			Fields:         credentialFields(),
			ExistenceCheck: b.credentialExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{
					Callback:                    b.pathCredentialWrite,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "create"},
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathCredentialWrite,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "write"},
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.PatchOperation: &framework.PathOperation{
					Callback:                    b.pathCredentialPatch,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "patch"},
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathCredentialRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:                    b.pathCredentialDelete,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "delete"},
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
				},
			},
			HelpSynopsis: "Manage one credential: create, update, patch, read (never a secret), delete.",
			HelpDescription: `Create with "type" and the type's fields (see the types path for each type's fields and rules).
Reads return the non-secret fields, derived facts, lifecycle and usage figures, and
"secret_fields" (names of the secrets that are set) — never a secret value.
An update replaces the non-secret fields; secret fields it omits keep their stored values.
A patch changes only the fields it names (null removes an optional field).
The type is fixed after create.`,
		},
	}
}

func (b *integrationsBackend) credentialExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		return false, nil
	}
	c, err := b.credentials.get(ctx, req.Storage, name)
	return c != nil, err
}

func (b *integrationsBackend) pathCredentialWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.writeCredential(ctx, req, d, false)
}

func (b *integrationsBackend) pathCredentialPatch(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.writeCredential(ctx, req, d, true)
}

// writeCredential creates, updates or patches one credential. Nothing is stored unless
// every field passes validation.
func (b *integrationsBackend) writeCredential(ctx context.Context, req *logical.Request, d *framework.FieldData, patch bool) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		return logical.ErrorResponse(fieldErr("name", nameRule).Error()), nil
	}
	if resp := rejectUnknownFields(d); resp != nil {
		return resp, nil
	}
	unlock := b.credentials.lock(name)
	defer unlock()
	existing, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if patch && existing == nil {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("credential %q does not exist", name))
	}
	c, err := b.buildCredential(ctx, req.Storage, name, d.Raw, existing, patch)
	if err != nil {
		return validationResponse(err)
	}
	if err := b.saveCredential(ctx, req.Storage, c, existing); err != nil {
		return validationResponse(err) // a device account whose hostname+ip+username is taken is a 400
	}
	b.recordEvent(name, writeEvent(existing), true, requestIntegration(req), "")
	return b.credentialResponse(ctx, req.Storage, c)
}

// validationResponse turns a validation failure into a 400 naming the field; anything
// else is an internal error.
func validationResponse(err error) (*logical.Response, error) {
	var fe *fieldError
	var ce credtype.FieldErrors
	var cfe *credtype.FieldError
	if errors.As(err, &fe) || errors.As(err, &ce) || errors.As(err, &cfe) {
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
		t = existing.kind()
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

// saveCredential stores c and keeps the secondary records in step: the device-account
// index, and cached tokens that new settings make stale.
func (b *integrationsBackend) saveCredential(ctx context.Context, s logical.Storage, c, existing *credential) error {
	// The device index: claim the new triple, drop the old one. Both keys stay locked
	// until the credential is stored, so no other account claims or loses them between
	// the check and the write.
	key, oldKey := c.deviceIndexKey(), ""
	if existing != nil {
		oldKey = existing.deviceIndexKey()
	}
	unlockDevices := b.credentials.lockDevices(key, oldKey)
	defer unlockDevices()
	if key != "" {
		hostname, ip, username := c.deviceTripleOf()
		owner, err := b.credentials.deviceIndexed(ctx, s, key, hostname, ip, username)
		if err != nil {
			return err
		}
		if owner != nil && owner.Name != c.Name {
			return fieldErr("hostname", fmt.Sprintf("a device account with this hostname, ip and username already exists (%s)", owner.Name))
		}
		// An entry naming anything else (a stale entry, a colliding hash) is replaced.
		if owner == nil {
			if err := s.Put(ctx, &logical.StorageEntry{Key: key, Value: []byte(c.Name)}); err != nil {
				return fmt.Errorf("writing device index: %w", err)
			}
		}
	}
	// A repoint (any destination field changed) forgets every token, refresh token
	// and pending authorization learnt under the old destination; so does a create,
	// in case a predecessor under the name left any. They go before the new
	// settings are stored, so no node sees the new destination beside them.
	repoint := existing == nil || len(repointed(c.kind(), existing, c.Values)) > 0
	if repoint {
		if err := b.dropLearnt(ctx, s, c.Name); err != nil {
			return err
		}
	}
	if err := b.credentials.put(ctx, s, c); err != nil {
		return err
	}
	if oldKey != "" && oldKey != key {
		if err := b.dropDeviceIndex(ctx, s, oldKey, c.Name); err != nil {
			return err
		}
	}
	// New settings deserve a fresh token and a fresh start with the provider; a
	// request in flight under the old ones cannot store its answer (and, after a
	// repoint, whatever it stored meanwhile is deleted again).
	if err := b.tokens.forget(ctx, s, c.Name, repoint); err != nil {
		return err
	}
	return b.afterCredentialChange(ctx, s, c.Name)
}

// dropDeviceIndex deletes the index entry at key if it names the credential called
// name; an entry another account has claimed since stays. The caller holds the key's
// device lock.
func (b *integrationsBackend) dropDeviceIndex(ctx context.Context, s logical.Storage, key, name string) error {
	entry, err := s.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reading device index: %w", err)
	}
	if entry == nil || string(entry.Value) != name {
		return nil
	}
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("cleaning device index: %w", err)
	}
	return nil
}

func str(v any) string { s, _ := v.(string); return s }

// writeEvent names a write in the credential's log.
func writeEvent(existing *credential) string {
	if existing == nil {
		return usage.EventCreated
	}
	return usage.EventUpdated
}

func (b *integrationsBackend) pathCredentialRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		return nil, nil // no such credential can exist; do not touch storage with the key
	}
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, err
	}
	return b.credentialResponse(ctx, req.Storage, c)
}

// credentialResponse is the management view of a credential: everything but secrets.
func (b *integrationsBackend) credentialResponse(ctx context.Context, s logical.Storage, c *credential) (*logical.Response, error) {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	t := c.kind()
	data := map[string]any{
		"name":        c.Name,
		"type":        c.Type,
		"kind":        string(t.Kind),
		"description": c.Description,
		"tags":        nonNil(c.Tags),
		"used_by":     nonNil(c.UsedBy),
		"created_at":  c.CreatedAt.Format(time.RFC3339),
		"updated_at":  c.UpdatedAt.Format(time.RFC3339),
	}
	secretFields := []string{}
	for _, f := range t.Fields {
		v, set := c.Values[f.Name]
		switch {
		case f.Lifecycle():
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
	for k, v := range b.lifecycleView(ctx, s, cfg, c) {
		data[k] = v
	}
	return &logical.Response{Data: data}, nil
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// timeOrValue renders times as RFC 3339 and leaves everything else alone.
func timeOrValue(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339)
	}
	return v
}

// rfc3339 renders t, or "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (b *integrationsBackend) pathCredentialDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		// No such credential can exist: say why, as a create would.
		return logical.ErrorResponse(fieldErr("name", nameRule).Error()), nil
	}
	unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, err
	}
	return nil, b.deleteCredential(ctx, req.Storage, c)
}

// deleteCredential removes a credential and everything stored beside it. The caller
// holds the name's lock.
func (b *integrationsBackend) deleteCredential(ctx context.Context, s logical.Storage, c *credential) error {
	if key := c.deviceIndexKey(); key != "" {
		unlockDevices := b.credentials.lockDevices(key)
		defer unlockDevices()
		if err := b.dropDeviceIndex(ctx, s, key, c.Name); err != nil {
			return err
		}
	}
	// A pending authorization goes too: a credential re-created under the same name
	// must not complete the old one's consent.
	if err := b.dropLearnt(ctx, s, c.Name); err != nil {
		return err
	}
	if err := s.Delete(ctx, usagePrefix+c.Name); err != nil {
		return fmt.Errorf("deleting %s%s: %w", usagePrefix, c.Name, err)
	}
	if err := b.credentials.remove(ctx, s, c.Name); err != nil {
		return err
	}
	// Nothing outlives a delete: a token request still in flight finds no
	// credential and discards its answer; one that stored it before the remove is
	// deleted here.
	if err := b.tokens.forget(ctx, s, c.Name, true); err != nil {
		return err
	}
	b.forgetCredential(c.Name)
	return nil
}

func (b *integrationsBackend) pathCredentialsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var wantType string
	if v := d.Get("type").(string); v != "" {
		t, ok := credtype.Lookup(v)
		if !ok {
			return logical.ErrorResponse(fieldErr("type", "must be one of: "+strings.Join(typeNames(), ", ")).Error()), nil
		}
		wantType = t.Name
	}
	status := d.Get("status").(string)
	switch lifecycle.Status(status) {
	case "", lifecycle.StatusActive, lifecycle.StatusSuspended, lifecycle.StatusNeedsReauth:
	default:
		return logical.ErrorResponse(fieldErr("status", "must be active, suspended or needs_reauth").Error()), nil
	}
	limit := d.Get("limit").(int)
	if limit == 0 {
		limit = defaultListLimit
	}
	if limit < 0 || limit > maxListLimit {
		return logical.ErrorResponse(fieldErr("limit", fmt.Sprintf("must be between 1 and %d", maxListLimit)).Error()), nil
	}
	tag, filter, after := d.Get("tag").(string), d.Get("filter").(string), d.Get("after").(string)
	for _, q := range []struct {
		name, value string
		max         int
	}{{"tag", tag, lifecycleField("tags").MaxBytes()}, {"filter", filter, maxNameLen}, {"after", after, maxNameLen}} {
		if len(q.value) > q.max {
			return logical.ErrorResponse(fieldErr(q.name, fmt.Sprintf("must be at most %d bytes", q.max)).Error()), nil
		}
	}
	filter = strings.ToLower(filter)

	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	keys := []string{}
	info := map[string]any{}
	// Names come from the store's sorted index in batches, so a page costs a binary
	// search plus the names it examines, however many credentials the mount holds.
	batch := min(limit*2, maxListLimit)
	var names []string
	for len(keys) < limit {
		if len(names) == 0 {
			if names, err = b.credentials.namesAfter(ctx, req.Storage, after, batch); err != nil {
				return nil, err
			}
			if len(names) == 0 {
				break
			}
		}
		name := names[0]
		names, after = names[1:], name
		if filter != "" && !strings.Contains(strings.ToLower(name), filter) {
			continue
		}
		c, err := b.credentials.get(ctx, req.Storage, name)
		if err != nil {
			return nil, err
		}
		if c == nil || (wantType != "" && c.Type != wantType) || (tag != "" && !slices.Contains(c.Tags, tag)) {
			continue
		}
		lv := b.lifecycleView(ctx, req.Storage, cfg, c)
		if status != "" && lv["status"] != status {
			continue
		}
		keys = append(keys, name)
		info[name] = map[string]any{
			"type":          c.Type,
			"description":   c.Description,
			"tags":          nonNil(c.Tags),
			"status":        lv["status"],
			"health":        lv["health"],
			"last_accessed": lv["last_accessed"],
		}
	}
	resp := logical.ListResponseWithInfo(keys, info)
	if len(keys) == limit {
		more := len(names) > 0
		if !more {
			next, err := b.credentials.namesAfter(ctx, req.Storage, after, 1)
			if err != nil {
				return nil, err
			}
			more = len(next) > 0
		}
		if more {
			// vault list has no paging flags: say where the page stopped and how to go on.
			resp.AddWarning(fmt.Sprintf("Listed the first %d credentials (limit %d); more may follow. List again with after=%q to continue.", limit, limit, keys[len(keys)-1]))
		}
	}
	return resp, nil
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
