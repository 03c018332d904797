// jwks/<name>: the public keys a credential generated (generate_client_key), as a JSON
// Web Key Set, unauthenticated, for a provider that fetches a client's jwks_uri (Okta,
// Keycloak, fosite). Only credentials with publish_jwks=true answer; every other name,
// existing or not, gets exactly the answer of a missing one, so an unauthenticated
// caller learns no names. The body is rendered once per key-set change and served
// from memory: a request costs one read of the jwksPublishedPrefix entry and a cache
// lookup (the credential is cached too); a name that publishes nothing costs that one
// read of an absent entry and nothing else, whether a credential has the name or not.

package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

// jwksPrefix is the path of the published key sets, listed in PathsSpecial's
// Unauthenticated (backend.go) as jwksPrefix + "*".
const jwksPrefix = "jwks/"

// jwksMaxAge bounds the Cache-Control max-age of a key set: a verifier that cached it
// sees a new key at most this late (rotations publish a key client_key_overlap, at
// least a minute, before it signs; fosite and Okta also refetch on an unknown kid).
const jwksMaxAge = 60 * time.Second

// jwksPublishedPrefix stores one empty entry per credential with publish_jwks=true
// (written by credentialStore.put, deleted by it and by remove): jwks/<name> reads it
// and nothing else for a name that publishes nothing, so such a name costs exactly what
// a missing one costs (one read of an absent key), never reads or caches the
// credential, and an unauthenticated caller can neither tell the names apart by timing
// nor evict the credentials being accessed from the cache.
const jwksPublishedPrefix = "jwks-published/"

// publishesJWKS reports whether c publishes its key set at jwks/<name>.
func publishesJWKS(c *credential) bool { return c != nil && boolValue(c, credtype.FieldPublishJWKS) }

// markPublished files name among the credentials jwks/<name> answers for: a read,
// and a write only when the entry is missing (a credential stored before the entry
// existed gets it on its next write).
func markPublished(ctx context.Context, s logical.Storage, name string) error {
	e, err := s.Get(ctx, jwksPublishedPrefix+name)
	if err != nil {
		return fmt.Errorf("reading whether %q publishes its key set: %w", name, err)
	}
	if e != nil {
		return nil
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: jwksPublishedPrefix + name, Value: []byte{}}); err != nil {
		return fmt.Errorf("publishing the key set of %q: %w", name, err)
	}
	return nil
}

// unmarkPublished removes name from the credentials jwks/<name> answers for; with
// knownAbsent (the previous copy is known not to publish) it does nothing, and when it
// is not known whether it was filed, it reads before it deletes, so a write of a
// credential that never published costs no extra storage write.
func unmarkPublished(ctx context.Context, s logical.Storage, name string, knownAbsent bool) error {
	if knownAbsent {
		return nil
	}
	e, err := s.Get(ctx, jwksPublishedPrefix+name)
	if err != nil {
		return fmt.Errorf("reading whether %q publishes its key set: %w", name, err)
	}
	if e == nil {
		return nil
	}
	if err := s.Delete(ctx, jwksPublishedPrefix+name); err != nil {
		return fmt.Errorf("unpublishing the key set of %q: %w", name, err)
	}
	return nil
}

// jwksCacheEntries bounds the rendered key sets kept in memory.
const jwksCacheEntries = 1024

// errNoJWKS is the one answer of every name that publishes no key set: the same
// status, body and headers whether the credential is missing, publishes nothing or the
// name breaks the name rule.
func errNoJWKS() error {
	return logical.CodedError(http.StatusNotFound, "no key set is published under this name")
}

type jwksEntry struct {
	c     *credential // the decoded credential it was rendered from (a write makes another)
	until time.Time   // the next change of the published keys; zero: none scheduled
	body  []byte
}

// jwksCache holds rendered key sets by credential name.
type jwksCache struct {
	mu      sync.Mutex
	entries map[string]jwksEntry
}

func (jc *jwksCache) get(name string, c *credential, now time.Time) ([]byte, bool) {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	e, ok := jc.entries[name]
	if !ok || e.c != c || (!e.until.IsZero() && !now.Before(e.until)) {
		return nil, false
	}
	return e.body, true
}

func (jc *jwksCache) put(name string, e jwksEntry) {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	if jc.entries == nil || len(jc.entries) >= jwksCacheEntries {
		jc.entries = make(map[string]jwksEntry) // bounded: start afresh
	}
	jc.entries[name] = e
}

func pathJWKS(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: jwksPrefix + framework.GenericNameRegex("name") + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "jwks",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of a credential with publish_jwks=true.", Required: true},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathJWKSRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
			},
		},
		HelpSynopsis: "The public keys of a credential's generated client keys, as a JSON Web Key Set (unauthenticated).",
		HelpDescription: "Only for credentials with publish_jwks=true; any other name answers exactly as a missing one. " +
			"Every published key (the signing one, a rotation's next key, the previous key during its overlap) with kid (its RFC 7638 thumbprint), use \"sig\" and alg. " +
			"Cache-Control reaches the caller where the mount's allowed_response_headers lets it through. Give a provider this URL as the client's jwks_uri." +
			examples("curl -s $VAULT_ADDR/v1/integrations/jwks/okta-api"),
	}
}

func (b *integrationsBackend) pathJWKSRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		return nil, errNoJWKS()
	}
	marked, err := req.Storage.Get(ctx, jwksPublishedPrefix+name)
	if err != nil {
		return nil, err
	}
	if marked == nil {
		return nil, errNoJWKS()
	}
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if c == nil || !boolValue(c, credtype.FieldPublishJWKS) {
		return nil, errNoJWKS()
	}
	now := b.now().UTC()
	body, ok := b.jwks.get(name, c, now)
	var until time.Time
	if !ok {
		body, until, err = renderJWKS(c, now)
		if err != nil {
			return nil, err
		}
		b.jwks.put(name, jwksEntry{c: c, until: until, body: body})
	}
	maxAge := jwksMaxAge
	if next := nextClientKeyWork(c, now); !next.IsZero() && next.Sub(now) < maxAge {
		maxAge = max(next.Sub(now).Truncate(time.Second), 0)
	}
	return rawKeyAnswer(body, "application/jwk-set+json", fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds()))), nil
}

// rawKeyAnswer is a 200 carrying a published key document (a credential's JWKS, the
// issuer's discovery document and keys) as body, unwrapped by Vault, with its media
// type and the Cache-Control that tells verifiers how long they may keep it.
func rawKeyAnswer(body []byte, contentType, cacheControl string) *logical.Response {
	return &logical.Response{
		Data: map[string]any{
			logical.HTTPStatusCode:  http.StatusOK,
			logical.HTTPContentType: contentType,
			logical.HTTPRawBody:     body,
		},
		Headers: map[string][]string{"Cache-Control": {cacheControl}},
	}
}

// renderJWKS is c's published keys at now as a JWKS body, and when they next change.
func renderJWKS(c *credential, now time.Time) ([]byte, time.Time, error) {
	var set ownedkeys.Set
	if c.generatedKeys() {
		s, err := c.keySet()
		if err != nil {
			return nil, time.Time{}, err
		}
		set = s
	}
	jwks := set.JWKS(now, nil, func(k ownedkeys.Key) string { return jwsAlgorithm(c, k) })
	body, err := json.Marshal(jwks)
	if err != nil {
		return nil, time.Time{}, err
	}
	return body, set.NextEvent(now), nil
}
