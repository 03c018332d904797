package credtype

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// accessSpec is what `access/<name>` returns for a static type.
type accessSpec struct {
	// fields are returned as stored, when set.
	fields []string
	// authorization builds the ready Authorization header value access returns as
	// "authorization"; notifications posted with the credential use the same one.
	authorization func(values Fields) string
	// extra adds other computed values, from the stored values and the secrets
	// derived when they were written.
	extra func(values Fields, secrets map[string]string, out map[string]any) error
	// derive recomputes the secrets Validate derives, for values stored without them:
	// those extra reads (a certificate's decrypted key), or those verify signs with (an
	// SSH key's).
	derive func(ctx context.Context, values Fields) (map[string]string, error)
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
// secrets is what Validate returned in Validated.Secrets (or DeriveSecrets, for values
// stored without it). Access never runs a key-derivation function: an encrypted key
// whose decrypted form is missing from secrets is an error.
//
// OAuth 2.0 kinds have no static material: Access refuses them.
func (t *Type) Access(values Fields, secrets map[string]string, now time.Time) (map[string]any, error) {
	if t.access == nil {
		return nil, fmt.Errorf("credential type %q is %s: access mints a token instead", t.Name, t.Kind)
	}
	out := make(map[string]any, len(t.access.fields)+2)
	for _, name := range t.access.fields {
		s := values.Str(name)
		if s != "" {
			out[name] = s
			continue
		}
		if f, _ := t.Field(name); f.Required {
			return nil, fmt.Errorf("stored %s credential lacks required field %q", t.Name, name)
		}
	}
	if t.access.authorization != nil {
		out["authorization"] = t.access.authorization(values)
	}
	if t.access.extra != nil {
		if err := t.access.extra(values, secrets, out); err != nil {
			return nil, fmt.Errorf("stored %s credential: %w", t.Name, err)
		}
	}
	if secret := values.Str(fieldTOTPSecret); secret != "" {
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
func basicAuthorization(values Fields) string {
	creds := values.Str("username") + ":" + values.Str("password")
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(creds))
}

// prefixedAuthorization builds "<scheme> <token>" with the scheme read from a field
// (which has a default: see WithDefaults for values stored before it had).
func prefixedAuthorization(field string) func(Fields) string {
	return func(values Fields) string {
		return values.Str(field) + " " + values.Str("token")
	}
}

// WithDefaults returns the stored values v of a static type with each field that has
// a default and is unset (or empty) given it, as Validate gives it today: for values
// stored before the field had a default (bearer's header_prefix, api_key's
// header_name), which Access, the authorization header and verify then read as
// written today. v itself when nothing is missing. The backend applies it to entries
// stored before record versions (upgradeCredential); OAuth types are left as stored.
func (t *Type) WithDefaults(v Values) Values {
	if t.access == nil {
		return v
	}
	var m map[string]any
	for _, f := range t.Fields {
		if f.Default == nil || f.Lifecycle() || f.TokenState {
			continue
		}
		if x, set := v.Get(f.Name); set && x != "" {
			continue
		}
		if m == nil {
			if m = v.Map(); m == nil {
				m = map[string]any{}
			}
		}
		m[f.Name] = cloneValue(f.Default)
	}
	if m == nil {
		return v
	}
	return t.Compact(m)
}

func fixedAuthorization(scheme string) func(Fields) string {
	return func(values Fields) string { return scheme + " " + values.Str("token") }
}

// notifySpec is how a type receives the engine's notifications: POSTed to the URL in
// one of its fields, or sent through Slack's Web API with its token.
type notifySpec struct {
	urlField string
	slackAPI bool
}

// NotifyTarget is where and how a credential receives the engine's notifications.
type NotifyTarget struct {
	// URL is the stored URL the notification is POSTed to as JSON; empty with SlackAPI.
	URL string
	// SlackAPI means a message posted through Slack's Web API (chat.postMessage).
	SlackAPI bool
	// Authorization is the Authorization header value, built as access/ builds it;
	// empty for none.
	Authorization string
	// CACertificate is the credential's ca_certificate: extra trust anchors for the
	// URL's TLS.
	CACertificate string
}

// NotifyTarget returns how a credential of type t with the stored values receives
// notifications; false when it cannot, because its type cannot or it lacks the URL
// (a bearer credential without a url).
func (t *Type) NotifyTarget(values Fields) (NotifyTarget, bool) {
	if t == nil || t.notify == nil {
		return NotifyTarget{}, false
	}
	n := NotifyTarget{SlackAPI: t.notify.slackAPI}
	if !n.SlackAPI {
		n.CACertificate = values.Str(FieldCACertificate)
		if n.URL = values.Str(t.notify.urlField); n.URL == "" {
			return NotifyTarget{}, false
		}
	}
	if t.access != nil && t.access.authorization != nil {
		n.Authorization = t.access.authorization(values)
	}
	return n, true
}

func certificateAccess(values Fields, secrets map[string]string, out map[string]any) error {
	leaf, err := leafCertificate(values.Str("certificate"))
	if err != nil {
		return fieldError("certificate", err)
	}
	key := secrets["private_key"]
	if key == "" {
		if key, err = accessPrivateKey(values.Str("private_key")); err != nil {
			return err
		}
	}
	out["private_key"] = key
	out["not_after"] = leaf.NotAfter.UTC().Format(time.RFC3339)
	return nil
}

// certificateSecrets decrypts a stored encrypted key: the one derivation Access needs
// done beforehand. Nil for an unencrypted key.
func certificateSecrets(ctx context.Context, values Fields) (map[string]string, error) {
	keyPEM := values.Str("private_key")
	if enc, err := keyIsEncrypted(keyPEM); err != nil || !enc {
		return nil, nil // Access reports a broken key itself
	}
	key, err := decryptX509Key(ctx, keyPEM, values.Str("private_key_password"))
	if err != nil {
		return nil, err
	}
	plain, err := pkcs8PEM(key)
	if err != nil {
		return nil, err
	}
	return map[string]string{"private_key": plain}, nil
}

// DerivesSecrets reports whether DeriveSecrets may return something for t's values,
// so a caller need keep room for derived secrets only for such types.
func (t *Type) DerivesSecrets() bool {
	return t != nil && t.access != nil && t.access.derive != nil
}

// AccessUsesSecrets reports whether Access reads the derived secrets (a certificate's
// decrypted key). An sftp_ssh_key derives its decrypted key for verify only: access/
// hands out the key as written, so reading it never waits for a derivation.
func (t *Type) AccessUsesSecrets() bool {
	return t.DerivesSecrets() && t.access.extra != nil
}

// DeriveSecrets recomputes Validated.Secrets from stored values, for credentials stored
// before the engine kept them (a certificate's decrypted key, an SSH key's). It
// runs the key's KDF under the process-wide limits, waiting for its turn within ctx:
// call it once per stored credential and keep the result, never once per read. Nil
// when there is nothing to derive. Without a turn it returns *keywork.Busy (wrapped):
// nothing is wrong with the credential, so that answer must not be kept.
func (t *Type) DeriveSecrets(ctx context.Context, values Fields) (map[string]string, error) {
	if t.access == nil || t.access.derive == nil {
		return nil, nil
	}
	s, err := t.access.derive(ctx, values)
	if err != nil {
		return nil, fmt.Errorf("stored %s credential: %w", t.Name, err)
	}
	return s, nil
}

// NotifyRule names the credentials that can receive notifications, for the rule of a
// setting that names one: each type with a notification target, in catalog order.
func NotifyRule() string {
	var kinds []string
	for _, t := range catalog.sorted {
		switch {
		case t.notify == nil:
		case t.notify.slackAPI:
			kinds = append(kinds, "a "+t.Name+" credential")
		default:
			if f, _ := t.Field(t.notify.urlField); f.Required {
				kinds = append(kinds, "a "+t.Name+" credential")
			} else {
				kinds = append(kinds, "a "+t.Name+" credential with a "+f.Name)
			}
		}
	}
	if len(kinds) < 2 {
		return strings.Join(kinds, "")
	}
	return strings.Join(kinds[:len(kinds)-1], ", ") + " or " + kinds[len(kinds)-1]
}
