// Imported refresh tokens: a refresh_token written to an authorization-code
// credential (credtype.FieldRefreshToken) becomes its token state, as if a consent had
// obtained it, and is shown only as a name in secret_fields.

package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// importRefreshToken stores refreshToken as c's token state, after c itself was
// stored (saveCredential; the caller holds the name's lock). If the token cannot be
// stored, c is put back as existing was (or removed, for a create), so the write
// fails whole: a repoint that imports keeps the old token until adopt overwrites it
// (replaceLearnt), so it is there again with the old credential.
func (b *integrationsBackend) importRefreshToken(ctx context.Context, s logical.Storage, c, existing *credential, refreshToken string) error {
	if refreshToken == "" {
		return nil
	}
	err := b.tokens.adopt(ctx, s, c, refreshToken)
	if err == nil {
		return nil
	}
	var undo error
	if existing == nil {
		undo = b.credentials.remove(ctx, s, c.Name)
	} else {
		undo = b.credentials.put(ctx, s, existing.clone())
	}
	if undo != nil {
		b.Logger().Error("putting back a credential whose imported refresh token could not be stored failed", "credential", c.Name, "error", undo)
		// c stays, with new settings: the old token state must not follow them (a
		// repoint kept it for the import to overwrite).
		undo = errors.Join(undo, b.tokens.forget(ctx, s, c.Name, true))
	}
	return errors.Join(err, undo, b.afterCredentialChange(ctx, s, c.Name))
}

// adopt makes a refresh token obtained elsewhere c's token state: stored under c's
// destination, with no access token (the next access/ mints through it), replacing
// whatever was held. The generation moves on, so a request in flight from the old
// token state cannot overwrite it, and the cached access token goes.
func (ts *tokenStore) adopt(ctx context.Context, s logical.Storage, c *credential, refreshToken string) error {
	return ts.withLock(c.Name, func(h tokenHeld) error {
		st := &storedToken{Token: oauth.Token{RefreshToken: refreshToken, IssuedAt: ts.deps.now().UTC()}, Destination: destination(c), Client: grantOwner(c)}
		entry, err := logical.StorageEntryJSON(tokenPrefix+c.Name, st)
		if err != nil {
			return fmt.Errorf("encoding the token of %q: %w", c.Name, err)
		}
		ts.bump(h)
		ts.regrant(h) // a code exchange in flight must not overwrite the import
		if err := s.Put(ctx, entry); err != nil {
			return fmt.Errorf("storing the imported refresh token of %q: %w", c.Name, err)
		}
		ts.dropUnsaved(c.Name) // a person's import replaces whatever was held
		ts.cache.set(c.Name, st)
		ts.kept.hold(c.Name, st, c.typeDef())
		return nil
	})
}

// heldRefreshToken returns the token state of c when it holds a refresh token learnt
// under c's current destination (by consent, import or rotation); nil otherwise.
func (ts *tokenStore) heldRefreshToken(ctx context.Context, s logical.Storage, c *credential) (*storedToken, error) {
	if t := c.typeDef(); t == nil || !t.RefreshTokens() {
		return nil, nil
	}
	tok, err := ts.cached(ctx, s, c.Name)
	if err != nil || tok == nil || tok.RefreshToken == "" {
		return nil, err
	}
	if (tok.Destination != "" && tok.Destination != destination(c)) || (tok.Client != "" && tok.Client != grantOwner(c)) {
		return nil, nil // learnt elsewhere or for another client: forgotten
	}
	return tok, nil
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
