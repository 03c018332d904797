package oauth

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// GrantJWTBearer is the JWT-bearer authorization grant (RFC 7523 §2.1): the token
// request carries grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and an
// assertion, signed afresh for every request by Config.Assertion's key.
const GrantJWTBearer Grant = credtype.GrantJWTBearer

// maxResponseField bounds a token answer member access/ hands out besides the token
// (Salesforce's instance_url).
const maxResponseField = 2048

// fromAssertion fills cfg's JWT-bearer part from the type's assertion: the assertion
// itself, and for a key file that names it (Google's token_uri) the token endpoint.
// The audience field is the assertion's aud on these types, never a form parameter.
func fromAssertion(t *credtype.Type, cfg *Config, fields map[string]any) error {
	a, err := t.JWTAssertion(fields)
	if err != nil {
		return err
	}
	cfg.Assertion = a
	cfg.Audience = ""
	cfg.ResponseFields = t.OAuth.ResponseFields
	if t.OAuth.TokenURLFromKey {
		cfg.TokenURL = a.TokenURL
	}
	return nil
}

// validateAssertion is Validate's part for the JWT-bearer grant.
func (c Config) validateAssertion() error {
	a := c.Assertion
	switch {
	case a == nil:
		return errors.New("the JWT-bearer grant needs an assertion")
	case a.Issuer == "":
		return errors.New("the assertion's issuer is required")
	case a.Audience == "":
		return errors.New("the assertion's audience is required")
	case a.Key == "":
		return errors.New("client_key is required for the JWT-bearer grant")
	case a.Lifetime <= 0 || a.Lifetime > credtype.MaxAssertionLifetime:
		return errors.New("assertion_lifetime must be from 10s to 1h")
	case c.ClientSecret != "" && c.ClientID == "":
		return errors.New("client_id is required when client_secret is set")
	}
	return nil
}

// GrantAssertion signs a fresh assertion for a (RFC 7523 §3): iss, sub (when set),
// aud, iat, exp = iat + Lifetime, a random jti, a's extra claims, and the scopes in
// the scope claim when a says so; the header carries typ JWT and kid when set.
// Failures are *Error of class Permanent with code invalid_config, naming the field.
func GrantAssertion(a *credtype.Assertion, scopes []string, now time.Time) (string, error) {
	key, err := credtype.ClientKey(a.Key)
	if err != nil {
		return "", configError(err.Error())
	}
	alg, err := credtype.AssertionAlgorithm(key.Public(), a.Algorithm)
	if err != nil {
		return "", configError(err.Error())
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(alg),
		Key:       jose.JSONWebKey{Key: crypto.Signer(key), KeyID: a.KeyID},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", configError("client_key cannot sign " + alg)
	}
	jti := make([]byte, 24)
	if _, err := rand.Read(jti); err != nil {
		return "", configError("no randomness for the assertion's jti")
	}
	claims := jwt.Claims{
		Issuer:   a.Issuer,
		Subject:  a.Subject,
		Audience: jwt.Audience{a.Audience},
		ID:       base64.RawURLEncoding.EncodeToString(jti),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(a.Lifetime)),
	}
	extra := make(map[string]any, len(a.Claims)+1)
	for k, v := range a.Claims {
		extra[k] = v
	}
	if a.ScopeClaim && len(scopes) > 0 {
		extra["scope"] = strings.Join(scopes, " ")
	}
	b := jwt.Signed(signer).Claims(claims)
	if len(extra) > 0 {
		b = b.Claims(extra)
	}
	s, err := b.Serialize()
	if err != nil {
		return "", configError("the assertion could not be signed")
	}
	return s, nil
}

// jwtBearerConfig is the token request of the JWT-bearer grant: grant_type, a fresh
// assertion, and the scopes in the form unless they are the assertion's scope claim.
// Client authentication, when the credential has a client, is as for every grant.
func (c *Client) jwtBearerConfig(cfg Config) (*clientcredentials.Config, error) {
	assertion, err := GrantAssertion(cfg.Assertion, cfg.Scopes, c.now())
	if err != nil {
		return nil, err
	}
	dc := cfg.directConfig()
	dc.EndpointParams.Set("grant_type", string(GrantJWTBearer))
	dc.EndpointParams.Set("assertion", assertion)
	if cfg.Assertion.ScopeClaim {
		dc.Scopes = nil
	}
	if cfg.ClientID == "" {
		// No client to authenticate: nothing of the client goes out (x/oauth2 would
		// send an empty HTTP Basic header otherwise).
		dc.AuthStyle = oauth2.AuthStyleInParams
	}
	return dc, nil
}

// responseFields reads cfg's ResponseFields from a token answer: each an https URL
// (http only to a loopback host) of at most 2 KiB. A missing or malformed one makes
// the answer a bad response: never echoed, never served.
func responseFields(tok *oauth2.Token, cfg Config) (map[string]string, error) {
	if len(cfg.ResponseFields) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(cfg.ResponseFields))
	for _, name := range cfg.ResponseFields {
		v, _ := tok.Extra(name).(string)
		u, err := url.Parse(v)
		if v == "" || len(v) > maxResponseField || err != nil || checkEndpointURL(u) != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, &Error{Class: Transient, Code: CodeBadResponse, Status: http.StatusOK,
				detail: "the provider's answer has no valid " + name + " (an https URL of at most 2048 bytes)"}
		}
		out[name] = v
	}
	return out, nil
}
