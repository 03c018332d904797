// Saving and deleting a credential together with the records stored beside it.

package backend

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// saveCredential stores c and keeps the secondary records in step: the device-account
// index, and cached tokens that new settings make stale.
func (b *integrationsBackend) saveCredential(ctx context.Context, s logical.Storage, c, existing *credential) error {
	// The device index: claim the new triple, drop the old one. Both keys stay locked
	// until the credential is stored, so no other account claims or loses them between
	// the check and the write.
	key, oldKey := c.deviceIndexKey(), ""
	if existing != nil {
		oldKey = existing.deviceIndexKey()
	}
	unlockDevices := b.credentials.lockDevices(key, oldKey)
	defer unlockDevices()
	if key != "" {
		hostname, ip, username := c.deviceTripleOf()
		owner, err := b.credentials.deviceIndexed(ctx, s, key, hostname, ip, username)
		if err != nil {
			return err
		}
		if owner != nil && owner.Name != c.Name {
			return fieldErr("hostname", fmt.Sprintf("a device account with this hostname, ip and username already exists (%s)", owner.Name))
		}
		// An entry naming anything else (a stale entry, a colliding hash) is replaced.
		if owner == nil {
			if err := s.Put(ctx, &logical.StorageEntry{Key: key, Value: []byte(c.Name)}); err != nil {
				return fmt.Errorf("writing device index: %w", err)
			}
		}
	}
	// A repoint (any destination field changed) forgets every token, refresh token
	// and pending authorization learnt under the old destination; so does a create,
	// in case a predecessor under the name left any. They go before the new
	// settings are stored, so no node sees the new destination beside them.
	repoint := existing == nil || len(repointed(c.typeDef(), existing, c.Values)) > 0
	if repoint {
		if err := b.dropLearnt(ctx, s, c.Name); err != nil {
			return err
		}
	}
	if err := b.credentials.put(ctx, s, c); err != nil {
		return err
	}
	if oldKey != "" && oldKey != key {
		if err := b.dropDeviceIndex(ctx, s, oldKey, c.Name); err != nil {
			return err
		}
	}
	// New settings deserve a fresh token and a fresh start with the provider; a
	// request in flight under the old ones cannot store its answer (and, after a
	// repoint, whatever it stored meanwhile is deleted again).
	if err := b.tokens.forget(ctx, s, c.Name, repoint); err != nil {
		return err
	}
	return b.afterCredentialChange(ctx, s, c.Name)
}

// dropDeviceIndex deletes the index entry at key if it names the credential called
// name; an entry another account has claimed since stays. The caller holds the key's
// device lock.
func (b *integrationsBackend) dropDeviceIndex(ctx context.Context, s logical.Storage, key, name string) error {
	entry, err := s.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reading device index: %w", err)
	}
	if entry == nil || string(entry.Value) != name {
		return nil
	}
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("cleaning device index: %w", err)
	}
	return nil
}

// deleteCredential removes a credential and everything stored beside it. The caller
// holds the name's lock.
func (b *integrationsBackend) deleteCredential(ctx context.Context, s logical.Storage, c *credential) error {
	if key := c.deviceIndexKey(); key != "" {
		unlockDevices := b.credentials.lockDevices(key)
		defer unlockDevices()
		if err := b.dropDeviceIndex(ctx, s, key, c.Name); err != nil {
			return err
		}
	}
	// A pending authorization goes too: a credential re-created under the same name
	// must not complete the old one's consent.
	if err := b.dropLearnt(ctx, s, c.Name); err != nil {
		return err
	}
	if err := s.Delete(ctx, usagePrefix+c.Name); err != nil {
		return fmt.Errorf("deleting %s%s: %w", usagePrefix, c.Name, err)
	}
	if err := b.credentials.remove(ctx, s, c.Name); err != nil {
		return err
	}
	// Nothing outlives a delete: a token request still in flight finds no
	// credential and discards its answer; one that stored it before the remove is
	// deleted here.
	if err := b.tokens.forget(ctx, s, c.Name, true); err != nil {
		return err
	}
	b.forgetCredential(c.Name)
	return nil
}
