// Token exchange (RFC 8693): a credential's access token (the subject token) is
// exchanged at its token endpoint for a token with another audience, resource or
// scope, authenticated as the credential's client in its auth style.

package oauth

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"golang.org/x/oauth2/clientcredentials"
)

// GrantTokenExchange is the grant_type of an RFC 8693 token request.
const GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange" //nolint:gosec // G101: a registered URN, not a credential

// Token type identifiers (RFC 8693 section 3): registered URNs, not credentials.
//
//nolint:gosec // G101: see above
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeSAML1       = "urn:ietf:params:oauth:token-type:saml1"
	TokenTypeSAML2       = "urn:ietf:params:oauth:token-type:saml2"
)

// ExchangeTokenTypes are the requested_token_type values an exchange may ask for: the
// RFC 8693 identifiers except refresh_token (an exchanged token is served, never kept
// to refresh from).
var ExchangeTokenTypes = []string{TokenTypeAccessToken, TokenTypeJWT, TokenTypeIDToken, TokenTypeSAML1, TokenTypeSAML2}

// maxIssuedTokenTypeBytes bounds the issued_token_type of an answer.
const maxIssuedTokenTypeBytes = 256

// ExchangeRequest is what a token exchange asks for besides the subject token. Its
// values are checked by the caller (credtype's rules); each is sent as given.
type ExchangeRequest struct {
	Audiences          []string // audience parameters
	Resources          []string // resource parameters (absolute URIs)
	Scopes             []string // sent space-separated as scope; the default scope of the answer
	RequestedTokenType string   // "" leaves it to the provider (RFC 8693: an access token)
}

// Exchanged is a token exchange's answer: the token (its refresh token, if the
// provider sent one, is dropped) and the issued_token_type.
type Exchanged struct {
	Token           Token
	IssuedTokenType string
}

// exchangeBucket is the request-bucket key of key's exchanges: a bucket of their own,
// so exchanges cannot starve the credential's own token requests (and the reverse). A
// credential name cannot hold the NUL byte.
func exchangeBucket(key string) string { return key + "\x00exchange" }

// TokenExchange exchanges subject (an access token) at cfg's token endpoint for r,
// when key's exchange bucket lets a request through (RequestBurst at once,
// RequestsPerMinute sustained); otherwise nothing is sent and it fails with
// CodeThrottled. It runs as a flight of the Broker, so Close cancels it. Failures are
// *Error.
func (b *Broker) TokenExchange(ctx context.Context, key string, cfg Config, subject string, r ExchangeRequest) (*Exchanged, error) {
	return limited(ctx, b, exchangeBucket(key), func(ctx context.Context) (*Exchanged, error) {
		return b.client.TokenExchange(ctx, cfg, subject, r)
	})
}

// TokenExchange makes one RFC 8693 token request: grant_type token-exchange, the
// subject token as an access token, r's parameters, and cfg's client authentication
// (every auth style, as Mint). The answer is bounded as Mint's is (Token's fields,
// expires_in by Lifetime) and issued_token_type to 256 printable characters. Failures
// are *Error.
func (c *Client) TokenExchange(ctx context.Context, cfg Config, subject string, r ExchangeRequest) (*Exchanged, error) {
	if subject == "" {
		return nil, &Error{Class: Permanent, Code: CodeInvalidConfig, detail: "no subject token to exchange"}
	}
	ctx, cancel, tr, err := c.startRequest(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer cancel()
	params := url.Values{
		"grant_type":         {GrantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {TokenTypeAccessToken},
	}
	if len(r.Audiences) > 0 {
		params["audience"] = slices.Clone(r.Audiences)
	}
	if len(r.Resources) > 0 {
		params["resource"] = slices.Clone(r.Resources)
	}
	if r.RequestedTokenType != "" {
		params.Set("requested_token_type", r.RequestedTokenType)
	}
	cc := &clientcredentials.Config{
		ClientID:       cfg.ClientID,
		ClientSecret:   cfg.secret(),
		TokenURL:       cfg.TokenURL,
		Scopes:         r.Scopes,
		EndpointParams: params,
		AuthStyle:      cfg.authStyle(),
	}
	start := time.Now()
	tok, err := cc.Token(ctx)
	if err != nil {
		e := classify(err, tr, c.now())
		c.observe("token_exchange", start, e)
		return nil, e
	}
	// The answer's scope defaults to the one asked for (RFC 8693 section 2.2.1).
	scoped := cfg
	scoped.Scopes = r.Scopes
	t, err := c.token(tok, scoped)
	if err == nil {
		issued, _ := tok.Extra("issued_token_type").(string)
		if issued == "" {
			// Required by RFC 8693; a provider leaving it out issued what was asked.
			issued = r.RequestedTokenType
			if issued == "" {
				issued = TokenTypeAccessToken
			}
		}
		if !printableASCII(issued, maxIssuedTokenTypeBytes, false) {
			err = &Error{Class: Transient, Code: CodeBadResponse, Status: http.StatusOK,
				detail: fmt.Sprintf("the provider's answer has an issued_token_type that is not %d printable characters at most", maxIssuedTokenTypeBytes)}
		} else {
			t.RefreshToken, t.From = "", ""
			c.observe("token_exchange", start, nil)
			return &Exchanged{Token: *t, IssuedTokenType: issued}, nil
		}
	}
	c.observe("token_exchange", start, err)
	return nil, err
}
