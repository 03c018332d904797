// Saving and deleting a credential together with the records stored beside it, and the
// one cascade through every store of those secondary records.

package backend

import (
	"context"

	"github.com/hashicorp/vault/sdk/logical"
)

// saveCredential stores c and keeps the secondary records in step: the device-account
// index, and cached tokens that new settings make stale. A refreshToken (imported by
// the write, "" when none) becomes c's token state once c is stored; if that fails,
// the credential is put back as it was (importRefreshToken), so the write fails whole.
func (b *integrationsBackend) saveCredential(ctx context.Context, s logical.Storage, h credentialHeld, c, existing *credential, refreshToken string) error {
	// The device index: claim the new triple, drop the old one. Both keys stay locked
	// until the credential is stored, so no other account claims or loses them between
	// the check and the write.
	key, oldKey := c.deviceIndexKey(), ""
	if existing != nil {
		oldKey = existing.deviceIndexKey()
	}
	dh, unlockDevices := b.devices.lock(h, key, oldKey)
	defer unlockDevices()
	if key != "" {
		if err := b.devices.claim(ctx, s, dh, c); err != nil {
			return err
		}
	}
	// A repoint (any destination field changed) forgets every token, refresh token
	// and pending authorization learnt under the old destination; so does a new
	// client_id (a refresh token belongs to the client it was issued to), and a
	// create, in case a predecessor under the name left any.
	scope := keepRecords
	if forgetsGrant(c.typeDef(), existing, &c.Values) {
		scope = dropLearnt
		if existing != nil && refreshToken != "" {
			scope = replaceLearnt
		}
	}
	if err := b.dropSecondary(ctx, s, h, dh, c, scope); err != nil {
		return err
	}
	if err := b.credentials.putOver(ctx, s, h, c, existing, true); err != nil {
		return err
	}
	if oldKey != "" && oldKey != key {
		if err := b.devices.release(ctx, s, dh, oldKey, c.Name); err != nil {
			return err
		}
	}
	if err := b.settleSecondary(ctx, s, c.Name, scope); err != nil {
		return err
	}
	if err := b.importRefreshToken(ctx, s, h, c, existing, refreshToken); err != nil {
		return err
	}
	return b.afterCredentialChange(ctx, s, c.Name)
}

// deleteCredential removes a credential and everything stored beside it; the sweep's
// purge comes here too, holding the name's lock (h).
func (b *integrationsBackend) deleteCredential(ctx context.Context, s logical.Storage, h credentialHeld, c *credential) error {
	dh, unlockDevices := b.devices.lock(h, c.deviceIndexKey())
	defer unlockDevices()
	if err := b.dropSecondary(ctx, s, h, dh, c, dropAll); err != nil {
		return err
	}
	if err := b.credentials.remove(ctx, s, h); err != nil {
		return err
	}
	return b.settleSecondary(ctx, s, c.Name, dropAll)
}

// secondaryScope is what a change of a credential does to the records stored beside
// it.
type secondaryScope int

const (
	// keepRecords: an update that keeps the destination. The stored token stays (its
	// refresh token is still good; its access token is not served, being older than
	// the update); what memory holds of it goes.
	keepRecords secondaryScope = iota
	// dropLearnt: a create or a repoint. What was learnt from the provider under the
	// old destination goes: the pending authorization and the token.
	dropLearnt
	// dropAll: a delete or a purge. Everything goes: usage, the device-index entry,
	// and every trace in memory, too.
	dropAll
	// replaceLearnt: a repoint whose write imports a refresh token. As dropLearnt,
	// except that the stored token is not deleted: the import (adopt) overwrites it
	// under the new destination, and if that fails and the credential is put back,
	// the old token state is still there, so the failed write changed nothing. What
	// memory holds of it goes, and the generation moves on, so no request in flight
	// under the old settings can store its answer (put also refuses one whose
	// destination moved).
	replaceLearnt
)

// dropsToken reports whether the scope deletes the stored token.
func (sc secondaryScope) dropsToken() bool { return sc == dropLearnt || sc == dropAll }

// dropSecondary and settleSecondary are the one cascade through a credential's
// secondary stores: a record kind stored beside credentials is added here, and a
// save, a delete and a purge reach it.
//
// dropSecondary runs before the credential's own entry is stored or removed, so that
// no node sees the new settings beside records of the old. The caller holds the
// name's lock (h) and, for dropAll, the device lock of c's index key (dh).
func (b *integrationsBackend) dropSecondary(ctx context.Context, s logical.Storage, h credentialHeld, dh deviceHeld, c *credential, scope secondaryScope) error {
	if scope == keepRecords {
		return nil
	}
	if key := c.deviceIndexKey(); key != "" && scope == dropAll {
		if err := b.devices.release(ctx, s, dh, key, c.Name); err != nil {
			return err
		}
	}
	// A pending authorization goes with the destination it was started for: a
	// credential re-created under the name, or repointed, must not complete the old
	// consent.
	if err := b.authorizations.drop(ctx, s, h); err != nil {
		return err
	}
	if err := b.tokens.forget(ctx, s, c.Name, scope.dropsToken()); err != nil {
		return err
	}
	if scope == dropAll {
		return b.usage.remove(ctx, s, c.Name)
	}
	return nil
}

// settleSecondary runs after the credential's entry was stored or removed. New
// settings deserve a fresh token and a fresh start with the provider: a token request
// in flight under the old ones cannot store its answer, and (after a repoint or a
// delete) whatever it stored before the change is deleted again. After a delete,
// nothing of the credential stays in memory.
func (b *integrationsBackend) settleSecondary(ctx context.Context, s logical.Storage, name string, scope secondaryScope) error {
	if err := b.tokens.forget(ctx, s, name, scope.dropsToken()); err != nil {
		return err
	}
	b.exchanges.drop(name) // tokens exchanged from the old settings' token (exchange.go)
	if scope == dropAll {
		b.activity.forget(name)
		b.usage.forget(name)
		b.tokens.removed(name)
	}
	return nil
}
