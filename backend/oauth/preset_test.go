package oauth

import (
	"maps"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// sample holds a valid value for every field an OAuth type may require.
var sample = map[string]any{
	"tenant": "contoso.onmicrosoft.com", "instance": "dev1", "account_id": "acct",
	"client_id": "id", "client_secret": "s", "username": "u", "password": "p",
	"auth_url": "https://idp.example/authorize", "token_url": "https://idp.example/token",
	"device_authorization_url": "https://idp.example/device", "app_id": "1", "installation_id": "2", "private_key": "k",
}

// keySample is an RSA client key (PKCS#8 PEM) for the JWT-bearer types.
var keySample = sync.OnceValue(func() string { return fixtures.KeyPEM(fixtures.RSAKey()) })

// requiredSample is the sample value of each field typ requires.
func requiredSample(typ *credtype.Type) map[string]any {
	sample := maps.Clone(sample)
	sample["issuer"], sample["consumer_key"], sample["client_key"] = "iss", "ck", keySample()
	sample["scopes"] = []string{"s1"}
	sample["service_account_key"] = fixtures.ServiceAccountKey(fixtures.RSAKey(), "sa@p.iam.gserviceaccount.com", "kid1", "https://oauth2.googleapis.com/token")
	fields := map[string]any{}
	for _, g := range typ.Fields {
		// client_key "required unless generate_client_key is set": the backend hands
		// FromFields a generated key as client_key, so it is required here too.
		always := g.RequiredWhen != nil && g.RequiredWhen.Field == ""
		if g.Required || always || g.OneOf != nil && g.OneOf.Exactly && g.OneOf.Fields[0] == g.Name {
			fields[g.Name] = sample[g.Name]
		}
	}
	return fields
}

// TestEveryPresetBuilds: each OAuth type of the catalog, given its required fields,
// yields a valid Config (so its grant is one Mint supports), and only OAuth types do.
func TestEveryPresetBuilds(t *testing.T) {
	t.Parallel()
	for _, typ := range credtype.All() {
		cfg, err := FromFields(typ.Name, requiredSample(typ))
		switch {
		case typ.Kind != credtype.KindOAuth2:
			if err == nil {
				t.Errorf("%s (static) built an OAuth config", typ.Name)
			}
		case err != nil:
			t.Errorf("%s: %v", typ.Name, err)
		case string(cfg.Grant) != typ.OAuth.Grant && !typ.OAuth.PasswordGrantWithUser:
			t.Errorf("%s: grant %s, preset says %s", typ.Name, cfg.Grant, typ.OAuth.Grant)
		}
	}
}

// TestEndpointDefaultsAsAdvertised: every OAuth type whose token_url or auth_url
// description (what types/ shows) advertises a default gets exactly that endpoint
// from FromFields when the field is unset. The zoom and servicenow_oauth auth_url
// defaults used to be advertised and never applied.
func TestEndpointDefaultsAsAdvertised(t *testing.T) {
	t.Parallel()
	fill := strings.NewReplacer("<tenant>", "contoso.onmicrosoft.com", "<instance>", "dev1")
	advertised := regexp.MustCompile(`; default (\S+)\.$`)
	checked := map[string]bool{}
	for _, typ := range credtype.All() {
		if typ.Kind != credtype.KindOAuth2 {
			continue
		}
		for _, ep := range []string{"token_url", "auth_url"} {
			f, ok := typ.Field(ep)
			m := advertised.FindStringSubmatch(f.Description)
			if !ok || m == nil {
				continue
			}
			cfg, err := FromFields(typ.Name, requiredSample(typ))
			if err != nil {
				t.Fatalf("%s: %v", typ.Name, err)
			}
			got := map[string]string{"token_url": cfg.TokenURL, "auth_url": cfg.AuthURL}[ep]
			if want := fill.Replace(m[1]); got != want {
				t.Errorf("%s %s = %q, but types/ advertises the default %q", typ.Name, ep, got, want)
			}
			checked[typ.Name+" "+ep] = true
		}
	}
	for _, k := range []string{"m365 token_url", "m365 auth_url", "zoom token_url", "zoom auth_url",
		"servicenow_oauth token_url", "servicenow_oauth auth_url"} {
		if !checked[k] {
			t.Errorf("%s: the catalog no longer advertises a default", k)
		}
	}
}

// TestStoredEndpointsAreUsable: an endpoint the catalog accepts for a token_url (and
// so stores) is one CheckEndpoint accepts at mint time, and a plain-http one the
// catalog refuses is refused here too: both follow credtype.EndpointAllowed. The
// catalog used to accept http://localhost./ (a trailing dot) that oauth then refused.
func TestStoredEndpointsAreUsable(t *testing.T) {
	t.Parallel()
	typ, _ := credtype.Lookup("oauth2_client_credentials")
	for _, raw := range []string{
		"https://idp.example/token", "http://localhost:8080/token", "http://localhost./token", "http://LOCALHOST/t",
		"http://127.0.0.1/token", "http://[::1]:9000/token", "http://[::ffff:127.0.0.1]/t",
		"http://idp.example/token", "http://10.0.0.1/token", "http://localhost.evil.com/token", "http://[::2]/token",
	} {
		v, err := typ.Validate(map[string]any{"token_url": raw, "client_id": "id", "client_secret": "s"})
		stored := err == nil
		if stored {
			raw = v.Values["token_url"].(string)
		}
		if usable := CheckEndpoint(raw) == nil; usable != stored {
			t.Errorf("%q: the catalog stores it: %v, CheckEndpoint accepts it: %v", raw, stored, usable)
		}
	}
}
