package backend

import (
	"context"

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
			},
			HelpSynopsis:    "The catalog of credential types.",
			HelpDescription: "Lists every credential type with its kind (static or oauth2), aliases and description.",
		},
		{
			Pattern:      "types/" + framework.GenericNameRegex("type") + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "credential-type"},
			Fields: map[string]*framework.FieldSchema{
				"type": {Type: framework.TypeString, Description: "Name or alias of a credential type.", Required: true},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathTypeRead,
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				},
			},
			HelpSynopsis:    "One credential type: its kind and every field with its rule.",
			HelpDescription: "Shows each field of the type: whether it is required or sensitive, its default, the validation rule and a description. These are the same definitions the engine validates with.",
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
	return logical.ListResponseWithInfo(keys, info), nil
}

func (b *integrationsBackend) pathTypeRead(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	t, ok := credtype.Lookup(d.Get("type").(string))
	if !ok {
		return nil, nil
	}
	fields := make([]map[string]any, 0, len(t.Fields))
	for _, f := range t.Fields {
		fields = append(fields, map[string]any{
			"name":        f.Name,
			"type":        string(f.Type),
			"required":    f.Required,
			"sensitive":   f.Sensitive,
			"destination": f.Destination,
			"default":     f.Default,
			"rule":        f.Rule,
			"description": f.Description,
			"common":      f.Common,
		})
	}
	return &logical.Response{Data: map[string]any{
		"name":        t.Name,
		"kind":        string(t.Kind),
		"aliases":     nonNil(t.Aliases),
		"description": t.Description,
		"fields":      fields,
	}}, nil
}
