// Keys generated inside the engine (issue 27, "Owned keys"): the fields every type
// that takes client_key gets (generate_client_key and its schedule, the generated
// certificate, publish_jwks) and the rules that span them and the pasted key. The
// keys themselves are package ownedkeys'; the backend stores, rotates and publishes
// them (backend/client_keys.go).

package credtype

import (
	"slices"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
)

// The owned-key fields.
const (
	FieldGenerateClientKey         = "generate_client_key"
	FieldGenerateClientCertificate = "generate_client_certificate"
	FieldClientCertificateTTL      = "client_certificate_ttl"
	FieldClientKeyOverlap          = "client_key_overlap"
	FieldClientKeyRotationPeriod   = "client_key_rotation_period"
	FieldPublishJWKS               = "publish_jwks"
)

// KeyAlgorithms are generate_client_key's values (ownedkeys.Algorithms: a test keeps
// them equal; this package cannot import that one, which imports it).
var KeyAlgorithms = []string{"ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"}

// rsaKeyAlgorithms are the values a type that signs RS256 only (salesforce_jwt) takes.
var rsaKeyAlgorithms = []string{"rsa-2048", "rsa-3072"}

// Defaults and bounds of the schedule fields.
const (
	DefaultClientCertificateTTL = 365 * 24 * time.Hour
	MinClientCertificateTTL     = time.Hour
	MaxClientCertificateTTL     = 10 * 365 * 24 * time.Hour
	DefaultClientKeyOverlap     = 24 * time.Hour
	MinClientKeyOverlap         = time.Minute
	MaxClientKeyOverlap         = 30 * 24 * time.Hour
	MinClientKeyRotationPeriod  = time.Hour
	MaxClientKeyRotationPeriod  = 10 * 365 * 24 * time.Hour
)

const (
	ruleCertificateTTL = `a duration such as "8760h" or seconds, from 1 hour to 10 years; unset: 1 year`
	ruleKeyOverlap     = `a duration such as "24h", "30m" or seconds, from 1 minute to 30 days; unset: 24 hours`
	ruleRotationPeriod = `a duration such as "2160h" or seconds: 0 (off) or from 1 hour to 10 years, longer than client_key_overlap; unset: off`
)

// ownedKeyNames are the fields withOwnedKeys adds, defined before the catalog is built.
var ownedKeyNames = defineOwnedKeys()

func defineOwnedKeys() []string {
	return defineAll([]Field{
		{Name: FieldGenerateClientKey, Type: FieldString, check: checkKeyAlgorithm, maxLen: 16,
			Rule: "one of " + quoteOr(KeyAlgorithms) + "; not together with client_key or client_key_id in one write",
			Description: "The engine generates the client key itself (the private key never leaves it: no read, not even access/, returns it) and signs with it. " +
				"Re-sending the same value changes nothing; another value rotates to a new key of that algorithm (as rotate-client-key does). " +
				"A later pasted client_key replaces (and destroys) the generated keys. Reads show client_public_key, client_jwk and client_keys."},
		{Name: FieldGenerateClientCertificate, Type: FieldBool,
			Rule:        "true or false; only with generate_client_key; required (true) for auth_style tls_client_auth with a generated key",
			Description: "With generate_client_key: a self-signed certificate of each generated key (CN = the credential's name, client_certificate_ttl), shown as client_certificate, for providers that take a certificate upload (Entra app registrations). It follows its key through rotations."},
		{Name: FieldClientCertificateTTL, Type: FieldString, check: durationCheck(MinClientCertificateTTL, MaxClientCertificateTTL, false, ruleCertificateTTL), maxLen: maxShort,
			Rule:        ruleCertificateTTL,
			Description: "Validity of each generated certificate, from its key's generation. A change applies to the next key's certificate."},
		{Name: FieldClientKeyOverlap, Type: FieldString, check: durationCheck(MinClientKeyOverlap, MaxClientKeyOverlap, false, ruleKeyOverlap), maxLen: maxShort,
			Rule:        ruleKeyOverlap,
			Description: "After a rotation of a generated key, the new key is published at once and signs after this long (at once with rotate-client-key activate=true); the previous key stays published for this long after that, then is destroyed."},
		{Name: FieldClientKeyRotationPeriod, Type: FieldString, check: durationCheck(MinClientKeyRotationPeriod, MaxClientKeyRotationPeriod, true, ruleRotationPeriod), maxLen: maxShort,
			Rule:        ruleRotationPeriod,
			Description: "The engine rotates the generated key this long after the newest one was generated (a background job on the active node)."},
		{Name: FieldPublishJWKS, Type: FieldBool,
			Rule:        "true or false; unset: false",
			Description: "Publish the generated keys' public halves, unauthenticated, at jwks/<name> (a provider's jwks_uri); any other name answers there exactly as a missing one."},
	})
}

func checkKeyAlgorithm(s string) (string, error) {
	for _, a := range KeyAlgorithms {
		if equalFoldASCII(a, s) {
			return a, nil
		}
	}
	return "", ruleError("must be one of " + quoteOr(KeyAlgorithms))
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// durationCheck parses a duration as Vault does and stores it in Go's form; zero is
// allowed only when off is (0 meaning off).
func durationCheck(lo, hi time.Duration, off bool, rule string) func(string) (string, error) {
	return func(s string) (string, error) {
		d, err := parseutil.ParseDurationSecond(s)
		switch {
		case err != nil:
			return "", ruleError("must be " + rule)
		case d == 0 && off:
			return d.String(), nil
		case d < lo || d > hi:
			return "", ruleError("must be " + rule)
		}
		return d.String(), nil
	}
}

// withOwnedKeys gives every type that takes client_key (the OAuth types with client
// authentication, oauth2_jwt_bearer, salesforce_jwt; not github_app, whose keys GitHub
// generates, nor google_service_account, whose key Google issues) the owned-key fields
// and rules. client_key (and client_certificate) become satisfied by
// generate_client_key: their required_when says so.
func withOwnedKeys(t *Type) {
	if _, ok := t.Field("client_key"); !ok {
		return
	}
	for i, f := range t.Fields {
		switch f.Name {
		case "client_key":
			switch {
			case f.Required:
				requiredWhen(&Condition{Unless: FieldGenerateClientKey})(&t.Fields[i])
			case f.RequiredWhen != nil:
				unlessGenerated(&t.Fields[i])
			}
		case "client_certificate":
			if f.RequiredWhen != nil {
				unlessGenerated(&t.Fields[i])
			}
		}
	}
	var add []Field
	for _, n := range ownedKeyNames {
		var opts []fieldOption
		if n == FieldGenerateClientKey && t.rsaOnlyKey() {
			opts = append(opts, tighten("one of "+quoteOr(rsaKeyAlgorithms)+" (this type signs RS256 only); not together with client_key or client_key_id in one write", checkRSAKeyAlgorithm))
		}
		add = append(add, use(n, opts...))
	}
	t.insertBeforeCommon(add...)
	t.finish = chainFinish(t.finish, finishOwnedKeys)
}

// unlessGenerated adds "unless generate_client_key is set" to a conditional rule.
func unlessGenerated(f *Field) {
	c := *f.RequiredWhen
	c.Unless = FieldGenerateClientKey
	old := f.RequiredWhen.Rule()
	f.RequiredWhen = &c
	if len(f.Rule) >= len(old) && f.Rule[:len(old)] == old {
		f.Rule = c.Rule() + f.Rule[len(old):]
	}
}

// rsaOnlyKey reports whether t's client_key takes RSA keys only (salesforce_jwt).
func (t *Type) rsaOnlyKey() bool { return t.Name == "salesforce_jwt" }

func checkRSAKeyAlgorithm(s string) (string, error) {
	a, err := checkKeyAlgorithm(s)
	if err != nil || !slices.Contains(rsaKeyAlgorithms, a) {
		return "", ruleError("must be " + quoteOr(rsaKeyAlgorithms) + " (this type signs RS256 only)")
	}
	return a, nil
}

// KeyAlgorithmFits are the JWS algorithms a key generated with alg signs with.
func KeyAlgorithmFits(alg string) []string {
	switch alg {
	case "rsa-2048", "rsa-3072":
		return []string{"RS256", "PS256"}
	case "ec-p256":
		return []string{"ES256"}
	case "ec-p384":
		return []string{"ES384"}
	case "ed25519":
		return []string{"EdDSA"}
	}
	return nil
}

// finishOwnedKeys holds the rules that span the owned-key fields and the pasted key.
func finishOwnedKeys(v *Validated) FieldErrors {
	gen := str(v.Values, FieldGenerateClientKey)
	genCert, _ := v.Values[FieldGenerateClientCertificate].(bool)
	var errs FieldErrors
	if gen == "" {
		if genCert {
			errs = append(errs, &FieldError{Field: FieldGenerateClientCertificate, Rule: "requires generate_client_key (the certificate is of the generated key)"})
		}
		return errs
	}
	if str(v.Values, "client_key") != "" {
		errs = append(errs, &FieldError{Field: FieldGenerateClientKey, Rule: "must not be set together with client_key: send one of them (a pasted client_key replaces generated keys; generate_client_key replaces a pasted one)"})
	}
	if str(v.Values, "client_key_id") != "" {
		errs = append(errs, &FieldError{Field: "client_key_id", Rule: "must not be set with generate_client_key: each generated key's kid is its RFC 7638 thumbprint, so that the keys published together across a rotation stay distinct"})
	}
	if str(v.Values, "client_certificate") != "" {
		errs = append(errs, &FieldError{Field: "client_certificate", Rule: "must not be set with generate_client_key: set generate_client_certificate=true for a certificate of the generated key"})
	}
	if str(v.Values, "auth_style") == AuthStyleTLSClientAuth && !genCert {
		errs = append(errs, &FieldError{Field: FieldGenerateClientCertificate, Rule: "must be true when auth_style is \"tls_client_auth\" with generate_client_key (the TLS handshake presents the generated key's certificate)"})
	}
	if asked := str(v.Values, "client_assertion_algorithm"); asked != "" && !slices.Contains(KeyAlgorithmFits(gen), asked) {
		errs = append(errs, &FieldError{Field: "client_assertion_algorithm", Rule: "must fit generate_client_key: " + quoteOr(KeyAlgorithmFits(gen)) + " for " + gen})
	}
	if p := ClientKeyRotationPeriod(v.Values); p > 0 && p <= ClientKeyOverlap(v.Values) {
		errs = append(errs, &FieldError{Field: FieldClientKeyRotationPeriod, Rule: "must be longer than client_key_overlap (a key must sign before the next rotation)"})
	}
	return errs
}

func durationValue(values map[string]any, name string, def time.Duration) time.Duration {
	s := str(values, name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return def // not written by durationCheck: cannot happen
	}
	return d
}

// ClientCertificateTTL is client_certificate_ttl of values (a credential's field map).
func ClientCertificateTTL(values map[string]any) time.Duration {
	return durationValue(values, FieldClientCertificateTTL, DefaultClientCertificateTTL)
}

// ClientKeyOverlap is client_key_overlap of values.
func ClientKeyOverlap(values map[string]any) time.Duration {
	return durationValue(values, FieldClientKeyOverlap, DefaultClientKeyOverlap)
}

// ClientKeyRotationPeriod is client_key_rotation_period of values; 0 is off.
func ClientKeyRotationPeriod(values map[string]any) time.Duration {
	return durationValue(values, FieldClientKeyRotationPeriod, 0)
}
