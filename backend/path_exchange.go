// The exchange/<name> path: RFC 8693 token exchange of an OAuth credential's current
// access token for one with another audience, resource or scope, allowed by the
// credential's exchange_audiences. Read and update are one handler (Vault Agent and
// Vault Secrets Operator send parameters as a write). The cache, the single flight and
// the exchange itself are exchange.go.

package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// Bounds of one exchange request.
const (
	maxExchangeTargets = 16      // audience values, and resource values
	maxExchangeScopes  = 64      // scope tokens
	maxExchangeScope   = 8 << 10 // bytes of the scope parameter
)

func pathExchange(b *integrationsBackend) *framework.Path {
	// One handler. Like every write, the update is forwarded to the node that may write
	// (TestEveryWriteIsForwarded); a read is served where it arrives, as access/ is,
	// and a subject token that must be minted sends it to the active node (ErrReadOnly).
	read := &framework.PathOperation{Callback: b.pathExchangeRead}
	update := &framework.PathOperation{Callback: b.pathExchangeRead, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true}
	return &framework.Path{
		Pattern: "exchange/" + nameSegment + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "exchanged-token",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the credential.", Required: true},
			"audience": {
				Type:        framework.TypeCommaStringSlice,
				Description: fmt.Sprintf("RFC 8693 audience values (at most %d, each %s); every one must be in the credential's exchange_audiences.", maxExchangeTargets, credtype.ExchangeTargetRule),
			},
			"resource": {
				Type:        framework.TypeCommaStringSlice,
				Description: fmt.Sprintf("RFC 8693 resource values: absolute URIs without a fragment (at most %d, each at most %d bytes); every one must be in the credential's exchange_audiences.", maxExchangeTargets, credtype.MaxExchangeTarget),
			},
			"scope": {
				Type:        framework.TypeString,
				Description: fmt.Sprintf("Space-separated scopes for the exchanged token (RFC 6749 scope tokens, at most %d, %d bytes).", maxExchangeScopes, maxExchangeScope),
			},
			"requested_token_type": {
				Type:        framework.TypeString,
				Description: "The RFC 8693 token type asked for (default: the provider's, an access token): one of " + fmt.Sprint(oauth.ExchangeTokenTypes) + ".",
			},
			"integration": {
				Type:        framework.TypeString,
				Description: "Name of the calling integration, for the usage log, as on access/.",
			},
			"minimum_seconds": {
				Type:        framework.TypeInt,
				Description: "The token handed out stays valid at least this long (default: the engine's expiry_buffer), as on access/.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   read,
			logical.UpdateOperation: update,
		},
		HelpSynopsis: "RFC 8693 token exchange of an OAuth credential's access token for another audience, resource or scope.",
		HelpDescription: `The credential's current access token (minted as access/ would) is exchanged at its
token endpoint for a token with the audience, resource, scope and requested_token_type
given. Every audience and resource value must be in the credential's exchange_audiences
(empty: exchange is off). The answer is shaped like access/: access_token,
issued_token_type, token_type, expires_at, scope, ttl, rotation_period,
last_vault_rotation. Exchanged tokens are cached in memory per credential and request
(at most 64 requests per credential) and refreshed ahead as access/ tokens are; a
restart exchanges again. A refusal by the provider of the target or scope is a 400
naming the parameter; it never marks the credential needs_reauth. Counts as usage.
A policy may grant this path without access/ and the reverse.` +
			examples("vault read integrations/exchange/crm-api audience=https://orders.example.com",
				"vault write integrations/exchange/crm-api resource=https://api.example.com/ scope=\"orders.read\""),
	}
}

// pathExchangeRead is exchange/<name>, read or update: the credential, who asks, the
// request (checked, and against the allow-list), the lifecycle state, then the
// exchanged token (exchangeAccess) and the usage record.
func (b *integrationsBackend) pathExchangeRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	c, integration, resp, err := b.reader(ctx, req, d)
	if resp != nil || err != nil {
		return resp, err
	}
	name := c.Name
	t := c.typeDef()
	if t.Kind != credtype.KindOAuth2 {
		return nil, logical.CodedError(http.StatusBadRequest, fmt.Sprintf("credential %q is of type %s: token exchange is for OAuth credentials", name, c.Type))
	}
	now := b.now().UTC()
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	r, err := exchangeRequestFrom(d)
	if err == nil {
		err = exchangeAllowed(b, c, r)
	}
	if err == nil {
		if err := b.refuseUnusable(cfg, c, integration, now); err != nil {
			return nil, err
		}
	}
	var data map[string]any
	var warnings []string
	if err == nil {
		data, warnings, err = b.exchangeAccess(ctx, req.Storage, cfg, c, r, d.Get("minimum_seconds").(int), now)
	}
	if errors.Is(err, logical.ErrReadOnly) {
		return nil, err // forwarded to the active node: nothing failed
	}
	if err != nil {
		b.activity.recorder.Access(name, now, integration, false, err.Error())
		b.metrics.accessRead(t.Kind, name, accessResultError, cfg.MetricsCredentialLabel)
		return nil, err
	}
	b.activity.recorder.Access(name, now, integration, true, "")
	b.metrics.accessRead(t.Kind, name, accessResultOK, cfg.MetricsCredentialLabel)
	return &logical.Response{Data: data, Warnings: warnings}, nil
}

// badParam is the 400 of a parameter that breaks its rule.
func badParam(field, rule string) error {
	return logical.CodedError(http.StatusBadRequest, fieldErr(field, rule).Error())
}

// exchangeRequestFrom checks the request's parameters, each against its rule.
func exchangeRequestFrom(d *framework.FieldData) (exchangeRequest, error) {
	var r exchangeRequest
	targets := func(field string, resource bool) ([]string, error) {
		raw, ok := d.GetOk(field)
		if !ok {
			return nil, nil
		}
		l := slices.Clone(raw.([]string))
		if len(l) > maxExchangeTargets {
			return nil, badParam(field, fmt.Sprintf("at most %d values", maxExchangeTargets))
		}
		for _, v := range l {
			if err := credtype.CheckExchangeTarget(v); err != nil {
				return nil, badParam(field, "each value must be "+credtype.ExchangeTargetRule)
			}
			if resource {
				if u, err := url.Parse(v); err != nil || !u.IsAbs() || strings.Contains(v, "#") {
					return nil, badParam(field, "each value must be an absolute URI without a fragment (RFC 8693 section 2.1)")
				}
			}
		}
		return sortedUnique(l), nil
	}
	var err error
	if r.audiences, err = targets("audience", false); err != nil {
		return r, err
	}
	if r.resources, err = targets("resource", true); err != nil {
		return r, err
	}
	if scope := d.Get("scope").(string); scope != "" {
		if len(scope) > maxExchangeScope {
			return r, badParam("scope", fmt.Sprintf("at most %d bytes", maxExchangeScope))
		}
		l, serr := credtype.ScopeTokens(scope)
		if serr != nil || len(l) > maxExchangeScopes {
			return r, badParam("scope", fmt.Sprintf("must be at most %d space-separated scope tokens (RFC 6749: printable ASCII except space, '\"' and '\\')", maxExchangeScopes))
		}
		r.scopes = sortedUnique(l)
	}
	if tt := d.Get("requested_token_type").(string); tt != "" {
		if !slices.Contains(oauth.ExchangeTokenTypes, tt) {
			return r, badParam("requested_token_type", fmt.Sprintf("must be one of %v", oauth.ExchangeTokenTypes))
		}
		r.tokenType = tt
	}
	return r, nil
}

// exchangeAllowed checks r against c's exchange_audiences: exchange on, and every
// audience and resource value in the list.
func exchangeAllowed(b *integrationsBackend, c *credential, r exchangeRequest) error {
	allowed := credtype.ExchangeAudiences(&c.Values)
	if len(allowed) == 0 {
		return logical.CodedError(http.StatusForbidden, fmt.Sprintf(
			"token exchange is off for credential %q: its exchange_audiences is empty; allow the audiences with: vault patch %scredentials/%s exchange_audiences=…",
			c.Name, b.mountPath(), c.Name))
	}
	for _, p := range []struct {
		field  string
		values []string
	}{{"audience", r.audiences}, {"resource", r.resources}} {
		for _, v := range p.values {
			if !slices.Contains(allowed, v) {
				return badParam(p.field, fmt.Sprintf("%q is not in the exchange_audiences of credential %q", v, c.Name))
			}
		}
	}
	return nil
}

// exchangeAccess hands out the exchanged token of c's request r valid for
// minimum_seconds (default expiry_buffer), by the access/ rules: a cached one while
// servable (with refresh ahead started in its window), else one exchange through the
// single flight.
func (b *integrationsBackend) exchangeAccess(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, r exchangeRequest, minimumSeconds int, now time.Time) (map[string]any, []string, error) {
	if minimumSeconds < 0 || minimumSeconds > maxMinimumSeconds {
		return nil, nil, badParam("minimum_seconds", fmt.Sprintf("must be between 0 and %d", maxMinimumSeconds))
	}
	minValid := max(cfg.ExpiryBuffer, time.Duration(minimumSeconds)*time.Second)
	e := b.exchanges.get(c.Name, r.key(), b.tokens.generation(c.Name))
	answered := now
	var warnings []string
	held := e
	if tok := exchangeServable(e, cfg, now, minValid); tok != nil {
		if inRefreshWindow(cfg, tok, minValid, now) {
			if w := b.exchangeAhead(cfg, c, r, e, minValid, now); w != "" {
				warnings = append(warnings, w)
			}
		}
	} else {
		res, err := b.exchangeWait(ctx, s, cfg, c, r, minValid, nil)
		var oe *oauth.Error
		switch {
		case errors.Is(err, errCredentialGone):
			return nil, nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("credential %q does not exist", c.Name))
		case errors.Is(err, errExchangeChanged):
			return nil, nil, logical.CodedError(http.StatusConflict, fmt.Sprintf("credential %q changed while its token was exchanged; read it again", c.Name))
		case errors.As(err, &oe):
			return nil, nil, exchangeFailure(c.Name, r, oe, now)
		case err != nil:
			return nil, nil, err
		}
		e, warnings = res.entry, res.warnings
		if res.fresh {
			held = nil
		} else {
			held = e
		}
		answered = b.now()
	}
	tok := e.token()
	if tok.LifetimeCapped {
		warnings = append(warnings, fmt.Sprintf(
			"the provider's expires_in is longer than the %d days the engine accepts; this token is taken to expire at %s",
			oauth.MaxLifetime/day, rfc3339(tok.Expiry)))
	}
	tokenType := tok.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	handOver := exchangeHandOverAt(cfg, held, tok, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok), answered)
	data := map[string]any{
		"access_token":        tok.AccessToken,
		"issued_token_type":   e.ex.IssuedTokenType,
		"token_type":          tokenType,
		"expires_at":          rfc3339(tok.Expiry),
		"expires_in":          int64(tok.Expiry.Sub(answered) / time.Second),
		"scope":               tok.Scope,
		"ttl":                 int64(handOver.Sub(answered) / time.Second),
		"rotation_period":     int64(tok.Expiry.Sub(tok.IssuedAt) / time.Second),
		"last_vault_rotation": rfc3339Nano(tok.IssuedAt),
	}
	if tokenType != "N_A" { // RFC 8693: not an access token
		data["authorization"] = tokenType + " " + tok.AccessToken
	}
	return data, warnings, nil
}
