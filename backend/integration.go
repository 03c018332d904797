// The integration label: who an access/ read (and a logs filter) names as the caller,
// checked against the catalog's rule (credtype.IntegrationRule, which used_by follows
// too), and the label taken from the caller's Vault identity when none is given.

package backend

import (
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// integrationLabel is who a request is logged as: the explicit label, refused unless it
// follows credtype.IntegrationRule, else the caller's Vault identity (requestIntegration).
func integrationLabel(req *logical.Request, explicit string) (string, error) {
	if explicit != "" {
		if !credtype.ValidIntegration(explicit) {
			return "", fieldErr("integration", "must be "+credtype.IntegrationRule)
		}
		return explicit, nil
	}
	return requestIntegration(req), nil
}

// requestIntegration names who is calling, for the usage log: the caller's Vault
// display name, else its entity, made to follow credtype.IntegrationRule. Vault sets the display
// name from a role or token name, which the caller may have chosen.
func requestIntegration(req *logical.Request) string {
	who := req.DisplayName
	if who == "" {
		who = req.EntityID
	}
	return credtype.ClampIntegration(who)
}
