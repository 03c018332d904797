// auth_style=federated: the client assertion is signed by the mount's issuer key, not
// by a key of the credential's own. The engine is then an OIDC issuer
// (backend/issuer.go) that the provider trusts for this client, as Microsoft Entra's
// federated identity credentials do: iss is the engine's issuer URL, sub the
// credential's federated_subject, aud by default api://AzureADTokenExchange.

package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
)

// AuthStyleFederated sends client_id and a fresh client assertion signed by the
// mount's issuer key (Config.Federation), and no secret.
const AuthStyleFederated = credtype.AuthStyleFederated

// Federation is what a federated client assertion needs from the engine: the issuer
// it names and the key that signs it. Key is asked at every assertion, so a rotation
// takes effect on the next token request; it never hands out the key beyond signing
// here.
type Federation struct {
	// Issuer is config issuer: the assertion's iss, exactly as providers know it.
	Issuer string
	// Subject is the credential's federated_subject: the assertion's sub.
	Subject string
	// Key is the issuer key that signs at now, generating the first one if there is
	// none yet (the key-work gate's *keywork.Busy when it gets no turn).
	Key func(ctx context.Context, now time.Time) (ownedkeys.Key, error)
}

// ErrNoIssuer is the refusal of a federated token request while config issuer is not
// set (it was removed after the credential was written).
var ErrNoIssuer = errors.New(`auth_style "federated" needs config issuer (the engine's OIDC issuer URL): it is not set; set it (vault write <mount>/config issuer=...) or change the credential's auth_style`)

// newFederatedAsserter prepares the asserter of a federated cfg: the issuer's key
// looked up at each assertion, signing with RS256 (the issuer keys' algorithm, the
// one every verifier of external issuers takes) under the key's kid.
func newFederatedAsserter(cfg Config, now func() time.Time) (*asserter, error) {
	f := cfg.Federation
	if f == nil || f.Issuer == "" || f.Key == nil {
		return nil, configError(ErrNoIssuer.Error())
	}
	if f.Subject == "" {
		return nil, configError(credtype.FieldFederatedSubject + " is not set: write the credential again to store its default")
	}
	aud := cfg.ClientAssertionAudience
	if aud == "" {
		aud = credtype.FederatedAudience
	}
	signer := func(ctx context.Context, at time.Time) (jose.Signer, error) {
		key, err := f.Key(ctx, at)
		if err != nil {
			if keywork.AsBusy(err) != nil {
				return nil, &Error{Class: Transient, Code: CodeInvalidConfig, detail: "the issuer key is being generated: " + err.Error()}
			}
			var e *Error
			if errors.As(err, &e) {
				return nil, e
			}
			return nil, configError("the issuer key is not available: " + err.Error())
		}
		alg, err := key.JWSAlgorithm("")
		if err != nil {
			return nil, configError("the issuer key cannot sign")
		}
		s, err := jose.NewSigner(jose.SigningKey{
			Algorithm: jose.SignatureAlgorithm(alg),
			Key:       jose.JSONWebKey{Key: key.Signer(), KeyID: key.ID},
		}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, configError("the issuer key cannot sign " + alg)
		}
		return s, nil
	}
	return &asserter{signer: signer, issuer: f.Issuer, subject: f.Subject, audience: aud, now: now}, nil
}

// String shows the issuer and subject: a Federation holds no secret, and a Config's
// String prints it.
func (f *Federation) String() string {
	if f == nil {
		return ""
	}
	return "{Issuer:" + f.Issuer + " Subject:" + f.Subject + "}"
}
