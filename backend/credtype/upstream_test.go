package credtype

import (
	"testing"
	"time"

	lc "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// TestClientSecretExpiresAt: every OAuth type takes client_secret_expires_at under
// the time rule expires_at follows, normalized to UTC, and lists it as an upstream
// expiry; a certificate lists its not_after.
func TestClientSecretExpiresAt(t *testing.T) {
	t.Parallel()
	for _, typ := range All() {
		_, has := typ.Field(fieldSecretExpiresAt)
		if has != (typ.Kind == KindOAuth2 && !typ.OAuth.OwnAuth) {
			t.Errorf("%s (%s): has client_secret_expires_at = %v", typ.Name, typ.Kind, has)
		}
		if !has {
			continue
		}
		values := goodValues(t, typ.Name)
		values[fieldSecretExpiresAt] = "2027-01-31T02:00:00+02:00"
		v, err := typ.Validate(values)
		if err != nil {
			t.Fatalf("%s: %v", typ.Name, err)
		}
		if got := v.Values[fieldSecretExpiresAt]; got != "2027-01-31T00:00:00Z" {
			t.Errorf("%s: stored %v, want it in UTC", typ.Name, got)
		}
		want := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
		if got := upstreamAt(v, lc.UpstreamClientSecret); !got.Equal(want) {
			t.Errorf("%s: upstream client secret expiry %v, want %v", typ.Name, got, want)
		}
		for _, bad := range []string{"tomorrow", "2027-01-31", "2027-13-01T00:00:00Z", string(make([]byte, 65))} {
			values[fieldSecretExpiresAt] = bad
			_, err := typ.Validate(values)
			fe, ok := fieldErrorFor(err, fieldSecretExpiresAt)
			if !ok {
				t.Fatalf("%s: %q accepted (err %v)", typ.Name, bad, err)
			}
			if fe.Rule != ruleTime && fe.Rule != "must be at most 64 bytes" {
				t.Errorf("%s: %q refused with %q, want the time rule", typ.Name, bad, fe.Rule)
			}
		}
	}
	v, err := mustType(t, "certificate").Validate(goodValues(t, "certificate"))
	if err != nil {
		t.Fatal(err)
	}
	if got := upstreamAt(v, lc.UpstreamCertificate); !got.Equal(v.NotAfter) || got.IsZero() {
		t.Errorf("certificate upstream expiry %v, want its not_after %v", got, v.NotAfter)
	}
	if got := upstreamAt(v, lc.UpstreamClientSecret); !got.IsZero() {
		t.Errorf("certificate lists a client secret expiry %v", got)
	}
}

func upstreamAt(v *Validated, field string) time.Time {
	for _, u := range v.Upstream() {
		if u.Field == field {
			return u.At
		}
	}
	return time.Time{}
}
