package backend

import "github.com/hashicorp/vault/sdk/framework"

// metricsLabelField is the config switch that adds credential names to the metrics:
// one series per credential and result, so for small mounts only. Off by default, so
// label values carry no names (cardinality, and names can say more than they should).
const metricsLabelField = "metrics_credential_label"

var metricsLabelSchema = &framework.FieldSchema{
	Type:        framework.TypeBool,
	Description: "Count access reads per credential name too (integrations_credential_access_reads_total), for small mounts: one series per credential. Default false: no metric carries a credential name.",
	Default:     false,
}

// updateMetricsLabel applies metrics_credential_label from a config write.
func (c *engineConfig) updateMetricsLabel(d *framework.FieldData) error {
	v, ok, err := d.GetOkErr(metricsLabelField)
	if err != nil {
		return fieldErr(metricsLabelField, "must be a boolean (true or false)")
	}
	if ok {
		c.MetricsCredentialLabel = v.(bool)
	}
	return nil
}
