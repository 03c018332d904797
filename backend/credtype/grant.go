package credtype

import (
	"cmp"
	"fmt"
	"net/url"
)

// Grant is how an oauth2-kind credential obtains access tokens. Preset endpoints and
// grant types are catalog knowledge, kept here with the presets, so the token code
// needs no per-type switch. Secrets stay in the values, under their field names
// (client_id, client_secret, username, password).
type Grant struct {
	// Type is the grant_type of the token request: "client_credentials", "password",
	// "authorization_code", or Zoom's "account_credentials".
	Type string
	// TokenURL is the token endpoint: the token_url override, else the preset's.
	TokenURL string
	// AuthURL is the authorization endpoint, where a person consents; the
	// authorization_code grant needs it, presets show their default.
	AuthURL string
	// AuthStyle says how client_id and client_secret reach the token endpoint:
	// "header" (HTTP Basic, RFC 6749 section 2.3.1) or "body" (form parameters).
	AuthStyle string
	// Scopes to request; empty means the provider's default.
	Scopes []string
	// Params are further non-secret token-request parameters, such as Zoom's
	// account_id or an audience.
	Params map[string]string
}

// Grant returns how a credential of an oauth2 kind, with the given validated values,
// obtains tokens. Static kinds have no grant.
func (t *Type) Grant(values map[string]any) (Grant, error) {
	if t.grant == nil {
		return Grant{}, fmt.Errorf("credential type %q is %s: it has no OAuth 2.0 grant", t.Name, t.Kind)
	}
	return t.grant(values), nil
}

func scopes(values map[string]any) []string {
	s, _ := stringList(values["scopes"])
	return s
}

func genericGrant(grantType string) func(map[string]any) Grant {
	return func(v map[string]any) Grant {
		g := Grant{
			Type:      grantType,
			TokenURL:  str(v, "token_url"),
			AuthStyle: cmp.Or(str(v, "auth_style"), "header"),
			Scopes:    scopes(v),
		}
		if a := str(v, "audience"); a != "" {
			g.Params = map[string]string{"audience": a}
		}
		return g
	}
}

// authorizationCodeGrant sends a public client's (no secret) client_id in the body,
// where RFC 6749 section 4.1.3 puts it; a confidential client uses HTTP Basic.
func authorizationCodeGrant(v map[string]any) Grant {
	style := "header"
	if str(v, "client_secret") == "" {
		style = "body"
	}
	return Grant{
		Type:      "authorization_code",
		TokenURL:  str(v, "token_url"),
		AuthURL:   str(v, "auth_url"),
		AuthStyle: style,
		Scopes:    scopes(v),
	}
}

// m365Grant uses the Microsoft identity platform v2.0 endpoints of the tenant, which
// document the client secret as a form parameter.
func m365Grant(v map[string]any) Grant {
	base := "https://login.microsoftonline.com/" + url.PathEscape(str(v, "tenant")) + "/oauth2/v2.0/"
	return Grant{
		Type:      "client_credentials",
		TokenURL:  cmp.Or(str(v, "token_url"), base+"token"),
		AuthURL:   cmp.Or(str(v, "auth_url"), base+"authorize"),
		AuthStyle: "body",
		Scopes:    scopes(v),
	}
}

// zoomGrant is Zoom's Server-to-Server OAuth: grant_type=account_credentials with the
// account_id, client credentials in HTTP Basic only.
func zoomGrant(v map[string]any) Grant {
	return Grant{
		Type:      "account_credentials",
		TokenURL:  cmp.Or(str(v, "token_url"), "https://zoom.us/oauth/token"),
		AuthURL:   cmp.Or(str(v, "auth_url"), "https://zoom.us/oauth/authorize"),
		AuthStyle: "header",
		Params:    map[string]string{"account_id": str(v, "account_id")},
	}
}

// serviceNowGrant uses the instance's oauth_token.do, with the password grant when a
// user is given (finishServiceNow makes sure the password comes with it).
func serviceNowGrant(v map[string]any) Grant {
	base := "https://" + str(v, "instance") + ".service-now.com/"
	grant := "client_credentials"
	if str(v, "username") != "" {
		grant = "password"
	}
	return Grant{
		Type:      grant,
		TokenURL:  cmp.Or(str(v, "token_url"), base+"oauth_token.do"),
		AuthURL:   cmp.Or(str(v, "auth_url"), base+"oauth_auth.do"),
		AuthStyle: "body",
	}
}

// ciscoGrant posts to auth_url, which Cisco's APIs name the token endpoint.
func ciscoGrant(v map[string]any) Grant {
	return Grant{
		Type:      "client_credentials",
		TokenURL:  cmp.Or(str(v, "token_url"), str(v, "auth_url")),
		AuthStyle: "header",
	}
}

func finishServiceNow(v *Validated) FieldErrors {
	user, pass := str(v.Values, "username") != "", str(v.Values, "password") != ""
	switch {
	case user && !pass:
		return FieldErrors{{Field: "password", Rule: "is required when username is set (they select the password grant together)"}}
	case pass && !user:
		return FieldErrors{{Field: "username", Rule: "is required when password is set (they select the password grant together)"}}
	}
	return nil
}
