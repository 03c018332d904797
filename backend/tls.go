package backend

import "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"

// tlsTransports is the mount's cache of per-credential TLS transports (ca_certificate,
// tls_client_auth) over the base transport, shared by token requests, verification and
// notification deliveries so a credential's connections are reused.
func (b *integrationsBackend) tlsTransports() *tlsclient.Cache {
	b.transportsOnce.Do(func() { b.transports = tlsclient.NewCache(b.transport, 0) })
	return b.transports
}
