// Command constplugin is the benchmark baseline: an external Vault secrets plugin that
// answers one path with a constant from memory, the fastest any external plugin can
// be. The access-path benchmark compares the integrations engine against it.
package main

import (
	"context"
	"os"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		hclog.Default().Error("parsing flags", "error", err)
		os.Exit(1)
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		hclog.Default().Error("serving", "error", err)
		os.Exit(1)
	}
}

// constant has the shape of a basic credential's access response.
var constant = map[string]any{
	"username":      "svc-user",
	"password":      "pw-0123456789",
	"authorization": "Basic c3ZjLXVzZXI6cHctMDEyMzQ1Njc4OQ==",
}

// constantToken has the shape of an OAuth credential's access response (the fields,
// their types and a 48-character token as internal/oauthtest issues), answered for
// access/oauth: the ceiling of an external plugin giving that much answer, so the
// benchmark can tell the cost of the answer's size from the engine's own work.
var constantToken = map[string]any{
	"access_token":    "MZQ0ZJLHMDATMJE3NI0ZNGVILTGWMZETNJY1YJK4NDC2MDE5",
	"token_type":      "Bearer",
	"expires_at":      "2026-12-01T19:04:05Z",
	"expires_in":      int64(7140),
	"scope":           "",
	"authorization":   "Bearer MZQ0ZJLHMDATMJE3NI0ZNGVILTGWMZETNJY1YJK4NDC2MDE5",
	"ttl":             int64(6840),
	"rotation_period": int64(7200),
}

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &framework.Backend{
		BackendType: logical.TypeLogical,
		Paths: []*framework.Path{{
			Pattern: "access/" + framework.GenericNameRegex("name"),
			Fields:  map[string]*framework.FieldSchema{"name": {Type: framework.TypeString}},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: func(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
						answer := constant
						if d.Get("name").(string) == "oauth" {
							answer = constantToken
						}
						data := make(map[string]any, len(answer))
						for k, v := range answer {
							data[k] = v
						}
						return &logical.Response{Data: data}, nil
					},
				},
			},
		}},
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}
