package backend

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
)

// metricsFormat is Prometheus's text exposition format, version 0.0.4.
var metricsFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

func pathMetrics(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: "metrics$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "metrics",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathMetricsRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
			},
		},
		HelpSynopsis: "The engine's counters, histograms and gauges in Prometheus text format.",
		HelpDescription: `Authenticated and governed by policy like any path: give the scraper a token whose
policy allows read on this path only. The answer is the Prometheus text exposition
(text/plain; version=0.0.4), not JSON. Label values carry no credential names unless
config metrics_credential_label is true (for small mounts: one series per credential).
README.md (Metrics) lists the metrics.` + examples(
			"curl -s -H \"X-Vault-Token: $VAULT_TOKEN\" $VAULT_ADDR/v1/integrations/metrics",
		),
	}
}

// pathMetricsRead encodes the mount's registry. Gathering reads counters and the
// counts kept in step with the lifecycle indexes: it visits no credential.
func (b *integrationsBackend) pathMetricsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if !cfg.MetricsCredentialLabel {
		// Switched off (here or on another node): the names counted go too.
		b.metrics.accessByName.Reset()
	}
	families, err := b.metrics.registry.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, metricsFormat)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("encoding metrics: %w", err)
		}
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPContentType: string(metricsFormat),
		logical.HTTPRawBody:     buf.Bytes(),
		logical.HTTPStatusCode:  http.StatusOK,
	}}, nil
}
