// Imported refresh tokens: a refresh_token written to an authorization-code
// credential (credtype.FieldRefreshToken) becomes its token state, as if a consent had
// obtained it, and is shown only as a name in secret_fields. The write of the token
// state itself (tokenStore.adopt) is tokenstore.go's, with every other; this file puts
// the credential back when it fails.

package backend

import (
	"context"
	"errors"

	"github.com/hashicorp/vault/sdk/logical"
)

// importRefreshToken stores refreshToken as c's token state, after c itself was
// stored (saveCredential, holding the name's lock h). If the token cannot be
// stored, c is put back as existing was (or removed, for a create), so the write
// fails whole: a repoint that imports keeps the old token until adopt overwrites it
// (replaceLearnt), so it is there again with the old credential.
func (b *integrationsBackend) importRefreshToken(ctx context.Context, s logical.Storage, h credentialHeld, c, existing *credential, refreshToken string) error {
	if refreshToken == "" {
		return nil
	}
	err := b.tokens.adopt(ctx, s, c, refreshToken)
	if err == nil {
		return nil
	}
	var undo error
	if existing == nil {
		undo = b.credentials.remove(ctx, s, h)
	} else {
		undo = b.credentials.put(ctx, s, h, existing.clone())
	}
	if undo != nil {
		b.Logger().Error("putting back a credential whose imported refresh token could not be stored failed", "credential", c.Name, "error", undo)
		// c stays, with new settings: the old token state must not follow them (a
		// repoint kept it for the import to overwrite).
		undo = errors.Join(undo, b.tokens.forget(ctx, s, c.Name, true))
	}
	return errors.Join(err, undo, b.afterCredentialChange(ctx, s, c.Name))
}

// tokenStateSet reports whether the token-state field (refresh_token) of c is set, for
// secret_fields.
func (b *integrationsBackend) tokenStateSet(ctx context.Context, s logical.Storage, c *credential) bool {
	tok, err := b.tokens.heldRefreshToken(ctx, s, c)
	if err != nil {
		b.Logger().Warn("reading the token state failed", "credential", c.Name, "error", err)
	}
	return tok != nil
}
