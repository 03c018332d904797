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
	// settings holds, per credential, the UpdatedAt of the settings the Broker's
	// state for it (backoff, last token) was built under.
	settings map[string]time.Time
}

func newTokenCache() *tokenCache {
	return &tokenCache{tokens: make(map[string]*oauth.Token), settings: make(map[string]time.Time)}
}

// brokerFor returns a Broker configured by cfg, for credential c. Its HTTP client
// honours request_timeout and caps responses at 1 MiB. What the Broker remembers
// of c from before c's settings last changed (a backoff after a refusal, the last
// token) is dropped: new settings deserve a new attempt.
func (b *integrationsBackend) brokerFor(cfg *engineConfig, c *credential) *oauth.Broker {
	tc := b.tokens
	tc.brokerMu.Lock()
	defer tc.brokerMu.Unlock()
	want := [2]time.Duration{cfg.RequestTimeout, cfg.DefaultTokenLifetime}
	if tc.broker == nil || tc.brokerFor != want {
		client := oauth.NewClient(oauth.ClientOptions{
			Timeout:          cfg.RequestTimeout,
			MaxResponseBytes: 1 << 20,
			DefaultLifetime:  cfg.DefaultTokenLifetime,
			Now:              b.now,
			Transport:        b.transport,
		})
		tc.broker, tc.brokerFor = oauth.NewBroker(client, b.now), want
		clear(tc.settings)
	}
	if at, seen := tc.settings[c.Name]; !seen || c.UpdatedAt.After(at) {
		if seen {
			tc.broker.Forget(c.Name)
		}
		tc.settings[c.Name] = c.UpdatedAt
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

// forgetToken drops the in-memory token and the Broker's backoff for a credential.
func (b *integrationsBackend) forgetToken(name string) {
	tc := b.tokens
	tc.mu.Lock()
	delete(tc.tokens, name)
	tc.mu.Unlock()
	tc.brokerMu.Lock()
	if tc.broker != nil {
		tc.broker.Forget(name)
	}
	delete(tc.settings, name)
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
		res, err = b.brokerFor(cfg, c).Token(ctx, c.Name, oc, cached, minValid, func(ctx context.Context, tok *oauth.Token) error {
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
