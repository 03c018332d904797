package backend

import (
	"context"
	"fmt"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
)

// networkPolicy is the network policy in force, for the guard every outbound
// connection passes (b.guard): the config's, read from storage when no request has
// since a change (a reset, or an invalidation from another node).
func (b *integrationsBackend) networkPolicy(ctx context.Context) (*netpolicy.Policy, error) {
	lockAcquire(rankConfig)
	b.configMu.RLock()
	c := b.config
	b.configMu.RUnlock()
	lockReleased(rankConfig)
	if c == nil {
		if b.storage == nil {
			return netpolicy.Default(), nil // not yet set up: nothing stored to read
		}
		var err error
		if c, err = b.loadConfig(ctx, b.storage); err != nil {
			return nil, err
		}
	}
	return c.network, nil
}

// checkEndpoints refuses a credential whose endpoint fields (the catalog's:
// credtype.Type.Endpoints) name, literally, an address the network policy denies: an
// IP address, or localhost. Names are judged when they are resolved, on every
// connection.
func checkEndpoints(cfg *engineConfig, t *credtype.Type, values credtype.Fields) error {
	for _, e := range t.Endpoints(values) {
		if cfg.network.CheckHost(e.Host) != nil {
			return fieldErr(e.Field, fmt.Sprintf("names an address in a network the engine may not connect to (config denied_networks and allowed_networks): %s", networkHint))
		}
	}
	return nil
}

// networkHint says what a person can do about a refused address.
const networkHint = "use a host the policy allows, or change the policy with vault write <mount>/config denied_networks=... allowed_networks=..."
