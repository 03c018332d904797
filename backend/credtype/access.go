package credtype

import (
	"encoding/base64"
	"fmt"
	"time"
)

// accessSpec is what `access/<name>` returns for a static type.
type accessSpec struct {
	// fields are returned as stored, when set.
	fields []string
	// extra adds computed values such as a ready Authorization header.
	extra func(values, out map[string]any) error
}

// Access returns the material `access/<name>` hands an integration for a static
// credential, from its stored (validated) values: the secret fields the integration
// authenticates with, the non-secret ones it needs to use them (a URL, a header name),
// a ready "authorization" header value where one applies, and for a certificate its
// decrypted PKCS#8 private key and "not_after" (RFC 3339).
//
// When a totp_secret is set, Access adds "totp_code", the RFC 6238 code at now; the
// secret itself is not returned, since the code is all a sign-in needs.
//
// OAuth 2.0 kinds have no static material: Access refuses them.
func (t *Type) Access(values map[string]any, now time.Time) (map[string]any, error) {
	if t.access == nil {
		return nil, fmt.Errorf("credential type %q is %s: access mints a token instead", t.Name, t.Kind)
	}
	out := make(map[string]any, len(t.access.fields)+2)
	for _, name := range t.access.fields {
		s := str(values, name)
		if s != "" {
			out[name] = s
			continue
		}
		switch f, _ := t.Field(name); {
		case f.Required:
			return nil, fmt.Errorf("stored %s credential lacks required field %q", t.Name, name)
		case f.Default != nil:
			// Stored before the field had a default.
			out[name] = cloneValue(f.Default)
		}
	}
	if t.access.extra != nil {
		if err := t.access.extra(values, out); err != nil {
			return nil, fmt.Errorf("stored %s credential: %w", t.Name, err)
		}
	}
	if secret := str(values, fieldTOTPSecret); secret != "" {
		if _, ok := t.Field(fieldTOTPSecret); ok {
			code, err := TOTPCode(secret, now)
			if err != nil {
				return nil, fmt.Errorf("stored %s credential: %w", t.Name, err)
			}
			out["totp_code"] = code
		}
	}
	return out, nil
}

// basicAuthorization is the RFC 7617 header value.
func basicAuthorization(values, out map[string]any) error {
	creds := str(values, "username") + ":" + str(values, "password")
	out["authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(creds))
	return nil
}

// prefixedAuthorization builds "<scheme> <token>" with the scheme read from a field,
// falling back to def for values stored before the field had a default.
func prefixedAuthorization(field, def string) func(values, out map[string]any) error {
	return func(values, out map[string]any) error {
		scheme := str(values, field)
		if scheme == "" {
			scheme = def
		}
		out["authorization"] = scheme + " " + str(values, "token")
		return nil
	}
}

func fixedAuthorization(scheme string) func(values, out map[string]any) error {
	return func(values, out map[string]any) error {
		out["authorization"] = scheme + " " + str(values, "token")
		return nil
	}
}

func certificateAccess(values, out map[string]any) error {
	leaf, err := leafCertificate(str(values, "certificate"))
	if err != nil {
		return fieldError("certificate", err)
	}
	key, err := accessPrivateKey(str(values, "private_key"), str(values, "private_key_password"))
	if err != nil {
		return err
	}
	out["private_key"] = key
	out["not_after"] = leaf.NotAfter.UTC().Format(time.RFC3339)
	return nil
}
