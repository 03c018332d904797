// Upstream expiries: client_secret_expires_at, which every OAuth type takes, and the
// dates a validated credential's material stops working at the provider, for the
// lifecycle's warnings and alerts (lifecycle/upstream.go).

package credtype

import (
	"time"

	lc "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// fieldSecretExpiresAt records when an OAuth client secret stops working upstream.
const fieldSecretExpiresAt = "client_secret_expires_at"

// oauthNames are the fields every type with an OAuth preset takes besides its own,
// defined (like commonNames) before any init() builds the type table.
var oauthNames = defineOAuth()

func defineOAuth() []string {
	define(Field{Name: fieldSecretExpiresAt, Type: FieldString, check: checkTime, maxLen: maxShort,
		Rule:        ruleTimeField + "; stored in UTC",
		Description: "When the client secret stops working at the provider (Entra caps a secret at two years). The engine warns at the warn_before thresholds and alerts (client_secret_expiring, then client_secret_expired); it never suspends for it."})
	return []string{fieldSecretExpiresAt, defineExchange()}
}

// addOAuthFields gives a type with an OAuth preset the fields every OAuth type takes,
// after its own and before the common ones. A type listing one already keeps its own.
func addOAuthFields(t *Type) {
	if t.OAuth == nil {
		return
	}
	var add []Field
	for _, n := range append(oauthNames[:len(oauthNames):len(oauthNames)], overlapNames...) {
		if _, ok := t.Field(n); !ok {
			add = append(add, use(n))
		}
	}
	t.insertBeforeCommon(add...)
}

// checkTime is a time value kept as a string field: the time rule, normalized to UTC.
func checkTime(s string) (string, error) {
	t, err := parseTime(s)
	if err != nil {
		return "", err
	}
	return t.Format(time.RFC3339Nano), nil
}

// Upstream lists the dates v's material stops working at the provider, for
// lifecycle.WithUpstream (which drops the zero ones): a certificate's not_after, an
// OAuth client secret's client_secret_expires_at and an OAuth client_certificate's
// not_after.
func (v *Validated) Upstream() []lc.Upstream {
	secretEnd, _ := parseTime(str(v.Values, fieldSecretExpiresAt)) // unset: zero
	return []lc.Upstream{
		{Field: lc.UpstreamCertificate, At: v.NotAfter},
		{Field: lc.UpstreamClientSecret, At: secretEnd},
		{Field: lc.UpstreamClientCertificate, At: v.ClientCertNotAfter},
	}
}
