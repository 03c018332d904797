package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// Storage prefixes; each mirrors the API path that owns it.
const (
	credentialPrefix  = "credentials/"
	deviceIndexPrefix = "device-index/"
)

// credential is the stored form of one credential. Values holds the type's fields,
// secrets included; the whole entry is seal-wrapped.
type credential struct {
	Name        string         `json:"name"`
	Type        string         `json:"type"`
	Description string         `json:"description,omitempty"`
	Tags        []string       `json:"tags,omitempty"`
	UsedBy      []string       `json:"used_by,omitempty"`
	Values      map[string]any `json:"values"`
	Derived     map[string]any `json:"derived,omitempty"`
	// Secrets is the secret material derived when the values were validated (a
	// certificate's decrypted private key), so access/ never runs a KDF. As secret as
	// Values and stored beside them; never part of a management read (Derived is).
	Secrets   map[string]string `json:"secrets,omitempty"`
	NotAfter  time.Time         `json:"not_after,omitzero"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`

	// Per-credential overrides of the engine's windows; zero means the engine default.
	SuspendAfter time.Duration `json:"suspend_after,omitempty"`
	PurgeAfter   time.Duration `json:"purge_after,omitempty"`

	// State is the lifecycle state: status, activity time, warnings sent.
	State lifecycle.State `json:"state"`

	// lazy holds Secrets derived in memory for an entry stored without them (written by
	// v0.1): derived on the first access, once per decoded copy, never persisted by a
	// read. Nil on credentials built by a write, which carry Secrets.
	lazy *lazySecrets
}

type lazySecrets struct {
	once    sync.Once
	secrets map[string]string
	err     error
}

// accessSecrets returns the derived secrets access/ hands to the catalog's Access.
func (c *credential) accessSecrets() (map[string]string, error) {
	if c.Secrets != nil {
		return c.Secrets, nil
	}
	if c.lazy == nil {
		return c.typeDef().DeriveSecrets(c.Values)
	}
	c.lazy.once.Do(func() { c.lazy.secrets, c.lazy.err = c.typeDef().DeriveSecrets(c.Values) })
	return c.lazy.secrets, c.lazy.err
}

// typeDef returns the catalog definition of the credential's type; stored types always resolve.
func (c *credential) typeDef() *credtype.Type {
	t, _ := credtype.Lookup(c.Type)
	return t
}

// credentialStore reads and writes credentials, keeping decoded copies in memory so
// the access path does no storage I/O once a credential has been read.
type credentialStore struct {
	locks []*locksutil.LockEntry // per-name write locks
	// deviceLocks serialise changes to device-index entries, per index key. They are
	// taken after a credential's name lock and never the other way round: whoever holds
	// the lock of an index key knows that no device account gains or loses that triple
	// meanwhile, so it can trust the stored triple of the account the entry names.
	deviceLocks []*locksutil.LockEntry

	mu    sync.RWMutex
	cache map[string]*credential // never mutated in place: writers swap in a new value
	// gens counts the puts and forgets per lock shard. A read that missed the cache
	// only caches what it decoded when no put or forget of its shard happened while
	// it read storage; otherwise a delete or invalidation racing the read would be
	// undone by the stale copy it read.
	gens [256]uint64

	// names is every credential name, sorted, so a list page costs a binary search
	// plus the page instead of listing and sorting the whole mount. Loaded from storage
	// on first use; nil after an invalidation, which cannot say whether the key was
	// written or deleted.
	namesMu  sync.RWMutex
	names    []string
	loaded   bool
	namesGen uint64 // counts changes to the set of names, to detect a racing load
}

func newCredentialStore() *credentialStore {
	return &credentialStore{locks: locksutil.CreateLocks(), deviceLocks: locksutil.CreateLocks(), cache: make(map[string]*credential)}
}

// lock serialises writes to one credential (on this node).
func (cs *credentialStore) lock(name string) func() {
	l := locksutil.LockForKey(cs.locks, name)
	l.Lock()
	return l.Unlock
}

// rlock holds off writes to one credential (on this node) while a reader takes a
// consistent view of it, e.g. with its token generation.
func (cs *credentialStore) rlock(name string) func() {
	l := locksutil.LockForKey(cs.locks, name)
	l.RLock()
	return l.RUnlock
}

// lockDevices takes the device-index locks of the given keys ("" ignored), in a fixed
// order, for a caller holding the name lock of the credential it changes.
func (cs *credentialStore) lockDevices(keys ...string) func() {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" })
	if len(keys) == 0 {
		return func() {}
	}
	locks := locksutil.LocksForKeys(cs.deviceLocks, keys)
	for _, l := range locks {
		l.Lock()
	}
	return func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock()
		}
	}
}

// get returns the credential called name, or nil when there is none. The result is
// shared: callers must not modify it.
func (cs *credentialStore) get(ctx context.Context, s logical.Storage, name string) (*credential, error) {
	shard := locksutil.LockIndexForKey(name)
	cs.mu.RLock()
	c, ok := cs.cache[name]
	gen := cs.gens[shard]
	cs.mu.RUnlock()
	if ok {
		return c, nil
	}
	if !validName(name) {
		// No such credential can exist, and a key Vault's storage refuses (one with
		// "..") would only turn into a 500: every path that names a credential gets
		// "not found" instead.
		return nil, nil
	}
	entry, err := s.Get(ctx, credentialPrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading credential %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	c = &credential{lazy: new(lazySecrets)}
	if err := entry.DecodeJSON(c); err != nil {
		return nil, fmt.Errorf("decoding credential %q: %w", name, err)
	}
	// JSON gives lists back as []any; the catalog works with []string.
	for k, v := range c.Values {
		if l, ok := v.([]any); ok {
			strs := make([]string, len(l))
			for i, e := range l {
				strs[i], _ = e.(string)
			}
			c.Values[k] = strs
		}
	}
	cs.mu.Lock()
	// A write may have raced this read; the cache must not go back to an older copy,
	// nor bring back one that was deleted or invalidated meanwhile.
	if cur, ok := cs.cache[name]; ok {
		c = cur
	} else if cs.gens[shard] == gen {
		cs.cache[name] = c
	}
	cs.mu.Unlock()
	return c, nil
}

// cachedGen returns the cached copy of name (nil if none) and the generation of its
// shard, for a reader that will check with ifUnchanged that nothing changed since.
// It never touches storage.
func (cs *credentialStore) cachedGen(name string) (*credential, uint64) {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	return cs.cache[name], cs.gens[locksutil.LockIndexForKey(name)]
}

// ifUnchanged runs fn and returns true if no put, remove or forget of name's shard
// happened since cachedGen returned gen; else it returns false without running fn.
// fn runs under the store's read lock, so no such change can slip in before it ends:
// a writer that changes the credential and then re-indexes it is ordered after fn.
func (cs *credentialStore) ifUnchanged(name string, gen uint64, fn func()) bool {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	if cs.gens[locksutil.LockIndexForKey(name)] != gen {
		return false
	}
	fn()
	return true
}

// put stores c (the caller holds the name's lock) and caches it.
func (cs *credentialStore) put(ctx context.Context, s logical.Storage, c *credential) error {
	entry, err := logical.StorageEntryJSON(credentialPrefix+c.Name, c)
	if err != nil {
		return fmt.Errorf("encoding credential %q: %w", c.Name, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing credential %q: %w", c.Name, err)
	}
	cs.mu.Lock()
	cs.cache[c.Name] = c
	cs.gens[locksutil.LockIndexForKey(c.Name)]++
	cs.mu.Unlock()
	cs.namesMu.Lock()
	if i, found := slices.BinarySearch(cs.names, c.Name); !found {
		cs.namesGen++
		if cs.loaded {
			cs.names = slices.Insert(cs.names, i, c.Name)
		}
	}
	cs.namesMu.Unlock()
	return nil
}

// remove deletes the stored credential (the caller holds the name's lock).
func (cs *credentialStore) remove(ctx context.Context, s logical.Storage, name string) error {
	if err := s.Delete(ctx, credentialPrefix+name); err != nil {
		return fmt.Errorf("deleting credential %q: %w", name, err)
	}
	cs.mu.Lock()
	delete(cs.cache, name)
	cs.gens[locksutil.LockIndexForKey(name)]++
	cs.mu.Unlock()
	cs.namesMu.Lock()
	cs.namesGen++
	if i, found := slices.BinarySearch(cs.names, name); found {
		cs.names = slices.Delete(cs.names, i, i+1)
	}
	cs.namesMu.Unlock()
	return nil
}

// namesAfter returns up to n credential names that sort after the given one.
func (cs *credentialStore) namesAfter(ctx context.Context, s logical.Storage, after string, n int) ([]string, error) {
	page := func(names []string) []string {
		i, found := slices.BinarySearch(names, after)
		if found {
			i++
		}
		return slices.Clone(names[i:min(i+n, len(names))])
	}
	for {
		listed, err := cs.loadNames(ctx, s)
		if err != nil {
			return nil, err
		}
		if listed != nil {
			return page(listed), nil
		}
		cs.namesMu.RLock()
		if cs.loaded {
			defer cs.namesMu.RUnlock()
			return page(cs.names), nil
		}
		cs.namesMu.RUnlock() // invalidated since loadNames: load again
	}
}

// loadNames fills the name index from storage when it is not loaded. The listing runs
// outside the lock; if a write changed the set of names meanwhile, the listing may
// have missed it, so it is not kept (and is returned for this one call only).
func (cs *credentialStore) loadNames(ctx context.Context, s logical.Storage) ([]string, error) {
	cs.namesMu.RLock()
	loaded, gen := cs.loaded, cs.namesGen
	cs.namesMu.RUnlock()
	if loaded {
		return nil, nil
	}
	names, err := s.List(ctx, credentialPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	slices.Sort(names)
	cs.namesMu.Lock()
	defer cs.namesMu.Unlock()
	if cs.namesGen != gen {
		return names, nil
	}
	if !cs.loaded {
		cs.names, cs.loaded = names, true
	}
	return nil, nil
}

// forget drops the cached copy, e.g. when another node changed the entry.
func (cs *credentialStore) forget(name string) {
	cs.mu.Lock()
	delete(cs.cache, name)
	cs.gens[locksutil.LockIndexForKey(name)]++
	cs.mu.Unlock()
	cs.namesMu.Lock()
	cs.names, cs.loaded = nil, false
	cs.namesGen++
	cs.namesMu.Unlock()
}

func (cs *credentialStore) forgetAll() {
	cs.mu.Lock()
	cs.cache = make(map[string]*credential)
	for i := range cs.gens {
		cs.gens[i]++
	}
	cs.mu.Unlock()
}

// clone returns a copy of c that a writer may change without touching the cached one.
func (c *credential) clone() *credential {
	n := *c
	n.lazy = new(lazySecrets) // the copy's values may change: derive afresh if needed
	n.Values = make(map[string]any, len(c.Values))
	for k, v := range c.Values {
		if l, ok := v.([]string); ok {
			v = append([]string(nil), l...)
		}
		n.Values[k] = v
	}
	n.Tags = append([]string(nil), c.Tags...)
	n.UsedBy = append([]string(nil), c.UsedBy...)
	n.State.Warned = append([]string(nil), c.State.Warned...)
	return &n
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

// deviceIndexKey is where a device account is indexed by its triple; "" for other types.
func (c *credential) deviceIndexKey() string {
	if c.Type != deviceAccountType {
		return ""
	}
	return deviceKey(str(c.Values["hostname"]), str(c.Values["ip"]), str(c.Values["username"]))
}

// hasDeviceTriple reports whether c is a device account whose stored hostname, ip and
// username are the given ones (normalized as deviceTriple does), comparing as the index
// does. An index entry or a derived name only says where to look; this says whether
// the account found there is the one asked for.
func (c *credential) hasDeviceTriple(hostname, ip, username string) bool {
	return c != nil && c.Type == deviceAccountType &&
		strings.ToLower(str(c.Values["hostname"])) == strings.ToLower(hostname) &&
		str(c.Values["ip"]) == ip &&
		strings.ToLower(str(c.Values["username"])) == strings.ToLower(username)
}

// deviceTripleOf is a device account's stored hostname, ip and username.
func (c *credential) deviceTripleOf() (hostname, ip, username string) {
	return str(c.Values["hostname"]), str(c.Values["ip"]), str(c.Values["username"])
}

// deviceIndexed returns the device account the index entry at key names, if that
// account's stored triple is the given one; nil for a missing, stale or colliding
// entry. A writer holds the key's device lock, so the answer holds until it is done.
func (cs *credentialStore) deviceIndexed(ctx context.Context, s logical.Storage, key, hostname, ip, username string) (*credential, error) {
	entry, err := s.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading device index: %w", err)
	}
	if entry == nil || !validName(string(entry.Value)) {
		return nil, nil
	}
	c, err := cs.get(ctx, s, string(entry.Value))
	if err != nil || !c.hasDeviceTriple(hostname, ip, username) {
		return nil, err
	}
	return c, nil
}
