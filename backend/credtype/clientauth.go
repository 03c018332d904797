// OAuth client authentication beyond a shared secret: private_key_jwt (RFC 7523) and
// tls_client_auth (RFC 8705), their fields and rules, and ca_certificate, the extra
// trust anchors of every type that talks to an https endpoint. The catalog builder
// adds these fields to the types (withClientAuth, withTrustAnchors), so no entry in
// types.go lists them.

package credtype

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The auth_style values.
const (
	AuthStyleHeader        = "header"
	AuthStyleBody          = "body"
	AuthStylePrivateKeyJWT = "private_key_jwt"
	AuthStyleTLSClientAuth = "tls_client_auth"
)

// authStyles are the auth_style values, in the order the rule names them.
var authStyles = []string{AuthStyleHeader, AuthStyleBody, AuthStylePrivateKeyJWT, AuthStyleTLSClientAuth}

// minRSABits is the smallest RSA client key accepted (NIST SP 800-131A).
const minRSABits = 2048

// The client assertion algorithms (RFC 7518, RFC 8037), and which key each fits.
var assertionAlgorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}

const ruleClientKey = "PEM private key, not encrypted: PKCS#1 RSA of at least 2048 bits, PKCS#8 or SEC1 EC on P-256 or P-384, or PKCS#8 Ed25519; must match client_certificate when that is set; at most 65536 bytes"

// clientAuthNames are the fields withClientAuth adds to every OAuth type.
var clientAuthNames = defineClientAuth()

func defineClientAuth() []string {
	fs := []Field{
		{Name: "client_key", Type: FieldString, pem: true, Sensitive: true, check: checkClientKey, maxLen: maxPEM, multiline: true,
			Rule:        ruleClientKey,
			Description: "Private key the client authenticates with: it signs the client assertion (private_key_jwt) or the TLS handshake (tls_client_auth)."},
		{Name: "client_key_id", Type: FieldString, check: checkNoSpace, maxLen: 1024,
			Rule:        "single line without spaces or control characters, at most 1024 bytes",
			Description: "Key ID the provider knows client_key by: the kid header of the client assertion."},
		{Name: "client_certificate", Type: FieldString, pem: true, check: checkCertificatePEM, maxLen: maxPEM, multiline: true,
			Rule:        "PEM X.509 certificate of client_key, leaf first, optionally followed by its chain; CERTIFICATE blocks only; not expired when written; at most 65536 bytes",
			Description: "Certificate of client_key. With private_key_jwt the assertion's header then carries its x5t and x5t#S256 thumbprints (what Microsoft Entra matches certificate credentials by); with tls_client_auth it is presented in the TLS handshake."},
		{Name: "client_assertion_audience", Type: FieldString, check: checkNoSpace,
			Rule:        ruleNoSpace,
			Description: "aud claim of the client assertion; default: the token endpoint URL."},
		{Name: "client_assertion_algorithm", Type: FieldString, check: checkAssertionAlgorithm, maxLen: 16,
			Rule:        "RS256 or PS256 for an RSA client_key, ES256 for P-256, ES384 for P-384, EdDSA for Ed25519; default: RS256, ES256, ES384 or EdDSA by the key",
			Description: "JWS algorithm the client assertion is signed with."},
	}
	names := defineAll(fs)
	define(Field{Name: FieldCACertificate, Type: FieldString, pem: true, Destination: true, check: checkCertificatePEM, maxLen: maxPEM, multiline: true,
		Rule:        "PEM bundle of X.509 certificates (CERTIFICATE blocks only), at most 65536 bytes",
		Description: "Extra trust anchors for this credential's TLS connections (token endpoint, verification, notifications), added to the system's: for a provider or service behind a private CA. Changing it changes who may receive the credential's secrets: it requires resending them."})
	return names
}

// FieldCACertificate is the trust-anchor field. It is a destination field added after
// tokens were fingerprinted by their destination: unset, it is left out of the
// fingerprint, so a credential's fingerprint stays what it was before the field
// existed.
const FieldCACertificate = "ca_certificate"

// secretWhen is when client_secret is required: for the shared-secret styles.
var secretWhen = &Condition{Field: "auth_style", Values: []string{AuthStyleHeader, AuthStyleBody}}

// Condition says when a field is required: when Field's value (after its default) is
// one of Values (always, when Field is ""), unless the field Unless is set (a
// generated key stands for client_key: generate_client_key).
type Condition struct {
	Field  string
	Values []string
	Unless string
}

// holds reports whether the condition holds for the normalized values.
func (c *Condition) holds(values map[string]any) bool {
	if c == nil || (c.Unless != "" && !isEmpty(values[c.Unless])) {
		return false
	}
	return c.Field == "" || slices.Contains(c.Values, str(values, c.Field))
}

// Rule is the condition as types/ shows it and a refusal states it.
func (c *Condition) Rule() string {
	r := "required"
	if c.Field != "" {
		r = fmt.Sprintf("required when %s is %s", c.Field, quoteOr(c.Values))
	}
	if c.Unless != "" {
		r += ", unless " + c.Unless + " is set"
	}
	return r
}

func quoteOr(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// requiredWhen makes a field conditionally required, and says so in its rule.
func requiredWhen(c *Condition) fieldOption {
	return func(f *Field) {
		f.Required, f.RequiredWhen = false, c
		f.Rule = c.Rule() + "; " + f.Rule
	}
}

// withClientAuth gives an OAuth type the client-authentication fields, before its
// common fields: auth_style (when the entry lacks it, defaulting to the preset's
// style), client_key, client_key_id, client_certificate, client_assertion_audience
// and client_assertion_algorithm. A client_secret the entry requires becomes required
// only for the shared-secret styles.
func withClientAuth(t *Type) {
	if t.OAuth.NoClientAuth {
		return
	}
	own, common := splitCommon(t.Fields)
	if _, ok := t.Field("auth_style"); !ok {
		var opts []fieldOption
		if t.OAuth.AuthStyle != "" {
			opts = append(opts, defaultValue(t.OAuth.AuthStyle))
		}
		own = append(own, use("auth_style", opts...))
	}
	for i, f := range own {
		if f.Name == "client_secret" && f.Required {
			requiredWhen(secretWhen)(&own[i])
			own[i].stateLimits()
		}
	}
	for _, n := range clientAuthNames {
		if _, listed := t.Field(n); listed {
			continue // the entry's own (a JWT-bearer type's client_key is required)
		}
		var opts []fieldOption
		switch n {
		case "client_key":
			opts = append(opts, requiredWhen(&Condition{Field: "auth_style", Values: []string{AuthStylePrivateKeyJWT, AuthStyleTLSClientAuth}}))
		case "client_certificate":
			opts = append(opts, requiredWhen(&Condition{Field: "auth_style", Values: []string{AuthStyleTLSClientAuth}}))
		}
		own = append(own, use(n, opts...))
	}
	t.Fields = append(own, common...)
	t.finish = chainFinish(t.finish, finishClientAuth)
}

// withTrustAnchors gives ca_certificate to every type that talks to an https
// endpoint: the OAuth types, and those with a url or verify_url (verification GETs,
// notification deliveries).
func withTrustAnchors(t *Type) {
	_, hasURL := t.Field("url")
	_, hasVerify := t.Field("verify_url")
	if t.OAuth == nil && !hasURL && !hasVerify {
		return
	}
	t.insertBeforeCommon(use(FieldCACertificate))
}

// insertBeforeCommon adds fs to t's fields after its own and before the common ones,
// where every field the catalog gives a type besides its own goes.
func (t *Type) insertBeforeCommon(fs ...Field) {
	own, common := splitCommon(t.Fields)
	t.Fields = append(append(own, fs...), common...)
}

// splitCommon returns a type's own fields (a copy) and its common ones.
func splitCommon(fs []Field) (own, common []Field) {
	i := slices.IndexFunc(fs, func(f Field) bool { return f.Common })
	if i < 0 {
		i = len(fs)
	}
	return slices.Clone(fs[:i]), fs[i:]
}

func chainFinish(fs ...func(*Validated) FieldErrors) func(*Validated) FieldErrors {
	fs = slices.DeleteFunc(fs, func(f func(*Validated) FieldErrors) bool { return f == nil })
	return func(v *Validated) FieldErrors {
		var errs FieldErrors
		for _, f := range fs {
			errs = append(errs, f(v)...)
		}
		return errs
	}
}

func checkAuthStyle(s string) (string, error) {
	if s = strings.ToLower(s); slices.Contains(authStyles, s) {
		return s, nil
	}
	return "", ruleError("must be " + quoteOr(authStyles))
}

func checkAssertionAlgorithm(s string) (string, error) {
	for _, a := range assertionAlgorithms {
		if strings.EqualFold(a, s) {
			return a, nil
		}
	}
	return "", ruleError("must be " + quoteOr(assertionAlgorithms))
}

// checkClientKey stores the key as PKCS#8 PEM. There is no password field for it:
// an encrypted key is refused rather than stored undecryptable.
func checkClientKey(s string) (string, error) {
	key, err := parseClientKey(s)
	if err != nil {
		return "", err
	}
	return pkcs8PEM(key)
}

func parseClientKey(s string) (crypto.Signer, error) {
	b, err := keyBlock(s)
	if err != nil {
		return nil, err
	}
	if encrypted(b) {
		return nil, ruleError("must not be encrypted (store the key decrypted; it is kept encrypted by Vault)")
	}
	if b.Type == "OPENSSH PRIVATE KEY" {
		return nil, ruleError("must be a PEM private key (PKCS#1, PKCS#8 or SEC1), not OpenSSH format")
	}
	key, err := parsePrivateKeyDER(b.Type, b.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return nil, rulef("must be an RSA key of at least %d bits (this one has %d)", minRSABits, k.N.BitLen())
		}
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, ruleError("must be an EC key on P-256 or P-384")
		}
	case ed25519.PrivateKey:
	default:
		return nil, ruleError("must be an RSA, EC or Ed25519 key")
	}
	return key, nil
}

// ClientKey parses a stored client_key (as Validate normalized it) into its signer,
// under the rules of the field.
func ClientKey(keyPEM string) (crypto.Signer, error) {
	key, err := parseClientKey(keyPEM)
	if err != nil {
		return nil, fieldError("client_key", err)
	}
	return key, nil
}

// AssertionAlgorithm is the JWS algorithm a client assertion signed with key uses:
// asked, when it fits the key, else an error naming the rule; with asked empty, the
// key's default (RS256, ES256, ES384, EdDSA).
func AssertionAlgorithm(key crypto.PublicKey, asked string) (string, error) {
	var fits []string
	switch k := key.(type) {
	case *rsa.PublicKey:
		fits = []string{"RS256", "PS256"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			fits = []string{"ES256"}
		case elliptic.P384():
			fits = []string{"ES384"}
		}
	case ed25519.PublicKey:
		fits = []string{"EdDSA"}
	}
	switch {
	case len(fits) == 0:
		return "", &FieldError{Field: "client_key", Rule: ruleClientKey}
	case asked == "":
		return fits[0], nil
	case !slices.Contains(fits, asked):
		return "", &FieldError{Field: "client_assertion_algorithm", Rule: "must fit client_key: " + quoteOr(fits) + " for this key"}
	}
	return asked, nil
}

// finishClientAuth checks what spans the client-authentication fields once each is
// valid on its own: the algorithm fits the key, the key matches the certificate, the
// certificate is not expired (when the caller gave a clock), and records the
// certificate's expiry.
func finishClientAuth(v *Validated) FieldErrors {
	keyPEM, certPEM := str(v.Values, "client_key"), str(v.Values, "client_certificate")
	var errs FieldErrors
	var key crypto.Signer
	if keyPEM != "" {
		k, err := ClientKey(keyPEM)
		if err != nil {
			return FieldErrors{err.(*FieldError)}
		}
		key = k
		if _, err := AssertionAlgorithm(key.Public(), str(v.Values, "client_assertion_algorithm")); err != nil {
			errs = append(errs, err.(*FieldError))
		}
	}
	if certPEM == "" {
		return errs
	}
	leaf, err := leafCertificate(certPEM)
	if err != nil {
		return append(errs, fieldError("client_certificate", err))
	}
	if key != nil {
		if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
			errs = append(errs, &FieldError{Field: "client_key", Rule: "must match the public key of client_certificate (the first, leaf, certificate)"})
		}
	}
	if !v.now.IsZero() && v.now.After(leaf.NotAfter) {
		errs = append(errs, &FieldError{Field: "client_certificate", Rule: "must not be expired (the leaf certificate expired at " + leaf.NotAfter.UTC().Format(time.RFC3339) + ")"})
	}
	v.ClientCertNotAfter = leaf.NotAfter
	v.Derived["client_certificate_not_after"] = leaf.NotAfter
	return errs
}

// LeafCertificate parses the leaf of a stored client_certificate; the oauth package
// computes the x5t thumbprints from it.
func LeafCertificate(certPEM string) (*x509.Certificate, error) {
	leaf, err := leafCertificate(certPEM)
	if err != nil {
		return nil, fieldError("client_certificate", err)
	}
	return leaf, nil
}
