// The engine as an OIDC issuer (auth_style=federated): the mount's issuer key set, its
// rotation, and the unauthenticated discovery and keys documents providers fetch to
// verify the client assertions the engine signs (oauth.Federation).
//
// The key set is one storage entry (issuerKeysPath, seal-wrapped), a ownedkeys.Set of
// rsa-2048 keys signing RS256. The first key is generated on first use (a config write
// that sets issuer, the rotation job's first run, or the first federated token
// request), once however many ask at the same time. Every
// issuer_key_rotation_period the rotation job publishes the next key issuerPublishAhead
// before it starts signing, so a verifier that caches the keys already has it; the
// previous key stays published for issuerKeyKeep after that (every assertion it signed
// has expired by then, with a clock-skew allowance) and is then destroyed.
// oidc/rotate makes a new key sign at once. Only the active node writes the set;
// standbys read it.

package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

const (
	// issuerKeysPath is the storage key of the issuer key set (seal-wrapped: it holds
	// the private keys). It is not an API path: no path reads it.
	issuerKeysPath = "oidc/keys"

	// The API paths under oidc/.
	issuerDiscoveryPath = "oidc/.well-known/openid-configuration"
	issuerJWKSPath      = "oidc/.well-known/keys"
	issuerRotatePath    = "oidc/rotate"

	// issuerKeyAlgorithm is what issuer keys are generated as: RSA signs RS256, the
	// one algorithm every verifier of external OIDC issuers accepts (Microsoft Entra's
	// federated identity credentials among them; ES256 is not accepted everywhere).
	issuerKeyAlgorithm = ownedkeys.RSA2048

	// issuerClockSkew is how far a verifier's clock may be behind the engine's.
	issuerClockSkew = 5 * time.Minute
	// issuerKeyKeep is how long a replaced key stays published after it stops
	// signing: the assertion lifetime (what it signed last expires by then) plus the
	// clock-skew allowance. Then it is destroyed.
	issuerKeyKeep = oauth.AssertionLifetime + issuerClockSkew

	defaultIssuerKeyRotationPeriod = 30 * day
	minIssuerKeyRotationPeriod     = time.Hour
	maxIssuerKeyRotationPeriod     = 365 * day
	// maxIssuerPublishAhead: the next key is published a day before it signs (half
	// the period when that is shorter).
	maxIssuerPublishAhead = 24 * time.Hour

	// issuerCacheControl is what the discovery and keys documents say about caching,
	// where the mount's allowed_response_headers lets Cache-Control through: five
	// minutes, well within the day the next key is published ahead.
	issuerCacheControl = "public, max-age=300"

	maxIssuerURL = 1024
)

// issuerPublishAhead is how long before it signs the next key is published.
func issuerPublishAhead(period time.Duration) time.Duration {
	return min(maxIssuerPublishAhead, period/2)
}

// issuerKeys holds the decoded issuer key set. mu guards set and loaded, and is never
// held across a call into another store; gen serialises the read-modify-writes of the
// stored set (first generation, rotation, pruning), with no other lock taken under it.
type issuerKeys struct {
	mu     sync.Mutex
	set    ownedkeys.Set
	loaded bool

	gen sync.Mutex
}

// read returns the set, decoding it from storage at most once until a write or an
// invalidation. The Set it returns is shared: callers only read it.
func (k *issuerKeys) read(ctx context.Context, s logical.Storage) (ownedkeys.Set, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loaded {
		return k.set, nil
	}
	set, err := loadIssuerKeys(ctx, s)
	if err != nil {
		return ownedkeys.Set{}, err
	}
	k.set, k.loaded = set, true
	return set, nil
}

// drop forgets the decoded set: another node changed it.
func (k *issuerKeys) drop() {
	k.mu.Lock()
	k.set, k.loaded = ownedkeys.Set{}, false
	k.mu.Unlock()
}

func loadIssuerKeys(ctx context.Context, s logical.Storage) (ownedkeys.Set, error) {
	entry, err := s.Get(ctx, issuerKeysPath)
	if err != nil {
		return ownedkeys.Set{}, fmt.Errorf("reading the issuer keys: %w", err)
	}
	if entry == nil {
		return ownedkeys.Set{}, nil
	}
	set, err := ownedkeys.Decode(entry.Value)
	if err != nil {
		return ownedkeys.Set{}, fmt.Errorf("decoding the issuer keys: %w", err)
	}
	return set, nil
}

// update changes the stored set under gen: change gets a freshly decoded copy (never
// the shared one) and reports whether it changed it; a changed set is stored and
// becomes the one read returns.
func (k *issuerKeys) update(ctx context.Context, s logical.Storage, change func(*ownedkeys.Set) (bool, error)) (ownedkeys.Set, error) {
	k.gen.Lock()
	defer k.gen.Unlock()
	set, err := loadIssuerKeys(ctx, s)
	if err != nil {
		return ownedkeys.Set{}, err
	}
	changed, err := change(&set)
	if err != nil {
		return ownedkeys.Set{}, err
	}
	if changed {
		enc, err := set.Encode()
		if err != nil {
			return ownedkeys.Set{}, fmt.Errorf("encoding the issuer keys: %w", err)
		}
		if err := s.Put(ctx, &logical.StorageEntry{Key: issuerKeysPath, Value: enc, SealWrap: true}); err != nil {
			return ownedkeys.Set{}, fmt.Errorf("storing the issuer keys: %w", err)
		}
	}
	k.mu.Lock()
	k.set, k.loaded = set, true
	k.mu.Unlock()
	return set, nil
}

// ensureSigning gives set a key that signs at now when it has none: the first key, or
// after every key retired (a mount whose rotation job could not run), a new one
// signing at once.
func ensureSigning(ctx context.Context, set *ownedkeys.Set, now time.Time) (bool, error) {
	if _, ok := set.Signing(now); ok {
		return false, nil
	}
	key, err := ownedkeys.Generate(ctx, issuerKeyAlgorithm, now)
	if err != nil {
		return false, err
	}
	set.Rotate(key, now, now, issuerKeyKeep)
	set.Prune(now)
	return true, nil
}

// issuerSigningKey is the key that signs a federated assertion at now
// (oauth.Federation.Key): the set's signing key, the first one generated when there is
// none. Only the active node generates; a standby without a key answers ErrReadOnly
// (token requests run on the active node).
func (b *integrationsBackend) issuerSigningKey(ctx context.Context, now time.Time) (ownedkeys.Key, error) {
	s := b.storage
	set, err := b.issuer.read(ctx, s)
	if err != nil {
		return ownedkeys.Key{}, err
	}
	if k, ok := set.Signing(now); ok {
		return k, nil
	}
	if !b.WriteSafeReplicationState() {
		return ownedkeys.Key{}, logical.ErrReadOnly
	}
	set, err = b.issuer.update(ctx, s, func(set *ownedkeys.Set) (bool, error) { return ensureSigning(ctx, set, now) })
	if err != nil {
		return ownedkeys.Key{}, err
	}
	k, ok := set.Signing(now)
	if !ok {
		return ownedkeys.Key{}, errors.New("the issuer key set has no signing key")
	}
	return k, nil
}

// federation is what oauthConfig hands a federated credential's token requests: nil
// while config issuer is unset, which the request then refuses (oauth.ErrNoIssuer).
func (b *integrationsBackend) federation(cfg *engineConfig, c *credential) *oauth.Federation {
	if cfg.Issuer == "" {
		return nil
	}
	return &oauth.Federation{Issuer: cfg.Issuer, Subject: c.Values.Str(credtype.FieldFederatedSubject), Key: b.issuerSigningKey}
}

// rotateIssuerKeys is the issuer key rotation job: on the active node, while config
// issuer is set, it makes the first key, publishes the next one issuerPublishAhead
// before the current one has signed for issuer_key_rotation_period (signing from that
// moment), and destroys the keys whose retirement has come.
func (b *integrationsBackend) rotateIssuerKeys(ctx context.Context, s logical.Storage) error {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil || cfg.Issuer == "" {
		return err
	}
	now := b.now().UTC()
	period := cfg.IssuerKeyRotationPeriod
	_, err = b.issuer.update(ctx, s, func(set *ownedkeys.Set) (bool, error) {
		return scheduleIssuerKeys(ctx, set, now, period)
	})
	if err != nil {
		b.Logger().Error("issuer key rotation failed; it is tried again at the next tick", "error", err)
	}
	return nil
}

// scheduleIssuerKeys is one step of the rotation schedule at now: see rotateIssuerKeys.
func scheduleIssuerKeys(ctx context.Context, set *ownedkeys.Set, now time.Time, period time.Duration) (bool, error) {
	changed := set.Prune(now)
	made, err := ensureSigning(ctx, set, now)
	if err != nil || made {
		return changed || made, err
	}
	cur, _ := set.Current()
	if cur.Activates.After(now) {
		return changed, nil // the next key is published and waits for its time
	}
	due := cur.Activates.Add(period)
	if now.Before(due.Add(-issuerPublishAhead(period))) {
		return changed, nil
	}
	if err := set.Room(now); err != nil {
		return changed, err // oidc/rotate filled the set: the schedule waits for a retirement
	}
	next, err := ownedkeys.Generate(ctx, issuerKeyAlgorithm, now)
	if err != nil {
		return changed, err
	}
	// Published a full issuerPublishAhead before it signs even when the job runs late
	// (a sealed or stopped cluster): the current key is still published and keeps
	// signing meanwhile, so no verifier sees a kid it could not have fetched.
	activates := due
	if earliest := now.Add(issuerPublishAhead(period)); activates.Before(earliest) {
		activates = earliest
	}
	set.Rotate(next, now, activates, issuerKeyKeep)
	return true, nil
}

// rotateIssuerKeysNow is oidc/rotate: a new key signs at once; the previous ones stay
// published for issuerKeyKeep, then are destroyed.
func (b *integrationsBackend) rotateIssuerKeysNow(ctx context.Context, s logical.Storage, now time.Time) (ownedkeys.Set, error) {
	return b.issuer.update(ctx, s, func(set *ownedkeys.Set) (bool, error) {
		if err := set.Room(now); err != nil {
			return false, err // nothing stored: a set that full would not decode again
		}
		next, err := ownedkeys.Generate(ctx, issuerKeyAlgorithm, now)
		if err != nil {
			return false, err
		}
		set.Rotate(next, now, now, issuerKeyKeep)
		set.Prune(now)
		return true, nil
	})
}

// checkIssuer is config issuer's rule: an absolute https URL (http only to a loopback
// host, for development and tests), without credentials, query, fragment or a
// trailing slash (verifiers compare iss with it character for character and append
// /.well-known/openid-configuration to it), at most 1024 printable ASCII characters.
func checkIssuer(raw string) error {
	const rule = "must be the absolute https URL providers reach this mount's oidc path at (http only to a loopback host), e.g. https://vault.example.com/v1/integrations/oidc: no credentials, query, fragment or trailing slash, at most 1024 printable ASCII characters"
	if len(raw) > maxIssuerURL || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) {
		return fieldErr("issuer", rule)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		strings.HasSuffix(raw, "/") || !credtype.EndpointAllowed(u.Scheme, u.Hostname()) {
		return fieldErr("issuer", rule)
	}
	return nil
}

// checkFederated is what a credential write with auth_style federated needs besides
// its fields' own rules: config issuer set, and federated_subject, whose default
// (integrations:<mount accessor>:<name>) is stored with the credential so that token
// requests made without a request (refresh ahead, keep-alive) have it.
func (b *integrationsBackend) checkFederated(cfg *engineConfig, name string, values map[string]any) error {
	if style, _ := values["auth_style"].(string); style != credtype.AuthStyleFederated {
		return nil
	}
	if cfg.Issuer == "" {
		return fieldErr("auth_style", `"federated" needs config issuer, the URL providers verify this mount's client assertions at: set it first (vault write `+strings.TrimSuffix(b.mountPath(), "/")+`/config issuer=https://vault.example.com/v1/`+b.mountPath()+`oidc)`)
	}
	if sub, _ := values[credtype.FieldFederatedSubject].(string); sub != "" {
		return nil
	}
	accessor := b.mountAccessor()
	if accessor == "" {
		return fieldErr(credtype.FieldFederatedSubject, "is required: the mount accessor its default is made of is not known")
	}
	values[credtype.FieldFederatedSubject] = "integrations:" + accessor + ":" + name
	return nil
}

func pathIssuer(b *integrationsBackend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      regexp.QuoteMeta(issuerDiscoveryPath) + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "oidc-discovery"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathIssuerDiscovery, DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"}},
			},
			HelpSynopsis: "OpenID Connect discovery of the engine's issuer (unauthenticated).",
			HelpDescription: "The discovery document providers fetch to verify the client assertions of auth_style=federated credentials: issuer (exactly config issuer), jwks_uri, the signing algorithm (RS256). " +
				"Raw JSON; Cache-Control where the mount's allowed_response_headers lets it through. While config issuer is unset it answers as a missing path does." +
				examples("curl $VAULT_ADDR/v1/integrations/oidc/.well-known/openid-configuration"),
		},
		{
			Pattern:      regexp.QuoteMeta(issuerJWKSPath) + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "oidc-keys"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathIssuerKeys, DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"}},
			},
			HelpSynopsis: "The engine's issuer keys as a JSON Web Key Set (unauthenticated).",
			HelpDescription: "The public keys providers verify federated client assertions with: the signing key, the next one (published ahead of signing) and the previous one until what it signed has expired. " +
				"Raw JSON; Cache-Control where the mount's allowed_response_headers lets it through. While config issuer is unset it answers as a missing path does." +
				examples("curl $VAULT_ADDR/v1/integrations/oidc/.well-known/keys"),
		},
		{
			Pattern:      issuerRotatePath + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: writeOperation(b.pathIssuerRotate, "rotate", "oidc-key"),
			},
			HelpSynopsis: "Rotate the issuer key at once (an operator's emergency rotation).",
			HelpDescription: "A new issuer key signs from now on; the previous one stays published for " + issuerKeyKeep.String() + " (the assertion lifetime and a clock-skew allowance), then is destroyed. " +
				"Answers the signing key's kid and the published kids; never a private key." +
				examples("vault write -f integrations/oidc/rotate"),
		},
	}
}

// issuerAnswer is a raw JSON answer with Cache-Control (which Vault passes on where
// the mount's allowed_response_headers lets it).
func issuerAnswer(v any) (*logical.Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return rawKeyAnswer(body, "application/json", issuerCacheControl), nil
}

// issuerConfig is config issuer, or ErrUnsupportedPath (the answer of a missing path)
// while it is unset.
func (b *integrationsBackend) issuerConfig(ctx context.Context, s logical.Storage) (string, error) {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return "", err
	}
	if cfg.Issuer == "" {
		return "", logical.ErrUnsupportedPath
	}
	return cfg.Issuer, nil
}

// pathIssuerDiscovery serves the discovery document: what go-oidc and Entra read.
// Unauthenticated: it reads the decoded config, nothing else.
func (b *integrationsBackend) pathIssuerDiscovery(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	issuer, err := b.issuerConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return issuerAnswer(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/.well-known/keys",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti"},
	})
}

// pathIssuerKeys serves the published keys. Unauthenticated: it reads the decoded
// config and key set (one storage read after a change), never generates a key, and
// answers at most ownedkeys.MaxKeys public keys.
func (b *integrationsBackend) pathIssuerKeys(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if _, err := b.issuerConfig(ctx, req.Storage); err != nil {
		return nil, err
	}
	set, err := b.issuer.read(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return issuerAnswer(set.JWKS(b.now(), nil, issuerKeyAlg))
}

// issuerKeyAlg is the alg an issuer key is published with: the one it signs with.
func issuerKeyAlg(k ownedkeys.Key) string {
	alg, _ := k.JWSAlgorithm("")
	return alg
}

func (b *integrationsBackend) pathIssuerRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(d); resp != nil {
		return resp, nil
	}
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg.Issuer == "" {
		return logical.ErrorResponse(fieldErr("issuer", "is not set in config: there is no issuer key to rotate").Error()), nil
	}
	now := b.now().UTC()
	set, err := b.rotateIssuerKeysNow(ctx, req.Storage, now)
	var full *ownedkeys.FullError
	if errors.As(err, &full) {
		return logical.ErrorResponse("oidc/rotate: " + full.Error()), nil
	}
	if err != nil {
		return nil, err
	}
	b.Logger().Info("issuer key rotated by oidc/rotate")
	return &logical.Response{Data: issuerKeysView(set, now)}, nil
}

// issuerKeysView is the public facts of the set at now: kids and times, no key.
func issuerKeysView(set ownedkeys.Set, now time.Time) map[string]any {
	signing, _ := set.Signing(now)
	keys := make([]map[string]any, 0, set.Len())
	for _, k := range set.Published(now) {
		m := map[string]any{"kid": k.ID, "algorithm": issuerKeyAlg(k), "activates": k.Activates.UTC().Format(time.RFC3339)}
		if !k.Retires.IsZero() {
			m["retires"] = k.Retires.UTC().Format(time.RFC3339)
		}
		keys = append(keys, m)
	}
	return map[string]any{"signing_kid": signing.ID, "keys": keys}
}
