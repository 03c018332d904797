package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// tokenPrefix is where minted OAuth tokens are cached in barrier storage, so a
// restart or a leader change does not mint again.
const tokenPrefix = "tokens/"

// maxMinimumSeconds bounds what a caller may ask of a token's remaining life.
const maxMinimumSeconds = 24 * 60 * 60

// tokenCache holds the newest token of each OAuth credential and the Broker that mints
// them. The Broker is rebuilt when the settings it was made with change.
type tokenCache struct {
	mu     sync.RWMutex
	tokens map[string]*oauth.Token

	brokerMu  sync.Mutex
	broker    *oauth.Broker
	brokerFor [2]time.Duration // request timeout, default lifetime
}

func newTokenCache() *tokenCache {
	return &tokenCache{tokens: make(map[string]*oauth.Token)}
}

// newOAuthClient is the bounded client every provider call goes through: cfg's
// request_timeout, a 1 MiB response cap, cfg's default token lifetime.
func (b *integrationsBackend) newOAuthClient(cfg *engineConfig) *oauth.Client {
	return oauth.NewClient(oauth.ClientOptions{
		Timeout:          cfg.RequestTimeout,
		MaxResponseBytes: 1 << 20,
		DefaultLifetime:  cfg.DefaultTokenLifetime,
		Now:              b.now,
		Transport:        b.transport,
	})
}

// brokerFor returns a Broker configured by cfg, rebuilt when those settings change.
// What it remembers of one credential (backoff, last token) is dropped by forgetToken
// whenever the credential is updated, re-authorized or deleted.
func (b *integrationsBackend) brokerFor(cfg *engineConfig) *oauth.Broker {
	tc := b.tokens
	tc.brokerMu.Lock()
	defer tc.brokerMu.Unlock()
	want := [2]time.Duration{cfg.RequestTimeout, cfg.DefaultTokenLifetime}
	if tc.broker == nil || tc.brokerFor != want {
		tc.broker, tc.brokerFor = oauth.NewBroker(b.newOAuthClient(cfg), b.now), want
	}
	return tc.broker
}

// cachedToken returns the stored token of a credential, from memory when it can.
func (b *integrationsBackend) cachedToken(ctx context.Context, s logical.Storage, name string) (*oauth.Token, error) {
	tc := b.tokens
	tc.mu.RLock()
	tok, ok := tc.tokens[name]
	tc.mu.RUnlock()
	if ok {
		return tok, nil
	}
	entry, err := s.Get(ctx, tokenPrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading token of %q: %w", name, err)
	}
	if entry != nil {
		tok = new(oauth.Token)
		if err := entry.DecodeJSON(tok); err != nil {
			return nil, fmt.Errorf("decoding token of %q: %w", name, err)
		}
	}
	tc.mu.Lock()
	if cur, raced := tc.tokens[name]; raced {
		tok = cur
	} else {
		tc.tokens[name] = tok // nil too: remembers "none stored" until a mint
	}
	tc.mu.Unlock()
	return tok, nil
}

// storeToken persists a token (and so a rotated refresh token) before anyone gets it.
func (b *integrationsBackend) storeToken(ctx context.Context, s logical.Storage, name string, tok *oauth.Token) error {
	entry, err := logical.StorageEntryJSON(tokenPrefix+name, tok)
	if err != nil {
		return fmt.Errorf("encoding token of %q: %w", name, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing token of %q: %w", name, err)
	}
	b.tokens.mu.Lock()
	b.tokens.tokens[name] = tok
	b.tokens.mu.Unlock()
	return nil
}

// dropToken forgets the decoded copy of a stored token, e.g. when another node wrote it.
func (tc *tokenCache) dropToken(name string) {
	tc.mu.Lock()
	delete(tc.tokens, name)
	tc.mu.Unlock()
}

// forgetToken drops the in-memory token and the Broker's backoff and last token for a
// credential: new settings deserve a new attempt.
func (b *integrationsBackend) forgetToken(name string) {
	tc := b.tokens
	tc.dropToken(name)
	tc.brokerMu.Lock()
	if tc.broker != nil {
		tc.broker.Forget(name)
	}
	tc.brokerMu.Unlock()
}

// tokenAccess hands out a valid access token for an OAuth credential, minting one when
// the cached token will not last minimum_seconds (default expiry_buffer).
func (b *integrationsBackend) tokenAccess(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, minimumSeconds int) (map[string]any, []string, error) {
	if minimumSeconds < 0 || minimumSeconds > maxMinimumSeconds {
		return nil, nil, logical.CodedError(http.StatusBadRequest, fieldErr("minimum_seconds", fmt.Sprintf("must be between 0 and %d", maxMinimumSeconds)).Error())
	}
	minValid := cfg.ExpiryBuffer
	if m := time.Duration(minimumSeconds) * time.Second; m > minValid {
		minValid = m
	}
	cached, err := b.cachedToken(ctx, s, c.Name)
	if err != nil {
		return nil, nil, err
	}
	// A token minted before the credential's settings last changed (new secret,
	// scopes, endpoint) is not served; its refresh token, if any, is still used.
	current := cached == nil || !cached.IssuedAt.Before(c.UpdatedAt)
	var res oauth.Result
	if current && cached.ValidFor(b.now(), minValid) {
		res.Token = cached // the hot path: no lock, no allocation beyond the response
	} else {
		if !current {
			old := *cached
			old.AccessToken = ""
			cached = &old
		}
		oc, err := oauth.FromFields(c.Type, c.Values)
		if err != nil {
			return nil, nil, fmt.Errorf("building the OAuth configuration of %q: %w", c.Name, err)
		}
		oc.RedirectURL = b.redirectURL(cfg, c)
		res, err = b.brokerFor(cfg).Token(ctx, c.Name, oc, cached, minValid, func(ctx context.Context, tok *oauth.Token) error {
			if err := b.storeToken(ctx, s, c.Name, tok); err != nil {
				return err
			}
			// Recorded here, once per token: every reader that joined the request
			// gets Minted too.
			b.recordEvent(c.Name, usage.EventTokenMinted, true, "", "expires "+rfc3339(tok.Expiry))
			return nil
		})
		if err != nil {
			return nil, nil, b.tokenFailure(ctx, s, c, err)
		}
	}
	var warnings []string
	b.activity.setTransient(c.Name, res.Warning != "")
	if res.Warning != "" {
		warnings = append(warnings, res.Warning)
		b.recordEvent(c.Name, usage.EventRefreshFailed, false, "", res.Warning)
	}
	tok := res.Token
	tokenType := tok.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	return map[string]any{
		"access_token":  tok.AccessToken,
		"token_type":    tokenType,
		"expires_at":    rfc3339(tok.Expiry),
		"expires_in":    int64(tok.Expiry.Sub(b.now()) / time.Second),
		"scope":         tok.Scope,
		"authorization": tokenType + " " + tok.AccessToken,
	}, warnings, nil
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
