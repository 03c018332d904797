package credtype

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNotifyTargets pins which types receive notifications and how, and that the
// Authorization header a notification carries is the one access/ hands out.
func TestNotifyTargets(t *testing.T) {
	t.Parallel()
	type target struct {
		typ    string
		values map[string]any
		want   NotifyTarget
		ok     bool
	}
	tests := []target{
		{"webhook", map[string]any{"url": "https://hooks.example/x"}, NotifyTarget{URL: "https://hooks.example/x"}, true},
		{"bearer", map[string]any{"url": "https://api.example/n", "token": "t0k"},
			NotifyTarget{URL: "https://api.example/n", Authorization: "Bearer t0k"}, true},
		{"bearer", map[string]any{"url": "https://api.example/n", "token": "t0k", "header_prefix": "Token"},
			NotifyTarget{URL: "https://api.example/n", Authorization: "Token t0k"}, true},
		{"bearer", map[string]any{"token": "t0k"}, NotifyTarget{}, false}, // no url: nowhere to post
		{"slack", map[string]any{"token": "xoxb-1"}, NotifyTarget{SlackAPI: true, Authorization: "Bearer xoxb-1"}, true},
		{"okta", map[string]any{"url": "https://example.okta.com", "token": "t0k"}, NotifyTarget{}, false},
		{"basic", map[string]any{"username": "u", "password": "p"}, NotifyTarget{}, false},
		{"pagerduty", map[string]any{"routing_key": strings.Repeat("a", 32)}, NotifyTarget{}, false},
		{"m365", map[string]any{"tenant": "contoso.onmicrosoft.com"}, NotifyTarget{}, false},
	}
	for _, tt := range tests {
		typ := mustType(t, tt.typ)
		// As the backend holds them: a default the values lack filled in (WithDefaults).
		stored := typ.WithDefaults(typ.Compact(tt.values))
		got, ok := typ.NotifyTarget(&stored)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s %v: NotifyTarget = %+v, %v; want %+v, %v", tt.typ, tt.values, got, ok, tt.want, tt.ok)
		}
		if !ok || got.Authorization == "" {
			continue
		}
		out, err := typ.Access(&stored, nil, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		if out["authorization"] != got.Authorization {
			t.Errorf("%s: notification Authorization %q, access authorization %q", tt.typ, got.Authorization, out["authorization"])
		}
	}
	var none *Type
	if _, ok := none.NotifyTarget(FieldMap(nil)); ok {
		t.Error("an unknown (nil) type receives notifications")
	}
}

func TestDeviceAccountType(t *testing.T) {
	t.Parallel()
	d := DeviceAccountType()
	if d.Name != "device_account" || !d.DeviceIndexed {
		t.Fatalf("DeviceAccountType() = %s (indexed %v)", d.Name, d.DeviceIndexed)
	}
	for _, typ := range All() {
		if typ.DeviceIndexed != (typ == d) {
			t.Errorf("%s: DeviceIndexed = %v", typ.Name, typ.DeviceIndexed)
		}
	}
	for _, f := range []string{"hostname", "ip", "username"} {
		if got, ok := d.Field(f); !ok || !got.Required {
			t.Errorf("the device account type lacks required field %s", f)
		}
	}
}

// TestKindFollowsPreset: a type is oauth2 exactly when it has an OAuth preset, and
// only static types have access material.
func TestKindFollowsPreset(t *testing.T) {
	t.Parallel()
	for _, typ := range All() {
		if (typ.OAuth != nil) != (typ.Kind == KindOAuth2) || (typ.access != nil) == (typ.Kind == KindOAuth2) {
			t.Errorf("%s: kind %s, preset %v, access %v", typ.Name, typ.Kind, typ.OAuth != nil, typ.access != nil)
		}
	}
}

func TestFillEndpoint(t *testing.T) {
	t.Parallel()
	m365 := mustType(t, "m365")
	got, err := m365.FillEndpoint(m365.OAuth.TokenURL, map[string]any{"tenant": " Contoso.onmicrosoft.com "})
	if want := "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"; err != nil || got != want {
		t.Errorf("FillEndpoint = %q, %v; want %q (tenant normalized by its rule)", got, err, want)
	}
	sn := mustType(t, "servicenow_oauth")
	got, err = sn.FillEndpoint(sn.OAuth.AuthURL, map[string]any{"instance": "Dev1.service-now.com"})
	if want := "https://dev1.service-now.com/oauth_auth.do"; err != nil || got != want {
		t.Errorf("FillEndpoint = %q, %v; want %q", got, err, want)
	}
	for _, tc := range []struct {
		typ   *Type
		value any
		rule  string
	}{
		{m365, "../evil", "tenant ID"},
		{m365, "common", "tenant ID"},
		{m365, nil, "is required"},
		{m365, 42, "must be a string"},
		{sn, "evil.example/x", "instance name"},
		{sn, "a\nb", "control"},
	} {
		field := tc.typ.OAuth.TokenURL[strings.Index(tc.typ.OAuth.TokenURL, "{")+1 : strings.Index(tc.typ.OAuth.TokenURL, "}")]
		_, err := tc.typ.FillEndpoint(tc.typ.OAuth.TokenURL, map[string]any{field: tc.value})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field || !strings.Contains(fe.Rule, tc.rule) {
			t.Errorf("%s %q: err = %v, want a %s error mentioning %q", tc.typ.Name, tc.value, err, field, tc.rule)
		}
		if s, ok := tc.value.(string); ok && s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error echoes the value: %v", err)
		}
	}
}

// TestEndpointDescriptionsFromTemplates: what types/ says an endpoint defaults to is
// written from the template FromFields fills.
func TestEndpointDescriptionsFromTemplates(t *testing.T) {
	t.Parallel()
	for name, want := range map[string][2]string{
		"m365": {"https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token", "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/authorize"},
		"zoom": {"https://zoom.us/oauth/token", "https://zoom.us/oauth/authorize"},
		"servicenow_oauth": {"https://<instance>.service-now.com/oauth_token.do",
			"https://<instance>.service-now.com/oauth_auth.do"},
	} {
		typ := mustType(t, name)
		tok, _ := typ.Field("token_url")
		auth, _ := typ.Field("auth_url")
		if tok.Description != "Token endpoint; default "+want[0]+"." || auth.Description != "Authorization endpoint; default "+want[1]+"." {
			t.Errorf("%s: token_url %q, auth_url %q", name, tok.Description, auth.Description)
		}
	}
}

// TestCatalogRefusesInconsistentDeclarations: a preset, a notification or a device
// mark that names a field its type lacks stops the catalog from building.
func TestCatalogRefusesInconsistentDeclarations(t *testing.T) {
	t.Parallel()
	device := func() *Type { return &Type{Name: "d", DeviceIndexed: true, Fields: []Field{use("hostname")}} }
	tests := map[string][]*Type{
		"template field missing": {device(), {Name: "x", OAuth: &OAuthPreset{Grant: "client_credentials", TokenURL: "https://{tenant}.example/t"},
			Fields: []Field{use("client_id")}}},
		"token_url missing":  {device(), {Name: "x", OAuth: &OAuthPreset{Grant: "client_credentials"}, Fields: []Field{use("client_id")}}},
		"param missing":      {device(), {Name: "x", OAuth: &OAuthPreset{Grant: "account_credentials", Params: []string{"account_id"}}, Fields: []Field{use("token_url")}}},
		"password missing":   {device(), {Name: "x", OAuth: &OAuthPreset{Grant: "password"}, Fields: []Field{use("token_url"), use("username")}}},
		"malformed template": {device(), {Name: "x", OAuth: &OAuthPreset{Grant: "client_credentials", TokenURL: "https://{Tenant}/t"}, Fields: []Field{use("tenant")}}},
		"notify url missing": {device(), {Name: "x", notify: &notifySpec{urlField: "url"}, Fields: []Field{use("token")}}},
		"two device types":   {device(), {Name: "y", DeviceIndexed: true}},
		"no device type":     {{Name: "x"}},
	}
	want := map[string]string{
		"template field missing": "uses tenant", "token_url missing": "uses token_url", "param missing": "uses account_id",
		"password missing": "uses password", "malformed template": "malformed endpoint template",
		"notify url missing": "notifies through field url", "two device types": "two DeviceIndexed", "no device type": "no type is DeviceIndexed",
	}
	for name, ts := range tests {
		func() {
			defer func() {
				if msg, _ := recover().(string); !strings.Contains(msg, want[name]) || msg == "" {
					t.Errorf("%s: panic %q, want one mentioning %q", name, msg, want[name])
				}
			}()
			buildCatalog(ts)
		}()
	}
	c := buildCatalog([]*Type{device(), {Name: "x", OAuth: &OAuthPreset{Grant: "client_credentials"}, Fields: []Field{use("token_url")}}})
	if c.deviceAccounts.Name != "d" || c.byName["x"].Kind != KindOAuth2 || c.byName["d"].Kind != KindStatic {
		t.Errorf("derived facts: device %s, kinds %s/%s", c.deviceAccounts.Name, c.byName["x"].Kind, c.byName["d"].Kind)
	}
}

// TestEndpointAllowed is the one https-or-loopback rule of URL fields and oauth.
func TestEndpointAllowed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scheme, host string
		ok           bool
	}{
		{"https", "idp.example", true}, {"http", "localhost", true}, {"http", "LOCALHOST", true},
		{"http", "localhost.", true}, {"http", "127.9.8.7", true}, {"http", "::1", true},
		{"http", "::ffff:127.0.0.1", true}, {"http", "idp.example", false}, {"http", "localhost.evil.com", false},
		{"http", "10.0.0.1", false}, {"http", "::2", false}, {"ftp", "localhost", false}, {"", "localhost", false},
	} {
		if got := EndpointAllowed(tc.scheme, tc.host); got != tc.ok {
			t.Errorf("EndpointAllowed(%q, %q) = %v", tc.scheme, tc.host, got)
		}
	}
}

// TestDefaultScopes: a preset's default scopes are its scopes field's Default, handed
// out as a copy.
func TestDefaultScopes(t *testing.T) {
	t.Parallel()
	m365 := mustType(t, "m365")
	got := m365.DefaultScopes()
	if !slices.Equal(got, []string{"https://graph.microsoft.com/.default"}) || mustType(t, "zoom").DefaultScopes() != nil {
		t.Fatalf("DefaultScopes = %v", got)
	}
	got[0] = "changed"
	if f, _ := m365.Field("scopes"); f.Default.([]string)[0] != "https://graph.microsoft.com/.default" {
		t.Error("DefaultScopes shares the catalog's slice")
	}
}
