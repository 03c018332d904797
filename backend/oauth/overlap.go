// The previous client, tried once while a credential keeps it (client_secret_overlap):
// a new client secret the provider has not yet accepted everywhere costs no failed
// token request.

package oauth

import (
	"context"
	"errors"
)

// refusedClient reports whether err, the answer to a request made with cfg, is the
// provider refusing the client itself: the OAuth error invalid_client (a secret or
// client assertion it does not accept), or its mutual-TLS counterpart, a TLS alert
// refusing the client certificate. With a client assertion, invalid_request too: a
// server that cannot find the assertion's key id among the client's keys may say so
// (ory/fosite and Ory Hydra do), which is what a rotated key looks like before the
// provider knows it.
func refusedClient(err error, cfg Config) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == "invalid_client" || e.Code == CodeTLSClientRefused ||
		(e.Code == "invalid_request" && cfg.asserts())
}

// overlap runs request with cfg (its Previous removed) and, when the provider refuses
// that client, once more with cfg.Previous. A token obtained the second way is marked
// ByPrevious. When the second request fails too, the failure that counts is the first
// one (the new client's refusal, which the caller acts on), unless the second one may
// pass on its own (a network failure, a 5xx), so the caller backs off and tries again
// instead of giving up on a client the provider may still accept.
func overlap(cfg Config, request func(Config) (*Token, error)) (*Token, error) {
	prev := cfg.Previous
	cfg.Previous = nil
	tok, err := request(cfg)
	if err == nil || prev == nil || !refusedClient(err, cfg) {
		return tok, err
	}
	// Everything as now but the client's authentication, as it was.
	old := cfg
	old.ClientSecret, old.ClientKey, old.ClientKeyID = prev.ClientSecret, prev.ClientKey, prev.ClientKeyID
	old.ClientCertificate, old.ClientAssertionAlgorithm = prev.ClientCertificate, prev.ClientAssertionAlgorithm
	tok, err2 := request(old)
	if err2 != nil {
		var e *Error
		if errors.As(err2, &e) && !e.Permanent() {
			return nil, err2
		}
		return nil, err
	}
	tok.ByPrevious = true
	return tok, nil
}

// mintOverlap is Mint for a cfg with a Previous client.
func (c *Client) mintOverlap(ctx context.Context, cfg Config, refreshToken string) (*Token, error) {
	return overlap(cfg, func(cfg Config) (*Token, error) { return c.Mint(ctx, cfg, refreshToken) })
}

// exchangeOverlap is Exchange for a cfg with a Previous client: a provider checks the
// client before the code (RFC 6749 §4.1.3), so a code refused with invalid_client is
// still unspent.
func (c *Client) exchangeOverlap(ctx context.Context, cfg Config, code, verifier string) (*Token, error) {
	return overlap(cfg, func(cfg Config) (*Token, error) { return c.Exchange(ctx, cfg, code, verifier) })
}
