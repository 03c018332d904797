// Client-secret rotation without an outage (client_secret_overlap): a write that
// replaces a credential's client secret (or pasted client key) without a repoint or a
// new client_id keeps the previous one, in the credential's seal-wrapped record, for
// the overlap. While it is kept, a token request the provider refuses with
// invalid_client under the new one is sent once more with the previous one
// (oauth/overlap.go); a token obtained so is served, and the credential turns yellow
// (new_client_secret_refused: an alert, a Vault event, a notification), never
// needs_reauth. The first token the new one obtains, or the end of the overlap (the
// sweep, filed in activity.overlaps), forgets the previous one.

package backend

import (
	"context"
	"maps"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// eventNewSecretRefused is the notification (and Vault event integrations/credential-…)
// of a new client secret refused while the previous one served.
const eventNewSecretRefused = "new-client-secret-refused" //nolint:gosec // G101: an event name, not a credential

// keepPreviousClient sets what c (about to be written over existing, nil for a
// create; c's values are the new ones, validated) keeps of its previous client: a
// rotated client_secret or client_key starts an overlap that keeps the client
// authentication as it was; a write that rotates nothing keeps what is kept while it
// lasts; a create, a repoint, a new client_id or an overlap of 0 keeps nothing.
func keepPreviousClient(t *credtype.Type, c, existing *credential, now time.Time) {
	c.PreviousClient, c.State.SecretOverlap = nil, nil
	if t.OAuth == nil || existing == nil || forgetsGrant(t, existing, &c.Values) {
		return
	}
	overlap := credtype.SecretOverlap(&c.Values)
	if overlap <= 0 || refusedClientState(existing.State) {
		return
	}
	for _, f := range credtype.RotatedClientAuth {
		was, is := existing.Values.Str(f), c.Values.Str(f)
		if was == "" || is == "" || was == is {
			continue
		}
		prev := make(map[string]string, len(credtype.ClientAuthMaterial))
		for _, m := range credtype.ClientAuthMaterial {
			if v := existing.Values.Str(m); v != "" {
				prev[m] = v
			}
		}
		c.PreviousClient = prev
		c.State.SecretOverlap = &lifecycle.SecretOverlap{Until: now.Add(overlap)}
		return
	}
	if !existing.State.Kept(now) || existing.PreviousClient == nil || sameClient(existing.PreviousClient, &c.Values) {
		return
	}
	// Nothing rotated: the overlap goes on, ended sooner when the overlap set now is
	// shorter than what is left of it.
	o := *existing.State.SecretOverlap
	if end := now.Add(overlap); end.Before(o.Until) {
		o.Until = end
	}
	c.PreviousClient, c.State.SecretOverlap = maps.Clone(existing.PreviousClient), &o
}

// refusedClientState reports whether st says the provider refused the client itself
// (needs_reauth for invalid_client, or its mutual-TLS counterpart): a client the
// provider already refused is not worth keeping.
func refusedClientState(st lifecycle.State) bool {
	return st.Status == lifecycle.StatusNeedsReauth &&
		(st.Reason == "invalid_client" || st.Reason == oauth.CodeTLSClientRefused)
}

// sameClient reports whether prev is the client authentication v has now (a write
// that put the previous secret back): nothing is left to fall back to.
func sameClient(prev map[string]string, v *credtype.Values) bool {
	for _, f := range credtype.RotatedClientAuth {
		if prev[f] != v.Str(f) {
			return false
		}
	}
	return true
}

// withPreviousClient gives oc the previous client of c while c keeps one at now.
func withPreviousClient(oc *oauth.Config, c *credential, now time.Time) {
	if c.PreviousClient == nil || !c.State.Kept(now) {
		return
	}
	oc.Previous = &oauth.Config{
		ClientSecret:             c.PreviousClient["client_secret"],
		ClientKey:                c.PreviousClient["client_key"],
		ClientKeyID:              c.PreviousClient["client_key_id"],
		ClientCertificate:        c.PreviousClient["client_certificate"],
		ClientAssertionAlgorithm: c.PreviousClient["client_assertion_algorithm"],
	}
}

// settleOverlap applies to n (a clone about to be stored) what a token obtained at
// now says about its previous client: obtained through it (byPrevious), the new one
// was refused; obtained without it, the new one works and the previous one is
// forgotten. It reports whether n changed, and whether the refusal is news.
func settleOverlap(n *credential, byPrevious bool, now time.Time) (changed, refused bool) {
	if byPrevious {
		st, ok := lifecycle.SecretRefused(n.State, now)
		n.State = st
		return ok, ok
	}
	if n.PreviousClient == nil && n.State.SecretOverlap == nil {
		return false, false
	}
	n.PreviousClient, n.State.SecretOverlap = nil, nil
	return true, false
}

// overlapAfterMint records what the token a mint obtained says about c's previous
// client (settleOverlap), under c's lock and only while the token state is the one the
// request t started from. Most mints have nothing to record and take no lock.
func (b *integrationsBackend) overlapAfterMint(ctx context.Context, s logical.Storage, t tokenTicket, c *credential, tok *oauth.Token) {
	if !tok.ByPrevious && c.PreviousClient == nil && c.State.SecretOverlap == nil {
		return
	}
	if tok.ByPrevious && c.State.SecretOverlap != nil && !c.State.SecretOverlap.RefusedAt.IsZero() {
		return // said already
	}
	held, unlock := b.credentials.lock(t.name)
	defer unlock()
	if b.tokens.generation(t.name) != t.gen {
		return
	}
	cur, err := b.credentials.get(ctx, s, t.name)
	if err != nil || cur == nil {
		return
	}
	n := cur.clone()
	changed, refused := settleOverlap(n, tok.ByPrevious, b.now().UTC())
	if !changed {
		return
	}
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		b.Logger().Warn("recording what a token says of the previous client secret failed", "credential", t.name, "error", err)
		return
	}
	b.announceOverlap(ctx, n, refused)
	if err := b.afterCredentialChange(ctx, s, t.name); err != nil {
		b.Logger().Warn("re-indexing after a token request failed", "credential", t.name, "error", err)
	}
}

// announceOverlap tells of a stored settleOverlap: a refused new client as a
// notification (log, Vault event, outbox) and a usage event; a forgotten previous one
// in the log and the usage events.
func (b *integrationsBackend) announceOverlap(ctx context.Context, n *credential, refused bool) {
	if refused {
		msg := "The provider refused the new client secret or key; the previous one obtained the token and is kept until " +
			rfc3339(n.State.SecretOverlap.Until) + ". Make sure the new one is right (at Microsoft Entra: replicated)."
		b.notifyState(ctx, n, eventNewSecretRefused, msg)
		b.recordEvent(n.Name, usage.EventWarning, false, "", lifecycle.AlertNewSecretRefused)
		return
	}
	b.Logger().Info("the new client secret obtained a token: the previous one is forgotten", "credential", n.Name)
	b.recordEvent(n.Name, usage.EventUpdated, true, "", "previous client secret forgotten: the new one obtained a token")
}

// overlapUntil is when the sweep forgets c's previous client: zero when none is kept.
func overlapUntil(st lifecycle.State) time.Time {
	if st.SecretOverlap == nil {
		return time.Time{}
	}
	return st.SecretOverlap.Until
}

// sweepOverlaps forgets the previous clients whose overlap ended by now, each judged
// again under its credential's lock.
func (b *integrationsBackend) sweepOverlaps(ctx context.Context, s logical.Storage, cfg *engineConfig, now time.Time) error {
	for _, name := range b.activity.overlaps.Due(now, sweepBatch) {
		if err := b.forgetEndedOverlap(ctx, s, cfg, name, now); err != nil {
			return err
		}
	}
	return nil
}

func (b *integrationsBackend) forgetEndedOverlap(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, now time.Time) error {
	held, unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, name)
	if err != nil {
		return err
	}
	if c == nil {
		b.activity.unindex(name)
		return nil
	}
	if c.State.SecretOverlap == nil || c.State.Kept(now) {
		b.reindex(cfg, c, c.State)
		return nil
	}
	n := c.clone()
	n.PreviousClient, n.State.SecretOverlap = nil, nil
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		return err
	}
	b.Logger().Info("client_secret_overlap ended: the previous client secret is forgotten", "credential", name)
	b.reindex(cfg, n, n.State)
	return nil
}
