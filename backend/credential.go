package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// credentialPrefix is where credentials are stored; it mirrors the API path.
const credentialPrefix = "credentials/"

// credential is the stored form of one credential, and the form the store caches.
// Values holds the type's fields, secrets included, in the catalog's compact layout
// (credtype.Values: no per-credential map), encoded as the JSON object it always was;
// the whole entry is seal-wrapped.
type credential struct {
	Name        string          `json:"name"`
	Type        string          `json:"type"`
	Description string          `json:"description,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	UsedBy      []string        `json:"used_by,omitempty"`
	Values      credtype.Values `json:"values"`
	Derived     map[string]any  `json:"derived,omitempty"`
	// Secrets is the secret material derived when the values were validated (a
	// certificate's decrypted private key), so access/ never runs a KDF. As secret as
	// Values and stored beside them; never part of a management read (Derived is).
	Secrets   map[string]string `json:"secrets,omitempty"`
	NotAfter  time.Time         `json:"not_after,omitzero"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	// Version counts the writes of the credential's settings, as KV v2's does: 1 when
	// created, one more for every update or patch (a device-account upsert too), none
	// for the engine's own state changes. What cas is checked against. An entry
	// stored before versions were kept reads as 1 (upgradeCredential).
	Version int `json:"version,omitempty"`

	// Per-credential overrides of the engine's windows; zero means the engine default.
	SuspendAfter time.Duration `json:"suspend_after,omitempty"`
	PurgeAfter   time.Duration `json:"purge_after,omitempty"`

	// State is the lifecycle state: status, activity time, warnings sent.
	State lifecycle.State `json:"state"`
	// PreviousClient is the client authentication (client_secret, or client_key with
	// its key id, certificate and algorithm) a write replaced, kept while
	// State.SecretOverlap says so (client_secret_overlap, secret_overlap.go). As secret
	// as Values; never part of a management read.
	PreviousClient map[string]string `json:"previous_client,omitempty"`
	// ClientKeys are the keys the engine generated (generate_client_key,
	// client_keys.go) in their storage form (ownedkeys.Set.Encode: the private halves
	// included), seal-wrapped with the entry. Never among Values, so no view is built
	// from it; ClientCertificates are their generated certificates by kid (public).
	ClientKeys         json.RawMessage   `json:"client_keys,omitempty"`
	ClientCertificates map[string]string `json:"client_certificates,omitempty"`
	// Record is the version of the stored format (records.go); put writes the current one.
	Record int `json:"record_version,omitempty"`

	// lazy holds Secrets derived in memory for an entry stored without them (written
	// before the engine kept them): derived on first use, once per decoded copy, never
	// persisted by a read (a verification, which writes anyway, keeps them:
	// keepDerivedFrom).
	// Nil on credentials built by a write, which carry Secrets.
	lazy *lazySecrets
}

// lazySecrets are secrets derived once for a decoded copy. A derivation the key-work
// gate refused is not kept: the next use tries again.
type lazySecrets struct {
	done    atomic.Bool // set under mu once secrets and err hold the outcome
	mu      sync.Mutex
	secrets map[string]string
	err     error
}

// newLazy is room for secrets derived on first access, for a credential whose type
// derives them but that carries none; nil for the others, which need none.
func (c *credential) newLazy() *lazySecrets {
	if c.Secrets != nil || !c.typeDef().DerivesSecrets() {
		return nil
	}
	return new(lazySecrets)
}

// derivedSecrets returns the secrets derived from c's values: those stored with them,
// else derived now (the KDF under the process-wide key-work limits, within ctx) and
// kept with this decoded copy. access/ hands them to the catalog's Access, verify to
// VerifyPlan.
func (c *credential) derivedSecrets(ctx context.Context) (map[string]string, error) {
	if c.Secrets != nil {
		return c.Secrets, nil
	}
	if c.lazy == nil {
		return c.typeDef().DeriveSecrets(ctx, &c.Values)
	}
	l := c.lazy
	if l.done.Load() {
		return l.secrets, l.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done.Load() {
		s, err := c.typeDef().DeriveSecrets(ctx, &c.Values)
		if keywork.AsBusy(err) != nil {
			return nil, err
		}
		l.secrets, l.err = s, err
		l.done.Store(true)
	}
	return l.secrets, l.err
}

// knownSecrets are the secrets derived from c's values so far, without deriving: those
// stored with them, else those derived lazily for this copy; nil when there are none.
func (c *credential) knownSecrets() map[string]string {
	if c.Secrets != nil || c.lazy == nil {
		return c.Secrets
	}
	if l := c.lazy; l.done.Load() && l.err == nil {
		return l.secrets
	}
	return nil
}

// keepDerivedFrom gives c, about to be stored with the values of was, the secrets was
// derived lazily, so an entry stored without them is upgraded by the next write that
// does not change its values (a verification) and never derives them again.
func (c *credential) keepDerivedFrom(was *credential) {
	if c.Secrets != nil {
		return
	}
	if s := was.knownSecrets(); s != nil {
		c.Secrets, c.lazy = s, nil
	}
}

// typeDef returns the catalog definition of the credential's type; stored types always resolve.
func (c *credential) typeDef() *credtype.Type {
	if t := c.Values.Type(); t != nil {
		return t
	}
	t, _ := credtype.Lookup(c.Type)
	return t
}

// compact turns a credential decoded from storage into the form kept in the cache:
// its values in the catalog's compact layout for its type and its type name shared
// with the catalog. What it holds, and so what it encodes back to, is unchanged.
func (c *credential) compact() {
	t, ok := credtype.Lookup(c.Type)
	if !ok {
		return
	}
	c.Values = t.Bind(c.Values)
	if c.Type == t.Name {
		c.Type = t.Name
	}
}

// credentialStore reads and writes credentials (credentials/<name>), keeping decoded
// copies of the most recently used ones in memory (genCache, at most CacheEntries) so
// the access path does no storage I/O for a credential in use. Its name locks order every change of a credential and of the records stored
// beside it (credential_save.go).
type credentialStore struct {
	locks []*locksutil.LockEntry // per-name write locks
	cache *genCache[*credential]

	// names is every credential name, sorted, so a list page costs a binary search
	// plus the page instead of listing and sorting the whole mount. Loaded from storage
	// on first use; nil after an invalidation, which cannot say whether the key was
	// written or deleted. It holds the names' ids in tab, the mount's names table, a
	// reference each (taken and released with tab's Insert and Remove, and dropped
	// with the list): 4 bytes a credential, where strings cost a 16-byte header each
	// and kept every request's copy of its name alive.
	namesMu  sync.RWMutex
	names    []uint32
	loaded   bool
	namesGen uint64 // counts changes to the set of names, to detect a racing load
	tab      *names.Table

	// labels files names by type and tag, for filtered list pages (credential_labels.go).
	labels *labelIndex
	// snap is the index snapshot every write and delete marks (index_snapshot.go).
	snap *indexSnapshot
}

func newCredentialStore(tab *names.Table) *credentialStore {
	return &credentialStore{locks: locksutil.CreateLocks(), cache: newGenCache[*credential](), labels: newLabelIndex(tab), tab: tab}
}

// credentialHeld is proof that its holder holds the name lock of a credential:
// credentialStore.lock alone makes one (TestHeldLocksOnlyFromTheirLock), and every
// function that must run under that lock (put, remove, saveCredential,
// deleteCredential, the pending authorization's put and drop …) takes it.
type credentialHeld struct{ name string }

// lock serialises writes to one credential (on this node): it returns the proof that
// the lock is held, and the release.
func (cs *credentialStore) lock(name string) (credentialHeld, func()) {
	l := locksutil.LockForKey(cs.locks, name)
	return credentialHeld{name: name}, lockRanked(rankCredential, l)
}

// rlock holds off writes to one credential (on this node) while a reader takes a
// consistent view of it, e.g. with its token generation.
func (cs *credentialStore) rlock(name string) func() {
	l := locksutil.LockForKey(cs.locks, name)
	return lockRanked(rankCredential, l.RLocker())
}

// errNoCredential is the 404 every path answers for a credential that does not exist.
func errNoCredential(name string) error {
	return logical.CodedError(http.StatusNotFound, fmt.Sprintf("credential %q does not exist", name))
}

// credentialOr404 is the credential called name, or errNoCredential.
func (b *integrationsBackend) credentialOr404(ctx context.Context, s logical.Storage, name string) (*credential, error) {
	c, err := b.credentials.get(ctx, s, name)
	if err == nil && c == nil {
		err = errNoCredential(name)
	}
	return c, err
}

// get returns the credential called name, or nil when there is none. The result is
// shared: callers must not modify it.
func (cs *credentialStore) get(ctx context.Context, s logical.Storage, name string) (*credential, error) {
	return cs.cache.get(name, func() (*credential, bool, error) {
		c, err := cs.load(ctx, s, name)
		return c, c != nil, err
	})
}

// view is get for a reader of many credentials (a list page, the usage flush, the
// sweep): the cached copy when there is one, else the stored one decoded for this call
// only, so a full list neither fills the cache with every credential nor evicts the
// ones being accessed.
func (cs *credentialStore) view(ctx context.Context, s logical.Storage, name string) (*credential, error) {
	if c, ok, _ := cs.cache.glance(name); ok {
		return c, nil
	}
	return cs.load(ctx, s, name)
}

// viewWorkers bounds the storage reads one viewMany makes at once.
const viewWorkers = 16

// viewMany is what a list page reads of several credentials: the cached copies, and
// for the others their indexedCredential part (no values: read with readIndexed,
// which skips the secrets), read from storage concurrently, at most viewWorkers at a
// time, so a page of credentials the cache does not hold costs a few storage round
// trips rather than one per credential. It caches what it reads only while the cache
// has room, so a list never evicts the credentials being accessed. The map has an
// entry for every name, nil for one that does not exist. Callers use only the indexed
// fields.
func (cs *credentialStore) viewMany(ctx context.Context, s logical.Storage, names []string) (map[string]*credential, error) {
	out := make(map[string]*credential, len(names))
	var missing []string
	for _, name := range names {
		if c, ok, _ := cs.cache.glance(name); ok {
			out[name] = c
		} else {
			missing = append(missing, name)
		}
	}
	// While the cache has room (a mount within its bound, or one just started), the
	// page fills it: that evicts nothing, and the next list of these names is served
	// from memory.
	fill := cs.cache.hasRoom()
	read := make([]*credential, len(missing))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(viewWorkers)
	for i, name := range missing {
		g.Go(func() error {
			var c *credential
			var err error
			if fill {
				c, err = cs.get(gctx, s, name)
			} else {
				c, err = cs.readIndexed(gctx, s, name)
			}
			read[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, name := range missing {
		out[name] = read[i]
	}
	return out, nil
}

// load decodes the stored credential called name into the form the cache keeps; nil
// when there is none.
func (cs *credentialStore) load(ctx context.Context, s logical.Storage, name string) (*credential, error) {
	if !validName(name) {
		// No such credential can exist, and a key Vault's storage refuses (one with
		// "..") would only turn into a 500: every path that names a credential gets
		// "not found" instead.
		return nil, nil
	}
	c := &credential{}
	if found, err := cs.read(ctx, s, name, c); !found || err != nil {
		return nil, err
	}
	c.compact()
	upgradeCredential(c)
	c.lazy = c.newLazy()
	c.Tags = cs.labels.intern(c.Tags)
	return c, nil
}

// indexedCredential is the part of a stored credential the sweep's indexes, the
// label index and a list page's key_info are computed from: no values, so reading it
// skips the secrets (a certificate's PEMs) instead of decoding them.
type indexedCredential struct {
	Type         string          `json:"type"` // which types the verify schedule skips, and the label index
	Description  string          `json:"description,omitempty"`
	Tags         []string        `json:"tags,omitempty"`
	NotAfter     time.Time       `json:"not_after,omitzero"`
	SuspendAfter time.Duration   `json:"suspend_after,omitempty"`
	PurgeAfter   time.Duration   `json:"purge_after,omitempty"`
	State        lifecycle.State `json:"state"`
	Record       int             `json:"record_version,omitempty"`
}

// indexView returns the part of name's credential the sweep's indexes need (nil when
// there is none): the cached copy when there is one, else only those fields decoded
// from storage, caching nothing. It also returns the shard generation for
// ifUnchanged, so a caller holding no lock files what it read only if no write raced
// the read.
func (cs *credentialStore) indexView(ctx context.Context, s logical.Storage, name string) (*credential, uint64, error) {
	c, ok, gen := cs.cache.glance(name)
	if ok {
		return c, gen, nil
	}
	c, err := cs.readIndexed(ctx, s, name)
	return c, gen, err
}

// readIndexed decodes the indexedCredential part of name's stored credential into a
// credential without values; nil when there is none.
func (cs *credentialStore) readIndexed(ctx context.Context, s logical.Storage, name string) (*credential, error) {
	var ic indexedCredential
	if found, err := cs.read(ctx, s, name, &ic); !found || err != nil {
		return nil, err
	}
	upgradeIndexed(&ic)
	return &credential{Name: name, Type: ic.Type, Description: ic.Description, Tags: cs.labels.intern(ic.Tags),
		NotAfter: ic.NotAfter, SuspendAfter: ic.SuspendAfter, PurgeAfter: ic.PurgeAfter, State: ic.State, Record: ic.Record}, nil
}

// read decodes the stored credential called name into v; false when there is none.
func (cs *credentialStore) read(ctx context.Context, s logical.Storage, name string, v any) (bool, error) {
	entry, err := s.Get(ctx, credentialPrefix+name)
	if err != nil {
		return false, fmt.Errorf("reading credential %q: %w", name, err)
	}
	if entry == nil {
		return false, nil
	}
	if err := entry.DecodeJSON(v); err != nil {
		return false, fmt.Errorf("%w: credential %q: %w", errUndecodable, name, err)
	}
	return true, nil
}

// errUndecodable marks a stored entry that cannot be decoded. The index scan skips
// such an entry, with a log line, rather than leave the rest unindexed; reads of it
// fail alike.
var errUndecodable = errors.New("cannot decode")

// ifUnchanged runs fn and returns true if no put, remove or forget of name's shard
// happened since indexView returned gen; else it returns false without running fn.
// fn runs under the cache's read lock, so no such change can slip in before it ends:
// a writer that changes the credential and then re-indexes it is ordered after fn.
func (cs *credentialStore) ifUnchanged(name string, gen uint64, fn func()) bool {
	return cs.cache.ifUnchanged(name, gen, fn)
}

// put stores c under its name's lock h, caches it and files its labels.
func (cs *credentialStore) put(ctx context.Context, s logical.Storage, h credentialHeld, c *credential) error {
	prev, known, _ := cs.cache.glance(c.Name)
	return cs.putOver(ctx, s, h, c, prev, known)
}

// putOver is put by a writer that read the copy c replaces (prev; nil: none, a
// create): what the jwks/<name> entry needs is then known without a storage read, so a
// create of a credential that publishes nothing costs no extra storage operation.
func (cs *credentialStore) putOver(ctx context.Context, s logical.Storage, h credentialHeld, c, prev *credential, prevKnown bool) error {
	if h.name != c.Name {
		return fmt.Errorf("storing credential %q under the lock of %q", c.Name, h.name)
	}
	c.Tags = cs.labels.intern(c.Tags) // a new slice: c's may be shared with a cached copy
	entry, err := recordEntry(credentialPrefix+c.Name, c)
	if err != nil {
		return fmt.Errorf("encoding credential %q: %w", c.Name, err)
	}
	// The jwks/<name> entry first, so that a failure leaves the cache and storage
	// agreeing on the credential: a stale entry is harmless (jwks/<name> also checks
	// publish_jwks on the credential), a missing one only unpublishes.
	if publishesJWKS(c) {
		if err := markPublished(ctx, s, c.Name); err != nil {
			return err
		}
	} else if err := unmarkPublished(ctx, s, c.Name, prevKnown && !publishesJWKS(prev)); err != nil {
		return err
	}
	// The index snapshot's protocol (index_snapshot.go): begin before the storage
	// write, end once the credential is cached and filed.
	end, err := cs.snap.begin(ctx, s, c.Name)
	if err != nil {
		return err
	}
	defer end()
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing credential %q: %w", c.Name, err)
	}
	cs.cache.set(c.Name, c)
	// After the cache, whose generation a racing read checks before it files (refile).
	cs.labels.file(c.Name, c.typeDef(), c.Tags)
	cs.namesMu.Lock()
	if !cs.loaded {
		cs.namesGen++ // a load racing this write may have listed storage before it
	} else if names, added := cs.tab.Insert(cs.names, c.Name); added {
		cs.names = names
		cs.namesGen++
	}
	cs.namesMu.Unlock()
	return nil
}

// remove deletes the stored credential whose name lock h is.
func (cs *credentialStore) remove(ctx context.Context, s logical.Storage, h credentialHeld) error {
	name := h.name
	if err := unmarkPublished(ctx, s, name, false); err != nil {
		return err
	}
	end, err := cs.snap.begin(ctx, s, name)
	if err != nil {
		return err
	}
	defer end()
	if err := s.Delete(ctx, credentialPrefix+name); err != nil {
		return fmt.Errorf("deleting credential %q: %w", name, err)
	}
	cs.cache.drop(name)
	cs.labels.unfile(name)
	cs.namesMu.Lock()
	cs.namesGen++
	cs.names, _ = cs.tab.Remove(cs.names, name)
	cs.namesMu.Unlock()
	return nil
}

// list returns every stored credential name, read from storage.
func (cs *credentialStore) list(ctx context.Context, s logical.Storage) ([]string, error) {
	names, err := s.List(ctx, credentialPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	return names, nil
}

// namesAfter returns up to n credential names that sort after the given one.
func (cs *credentialStore) namesAfter(ctx context.Context, s logical.Storage, after string, n int) ([]string, error) {
	for {
		listed, err := cs.loadNames(ctx, s)
		if err != nil {
			return nil, err
		}
		if listed != nil {
			i, found := slices.BinarySearch(listed, after)
			if found {
				i++
			}
			return slices.Clone(listed[i:min(i+n, len(listed))]), nil
		}
		cs.namesMu.RLock()
		if cs.loaded {
			defer cs.namesMu.RUnlock()
			// The list's references keep its ids filed under their names while the
			// read lock holds off remove and forget. The names returned share the
			// table's bytes, which never change.
			i, found := cs.tab.Search(cs.names, after)
			if found {
				i++
			}
			page := make([]string, 0, max(0, min(n, len(cs.names)-i)))
			for _, id := range cs.names[i:min(i+n, len(cs.names))] {
				page = append(page, cs.tab.Name(id))
			}
			return page, nil
		}
		cs.namesMu.RUnlock() // invalidated since loadNames: load again
	}
}

// loadNames fills the name index from storage when it is not loaded. The listing runs
// outside the lock; if a write changed the set of names meanwhile, the listing may
// have missed it, so it is not kept (and is returned for this one call only). The ids
// are acquired outside the lock too, so that filing a whole mount's names holds off
// no write; a load that is not kept releases them.
func (cs *credentialStore) loadNames(ctx context.Context, s logical.Storage) ([]string, error) {
	cs.namesMu.RLock()
	loaded, gen := cs.loaded, cs.namesGen
	cs.namesMu.RUnlock()
	if loaded {
		return nil, nil
	}
	listed, err := cs.list(ctx, s)
	if err != nil {
		return nil, err
	}
	slices.Sort(listed)
	listed = slices.Compact(listed) // one reference per listed name, as Insert keeps it
	ids := make([]uint32, len(listed))
	for i, name := range listed {
		ids[i] = cs.tab.Acquire(name)
	}
	cs.namesMu.Lock()
	raced := cs.namesGen != gen
	kept := !raced && !cs.loaded // else another load won
	if kept {
		cs.names, cs.loaded = ids, true
	}
	cs.namesMu.Unlock()
	if !kept {
		cs.release(ids)
	}
	if raced {
		return listed, nil
	}
	return nil, nil
}

// forget drops the cached copy, e.g. when another node changed the entry.
func (cs *credentialStore) forget(name string) {
	cs.cache.drop(name)
	cs.labels.invalidate(name)
	cs.namesMu.Lock()
	dropped := cs.names
	cs.names, cs.loaded = nil, false
	cs.namesGen++
	cs.namesMu.Unlock()
	// Outside the lock: no page reads the dropped list any more.
	cs.release(dropped)
}

// release drops the references a list of names' ids held.
func (cs *credentialStore) release(ids []uint32) {
	for _, id := range ids {
		cs.tab.Release(id)
	}
}

// version is c's version: 1 when created, one more for each write of its settings.
func (c *credential) version() int {
	return c.Version
}

// clone returns a copy of c that a writer may change without touching the cached one.
func (c *credential) clone() *credential {
	n := *c
	n.lazy = c.newLazy() // the copy's values may change: derive afresh if needed
	n.Tags = append([]string(nil), c.Tags...)
	n.UsedBy = append([]string(nil), c.UsedBy...)
	n.State.Warned = append([]string(nil), c.State.Warned...)
	return &n
}

// deviceIndexKey is where a device account is indexed by its triple; "" for other types.
func (c *credential) deviceIndexKey() string {
	if c.Type != deviceAccountType {
		return ""
	}
	return deviceKey(c.Values.Str("hostname"), c.Values.Str("ip"), c.Values.Str("username"))
}

// hasDeviceTriple reports whether c is a device account whose stored hostname, ip and
// username are the given ones (normalized as deviceTriple does), comparing as the index
// does. An index entry or a derived name only says where to look; this says whether
// the account found there is the one asked for.
func (c *credential) hasDeviceTriple(hostname, ip, username string) bool {
	return c != nil && c.Type == deviceAccountType &&
		strings.ToLower(c.Values.Str("hostname")) == strings.ToLower(hostname) && //nolint:staticcheck // SA6005: compares exactly as the index keys are built (strings.ToLower), which EqualFold's folding does not
		c.Values.Str("ip") == ip &&
		strings.ToLower(c.Values.Str("username")) == strings.ToLower(username) //nolint:staticcheck // SA6005: as above
}

// deviceTripleOf is a device account's stored hostname, ip and username.
func (c *credential) deviceTripleOf() (hostname, ip, username string) {
	return c.Values.Str("hostname"), c.Values.Str("ip"), c.Values.Str("username")
}
