package jwtgranttest

import (
	"crypto"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The login servers an assertion's aud names.
const (
	SalesforceLogin = "https://login.salesforce.com"
	SalesforceTest  = "https://test.salesforce.com"
)

// maxExp is how far ahead a Salesforce assertion's exp may be.
const maxExp = 3 * time.Minute

// ConnectedApp is a Salesforce connected app the server knows: its consumer key, the
// public key of the certificate uploaded to it, and the users pre-authorized for it.
type ConnectedApp struct {
	ConsumerKey string
	Key         crypto.PublicKey
	Users       []string
}

// Salesforce is a token endpoint following Salesforce's JWT bearer flow.
type Salesforce struct {
	recorder
	srv *httptest.Server
	// Audience is the aud the server is: SalesforceLogin or SalesforceTest.
	audience    string
	instanceURL string

	mu   sync.RWMutex
	apps map[string]ConnectedApp
}

// NewSalesforce starts one for the length of t, answering as an org at instanceURL,
// on the login server audience (SalesforceLogin or SalesforceTest).
func NewSalesforce(t testing.TB, audience, instanceURL string) *Salesforce {
	s := &Salesforce{audience: audience, instanceURL: instanceURL, apps: map[string]ConnectedApp{}}
	s.srv = newServer(t, "/services/oauth2/token", s.serve)
	return s
}

// LoginURL is the server's origin: a credential's login_url (like a My Domain URL,
// it is where the token is requested; the aud stays the login server's).
func (s *Salesforce) LoginURL() string { return s.srv.URL }

// Add registers a connected app.
func (s *Salesforce) Add(a ConnectedApp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[a.ConsumerKey] = a
}

func (s *Salesforce) app(key string) (ConnectedApp, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.apps[key]
	return a, ok
}

func (s *Salesforce) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	var rec Request
	tok, e := s.check(w, r, &rec)
	if e != nil {
		fail(w, &rec, &s.recorder, e)
		return
	}
	rec.Status, rec.AccessToken = http.StatusOK, tok
	s.record(rec)
	answer(w, http.StatusOK, map[string]any{
		"access_token": tok, "scope": "api", "instance_url": s.instanceURL,
		"id": SalesforceLogin + "/id/00D000000000001EAA/005000000000001AAA", "token_type": "Bearer",
		"issued_at": strconv.FormatInt(time.Now().UnixMilli(), 10), "signature": randomToken(""),
	})
}

func (s *Salesforce) check(w http.ResponseWriter, r *http.Request, rec *Request) (string, *refusal) {
	p, e := read(w, r, rec, func(d string) *refusal { return refuse(http.StatusBadRequest, "invalid_request", d) })
	if e != nil {
		return "", e
	}
	iss, _ := p.claims["iss"].(string)
	app, ok := s.app(iss)
	if !ok {
		return "", refuse(http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
	}
	if p.tok.Headers[0].Algorithm != "RS256" {
		return "", refuse(http.StatusBadRequest, "invalid_grant", "invalid assertion")
	}
	c, err := verify(p, app.Key)
	if err != nil {
		return "", refuse(http.StatusBadRequest, "invalid_grant", "invalid assertion")
	}
	if len(c.Audience) != 1 || c.Audience[0] != s.audience {
		return "", refuse(http.StatusBadRequest, "invalid_grant", "audience is invalid")
	}
	now := time.Now()
	if c.Expiry == nil || !c.Expiry.Time().After(now) || c.Expiry.Time().After(now.Add(maxExp+skew)) {
		return "", refuse(http.StatusBadRequest, "invalid_grant", "expired authorization code")
	}
	for _, u := range app.Users {
		if u == c.Subject {
			return randomToken("00D000000000001!"), nil
		}
	}
	return "", refuse(http.StatusBadRequest, "invalid_grant", "user hasn't approved this consumer")
}
