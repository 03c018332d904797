package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"

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
		fieldCAS: {
			Type:        framework.TypeInt,
			Description: "Check-and-set, as KV v2: the write or patch applies only if the credential's version (reads show it) is this; 0 creates only, refusing a name that exists. Unset: no check.",
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
	case credtype.FieldStringMap:
		// A JSON object, or key=value pairs from the CLI.
		return framework.TypeKVPairs
	case credtype.FieldBool:
		return framework.TypeBool
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
				"status": {Type: framework.TypeString, Description: "Only credentials in this status: " + statusList() + ".", Query: true},
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
			HelpSynopsis: "List credentials, with their type, status, health and tags.",
			HelpDescription: fmt.Sprintf("Lists credential names in order with key_info for each. Filter by type, tag, status or a name substring; page with after and limit. A page holds at most limit names (default %d); when it stops at its limit with more names after it, the response carries a warning naming the after value to continue from.", defaultListLimit) +
				"\n\nvault list takes no parameters: to filter or page from the CLI, read the path with list=true (a LIST by GET, as the HTTP API has it)." +
				examples("vault list integrations/credentials",
					"vault read integrations/credentials list=true type=basic status=suspended limit=50",
					"curl -s -H \"X-Vault-Token: $VAULT_TOKEN\" \"$VAULT_ADDR/v1/integrations/credentials?list=true&type=basic&status=suspended&limit=50\""),
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
				logical.CreateOperation: writeOperation(b.pathCredentialWrite, "create", ""),
				logical.UpdateOperation: writeOperation(b.pathCredentialWrite, "write", ""),
				logical.PatchOperation:  writeOperation(b.pathCredentialPatch, "patch", ""),
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathCredentialRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				},
				logical.DeleteOperation: writeOperation(b.pathCredentialDelete, "delete", ""),
			},
			HelpSynopsis: "Manage one credential: create, update, patch, read (never a secret), delete.",
			HelpDescription: `Create with "type" and the type's fields (see the types path for each type's fields and rules).
Reads return the non-secret fields, derived facts, lifecycle and usage figures, and
"secret_fields" (names of the secrets that are set) — never a secret value.
An update replaces the non-secret fields; secret fields it omits keep their stored values.
A patch changes only the fields it names (null removes an optional field).
The type is fixed after create.` + examples(
				"vault write integrations/credentials/billing-db type=basic username=svc password=s3cret tags=team-a",
				"vault read integrations/credentials/billing-db",
				"vault patch integrations/credentials/billing-db description=\"nightly export\"",
				"vault delete integrations/credentials/billing-db"),
		},
	}
}

func (b *integrationsBackend) credentialExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
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
	cas, casSet, err := d.GetOkErr(fieldCAS)
	if !casSet {
		cas = 0
	}
	if err != nil || (casSet && cas.(int) < 0) {
		return logical.ErrorResponse(fieldErr(fieldCAS, "must be a whole number, 0 or more").Error()), nil
	}
	c, err := b.applyCredentialWrite(ctx, req.Storage, name, d.Raw, credentialWriteMode{patch: patch, cas: cas.(int), casSet: casSet}, requestIntegration(req))
	if err != nil {
		return validationResponse(err) // a device account whose hostname+ip+username is taken is a 400
	}
	return b.credentialResponse(ctx, req.Storage, c)
}

// credentialWriteMode is how applyCredentialWrite treats a credential that exists.
type credentialWriteMode struct {
	patch bool // change only the fields raw names (a patch needs the credential to exist)
	// cas, when casSet, is the version the stored credential must be at (0: none).
	cas    int
	casSet bool
	// createOnly refuses a name that exists (credentials-batch: a batch never replaces).
	createOnly bool
}

// applyCredentialWrite is the one write of a credential, for credentials/<name> and
// for each item of credentials-batch: under the name's lock, the existing credential
// checked against mode, the request built and validated through the catalog
// (buildCredential), stored with its secondary records (saveCredential), and the write
// recorded in the credential's log. Nothing is stored unless every field passes. A
// refusal of the caller's input is a *credtype.FieldError (or FieldErrors); anything
// else is the request's failure (a storage error, a 404 for a patch, the key-work
// gate's Busy, logical.ErrReadOnly).
func (b *integrationsBackend) applyCredentialWrite(ctx context.Context, s logical.Storage, name string, raw map[string]any, mode credentialWriteMode, integration string) (*credential, error) {
	held, unlock := b.credentials.lock(name)
	defer unlock()
	existing, err := b.credentials.get(ctx, s, name)
	if err != nil {
		return nil, err
	}
	if mode.patch && existing == nil {
		return nil, errNoCredential(name)
	}
	if mode.createOnly && existing != nil {
		return nil, fieldErr("name", existsInBatchRule)
	}
	if mode.casSet {
		// Checked under the name's lock, against the entry this write replaces: of
		// writers sending the same cas, exactly one applies.
		if err := checkAndSet(existing, mode.cas); err != nil {
			return nil, err
		}
	}
	c, refreshToken, err := b.buildCredential(ctx, s, name, raw, existing, mode.patch)
	if err != nil {
		return nil, err
	}
	if err := b.saveCredential(ctx, s, held, c, existing, refreshToken); err != nil {
		return nil, err
	}
	b.recordEvent(name, writeEvent(existing), true, integration, "")
	if refreshToken != "" {
		b.recordEvent(name, usage.EventAuthorized, true, integration, "refresh token imported")
	}
	return c, nil
}

// statusList names the statuses a credential can have, as a refusal and the list
// filter's description say them: "active, suspended, needs_reauth or awaiting_consent".
func statusList() string {
	var names []string
	for _, st := range lifecycle.Statuses() {
		names = append(names, string(st))
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// fieldCAS is the check-and-set parameter of credentials/<name>, as KV v2 has it.
const fieldCAS = "cas"

// checkAndSet refuses a write whose cas is not the stored credential's version (0: no
// credential), in KV v2's words, and says what the version is.
func checkAndSet(existing *credential, cas int) error {
	current := 0
	if existing != nil {
		current = existing.version()
	}
	if cas == current {
		return nil
	}
	rule := fmt.Sprintf("check-and-set parameter did not match the current version: the credential is at version %d; read it again, or send no cas to write regardless", current)
	switch {
	case existing == nil:
		rule = "check-and-set parameter did not match the current version: the credential does not exist (cas=0 creates it)"
	case cas == 0:
		rule = fmt.Sprintf("check-and-set parameter did not match the current version: cas=0 creates only, and the credential exists at version %d", current)
	}
	return fieldErr(fieldCAS, rule)
}

func (b *integrationsBackend) pathCredentialRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, err
	}
	return b.credentialResponse(ctx, req.Storage, c)
}

func (b *integrationsBackend) pathCredentialDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		// No such credential can exist: say why, as a create would.
		return logical.ErrorResponse(fieldErr("name", nameRule).Error()), nil
	}
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, err
	}
	return nil, b.deleteCredential(ctx, req.Storage, held, c)
}

func (b *integrationsBackend) pathCredentialsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var wantType string
	var typ *credtype.Type
	if v := d.Get("type").(string); v != "" {
		t, ok := credtype.Lookup(v)
		if !ok {
			return logical.ErrorResponse(fieldErr("type", "must be one of: "+strings.Join(typeNames(), ", ")).Error()), nil
		}
		wantType, typ = t.Name, t
	}
	status := d.Get("status").(string)
	if status != "" && !slices.Contains(lifecycle.Statuses(), lifecycle.Status(status)) {
		return logical.ErrorResponse(fieldErr("status", "must be "+statusList()).Error()), nil
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
	// Names come from the store's sorted indexes in batches (those of the type or tag
	// asked for, when the label index can answer), so a page costs a binary search plus
	// the names it examines, however many credentials the mount holds.
	batch := min(limit*2, maxListLimit)
	var names []string
	// Credentials the page still needs are read together (viewMany): those not cached
	// come from storage concurrently, not one round trip each.
	var read map[string]*credential
	matches := func(name string) bool { return filter == "" || strings.Contains(strings.ToLower(name), filter) }
	for len(keys) < limit {
		if len(names) == 0 {
			if names, err = b.credentials.namesFiltered(ctx, req.Storage, typ, tag, after, batch); err != nil {
				return nil, err
			}
			if len(names) == 0 {
				break
			}
		}
		name := names[0]
		names, after = names[1:], name
		if !matches(name) {
			continue
		}
		c, ok := read[name]
		if !ok {
			want := []string{name}
			for _, next := range names {
				if len(want) >= limit-len(keys) {
					break
				}
				if matches(next) {
					want = append(want, next)
				}
			}
			if read, err = b.credentials.viewMany(ctx, req.Storage, want); err != nil {
				return nil, err
			}
			// Their usage summaries too (lifecycleView below), those of credentials
			// that exist only: a summary filed for a name deleted meanwhile would stay.
			found := make([]string, 0, len(want))
			for _, n := range want {
				if read[n] != nil {
					found = append(found, n)
				}
			}
			b.usage.loadMissing(ctx, req.Storage, found)
			c = read[name]
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
			"type": c.Type,
			// One line, or the CLI's table breaks its row there (the read has it whole).
			"description":   tableCell(c.Description),
			"tags":          nonNil(c.Tags),
			"status":        lv["status"],
			"health":        lv["health"],
			"last_accessed": lv["last_accessed"],
			"verified_at":   lv["verified_at"],
			"verify_result": lv["verify_result"],
		}
	}
	resp := logical.ListResponseWithInfo(keys, info)
	if len(keys) == limit {
		more := len(names) > 0
		if !more {
			next, err := b.credentials.namesFiltered(ctx, req.Storage, typ, tag, after, 1)
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
