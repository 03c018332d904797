package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

func pathTypes(b *integrationsBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "types/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "credential-types"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathTypesList,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				},
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathTypesRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "credential-types-summary"},
				},
			},
			HelpSynopsis: "The catalog of credential types.",
			HelpDescription: "Lists every credential type with its kind (static or oauth2), aliases and description. " +
				"The answer's \"limits\" (in the API's answer, and in types/<type> for the types whose keys are derived) states the engine-wide bounds on key work: how many key derivations run at once and how much KDF memory they may hold, for the whole plugin process, and what a request beyond them gets (503 with retry_after). " +
				"A read (vault read integrations/types) answers one line per type, keyed by the type's name: its kind, its description and its aliases." +
				examples("vault read integrations/types", "vault list -detailed integrations/types",
					"vault read -format=json -field=limits integrations/types/certificate"),
		},
		{
			Pattern:      "types/" + framework.GenericNameRegex("type") + "/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "credential-type"},
			Fields: map[string]*framework.FieldSchema{
				"type": {Type: framework.TypeString, Description: "Name or alias of a credential type.", Required: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathTypeRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				},
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathTypeFieldsList,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list", OperationSuffix: "credential-type-fields"},
				},
			},
			HelpSynopsis: "One credential type: its kind and every field with its rule.",
			HelpDescription: `Shows the type's fields by name: required, optional and sensitive (lists of field names,
in catalog order), then under "fields" each field's details keyed by its name: its
value type, whether it is required or sensitive, its default, the validation rule and
a description; a field required only under a condition has "required_when" (the other
field and the values that make it required), and a field of a one-of group has "one_of"
(the group's fields, and exactly: true when one of them must be set, false when at
most one may be). Types are string, list, map (an object of strings; key=value pairs
from the CLI), bool, duration and time. These are the same definitions the engine validates with. A read's
table shows the lists; a list (vault list -detailed) shows the fields as a table, a row per field with its type,
whether it is required or sensitive, its default and its rule (as validation), and the read's answer beside it for -format=json.` +
				examples("vault list -detailed integrations/types/oauth2_client_credentials",
					"vault read -format=json -field=fields integrations/types/basic"),
		},
	}
}

func (b *integrationsBackend) pathTypesList(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	var keys []string
	info := map[string]any{}
	for _, t := range credtype.All() {
		keys = append(keys, t.Name)
		info[t.Name] = map[string]any{
			"kind":        string(t.Kind),
			"aliases":     nonNil(t.Aliases),
			"description": t.Description,
		}
	}
	resp := logical.ListResponseWithInfo(keys, info)
	resp.Data["limits"] = map[string]any{"key_derivation": credtype.KeyWorkLimitsView()}
	return resp, nil
}

// lookupType is the catalog's type of that name or alias, or a 404 saying where the
// names are (the CLI's bare "No value found" tells nothing).
func lookupType(name string) (*credtype.Type, error) {
	t, ok := credtype.Lookup(name)
	if !ok {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("credential type %q does not exist; vault read integrations/types lists the types", name))
	}
	return t, nil
}

// pathTypesRead is the catalog as one line per type, keyed by the type's name, so the
// CLI's table (vault read integrations/types) shows a row per type; the list has the
// same knowledge as structured rows.
func (b *integrationsBackend) pathTypesRead(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	data := map[string]any{}
	for _, t := range credtype.All() {
		line := string(t.Kind) + " — " + t.Description
		if len(t.Aliases) > 0 {
			line += " (aliases: " + strings.Join(t.Aliases, ", ") + ")"
		}
		data[t.Name] = line
	}
	return &logical.Response{Data: data}, nil
}

func (b *integrationsBackend) pathTypeRead(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	t, err := lookupType(d.Get("type").(string))
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: typeView(t)}, nil
}

// typeFieldColumns are the attributes of a field that the list's table shows (the
// answer's "fields" beside it has them all), by the column names they show under: the
// CLI orders columns by name, and the long rule reads best last, as "validation".
var typeFieldColumns = map[string]string{"type": "type", "required": "required", "sensitive": "sensitive", "destination": "destination", "default": "default", "rule": "validation"}

// pathTypeFieldsList is a type's fields as a table: a row per field name (the CLI sorts
// them), with typeFieldColumns as one-line cells, and the read's answer beside it.
func (b *integrationsBackend) pathTypeFieldsList(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	t, err := lookupType(d.Get("type").(string))
	if err != nil {
		return nil, err
	}
	data := typeView(t)
	fields := data["fields"].(map[string]map[string]any)
	keys := make([]string, 0, len(t.Fields))
	info := make(map[string]any, len(t.Fields))
	for _, f := range t.Fields {
		row := make(map[string]any, len(typeFieldColumns))
		for attr, column := range typeFieldColumns {
			row[column] = fields[f.Name][attr]
		}
		keys = append(keys, f.Name)
		info[f.Name] = row
	}
	return namedList(keys, info, data), nil
}

// typeView is the answer of types/<type>: the field-name lists, and every field's
// details keyed by its name.
func typeView(t *credtype.Type) map[string]any {
	// The lists read as a table (vault read); the details are keyed by field name.
	fields := make(map[string]map[string]any, len(t.Fields))
	required, optional, sensitive := []string{}, []string{}, []string{}
	for _, f := range t.Fields {
		if f.Required {
			required = append(required, f.Name)
		} else {
			optional = append(optional, f.Name)
		}
		if f.Sensitive {
			sensitive = append(sensitive, f.Name)
		}
		fields[f.Name] = map[string]any{
			"type":        string(f.Type),
			"required":    f.Required,
			"sensitive":   f.Sensitive,
			"destination": f.Destination,
			"default":     f.Default,
			"rule":        f.Rule,
			"description": f.Description,
			"common":      f.Common,
		}
		if w := f.RequiredWhen; w != nil {
			// Required only when another field has one of these values (its rule says so).
			rw := map[string]any{"field": w.Field, "values": w.Values}
			if w.Unless != "" {
				// ... unless this field is set (generate_client_key stands for client_key).
				rw["unless"] = w.Unless
			}
			fields[f.Name]["required_when"] = rw
		}
		if o := f.OneOf; o != nil {
			// At most one (or exactly one) of these fields may be set (its rule says so).
			fields[f.Name]["one_of"] = map[string]any{"fields": o.Fields, "exactly": o.Exactly}
		}
	}
	data := map[string]any{
		"name":        t.Name,
		"kind":        string(t.Kind),
		"aliases":     nonNil(t.Aliases),
		"description": t.Description,
		"required":    required,
		"optional":    optional,
		"sensitive":   sensitive,
		"fields":      fields,
	}
	if t.DerivesSecrets() {
		// Its encrypted keys are derived under the engine-wide limits.
		data["limits"] = map[string]any{"key_derivation": credtype.KeyWorkLimitsView()}
	}
	return data
}
