package oauth

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

func TestFromFields(t *testing.T) {
	t.Parallel()
	base := func(extra map[string]any) map[string]any {
		f := map[string]any{"client_id": "id", "client_secret": oauthtest.ClientSecret}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	m365 := Config{
		Grant:        GrantClientCredentials,
		TokenURL:     "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
		AuthURL:      "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
		ClientID:     "id",
		ClientSecret: oauthtest.ClientSecret,
		Scopes:       []string{"https://graph.microsoft.com/.default"},
		AuthStyle:    AuthStyleBody,
	}
	tests := []struct {
		name    string
		typ     string
		fields  map[string]any
		want    Config
		wantErr string // substring; "" means success
	}{
		{"client credentials", "oauth2_client_credentials", base(map[string]any{
			"token_url": "https://idp.example/token", "scopes": []string{"a", "b"},
			"audience": "https://api.example", "auth_style": "body",
		}), Config{Grant: GrantClientCredentials, TokenURL: "https://idp.example/token", ClientID: "id",
			ClientSecret: oauthtest.ClientSecret, Scopes: []string{"a", "b"}, Audience: "https://api.example", AuthStyle: AuthStyleBody}, ""},
		{"client credentials without token_url", "oauth2_client_credentials", base(nil), Config{}, `"token_url" is required`},
		{"client credentials over http", "oauth2_client_credentials", base(map[string]any{"token_url": "http://idp.example/token"}),
			Config{}, "must use https"},
		{"client credentials over loopback http", "oauth2_client_credentials", base(map[string]any{"token_url": "http://127.0.0.1:8200/token"}),
			Config{Grant: GrantClientCredentials, TokenURL: "http://127.0.0.1:8200/token", ClientID: "id", ClientSecret: oauthtest.ClientSecret}, ""},
		{"bad auth style", "oauth2_client_credentials", base(map[string]any{"token_url": "https://idp.example/token", "auth_style": "query"}),
			Config{}, "auth_style"},
		{"password", "oauth2_password", base(map[string]any{
			"token_url": "https://idp.example/token", "username": "u", "password": oauthtest.Password,
		}), Config{Grant: GrantPassword, TokenURL: "https://idp.example/token", ClientID: "id",
			ClientSecret: oauthtest.ClientSecret, Username: "u", Password: oauthtest.Password}, ""},
		{"password without password", "oauth2_password", base(map[string]any{"token_url": "https://idp.example/token", "username": "u"}),
			Config{}, `"password" is required`},
		{"authorization code, public client", "oauth2_authorization_code", map[string]any{
			"client_id": "id", "auth_url": "https://idp.example/authorize", "token_url": "https://idp.example/token",
			"scopes": []any{"openid", " offline_access "}, "redirect_url": "https://vault.example/v1/integrations/oauth/callback",
		}, Config{Grant: GrantAuthorizationCode, AuthURL: "https://idp.example/authorize", TokenURL: "https://idp.example/token",
			ClientID: "id", Scopes: []string{"openid", "offline_access"}, RedirectURL: "https://vault.example/v1/integrations/oauth/callback",
			AuthStyle: AuthStyleBody}, ""},
		{"authorization code with http auth_url", "oauth2_authorization_code", map[string]any{
			"client_id": "id", "auth_url": "http://idp.example/authorize", "token_url": "https://idp.example/token",
		}, Config{}, "auth_url"},
		{"m365", "m365", base(map[string]any{"tenant": "contoso.onmicrosoft.com"}), m365, ""},
		{"microsoft_graph alias", "microsoft_graph", base(map[string]any{"tenant": "contoso.onmicrosoft.com"}), m365, ""},
		{"m365 scopes as string", "m365", base(map[string]any{"tenant": "fabrikam.onmicrosoft.com", "scopes": "a b,c"}), Config{
			Grant: GrantClientCredentials, TokenURL: "https://login.microsoftonline.com/fabrikam.onmicrosoft.com/oauth2/v2.0/token",
			AuthURL: "https://login.microsoftonline.com/fabrikam.onmicrosoft.com/oauth2/v2.0/authorize", ClientID: "id",
			ClientSecret: oauthtest.ClientSecret, Scopes: []string{"a", "b", "c"}, AuthStyle: AuthStyleBody}, ""},
		{"m365 overrides", "m365", base(map[string]any{
			"tenant": "t.example", "token_url": "https://login.example.us/t/token", "auth_url": "https://login.example.us/t/authorize",
		}), Config{Grant: GrantClientCredentials, TokenURL: "https://login.example.us/t/token",
			AuthURL: "https://login.example.us/t/authorize", ClientID: "id", ClientSecret: oauthtest.ClientSecret,
			Scopes: []string{"https://graph.microsoft.com/.default"}, AuthStyle: AuthStyleBody}, ""},
		{"m365 tenant with a path", "m365", base(map[string]any{"tenant": "../evil"}), Config{}, "tenant"},
		{"zoom", "zoom", base(map[string]any{"account_id": "acct"}), Config{Grant: GrantAccountCredentials,
			TokenURL: "https://zoom.us/oauth/token", AuthURL: "https://zoom.us/oauth/authorize", ClientID: "id", ClientSecret: oauthtest.ClientSecret,
			AuthStyle: AuthStyleHeader, Params: map[string]string{"account_id": "acct"}}, ""},
		{"zoom without account", "zoom", base(nil), Config{}, "account_id"},
		{"servicenow client credentials", "servicenow_oauth", base(map[string]any{"instance": "dev1234"}), Config{
			Grant: GrantClientCredentials, TokenURL: "https://dev1234.service-now.com/oauth_token.do",
			AuthURL: "https://dev1234.service-now.com/oauth_auth.do", ClientID: "id",
			ClientSecret: oauthtest.ClientSecret, AuthStyle: AuthStyleBody}, ""},
		{"servicenow password", "servicenow_oauth", base(map[string]any{"instance": "Dev1234.service-now.com", "username": "u", "password": oauthtest.Password}),
			Config{Grant: GrantPassword, TokenURL: "https://dev1234.service-now.com/oauth_token.do",
				AuthURL: "https://dev1234.service-now.com/oauth_auth.do", ClientID: "id",
				ClientSecret: oauthtest.ClientSecret, AuthStyle: AuthStyleBody, Username: "u", Password: oauthtest.Password}, ""},
		{"servicenow username only", "servicenow_oauth", base(map[string]any{"instance": "dev1", "username": "u"}), Config{}, "together"},
		{"servicenow instance with a host", "servicenow_oauth", base(map[string]any{"instance": "evil.example/x"}), Config{}, "instance"},
		{"cisco", "cisco_client_credentials", base(map[string]any{"auth_url": "https://id.cisco.com/oauth2/default/v1/token"}), Config{
			Grant: GrantClientCredentials, TokenURL: "https://id.cisco.com/oauth2/default/v1/token", ClientID: "id",
			ClientSecret: oauthtest.ClientSecret, AuthStyle: AuthStyleHeader}, ""},
		{"cisco token_url override", "cisco_client_credentials", base(map[string]any{
			"auth_url": "https://id.cisco.com/token", "token_url": "https://127.0.0.1/token",
		}), Config{Grant: GrantClientCredentials, TokenURL: "https://127.0.0.1/token", ClientID: "id",
			ClientSecret: oauthtest.ClientSecret, AuthStyle: AuthStyleHeader}, ""},
		{"missing client_id", "zoom", map[string]any{"account_id": "a", "client_secret": oauthtest.ClientSecret}, Config{}, "client_id"},
		{"non-string field", "oauth2_client_credentials", base(map[string]any{"token_url": 42}), Config{}, "must be a string"},
		{"bad scopes", "oauth2_client_credentials", base(map[string]any{"token_url": "https://idp.example/token", "scopes": []any{1}}),
			Config{}, "scopes"},
		{"not oauth", "basic", base(nil), Config{}, "not an OAuth 2.0 type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := FromFields(tt.typ, tt.fields)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				assertNoLeak(t, err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if typ, _ := credtype.Lookup(tt.typ); typ.Kind != credtype.KindOAuth2 {
				t.Errorf("%s is %s, want oauth2", tt.typ, typ.Kind)
			}
		})
	}
}

func TestConfigValidateReservedParams(t *testing.T) {
	t.Parallel()
	cfg := Config{Grant: GrantAccountCredentials, TokenURL: "https://zoom.us/oauth/token", ClientID: "id",
		Params: map[string]string{"account_id": "a", "grant_type": "password", "client_secret": "x"}}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `"client_secret" is set by the grant`) ||
		!strings.Contains(err.Error(), `"grant_type" is set by the grant`) {
		t.Fatalf("err = %v", err)
	}
}

// FuzzPresetEndpoints checks that no tenant or instance value can move a
// preset's token endpoint off the provider's host.
func FuzzPresetEndpoints(f *testing.F) {
	for _, s := range []string{"contoso", "dev1.service-now.com", "a/../b", "x@evil.com", "x?y=1", "x#f", "évil", "a.b-c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, tc := range []struct{ typ, field, host string }{
			{"m365", "tenant", "login.microsoftonline.com"},
			{"servicenow_oauth", "instance", ""},
		} {
			cfg, err := FromFields(tc.typ, map[string]any{tc.field: v, "client_id": "id", "client_secret": "s"})
			if err != nil {
				continue
			}
			u, err := url.Parse(cfg.TokenURL)
			if err != nil {
				t.Fatalf("%s %q: unparseable token URL %q", tc.typ, v, cfg.TokenURL)
			}
			v := strings.TrimSpace(v) // FromFields trims field values
			want := tc.host
			if want == "" {
				want = strings.TrimSuffix(strings.ToLower(v), ".service-now.com") + ".service-now.com"
			}
			if u.Scheme != "https" || u.Host != want || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("%s %q: token URL %q escapes host %q", tc.typ, v, cfg.TokenURL, want)
			}
			// The catalog's tenant rule stores a domain lower-case, without a trailing dot.
			if tc.typ == "m365" && u.Path != "/"+strings.TrimSuffix(strings.ToLower(v), ".")+"/oauth2/v2.0/token" {
				t.Fatalf("%s %q: path %q", tc.typ, v, u.Path)
			}
		}
	})
}

func TestStringsRedactSecrets(t *testing.T) {
	t.Parallel()
	cfg := Config{Grant: GrantPassword, ClientID: "id", ClientSecret: oauthtest.ClientSecret, Username: "u", Password: oauthtest.Password}
	tok := &Token{AccessToken: "SECRET-access", RefreshToken: "SECRET-refresh", TokenType: "Bearer"}
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), fmt.Sprintf("%v %+v %#v %v", tok, tok, tok, *tok)} {
		assertNoLeak(t, s)
		if strings.Contains(s, "SECRET-") {
			t.Errorf("leaks a secret: %s", s)
		}
	}
}
