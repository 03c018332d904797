// Client keys generated inside the engine (generate_client_key, issue 27): made by a
// write, kept in the credential's client_keys record field (ownedkeys.Set's storage
// form, seal-wrapped with the credential; never among the values a view is built
// from), signing inside the engine through oauthConfig, shown by their public halves,
// rotated by credentials/<name>/rotate-client-key and by the client-key job
// (client_key_rotation_period), destroyed when retired.

package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

// eventClientKeyRotated names a rotation of generated keys in a credential's log.
const eventClientKeyRotated = "client_key_rotated"

// clientKeyRetry files a credential whose scheduled key work failed (a storage error,
// the key-work gate busy): tried again after this long.
const clientKeyRetry = 5 * time.Minute

// generatedKeys reports whether c has keys the engine generated.
func (c *credential) generatedKeys() bool { return len(c.ClientKeys) > 0 }

// keySet decodes c's generated keys (private halves included: for signing and
// rotating only).
func (c *credential) keySet() (ownedkeys.Set, error) {
	return ownedkeys.Decode(c.ClientKeys)
}

// boolValue is a bool field of c's values.
func boolValue(c *credential, name string) bool {
	v, _ := c.Values.Get(name)
	b, _ := v.(bool)
	return b
}

// prepareOwnedKeyValues adjusts the merged values of a write before validation: a
// pasted client_key sent without generate_client_key replaces the generated keys (and
// their certificate setting); generate_client_key sent without client_key replaces a
// stored pasted key (with its certificate and key id, unless sent); and, like a
// secret, generate_client_key is kept by an update that omits it (the keys it made
// are destroyed only by null, "", or a pasted client_key).
func prepareOwnedKeyValues(values, raw map[string]any, existing *credential) {
	if _, ok := values[credtype.FieldGenerateClientKey]; !ok && existing != nil {
		_, sentKey := raw["client_key"]
		if _, sentGen := raw[credtype.FieldGenerateClientKey]; !sentGen && !sentKey {
			if old := existing.Values.Str(credtype.FieldGenerateClientKey); old != "" {
				values[credtype.FieldGenerateClientKey] = old
			}
		}
	}
	sentKey := !emptyRaw(raw["client_key"])
	sentGen := !emptyRaw(raw[credtype.FieldGenerateClientKey])
	switch {
	case sentKey && !sentGen:
		delete(values, credtype.FieldGenerateClientKey)
		if _, ok := raw[credtype.FieldGenerateClientCertificate]; !ok {
			delete(values, credtype.FieldGenerateClientCertificate)
		}
	case sentGen && !sentKey:
		delete(values, "client_key")
		for _, f := range []string{"client_certificate", "client_key_id"} {
			if _, ok := raw[f]; !ok {
				delete(values, f)
			}
		}
	}
}

func emptyRaw(v any) bool {
	s, isString := v.(string)
	return v == nil || (isString && s == "")
}

// settleGeneratedKeys makes c's generated keys what its values say, from existing's
// (nil: a create): none without generate_client_key (the stored ones are destroyed);
// the same keys for the same algorithm (a re-sent write changes nothing); a rotation
// to a new key (published now, signing after client_key_overlap) for another one; a
// first key, signing at once, when there was none. A certificate follows each key with
// generate_client_certificate.
func (b *integrationsBackend) settleGeneratedKeys(ctx context.Context, c, existing *credential, now time.Time) error {
	alg := c.Values.Str(credtype.FieldGenerateClientKey)
	if alg == "" {
		// Destroyed (or never made): the upstream dates are the values' (buildCredential).
		c.ClientKeys, c.ClientCertificates = nil, nil
		return nil
	}
	var set ownedkeys.Set
	var certs map[string]string
	if existing != nil && existing.generatedKeys() {
		s, err := existing.keySet()
		if err != nil {
			return err
		}
		set, certs = s, existing.ClientCertificates
	}
	cur, has := set.Current()
	switch {
	case !has:
		k, err := ownedkeys.Generate(ctx, alg, now)
		if err != nil {
			return err
		}
		set.Add(k)
	case cur.Algorithm != alg:
		if err := rotateSet(ctx, &set, c, alg, false, now); err != nil {
			return err
		}
	}
	return storeKeySet(c, set, certs, now)
}

// rotateSet adds a new key of alg to set: published now, signing after c's
// client_key_overlap (now with activate), the older keys retired an overlap after it
// signs.
func rotateSet(ctx context.Context, set *ownedkeys.Set, c *credential, alg string, activate bool, now time.Time) error {
	k, err := ownedkeys.Generate(ctx, alg, now)
	if err != nil {
		return err
	}
	overlap := credtype.ClientKeyOverlap(c.Values.Map())
	activates := now.Add(overlap)
	if activate {
		activates = now
	}
	set.Rotate(k, now, activates, overlap)
	return nil
}

// storeKeySet prunes the retired keys of set, gives each kept key its certificate
// (kept from certs, made for a new key) when c asks for them, and stores both in c,
// with the signing certificate's expiry among c's upstream dates.
func storeKeySet(c *credential, set ownedkeys.Set, certs map[string]string, now time.Time) error {
	set.Prune(now)
	var next map[string]string
	if boolValue(c, credtype.FieldGenerateClientCertificate) {
		next = make(map[string]string, set.Len())
		ttl := credtype.ClientCertificateTTL(c.Values.Map())
		for _, k := range set.Keys() {
			if pem, ok := certs[k.ID]; ok {
				next[k.ID] = pem
				continue
			}
			pem, err := k.Certificate(c.Name, now, ttl)
			if err != nil {
				return fmt.Errorf("generating the certificate of a client key: %w", err)
			}
			next[k.ID] = pem
		}
	}
	enc, err := set.Encode()
	if err != nil {
		return fmt.Errorf("encoding the client keys: %w", err)
	}
	c.ClientKeys, c.ClientCertificates = enc, next
	c.State = withGeneratedCertificate(c.State, signingCertNotAfter(c, set, now))
	return nil
}

// signingCertNotAfter is the expiry of the signing key's generated certificate; zero
// without one.
func signingCertNotAfter(c *credential, set ownedkeys.Set, now time.Time) time.Time {
	k, ok := set.Signing(now)
	if !ok {
		return time.Time{}
	}
	pem, ok := c.ClientCertificates[k.ID]
	if !ok {
		return time.Time{}
	}
	leaf, err := credtype.LeafCertificate(pem)
	if err != nil {
		return time.Time{}
	}
	return leaf.NotAfter
}

// withGeneratedCertificate sets st's client_certificate expiry to notAfter (zero:
// none) and keeps its other upstream dates; an unchanged date keeps what was
// announced about it.
func withGeneratedCertificate(st lifecycle.State, notAfter time.Time) lifecycle.State {
	var ups []lifecycle.Upstream
	for _, u := range st.Upstream {
		if u.Field != lifecycle.UpstreamClientCertificate {
			ups = append(ups, u)
		}
	}
	ups = append(ups, lifecycle.Upstream{Field: lifecycle.UpstreamClientCertificate, At: notAfter})
	if notAfter.IsZero() && len(ups) == len(st.Upstream)+1 {
		return st // nothing to drop or add
	}
	return lifecycle.WithUpstream(st, ups)
}

// signingFields are c's values as the oauth package reads them, with a generated
// key's signing half at now as client_key, its thumbprint as client_key_id and its
// certificate as client_certificate: the map exists for oauth.FromFields only and is
// dropped after it.
func signingFields(c *credential, now time.Time) (map[string]any, error) {
	m := c.Values.Map()
	if !c.generatedKeys() {
		return m, nil
	}
	set, err := c.keySet()
	if err != nil {
		return nil, err
	}
	k, ok := set.Signing(now)
	if !ok {
		return m, nil // FromFields refuses the missing client_key
	}
	pem, err := k.SigningPEM()
	if err != nil {
		return nil, err
	}
	m = maps.Clone(m)
	m["client_key"], m["client_key_id"] = pem, k.ID
	if cert, ok := c.ClientCertificates[k.ID]; ok {
		m["client_certificate"] = cert
	}
	return m, nil
}

// jwsAlgorithm is the JWS alg a generated key of c signs and is published with.
func jwsAlgorithm(c *credential, k ownedkeys.Key) string {
	alg, err := k.JWSAlgorithm(c.Values.Str("client_assertion_algorithm"))
	if err != nil {
		alg, _ = k.JWSAlgorithm("")
	}
	return alg
}

// ownedKeysView adds to a management view the public side of c's generated keys:
// client_public_key and client_jwk of the signing key, its generated
// client_certificate and that certificate's not_after, and client_keys, the schedule
// of every published key. Nothing private is read into data: the Set's keys render
// their public halves only.
func ownedKeysView(c *credential, now time.Time, data map[string]any) error {
	if !c.generatedKeys() {
		return nil
	}
	set, err := c.keySet()
	if err != nil {
		return err
	}
	k, ok := set.Signing(now)
	if !ok {
		return nil
	}
	data["client_public_key"] = k.PublicPEM()
	jwk, err := publicJWKMap(k.JWK("", jwsAlgorithm(c, k)))
	if err != nil {
		return err
	}
	data["client_jwk"] = jwk
	if pem, ok := c.ClientCertificates[k.ID]; ok {
		data["client_certificate"] = pem
		if leaf, err := credtype.LeafCertificate(pem); err == nil {
			data["client_certificate_not_after"] = rfc3339(leaf.NotAfter)
		}
	}
	var keys []map[string]any
	for _, p := range set.Published(now) {
		entry := map[string]any{
			"kid": p.ID, "algorithm": p.Algorithm, "created": rfc3339(p.Created),
			"activates": rfc3339(p.Activates), "retires": rfc3339(p.Retires), "signing": p.ID == k.ID,
		}
		if pem, ok := c.ClientCertificates[p.ID]; ok {
			// Each key's certificate, the next key's included: uploaded (Entra) before
			// that key signs.
			entry["certificate"] = pem
		}
		keys = append(keys, entry)
	}
	data["client_keys"] = keys
	return nil
}

// publicJWKMap renders a public JWK as a map (its JSON members).
func publicJWKMap(jwk interface{ MarshalJSON() ([]byte, error) }) (map[string]any, error) {
	b, err := jwk.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// nextClientKeyWork is when the client-key job next has something to do for c: a
// retirement (destroy the key), an activation (the signing certificate's expiry
// changes), or a rotation due by client_key_rotation_period. Zero: nothing. Read from
// the stored schedule, without parsing a private key.
func nextClientKeyWork(c *credential, now time.Time) time.Time {
	if !c.generatedKeys() {
		return time.Time{}
	}
	es, err := ownedkeys.Entries(c.ClientKeys)
	if err != nil || len(es) == 0 {
		return time.Time{}
	}
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, e := range es {
		if e.Activates.After(now) {
			consider(e.Activates)
		}
		consider(e.Retires)
	}
	if p := credtype.ClientKeyRotationPeriod(c.Values.Map()); p > 0 {
		consider(es[len(es)-1].Created.Add(p))
	}
	return next
}

// runClientKeys is the client-key job's run (started by the tick): it settles every
// credential whose key schedule is due.
func (b *integrationsBackend) runClientKeys(ctx context.Context, s logical.Storage) error {
	b.runDue(ctx, b.clientKeyJob, nil, b.activity.clientKeys, 4, 256, clientKeyRetry, func(ctx context.Context, name string) {
		if err := b.settleKeySchedule(ctx, s, name); err != nil && ctx.Err() == nil {
			b.Logger().Warn("client key schedule failed; retried later", "credential", name, "error", err)
		}
	})
	return nil
}

// settleKeySchedule applies c's key schedule at now: retired keys destroyed, a
// rotation made when client_key_rotation_period says one is due, the upstream
// expiry moved to the certificate of the key signing now.
func (b *integrationsBackend) settleKeySchedule(ctx context.Context, s logical.Storage, name string) error {
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, name)
	if err != nil || c == nil || !c.generatedKeys() {
		return err
	}
	now := b.now().UTC()
	set, err := c.keySet()
	if err != nil {
		return err
	}
	n := c.clone()
	rotated := false
	if p := credtype.ClientKeyRotationPeriod(c.Values.Map()); p > 0 {
		if cur, ok := set.Current(); ok && !now.Before(cur.Created.Add(p)) {
			if err := rotateSet(ctx, &set, n, c.Values.Str(credtype.FieldGenerateClientKey), false, now); err != nil {
				return err
			}
			rotated = true
		}
	}
	if err := storeKeySet(n, set, c.ClientCertificates, now); err != nil {
		return err
	}
	if bytes.Equal(n.ClientKeys, c.ClientKeys) && maps.Equal(n.ClientCertificates, c.ClientCertificates) && upstreamEqual(n.State, c.State) {
		return b.afterCredentialChange(ctx, s, name) // nothing changed: refile under the next event
	}
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		return err
	}
	if rotated {
		b.recordEvent(name, eventClientKeyRotated, true, "", "rotated by client_key_rotation_period")
	}
	return b.afterCredentialChange(ctx, s, name)
}

func upstreamEqual(a, b lifecycle.State) bool {
	if len(a.Upstream) != len(b.Upstream) {
		return false
	}
	for i := range a.Upstream {
		if a.Upstream[i].Field != b.Upstream[i].Field || !a.Upstream[i].At.Equal(b.Upstream[i].At) {
			return false
		}
	}
	return true
}

// pathRotateClientKey is credentials/<name>/rotate-client-key.
func pathRotateClientKey(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: "credentials/" + framework.GenericNameRegex("name") + "/rotate-client-key$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credential-client-key",
		},
		Fields: map[string]*framework.FieldSchema{
			"name":                          {Type: framework.TypeString, Description: "Name of the credential.", Required: true},
			"activate":                      {Type: framework.TypeBool, Description: "Sign with the new key at once instead of after client_key_overlap (the previous key stays published for client_key_overlap)."},
			credtype.FieldGenerateClientKey: {Type: framework.TypeString, Description: "Algorithm of the new key (" + fmt.Sprint(credtype.KeyAlgorithms) + "); default: the credential's generate_client_key, which a different value replaces."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: writeOperation(b.pathRotateClientKeyWrite, "rotate", "credential-client-key"),
		},
		HelpSynopsis: "Rotate a credential's generated client key.",
		HelpDescription: "Makes the next key and publishes it at once (jwks/<name>, client_keys); it signs after client_key_overlap, or at once with activate=true. " +
			"The previous key stays published for another client_key_overlap after that, then is destroyed; a generated certificate follows its key. " +
			"Only for credentials with generate_client_key." +
			examples("vault write -f integrations/credentials/okta-api/rotate-client-key", "vault write integrations/credentials/okta-api/rotate-client-key activate=true"),
	}
}

func (b *integrationsBackend) pathRotateClientKeyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentialOr404(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if !c.generatedKeys() {
		return logical.ErrorResponse("credential %q has no generated client key: rotate-client-key rotates keys made by generate_client_key (a pasted client_key is replaced by writing the new one, under client_secret_overlap)", name), nil
	}
	t := c.typeDef()
	alg := c.Values.Str(credtype.FieldGenerateClientKey)
	n := c.clone()
	if raw, ok := d.GetOk(credtype.FieldGenerateClientKey); ok && raw.(string) != "" {
		values := n.Values.Map()
		values[credtype.FieldGenerateClientKey] = raw
		validated, err := t.ValidateContext(ctx, values, b.now().UTC(), &credtype.Previous{Values: &c.Values, Secrets: c.knownSecrets()})
		if err != nil {
			return validationResponse(err)
		}
		n.Values = t.Compact(validated.Values)
		alg = n.Values.Str(credtype.FieldGenerateClientKey)
		if alg != c.Values.Str(credtype.FieldGenerateClientKey) {
			n.Version = c.version() + 1 // a setting changed, as a write would
		}
	}
	now := b.now().UTC()
	set, err := c.keySet()
	if err != nil {
		return nil, err
	}
	if err := rotateSet(ctx, &set, n, alg, d.Get("activate").(bool), now); err != nil {
		return nil, err
	}
	if err := storeKeySet(n, set, c.ClientCertificates, now); err != nil {
		return nil, err
	}
	n.UpdatedAt = now
	if err := b.credentials.put(ctx, req.Storage, held, n); err != nil {
		return nil, err
	}
	cur, _ := set.Current()
	b.recordEvent(name, eventClientKeyRotated, true, requestIntegration(req), "rotated by hand: next key "+cur.ID+" signs from "+rfc3339(cur.Activates))
	if err := b.afterCredentialChange(ctx, req.Storage, name); err != nil {
		return nil, err
	}
	return b.credentialResponse(ctx, req.Storage, n)
}
