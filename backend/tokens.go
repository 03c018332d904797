package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// maxMinimumSeconds bounds what a caller may ask of a token's remaining life.
const maxMinimumSeconds = 24 * 60 * 60

// tokenAccess hands out a valid access token for an OAuth credential, minting one when
// the cached token will not last minimum_seconds (default expiry_buffer).
//
// A provider whose tokens live no longer than that demand (lifetime = expiry − issue
// time of the newest token) cannot satisfy it however often it is asked, so the demand
// is lowered for such a token (shortLivedDemand): the token minted is served, with a
// warning saying how long it lasts, and it is served again (with the warning) until
// it has less than expiry_buffer left — or, when expiry_buffer itself is not shorter
// than the token's lifetime, less than half its lifetime — and only then is another
// minted.
//
// With refresh_ahead, a read that finds the cached token in its refresh window
// (refreshAt, before that due point) also starts its refresh in the background
// (refreshAhead), and is served the current token without waiting.
func (b *integrationsBackend) tokenAccess(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, minimumSeconds int) (map[string]any, []string, error) {
	if minimumSeconds < 0 || minimumSeconds > maxMinimumSeconds {
		return nil, nil, logical.CodedError(http.StatusBadRequest, fieldErr("minimum_seconds", fmt.Sprintf("must be between 0 and %d", maxMinimumSeconds)).Error())
	}
	minValid := cfg.ExpiryBuffer
	if m := time.Duration(minimumSeconds) * time.Second; m > minValid {
		minValid = m
	}
	cached, err := b.tokens.cached(ctx, s, c.Name)
	if err != nil {
		return nil, nil, err
	}
	var res oauth.Result
	var aheadWarning string
	if at := b.now(); servable(cached, c, cfg, at, minValid) != nil {
		res.Token = &cached.Token // the hot path: no lock, no allocation beyond the response
		if cfg.RefreshAhead && !at.Before(refreshAt(res.Token, shortLivedDemand(minValid, cfg.ExpiryBuffer, res.Token))) {
			// In the refresh window: one read starts the refresh in the background;
			// this one and every other is served the current token meanwhile.
			aheadWarning = b.refreshAhead(cfg, cached, c.Name, minValid, at)
		}
	} else {
		res, err = b.mintToken(ctx, s, cfg, c.Name, minValid, nil)
		if errors.Is(err, errCredentialGone) {
			return nil, nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("credential %q does not exist", c.Name))
		}
		if isDiscarded(err) {
			return nil, nil, logical.CodedError(http.StatusConflict, fmt.Sprintf("credential %q changed while its token was requested; read it again", c.Name))
		}
		if err != nil {
			return nil, nil, b.tokenFailure(ctx, s, c, err)
		}
	}
	var warnings []string
	b.activity.setTransient(c.Name, res.Warning != "" || aheadWarning != "")
	if res.Warning != "" {
		warnings = append(warnings, res.Warning)
		b.recordEvent(c.Name, usage.EventRefreshFailed, false, "", res.Warning)
	}
	if aheadWarning != "" {
		// Recorded once, by the background refresh that failed.
		warnings = append(warnings, aheadWarning)
	}
	tok := res.Token
	now := b.now()
	if life, left := tok.Expiry.Sub(tok.IssuedAt), tok.Expiry.Sub(now); life <= minValid && left < minValid {
		warnings = append(warnings, fmt.Sprintf(
			"the provider's tokens last %s, not longer than the %s asked for (minimum_seconds or the engine's expiry_buffer); this one is valid for %s more",
			life.Round(time.Second), minValid, left.Round(time.Second)))
	}
	tokenType := tok.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	return map[string]any{
		"access_token":  tok.AccessToken,
		"token_type":    tokenType,
		"expires_at":    rfc3339(tok.Expiry),
		"expires_in":    int64(tok.Expiry.Sub(now) / time.Second),
		"scope":         tok.Scope,
		"authorization": tokenType + " " + tok.AccessToken,
	}, warnings, nil
}

// errCredentialGone is what mintToken returns when the credential no longer exists.
var errCredentialGone = errors.New("the credential does not exist")

// errAheadStale is what mintToken returns for a background refresh whose token is no
// longer the credential's current one: someone else refreshed it, or the credential
// changed. There is nothing left for it to do.
var errAheadStale = errors.New("the token to refresh ahead is no longer current")

// mintToken obtains a token for the credential name through the Broker's single
// flight: the slow path of a read (ahead nil: valid for minValid, or served degraded
// as the Broker decides), or a background refresh of the token ahead (refresh
// ahead: valid beyond ahead's refresh window, so the Broker requests one even though
// ahead is still servable). It reads the credential again together with the
// generation of its token state, so the token it obtains is stored only if neither
// changed meanwhile (tokenStore.put).
func (b *integrationsBackend) mintToken(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, minValid time.Duration, ahead *storedToken) (oauth.Result, error) {
	ts := b.tokens
	t, c, err := ts.ticket(ctx, s, name)
	if err != nil {
		return oauth.Result{}, err
	}
	if c == nil {
		return oauth.Result{}, errCredentialGone
	}
	cached, err := ts.cached(ctx, s, c.Name)
	if err != nil {
		return oauth.Result{}, err
	}
	var src *oauth.Token
	if cached != nil && (cached.Destination == "" || cached.Destination == t.dest) {
		// A token learnt under another destination is never used, not even its
		// refresh token: a repoint forgets it.
		if tok := servable(cached, c, cfg, b.now(), minValid); tok != nil {
			src = tok
		} else {
			old := cached.Token
			if cached.IssuedAt.Before(c.UpdatedAt) {
				// Minted before the settings last changed (new secret, scopes):
				// not served; its refresh token, if any, is still used.
				old.AccessToken = ""
			}
			src = &old
		}
	}
	demand := shortLivedDemand(minValid, cfg.ExpiryBuffer, src)
	if ahead != nil {
		if cached != ahead || src == nil {
			return oauth.Result{}, errAheadStale
		}
		demand += refreshLead(src, demand)
	}
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return oauth.Result{}, fmt.Errorf("building the OAuth configuration of %q: %w", c.Name, err)
	}
	oc.RedirectURL = b.redirectURL(cfg, c)
	return ts.brokerOf().Token(ctx, c.Name, oc, src, demand, func(ctx context.Context, tok *oauth.Token) error {
		if err := ts.put(ctx, s, t, tok, false); err != nil {
			return err
		}
		// Recorded here, once per token: every reader that joined the request
		// gets Minted too.
		b.recordEvent(c.Name, usage.EventTokenMinted, true, "", "expires "+rfc3339(tok.Expiry))
		return nil
	})
}

// servable returns the cached token when it may be handed out as it is: minted under
// the credential's current settings (not before its last update, and not on a
// default_token_lifetime no longer in force) and valid for the demand
// (shortLivedDemand). Otherwise nil.
func servable(cached *storedToken, c *credential, cfg *engineConfig, now time.Time, minValid time.Duration) *oauth.Token {
	if cached == nil || cached.IssuedAt.Before(c.UpdatedAt) {
		return nil
	}
	tok := &cached.Token
	if !tok.Fresh(now, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok), cfg.DefaultTokenLifetime) {
		return nil
	}
	return tok
}

// shortLivedDemand is how long tok must still be valid to be served, given the demand
// minValid (minimum_seconds or expiry_buffer) and the engine's expiry_buffer. When
// tok's whole lifetime is not longer than minValid, no token from this provider could
// meet the demand, and minting again would only repeat the request on every read: the
// demand becomes expiry_buffer, or half the lifetime when expiry_buffer is not shorter
// than the lifetime either.
func shortLivedDemand(minValid, buffer time.Duration, tok *oauth.Token) time.Duration {
	if tok == nil || tok.AccessToken == "" {
		return minValid
	}
	life := tok.Expiry.Sub(tok.IssuedAt)
	if life <= 0 || minValid < life {
		return minValid
	}
	if buffer < life {
		return buffer
	}
	return life / 2
}

// tokenFailure records a failed mint and turns it into the caller's error: a
// permanent refusal marks the credential needs_reauth (403), anything else is a 502
// naming the provider's status, never its body.
func (b *integrationsBackend) tokenFailure(ctx context.Context, s logical.Storage, c *credential, err error) error {
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		b.recordEvent(c.Name, usage.EventRefreshFailed, false, "", "token request did not complete")
		return err
	}
	b.recordEvent(c.Name, usage.EventRefreshFailed, false, "", oe.Error())
	if !oe.Permanent() {
		b.activity.setTransient(c.Name, true)
		return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("credential %q: the provider could not issue a token: %s", c.Name, oe.Error()))
	}
	if err := b.markNeedsReauth(ctx, s, c.Name, lifecycle.Reason(oe.Code)); err != nil {
		b.Logger().Error("recording needs_reauth failed", "credential", c.Name, "error", err)
	}
	return logical.CodedError(http.StatusForbidden, fmt.Sprintf(
		"credential %q needs re-authorization: the provider refused the grant (%s); re-authorize it with credentials/%s/authorize or update its settings",
		c.Name, oe.Error(), c.Name))
}

// markNeedsReauth stores the needs_reauth state after a permanent provider refusal.
func (b *integrationsBackend) markNeedsReauth(ctx context.Context, s logical.Storage, name string, reason lifecycle.Reason) error {
	unlock := b.credentials.lock(name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, name)
	if err != nil || c == nil {
		return err
	}
	n := c.clone()
	n.State = lifecycle.NeedsReauth(n.State, reason, b.now().UTC())
	if n.State.Status == c.State.Status && n.State.Reason == c.State.Reason {
		return nil
	}
	if err := b.credentials.put(ctx, s, n); err != nil {
		return err
	}
	b.notifyState(ctx, n, "needs_reauth", "The provider refused the grant ("+string(reason)+"); re-authorize the credential.")
	return b.afterCredentialChange(ctx, s, name)
}
