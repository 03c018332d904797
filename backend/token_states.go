// The "idle token states" job: the Broker's per-credential state, dropped once it
// holds nothing the Broker alone knows (oauth.Broker.Prune).

package backend

import (
	"context"

	"github.com/hashicorp/vault/sdk/logical"
)

// pruneTokenStates drops, on each tick, the Broker's state of every credential whose
// last token is stored, carries no refresh token, is not failing and was minted
// oauth.StateIdle ago: without it, every OAuth credential that ever minted would keep
// its newest token in memory beside the token store's copy, a kilobyte or more each.
func (b *integrationsBackend) pruneTokenStates(context.Context, logical.Storage) error {
	if n := b.tokens.brokerOf().Prune(); n > 0 {
		b.Logger().Debug("dropped idle token states", "count", n)
	}
	return nil
}
