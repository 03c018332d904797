package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// deviceIndexPrefix is where device accounts are indexed by their triple: one entry per
// hostname, IP and username, holding the name of the account that has it.
const deviceIndexPrefix = "device-index/"

// deviceIndex is the one owner of the device-index/ entries and their locks. An entry
// only says where to look: the account it names is taken only if its stored triple
// is the one asked for (credential.hasDeviceTriple).
type deviceIndex struct {
	credentials *credentialStore
	// locks serialise changes to entries, per key. They are taken after a
	// credential's name lock and never the other way round (rankDevice, lockorder.go): whoever holds the lock of
	// a key knows that no device account gains or loses that triple meanwhile, so it
	// can trust the stored triple of the account the entry names.
	locks []*locksutil.LockEntry
}

func newDeviceIndex(cs *credentialStore) *deviceIndex {
	return &deviceIndex{credentials: cs, locks: locksutil.CreateLocks()}
}

// deviceKey is the storage key under which a device account is found by hostname, IP
// and username. Hostnames and usernames compare case-insensitively, as they do on the
// systems PAM products manage.
func deviceKey(hostname, ip, username string) string {
	h := deviceHash(hostname, ip, username)
	return deviceIndexPrefix + hex.EncodeToString(h[:16])
}

// deviceHash identifies a device account by its triple, for the index key and for the
// names of accounts created without an identifier.
func deviceHash(hostname, ip, username string) [sha256.Size]byte {
	return sha256.Sum256([]byte(strings.ToLower(hostname) + "\x00" + ip + "\x00" + strings.ToLower(username)))
}

// deviceHeld is the proof that a writer holds the device-index keys it names: claim
// and release take it, so that no entry changes under a key its writer has not
// locked. Only lock makes one (TestHeldLocksOnlyFromTheirLock).
type deviceHeld struct{ keys []string }

// holds reports whether key is among the locked keys.
func (dh deviceHeld) holds(key string) bool { return slices.Contains(dh.keys, key) }

// errDeviceKeyNotHeld is a programming error: an index entry changed without its lock.
var errDeviceKeyNotHeld = errors.New("device index: the entry's key is not locked by this writer")

// lock takes the locks of the given keys ("" ignored), in a fixed order, for a caller
// holding the name lock (h) of the credential it changes, and returns the proof and
// the release.
func (d *deviceIndex) lock(_ credentialHeld, keys ...string) (deviceHeld, func()) {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" })
	if len(keys) == 0 {
		return deviceHeld{}, func() {}
	}
	locks := locksutil.LocksForKeys(d.locks, keys)
	lockAcquire(rankDevice)
	for _, l := range locks {
		l.Lock()
	}
	return deviceHeld{keys: keys}, func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock()
		}
		lockReleased(rankDevice)
	}
}

// named returns the credential name the entry for a triple holds, "" when there is
// none (or it holds no valid name). It takes no lock: the name is only a candidate.
func (d *deviceIndex) named(ctx context.Context, s logical.Storage, hostname, ip, username string) (string, error) {
	entry, err := s.Get(ctx, deviceKey(hostname, ip, username))
	if err != nil {
		return "", fmt.Errorf("reading device index: %w", err)
	}
	if entry == nil || !validName(string(entry.Value)) {
		return "", nil
	}
	return string(entry.Value), nil
}

// find returns the device account the index files under the triple, if that account's
// stored triple is the given one; nil for a missing, stale or colliding entry. A
// writer holds the key's lock, so the answer holds until it is done.
func (d *deviceIndex) find(ctx context.Context, s logical.Storage, hostname, ip, username string) (*credential, error) {
	name, err := d.named(ctx, s, hostname, ip, username)
	if err != nil || name == "" {
		return nil, err
	}
	c, err := d.credentials.get(ctx, s, name)
	if err != nil || !c.hasDeviceTriple(hostname, ip, username) {
		return nil, err
	}
	return c, nil
}

// claim files c under its triple unless another device account has that triple (an
// entry naming anything else, a stale entry or a colliding hash, is replaced). The
// caller holds the key's lock (dh) until c is stored.
func (d *deviceIndex) claim(ctx context.Context, s logical.Storage, dh deviceHeld, c *credential) error {
	if !dh.holds(c.deviceIndexKey()) {
		return errDeviceKeyNotHeld
	}
	hostname, ip, username := c.deviceTripleOf()
	owner, err := d.find(ctx, s, hostname, ip, username)
	if err != nil {
		return err
	}
	if owner != nil && owner.Name != c.Name {
		return fieldErr("hostname", fmt.Sprintf("a device account with this hostname, ip and username already exists (%s)", owner.Name))
	}
	if owner != nil {
		return nil
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: c.deviceIndexKey(), Value: []byte(c.Name)}); err != nil {
		return fmt.Errorf("writing device index: %w", err)
	}
	return nil
}

// release deletes the entry at key if it names the credential called name; an entry
// another account has claimed since stays. The caller holds the key's lock (dh).
func (d *deviceIndex) release(ctx context.Context, s logical.Storage, dh deviceHeld, key, name string) error {
	if !dh.holds(key) {
		return errDeviceKeyNotHeld
	}
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
