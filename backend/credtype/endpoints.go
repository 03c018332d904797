package credtype

import (
	"net/url"
	"slices"
)

// endpointFields are the fields that name a provider's or a service's endpoint: a
// host the engine connects to (a token request, a verification, a notification, an
// SSH sign-in), or, for auth_url, the provider's own host where a person is sent to
// consent. The engine's network policy (config denied_networks) judges their hosts
// when a credential is written. Not among them: redirect_url (Vault's own address,
// reached by a browser) and a device account's hostname and ip (kept for integrations;
// the engine never connects to them).
var endpointFields = []string{"url", "verify_url", "token_url", "auth_url", "host", FieldDeviceAuthorizationURL}

// Endpoint is the host one endpoint field of a credential names.
type Endpoint struct {
	Field string
	Host  string // as url.URL.Hostname gives it: no brackets, no port
}

// Endpoints returns the hosts t's endpoint fields name in values (validated values:
// URLs as checkHTTPSURL and checkSFTPHost normalize them), in field order.
func (t *Type) Endpoints(values Fields) []Endpoint {
	var out []Endpoint
	for _, f := range t.Fields {
		if !slices.Contains(endpointFields, f.Name) {
			continue
		}
		v := values.Str(f.Name)
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err == nil && u.Hostname() != "" {
			out = append(out, Endpoint{Field: f.Name, Host: u.Hostname()})
		}
	}
	return out
}

// EndpointFields returns the names of the fields Endpoints reads.
func EndpointFields() []string { return slices.Clone(endpointFields) }

func init() {
	for _, name := range endpointFields {
		if _, ok := schemaFields[name]; !ok {
			panic("credtype: endpoint field not defined: " + name)
		}
	}
}
