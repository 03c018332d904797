package jwtgranttest

import (
	"crypto"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ServiceAccount is a Google service account the server knows: its email, its
// keys by private_key_id, and the users it may act as (domain-wide delegation;
// none: it has no delegation).
type ServiceAccount struct {
	Email     string
	Keys      map[string]crypto.PublicKey
	Delegates []string
}

// Google is a token endpoint following Google's server-to-server contract.
type Google struct {
	recorder
	srv *httptest.Server

	mu       sync.RWMutex
	accounts map[string]ServiceAccount
}

// NewGoogle starts one for the length of t.
func NewGoogle(t testing.TB) *Google {
	g := &Google{accounts: map[string]ServiceAccount{}}
	g.srv = newServer(t, "/token", g.serve)
	return g
}

// TokenURI is the endpoint, as a key file's token_uri names it; assertions must
// name it as aud.
func (g *Google) TokenURI() string { return g.srv.URL + "/token" }

// Add registers a service account (replacing one of the same email).
func (g *Google) Add(a ServiceAccount) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accounts[a.Email] = a
}

func (g *Google) account(email string) (ServiceAccount, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	a, ok := g.accounts[email]
	return a, ok
}

func (g *Google) serve(w http.ResponseWriter, r *http.Request) {
	g.requests.Add(1)
	var rec Request
	tok, e := g.check(w, r, &rec)
	if e != nil {
		fail(w, &rec, &g.recorder, e)
		return
	}
	rec.Status, rec.AccessToken = http.StatusOK, tok
	g.record(rec)
	answer(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
}

func (g *Google) check(w http.ResponseWriter, r *http.Request, rec *Request) (string, *refusal) {
	p, e := read(w, r, rec, func(d string) *refusal { return refuse(http.StatusBadRequest, "invalid_request", d) })
	if e != nil {
		return "", e
	}
	badSig := refuse(http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature.")
	h := p.tok.Headers[0]
	if h.Algorithm != "RS256" {
		return "", badSig
	}
	iss, _ := p.claims["iss"].(string)
	acct, ok := g.account(iss)
	if !ok {
		return "", refuse(http.StatusBadRequest, "invalid_grant", "Invalid grant: account not found")
	}
	pub, ok := acct.Keys[h.KeyID]
	if !ok {
		return "", badSig
	}
	c, err := verify(p, pub)
	if err != nil {
		return "", badSig
	}
	if len(c.Audience) != 1 || c.Audience[0] != g.TokenURI() {
		return "", refuse(http.StatusBadRequest, "invalid_grant", "Invalid JWT: Failed audience check.")
	}
	now := time.Now()
	if c.IssuedAt == nil || c.Expiry == nil || c.IssuedAt.Time().After(now.Add(skew)) || !c.Expiry.Time().After(now.Add(-skew)) ||
		c.Expiry.Time().Sub(c.IssuedAt.Time()) > time.Hour {
		return "", refuse(http.StatusBadRequest, "invalid_grant",
			"Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
	}
	if scope, _ := p.claims["scope"].(string); strings.TrimSpace(scope) == "" {
		return "", refuse(http.StatusBadRequest, "invalid_scope", "Empty or missing scope not allowed.")
	}
	if c.Subject != "" {
		delegated := false
		for _, d := range acct.Delegates {
			delegated = delegated || d == c.Subject
		}
		if !delegated {
			return "", refuse(http.StatusUnauthorized, "unauthorized_client",
				"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
		}
	}
	return randomToken("ya29."), nil
}
