package backend

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"
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
		Fields: map[string]*framework.FieldSchema{
			"format": {
				Type:        framework.TypeString,
				Description: `"json" (the default): one key per series, as the Prometheus text names it, with its value; "prometheus": the Prometheus text exposition, for a scraper.`,
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathMetricsRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
			},
		},
		HelpSynopsis: "The engine's counters, histograms and gauges: JSON, or Prometheus text with format=prometheus.",
		HelpDescription: `Authenticated and governed by policy like any path: give the scraper a token whose
policy allows read on this path only. As Vault's sys/metrics: JSON by default, one key
per series as the Prometheus text names it (integrations_access_reads_total{kind="static",result="ok"})
with its value; with format=prometheus the Prometheus text exposition (text/plain;
version=0.0.4), which a Prometheus scrape config asks for with params: format:
['prometheus']. Label values carry no credential names unless config
metrics_credential_label is true (for small mounts: one series per credential).
README.md (Metrics) lists the metrics.` + examples(
			"vault read integrations/metrics",
			"curl -s -H \"X-Vault-Token: $VAULT_TOKEN\" \"$VAULT_ADDR/v1/integrations/metrics?format=prometheus\"",
		),
	}
}

// pathMetricsRead encodes the mount's registry. Gathering reads counters and the
// counts kept in step with the lifecycle indexes: it visits no credential.
func (b *integrationsBackend) pathMetricsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	format := d.Get("format").(string)
	if format != "" && format != "json" && format != "prometheus" {
		return logical.ErrorResponse(fieldErr("format", `must be "json" (the default) or "prometheus"`).Error()), nil
	}
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
	if format != "prometheus" {
		return &logical.Response{Data: seriesValues(families)}, nil
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

// seriesValues is the JSON answer: every series of the exposition keyed by the name
// the Prometheus text gives it (name{label="value",…}; a histogram's _bucket, _sum and
// _count), with its value. A flat map reads as a table in the CLI, a row per series.
// A value JSON cannot hold (NaN, ±Inf) is given as Prometheus writes it.
func seriesValues(families []*dto.MetricFamily) map[string]any {
	out := map[string]any{}
	put := func(name string, labels []*dto.LabelPair, extra string, v float64) {
		parts := make([]string, 0, len(labels)+1)
		for _, l := range labels {
			parts = append(parts, l.GetName()+"="+strconv.Quote(l.GetValue()))
		}
		if extra != "" {
			parts = append(parts, extra)
		}
		key := name
		if len(parts) > 0 {
			key += "{" + strings.Join(parts, ",") + "}"
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[key] = strconv.FormatFloat(v, 'g', -1, 64)
			return
		}
		out[key] = v
	}
	for _, f := range families {
		name := f.GetName()
		for _, m := range f.Metric {
			switch {
			case m.Counter != nil:
				put(name, m.Label, "", m.Counter.GetValue())
			case m.Gauge != nil:
				put(name, m.Label, "", m.Gauge.GetValue())
			case m.Untyped != nil:
				put(name, m.Label, "", m.Untyped.GetValue())
			case m.Histogram != nil:
				for _, bk := range m.Histogram.Bucket {
					put(name+"_bucket", m.Label, "le="+strconv.Quote(strconv.FormatFloat(bk.GetUpperBound(), 'g', -1, 64)), float64(bk.GetCumulativeCount()))
				}
				put(name+"_bucket", m.Label, `le="+Inf"`, float64(m.Histogram.GetSampleCount()))
				put(name+"_sum", m.Label, "", m.Histogram.GetSampleSum())
				put(name+"_count", m.Label, "", float64(m.Histogram.GetSampleCount()))
			case m.Summary != nil:
				for _, q := range m.Summary.Quantile {
					put(name, m.Label, "quantile="+strconv.Quote(strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)), q.GetValue())
				}
				put(name+"_sum", m.Label, "", m.Summary.GetSampleSum())
				put(name+"_count", m.Label, "", float64(m.Summary.GetSampleCount()))
			}
		}
	}
	return out
}
