package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// tokenPrefix is where minted OAuth tokens are cached in barrier storage, so a
// restart or a leader change does not mint again; only tokenStore touches it.
const tokenPrefix = "tokens/"

// errTokenDiscarded is what a caller gets when the token request it waited for was
// answered after its credential changed, was deleted or reauthorized: the answer
// belongs to settings that are gone and was thrown away.
var errTokenDiscarded = fmt.Errorf("the credential changed while its token was requested: %w", oauth.ErrDiscarded)

// errRefreshKept is errTokenDiscarded for an answer whose refresh token was stored
// all the same (put): only its access token, minted under settings that changed, was
// thrown away.
var errRefreshKept = fmt.Errorf("%w; its refresh token was kept", errTokenDiscarded)

// storedToken is the stored (tokens/<name>) and cached form of a credential's token.
type storedToken struct {
	oauth.Token
	// Destination fingerprints the credential's destination fields (the catalog
	// says which) when the token was learnt. A token, and above all its refresh
	// token, is used only while the credential still points there: a refresh token
	// never follows a repoint, whatever cache or node it is read from (learntFor).
	Destination string `json:"destination,omitempty"`
	// Client fingerprints the OAuth client (grantOwner) the token was issued to.
	Client string `json:"client,omitempty"`
	// Record is the version of the stored format (records.go), stamped when stored.
	Record int `json:"record_version,omitempty"`
	// anyDestination and anyClient mark a token stored before the fingerprint was
	// recorded (upgradeToken): it matches the credential's current one.
	anyDestination, anyClient bool

	// ahead is this token's refresh-ahead state, in memory only (a new token, or
	// the same one decoded again, starts idle): aheadIdle, aheadRunning while a
	// background refresh runs, or the UnixNano before which no new one starts after
	// a failed one (aheadNever: not on this node).
	ahead atomic.Int64
	// aheadWarning is why the last background refresh failed transiently; it is
	// served with the token until a refresh succeeds and replaces it.
	aheadWarning atomic.Pointer[string]
	// unsaved marks a token state the provider issued that storage refused: held in
	// memory (tokenStore.unsaved) until a write succeeds, never served, and the only
	// source of the next refresh.
	unsaved bool
}

// tokenTicket is what a token request remembers from its start: the credential it
// acts for, and the generation of the credential's token state then.
type tokenTicket struct {
	name   string
	gen    uint64
	dest   string
	client string // grantOwner of the credential then
	grant  uint64 // the grant epoch then (grantEpoch), for a code exchange
}

// tokenStore is the one owner of every OAuth credential's token state: the
// tokens/<name> storage entries, their decoded copies in memory, the Broker (its
// in-flight requests, backoff and last token per credential) and a generation per
// credential. Every change of a credential's settings, a delete, a purge, a
// re-authorization or an invalidation from another node goes through forget, which
// moves the generation on; every write of a token (a mint, a code exchange)
// checks, under the name's lock, that the credential still exists, points where it
// did, and has the generation the request started with, and otherwise discards
// the token. The Broker lives as long as the backend: engine settings reach it per
// request (oauth.Config Timeout and DefaultLifetime), so a config change drops no
// in-flight request or backoff.
type tokenStore struct {
	deps  tokenDeps
	locks []*locksutil.LockEntry // per name: orders token writes against forgets (withLock)

	cache *genCache[*storedToken] // nil value: "none stored", until a write
	kept  *keepAlive              // when each held refresh token is due for keep-alive

	// unsaved holds, per credential, a token state the provider issued (a rotated or
	// consented refresh token) that storage refused, under the name's token lock. It
	// is what cached returns, so the next refresh starts from it and never from the
	// refresh token the provider retired; saveUnsaved writes it before any provider
	// request and on every sweep tick, until it is stored or the credential is gone,
	// repointed or given another client. unsavedN counts the entries, so the read path
	// looks at the map only when there is one.
	unsavedMu sync.Mutex
	unsaved   map[string]*unsavedToken
	unsavedN  atomic.Int32

	mu sync.RWMutex
	// gens is each credential's generation, by its id in deps.names (a reference
	// held while set); 0 for none.
	gens    []uint64
	counter uint64 // gens and grants are drawn from it, so neither is ever reused
	// grants moves on, per credential, when its grant is replaced whole: a consent
	// stored (a code exchange) or a refresh token imported. A code exchange started
	// before such a replacement must not overwrite it (put); a routine edit moves only
	// the generation.
	grants map[string]uint64

	brokerOnce sync.Once
	broker     *oauth.Broker
	client     *oauth.Client
}

// tokenDeps is what the token store uses of the rest of the engine, and all of it.
type tokenDeps struct {
	now    func() time.Time
	logger func() hclog.Logger // the backend's, which Setup sets after the store is made
	// credentials is the credential lookup: a credential and its read lock (ticket),
	// the credential a write is checked against (store).
	credentials *credentialStore
	// config reads the engine config in force (a token write checks
	// default_token_lifetime and files keep-alive by keepalive_interval).
	config func(context.Context, logical.Storage) (*engineConfig, error)
	// newClient makes the OAuth client under the Broker, once.
	newClient func() *oauth.Client
	// names is the mount's names table (nil: one of the store's own).
	names *names.Table
}

// tokenDepsOf is the token store's view of b.
func tokenDepsOf(b *integrationsBackend) tokenDeps {
	return tokenDeps{
		now: b.now,
		// Not the method value b.Logger: b.Backend, through which it is promoted, is
		// set after the store is made, and a method value would keep the nil one.
		logger:      func() hclog.Logger { return b.Logger() },
		credentials: b.credentials,
		config:      b.loadConfig,
		newClient:   b.newOAuthClient,
		names:       b.names,
	}
}

func newTokenStore(deps tokenDeps) *tokenStore {
	if deps.names == nil {
		deps.names = names.NewTable()
	}
	ts := &tokenStore{deps: deps, locks: locksutil.CreateLocks(), cache: newGenCache[*storedToken](), grants: make(map[string]uint64),
		kept: newKeepAlive(deps.names), unsaved: make(map[string]*unsavedToken)}
	return ts
}

// maxOAuthTimeout bounds every provider call whatever request_timeout says; each
// request is bounded by the request_timeout in force when it starts.
const maxOAuthTimeout = maxRequestTimeout

// brokerOf returns the Broker, made on first use and kept for the backend's life.
func (ts *tokenStore) brokerOf() *oauth.Broker {
	ts.brokerOnce.Do(func() {
		ts.client = ts.deps.newClient()
		ts.broker = oauth.NewBroker(ts.client, ts.deps.now)
	})
	return ts.broker
}

// hostStats is what the token hosts' bound shows (oauth.Client.HostStats), for the
// metrics; it makes the Broker when none was made yet (an empty list).
func (ts *tokenStore) hostStats() []oauth.HostStat { return ts.brokerOf().HostStats() }

// newOAuthClient is the bounded client every provider call goes through: a 1 MiB
// response cap, the backend's clock and transport. Timeouts and the assumed token
// lifetime come with each request (oauthConfig).
func (b *integrationsBackend) newOAuthClient() *oauth.Client {
	return oauth.NewClient(oauth.ClientOptions{
		Timeout:          maxOAuthTimeout,
		MaxResponseBytes: 1 << 20,
		Now:              b.now,
		HostNow:          b.hostNow,
		Transport:        b.transport,
		Transports:       b.tlsTransports(),
		Observer:         b.metrics,
	})
}

// oauthConfig is the provider configuration of c under the engine settings cfg.
func (b *integrationsBackend) oauthConfig(cfg *engineConfig, c *credential) (oauth.Config, error) {
	fields, err := signingFields(c, b.now()) // a generated key signs inside the engine (client_keys.go)
	if err != nil {
		return oauth.Config{}, err
	}
	oc, err := oauth.FromFields(c.Type, fields)
	if err != nil {
		return oauth.Config{}, err
	}
	oc.Timeout, oc.DefaultLifetime = cfg.RequestTimeout, cfg.DefaultTokenLifetime
	if oc.AuthStyle == oauth.AuthStyleFederated {
		oc.Federation = b.federation(cfg, c)
	}
	oc.Host = oauth.HostLimits{Concurrency: cfg.TokenHostConcurrency, Rate: float64(cfg.TokenHostRate)}
	withPreviousClient(&oc, c, b.now())
	return oc, nil
}

// destination fingerprints where c's secrets go: its type and the values of its
// destination fields.
func destination(c *credential) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%s\x00", c.Type)
	for _, f := range c.typeDef().DestinationFields() {
		v := c.Values.Str(f)
		if v == "" && f == credtype.FieldCACertificate {
			continue // unset: the fingerprint tokens stored before the field carry
		}
		_, _ = fmt.Fprintf(h, "%s=%d:%s\x00", f, len(v), v)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// ticket starts a token request for c: it reads the generation and the credential
// together (under the credential's read lock, so no update falls between them) and
// returns the credential as it is now, nil when it is gone.
func (ts *tokenStore) ticket(ctx context.Context, s logical.Storage, name string) (tokenTicket, *credential, error) {
	unlock := ts.deps.credentials.rlock(name)
	defer unlock()
	gen := ts.generation(name)
	c, err := ts.deps.credentials.get(ctx, s, name)
	if err != nil || c == nil {
		// Still names the credential, so a failure recorded through it is filed
		// under the right name.
		return tokenTicket{name: name, gen: gen}, nil, err
	}
	return tokenTicket{name: name, gen: gen, dest: destination(c), client: grantOwner(c)}, c, nil
}

// grantOwner fingerprints the OAuth client c's grants are issued to (the catalog's
// grant-owner fields: client_id): a refresh token is only ever used by that client.
func grantOwner(c *credential) string {
	fields := c.typeDef().GrantOwnerFields()
	if len(fields) == 0 {
		return ""
	}
	h := sha256.New()
	for _, f := range fields {
		v := c.Values.Str(f)
		_, _ = fmt.Fprintf(h, "%s=%d:%s\x00", f, len(v), v)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// grantEpoch is name's grant epoch (see tokenStore.grants).
func (ts *tokenStore) grantEpoch(name string) uint64 {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return ts.grants[name]
}

// regrant moves the grant epoch of the name h holds on.
func (ts *tokenStore) regrant(h tokenHeld) {
	ts.mu.Lock()
	ts.counter++
	ts.grants[h.name] = ts.counter
	ts.mu.Unlock()
}

func (ts *tokenStore) generation(name string) uint64 {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	id, ok := ts.genID(name)
	if !ok {
		return 0
	}
	return ts.gens[id]
}

// genID returns the id of name's generation, if it has one. The caller holds ts.mu,
// so an id set here (its reference held) is not reused meanwhile.
func (ts *tokenStore) genID(name string) (uint32, bool) {
	id, ok := ts.deps.names.Lookup(name)
	if !ok || int(id) >= len(ts.gens) || ts.gens[id] == 0 {
		return 0, false
	}
	return id, true
}

// cached returns the stored token of a credential, from memory when it can; nil when
// there is none.
func (ts *tokenStore) cached(ctx context.Context, s logical.Storage, name string) (*storedToken, error) {
	if ts.unsavedN.Load() != 0 {
		if st := ts.unsavedOf(name); st != nil {
			return st, nil
		}
	}
	return ts.cache.get(name, func() (*storedToken, bool, error) {
		entry, err := s.Get(ctx, tokenPrefix+name)
		if err != nil {
			return nil, false, fmt.Errorf("reading token of %q: %w", name, err)
		}
		if entry == nil {
			return nil, true, nil // "none stored" is worth remembering too
		}
		tok := new(storedToken)
		if err := entry.DecodeJSON(tok); err != nil {
			return nil, false, fmt.Errorf("decoding token of %q: %w", name, err)
		}
		upgradeToken(tok)
		return tok, true, nil
	})
}

// putMinted stores the answer of a mint (mintToken) to the request t started: kept
// only if it follows the token state held now (see put).
func (ts *tokenStore) putMinted(ctx context.Context, s logical.Storage, t tokenTicket, tok *oauth.Token) error {
	return ts.put(ctx, s, t, tok, false)
}

// putConsent stores the answer of a code exchange to the request t (consentTicket)
// started: it replaces whatever is held unless a consent or an import was stored
// since (see put).
func (ts *tokenStore) putConsent(ctx context.Context, s logical.Storage, t tokenTicket, tok *oauth.Token) error {
	return ts.put(ctx, s, t, tok, true)
}

// consentTicket starts a code exchange for c, which the caller read holding its lock
// h: the generation and the grant epoch now, with c's destination and client, so the
// consent is stored only while all of them hold (putConsent).
func (ts *tokenStore) consentTicket(h credentialHeld, c *credential) tokenTicket {
	return tokenTicket{name: h.name, gen: ts.generation(h.name), dest: destination(c), client: grantOwner(c), grant: ts.grantEpoch(h.name)}
}

// put stores tok, the provider's answer to the request t started, before anyone
// receives it.
//
// A refresh token in an answer is what only a person can give back once the provider
// has retired the one it replaced (a rotation), or once the consent is spent (a code
// exchange). So it is kept whenever the credential still exists with the destination
// and client (grantOwner) the request was made for, whatever else changed meanwhile
// (description, tags, scopes, a suspend, a config change): only a repoint, a new
// client_id or a delete forgets it. The access token is kept only when nothing
// changed: the generation is the one t started with, and its lifetime does not rest
// on a default_token_lifetime no longer in force. Otherwise the refresh token alone
// is stored (the next read mints under the current settings) and put returns
// errTokenDiscarded, so no caller is handed a token of old settings.
//
// A storage error keeps the state in memory (tokenStore.unsaved) and returns the
// error: cached returns that state, and saveUnsaved writes it before any further
// provider request, so the provider never receives the refresh token it retired.
//
// replace (a code exchange) replaces whatever is held and moves the generation on, so
// requests still in flight, refreshing from the old refresh token, cannot overwrite
// tok; any other answer is stored only if it was refreshed from the refresh token held
// now (store), so an answer to an older grant never overwrites a newer consent or
// import.
func (ts *tokenStore) put(ctx context.Context, s logical.Storage, t tokenTicket, tok *oauth.Token, replace bool) error {
	return ts.withLock(t.name, func(h tokenHeld) error { return ts.putHeld(ctx, s, h, t, tok, replace) })
}

func (ts *tokenStore) putHeld(ctx context.Context, s logical.Storage, h tokenHeld, t tokenTicket, tok *oauth.Token, replace bool) error {
	st := &storedToken{Token: *tok, Destination: t.dest, Client: t.client}
	if replace && ts.grantEpoch(t.name) != t.grant {
		// A consent or an import was stored since this exchange started: it is newer.
		return errTokenDiscarded
	}
	current := ts.generation(t.name) == t.gen
	if current && tok.AssumedLifetime != 0 {
		cfg, err := ts.deps.config(ctx, s)
		current = err == nil && lifetimeInForce(tok, cfg)
	}
	if !current {
		if st.RefreshToken == "" || st.RefreshToken == tok.From {
			return errTokenDiscarded // nothing in it that is not held already
		}
		st.AccessToken, st.Expiry, st.AssumedLifetime = "", time.Time{}, 0
	}
	if err := ts.store(ctx, s, h, st, tok.From, replace); err != nil {
		if !isDiscarded(err) && st.RefreshToken != "" {
			ts.holdUnsaved(h, &unsavedToken{st: st, from: tok.From, replace: replace})
			return fmt.Errorf("%w: %w", errUnsaved, err)
		}
		return err
	}
	if !current {
		return errRefreshKept
	}
	return nil
}

// adopt makes a refresh token obtained elsewhere c's token state: stored under c's
// destination, with no access token (the next access/ mints through it), replacing
// whatever was held. The generation moves on, so a request in flight from the old
// token state cannot overwrite it, and the cached access token goes.
func (ts *tokenStore) adopt(ctx context.Context, s logical.Storage, c *credential, refreshToken string) error {
	return ts.withLock(c.Name, func(h tokenHeld) error {
		st := &storedToken{Token: oauth.Token{RefreshToken: refreshToken, IssuedAt: ts.deps.now().UTC()}, Destination: destination(c), Client: grantOwner(c)}
		entry, err := recordEntry(tokenPrefix+c.Name, st)
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
	if !tok.learntFor(destination(c), grantOwner(c)) {
		return nil, nil // learnt elsewhere or for another client: forgotten
	}
	return tok, nil
}

// unsavedToken is a token state storage refused, with what store needs to write it
// later.
type unsavedToken struct {
	st      *storedToken // marked unsaved; never served
	from    string       // the refresh token it was refreshed from
	replace bool         // a consent: replaces whatever is held
}

// store writes st as the token state of the name h holds, if the credential still
// exists with st's destination and client and, unless replace, st follows the token
// state held now: it was refreshed from (from) the refresh token held, or holds that
// same refresh token. Otherwise it is errTokenDiscarded, and an unsaved state of name
// that can no longer be stored goes too.
func (ts *tokenStore) store(ctx context.Context, s logical.Storage, h tokenHeld, st *storedToken, from string, replace bool) error {
	name := h.name
	c, err := ts.deps.credentials.get(ctx, s, name)
	if err != nil {
		return err
	}
	if c == nil || destination(c) != st.Destination || grantOwner(c) != st.Client {
		ts.dropUnsaved(name)
		return errTokenDiscarded
	}
	if !replace {
		held, err := ts.cached(ctx, s, name) // an unsaved state first
		if err != nil {
			return err
		}
		if rt := held.refreshToken(); rt != from && rt != st.RefreshToken {
			return errTokenDiscarded // superseded: a newer answer, import or consent is held
		}
	}
	saved := st.saved()
	entry, err := recordEntry(tokenPrefix+name, saved)
	if err != nil {
		return fmt.Errorf("encoding token of %q: %w", name, err)
	}
	if replace {
		ts.bump(h)
		ts.regrant(h)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing token of %q: %w", name, err)
	}
	ts.dropUnsaved(name)
	ts.cache.set(name, saved)
	// Its refresh token was just used (or obtained): keep-alive is due an interval on.
	ts.kept.hold(name, saved, c.typeDef())
	if cfg, err := ts.deps.config(ctx, s); err == nil {
		ts.kept.file(cfg, c)
	}
	return nil
}

// saved is a copy of st as it is stored and cached: not unsaved, idle.
func (st *storedToken) saved() *storedToken {
	n := &storedToken{Token: st.Token, Destination: st.Destination, Client: st.Client}
	n.From = "" // the retired refresh token is of no use once this one is held
	return n
}

func (st *storedToken) refreshToken() string {
	if st == nil {
		return ""
	}
	return st.RefreshToken
}

// holdUnsaved keeps u as the token state of the name h holds until saveUnsaved
// stores it.
func (ts *tokenStore) holdUnsaved(h tokenHeld, u *unsavedToken) {
	name := h.name
	st := u.st.saved()
	st.unsaved = true
	u.st = st
	ts.unsavedMu.Lock()
	if _, ok := ts.unsaved[name]; !ok {
		ts.unsavedN.Add(1)
	}
	ts.unsaved[name] = u
	ts.unsavedMu.Unlock()
	ts.cache.drop(name)
	ts.deps.logger().Error("storing a token state the provider issued failed; it is kept in memory and stored before the next token request", "credential", name)
}

func (ts *tokenStore) dropUnsaved(name string) {
	if ts.unsavedN.Load() == 0 {
		return
	}
	ts.unsavedMu.Lock()
	if _, ok := ts.unsaved[name]; ok {
		delete(ts.unsaved, name)
		ts.unsavedN.Add(-1)
	}
	ts.unsavedMu.Unlock()
}

func (ts *tokenStore) unsavedOf(name string) *storedToken {
	ts.unsavedMu.Lock()
	defer ts.unsavedMu.Unlock()
	if u := ts.unsaved[name]; u != nil {
		return u.st
	}
	return nil
}

// errUnsaved is what a token request gets while the token state the provider last
// issued cannot be stored: no request is made with the refresh token it replaced.
var errUnsaved = errors.New("the token state the provider last issued could not be stored yet; retry shortly")

// saveUnsaved stores name's unsaved token state, if it has one; it returns
// errUnsaved (wrapping the storage error) while storage still refuses it. A state
// whose credential went, was repointed or given another client is dropped.
func (ts *tokenStore) saveUnsaved(ctx context.Context, s logical.Storage, name string) error {
	if ts.unsavedN.Load() == 0 {
		return nil
	}
	return ts.withLock(name, func(h tokenHeld) error {
		ts.unsavedMu.Lock()
		u := ts.unsaved[name]
		ts.unsavedMu.Unlock()
		if u == nil {
			return nil
		}
		err := ts.store(ctx, s, h, u.st, u.from, u.replace)
		switch {
		case err == nil:
			ts.deps.logger().Info("stored the token state that storage refused earlier", "credential", name)
			return nil
		case isDiscarded(err):
			ts.dropUnsaved(name)
			return nil
		}
		return fmt.Errorf("%w: %w", errUnsaved, err)
	})
}

// saveAllUnsaved retries every unsaved token state (the sweep calls it each tick).
func (ts *tokenStore) saveAllUnsaved(ctx context.Context, s logical.Storage) {
	if ts.unsavedN.Load() == 0 {
		return
	}
	ts.unsavedMu.Lock()
	names := make([]string, 0, len(ts.unsaved))
	for name := range ts.unsaved {
		names = append(names, name)
	}
	ts.unsavedMu.Unlock()
	for _, name := range names {
		if err := ts.saveUnsaved(ctx, s, name); err != nil {
			ts.deps.logger().Error("storing a token state the provider issued still fails; retried on the next tick", "credential", name, "error", err)
		}
	}
}

// bump moves the generation of the credential h holds on and drops what memory holds
// of its token state: the decoded token and the Broker's backoff, last token and
// in-flight request (whose result can then no longer be stored).
func (ts *tokenStore) bump(h tokenHeld) {
	name := h.name
	// The copy goes first: a request that reads the new generation (ticket) and then
	// the token (cached) never finds the copy the generation moved on from.
	ts.cache.drop(name)
	ts.mu.Lock()
	ts.counter++
	id, ok := ts.genID(name)
	if !ok {
		id = ts.deps.names.Acquire(name)
		if int(id) >= len(ts.gens) {
			ts.gens = append(ts.gens, make([]uint64, int(id)+1-len(ts.gens))...)
		}
	}
	ts.gens[id] = ts.counter
	ts.mu.Unlock()
	ts.brokerOf().Forget(name)
}

// forget is how every change of a credential reaches its token state. After an
// update that keeps the destination, the stored token stays (its refresh token is
// still good; its access token is not served, being older than the update). With
// drop — a repoint, a delete, a purge — the stored token goes too.
func (ts *tokenStore) forget(ctx context.Context, s logical.Storage, name string, drop bool) error {
	return ts.withLock(name, func(h tokenHeld) error {
		ts.bump(h)
		if !drop {
			return nil // an unsaved token state stays: its refresh token is still good
		}
		ts.dropUnsaved(name)
		ts.kept.forget(name)
		if err := s.Delete(ctx, tokenPrefix+name); err != nil {
			return fmt.Errorf("deleting the token of %q: %w", name, err)
		}
		return nil
	})
}

// removed forgets the generation of a deleted credential, so the table does not grow
// with every name ever deleted. A request still in flight is refused all the same:
// put finds no credential, and a new one under the name starts from a new
// generation (saveCredential forgets on create too).
func (ts *tokenStore) removed(name string) {
	ts.dropUnsaved(name)
	ts.cache.drop(name)
	ts.kept.forget(name)
	ts.mu.Lock()
	if id, ok := ts.genID(name); ok {
		ts.gens[id] = 0
		ts.deps.names.Release(id)
	}
	delete(ts.grants, name)
	ts.mu.Unlock()
}

// invalidated follows another node's change of a credential or its token: what this
// node holds in memory goes, and requests in flight here cannot write back.
func (ts *tokenStore) invalidated(name string) {
	_ = ts.withLock(name, func(h tokenHeld) error {
		ts.bump(h)
		return nil
	})
}

// tokenHeld is proof that its holder holds the token lock of name: withLock alone
// makes one (TestHeldLocksOnlyFromTheirLock), and every function that must run under
// that lock takes it rather than a bare name.
type tokenHeld struct{ name string }

// withLock runs f holding name's token lock (rank rankToken).
func (ts *tokenStore) withLock(name string, f func(h tokenHeld) error) error {
	defer lockRanked(rankToken, locksutil.LockForKey(ts.locks, name))()
	return f(tokenHeld{name: name})
}

func isDiscarded(err error) bool { return errors.Is(err, oauth.ErrDiscarded) }

// refreshHeldSince returns the issue time of name's stored token when it holds a
// refresh token (zero when none is held), for the index scan: a cached copy is glanced
// at (not promoted), else only those fields are decoded from storage and nothing is
// cached, so a scan over a large mount does not evict the hot working set. An entry
// that cannot be decoded is errUndecodable.
func (ts *tokenStore) refreshHeldSince(ctx context.Context, s logical.Storage, name string) (time.Time, error) {
	if tok, ok, _ := ts.cache.glance(name); ok {
		if tok == nil || tok.RefreshToken == "" {
			return time.Time{}, nil
		}
		return tok.IssuedAt, nil
	}
	entry, err := s.Get(ctx, tokenPrefix+name)
	if err != nil || entry == nil {
		if err != nil {
			err = fmt.Errorf("reading token of %q: %w", name, err)
		}
		return time.Time{}, err
	}
	var tok struct {
		RefreshToken present   `json:"refresh_token"`
		IssuedAt     time.Time `json:"issued_at"`
	}
	if err := entry.DecodeJSON(&tok); err != nil {
		return time.Time{}, fmt.Errorf("%w: token of %q", errUndecodable, name)
	}
	if !tok.RefreshToken {
		return time.Time{}, nil
	}
	return tok.IssuedAt, nil
}

// present decodes a JSON string as whether it is non-empty, keeping nothing of it.
type present bool

func (p *present) UnmarshalJSON(data []byte) error {
	var v string
	if err := json.Unmarshal(data, &v); err != nil && string(data) != "null" {
		return err
	}
	*p = v != ""
	return nil
}
