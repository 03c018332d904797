package credtype

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// TestJWTBearerRules: each rule of oauth2_jwt_bearer's own fields refuses with a 400
// naming the field; the defaults are form and 5m.
func TestJWTBearerRules(t *testing.T) {
	t.Parallel()
	typ := mustType(t, "oauth2_jwt_bearer")
	v, err := typ.Validate(goodValues(t, "oauth2_jwt_bearer"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Values["scope_in"] != "form" || v.Values["assertion_lifetime"] != "5m0s" {
		t.Errorf("defaults: %v", v.Values)
	}
	for _, tc := range []struct {
		field string
		value any
		rule  string
	}{
		{"claims", map[string]any{"iss": "x"}, "must not be a claim the engine sets"},
		{"claims", map[string]any{"exp": "1"}, "must not be a claim the engine sets"},
		{"claims", map[string]any{"jti": "1"}, "must not be a claim the engine sets"},
		{"scope_in", "query", `must be "form" or "claim"`},
		{"assertion_lifetime", "2h", "from 10s to 1h"},
		{"assertion_lifetime", "3601", "from 10s to 1h"},
		{"assertion_lifetime", "5s", "from 10s to 1h"},
		{"assertion_lifetime", "soon", "must be a duration"},
		{"client_key", fixtures.KeyPEM(fixtures.NewKey("rsa1024")), "at least 2048 bits"},
		{"issuer", "two words", "must not contain spaces"},
	} {
		in := goodValues(t, "oauth2_jwt_bearer")
		in[tc.field] = tc.value
		_, err := typ.Validate(in)
		wantFieldError(t, err, tc.field, tc.rule)
	}
	for d, want := range map[string]string{"300": "5m0s", "1h": "1h0m0s", "10s": "10s", "90s": "1m30s"} {
		in := goodValues(t, "oauth2_jwt_bearer")
		in["assertion_lifetime"] = d
		v, err := typ.Validate(in)
		if err != nil || v.Values["assertion_lifetime"] != want {
			t.Errorf("assertion_lifetime %s: %v %v, want %s", d, v, err, want)
		}
	}
	in := goodValues(t, "oauth2_jwt_bearer")
	in["scope_in"], in["claims"] = "claim", map[string]any{"scope": "x"}
	_, err = typ.Validate(in)
	wantFieldError(t, err, "claims", "must not set scope")
	in = goodValues(t, "oauth2_jwt_bearer")
	in["client_secret"] = "s"
	_, err = typ.Validate(in)
	wantFieldError(t, err, "client_id", "required when client_secret is set")

	a, err := typ.JWTAssertion(v.Values)
	if err != nil || a.Issuer != "svc-1" || a.Audience != "https://auth.example.com/oauth2/token" || a.Lifetime != 5*time.Minute || a.ScopeClaim {
		t.Errorf("assertion %v %v", a, err)
	}
	if strings.Contains(a.String(), "PRIVATE") || strings.Contains(a.GoString(), "PRIVATE") {
		t.Error("Assertion.String shows the key")
	}
}

// TestServiceAccountKeyRules: a key file as Google issues it is accepted and its
// client_email and private_key_id (never the key) become derived values; anything
// else is refused naming service_account_key, quoting nothing of it.
func TestServiceAccountKeyRules(t *testing.T) {
	t.Parallel()
	typ := mustType(t, "google_service_account")
	v, err := typ.Validate(goodValues(t, "google_service_account"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Derived["client_email"] != "sa@project-1.iam.gserviceaccount.com" || v.Derived["private_key_id"] != "0123abcd" {
		t.Errorf("derived %v", v.Derived)
	}
	for k, d := range v.Derived {
		if s, ok := d.(string); ok && strings.Contains(s, "PRIVATE KEY") {
			t.Errorf("derived %s holds the key", k)
		}
	}
	good := map[string]any{}
	_ = json.Unmarshal([]byte(goodValues(t, "google_service_account")["service_account_key"].(string)), &good)
	p := pki()
	for name, mut := range map[string]func(m map[string]any){
		"authorized_user":  func(m map[string]any) { m["type"] = "authorized_user" },
		"external_account": func(m map[string]any) { m["type"] = "external_account" },
		"no client_email":  func(m map[string]any) { delete(m, "client_email") },
		"no key id":        func(m map[string]any) { delete(m, "private_key_id") },
		"no key":           func(m map[string]any) { delete(m, "private_key") },
		"EC key":           func(m map[string]any) { m["private_key"] = p.ecPKCS8 },
		"encrypted key":    func(m map[string]any) { m["private_key"] = p.rsaPKCS8Encrypted },
		"small RSA key":    func(m map[string]any) { m["private_key"] = fixtures.KeyPEM(fixtures.NewKey("rsa1024")) },
		"http token_uri":   func(m map[string]any) { m["token_uri"] = "http://oauth2.example.com/token" },
		"no token_uri":     func(m map[string]any) { delete(m, "token_uri") },
	} {
		m := map[string]any{}
		for k, x := range good {
			m[k] = x
		}
		mut(m)
		b, _ := json.Marshal(m)
		in := goodValues(t, "google_service_account")
		in["service_account_key"] = string(b)
		_, err := typ.Validate(in)
		wantFieldError(t, err, "service_account_key", "must")
		if fe, _ := fieldErrorFor(err, "service_account_key"); fe != nil && (strings.Contains(fe.Rule, "PRIVATE") || strings.Contains(fe.Rule, "project-1")) {
			t.Errorf("%s: the refusal quotes the file: %s", name, fe.Rule)
		}
	}
	for name, bad := range map[string]string{"not JSON": "-----BEGIN PRIVATE KEY-----", "two objects": "{} {}", "array": "[]"} {
		in := goodValues(t, "google_service_account")
		in["service_account_key"] = bad
		_, err := typ.Validate(in)
		if _, ok := fieldErrorFor(err, "service_account_key"); !ok {
			t.Errorf("%s: %v, want a refusal of service_account_key", name, err)
		}
	}
	a, err := typ.JWTAssertion(v.Values)
	if err != nil || a.Issuer != "sa@project-1.iam.gserviceaccount.com" || a.Audience != "https://oauth2.googleapis.com/token" ||
		a.TokenURL != a.Audience || a.KeyID != "0123abcd" || a.Algorithm != "RS256" || !a.ScopeClaim || a.Lifetime > time.Hour {
		t.Errorf("assertion %v %v", a, err)
	}
}

// TestSalesforceRules: login_url defaults to production and must be an origin;
// client_key must be RSA (RS256 only); the assertion lives at most 3 minutes.
func TestSalesforceRules(t *testing.T) {
	t.Parallel()
	typ := mustType(t, "salesforce_jwt")
	v, err := typ.Validate(goodValues(t, "salesforce_jwt"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Values["login_url"] != "https://login.salesforce.com" {
		t.Errorf("login_url default %v", v.Values["login_url"])
	}
	p := pki()
	for _, tc := range []struct {
		field string
		value string
		rule  string
	}{
		{"client_key", p.ecPKCS8, "must be an RSA key"},
		{"client_key", p.edPKCS8, "must be an RSA key"},
		{"login_url", "https://login.salesforce.com/services/oauth2/token", "without a path"},
		{"login_url", "http://login.salesforce.com", "https URL"},
		{"consumer_key", "a b", "must not contain spaces"},
	} {
		in := goodValues(t, "salesforce_jwt")
		in[tc.field] = tc.value
		_, err := typ.Validate(in)
		wantFieldError(t, err, tc.field, tc.rule)
	}
	in := goodValues(t, "salesforce_jwt")
	in["login_url"] = "https://acme--uat.sandbox.my.salesforce.com/"
	v, err = typ.Validate(in)
	if err != nil {
		t.Fatal(err)
	}
	a, err := typ.JWTAssertion(v.Values)
	if err != nil || a.Audience != "https://test.salesforce.com" || a.Issuer != "3MVG9abc" || a.Subject != "api@example.com" ||
		a.Lifetime > 3*time.Minute || a.Algorithm != "RS256" {
		t.Errorf("assertion %v %v", a, err)
	}
	if _, err := mustType(t, "basic").JWTAssertion(nil); err == nil {
		t.Error("a static type gave an assertion")
	}
}
