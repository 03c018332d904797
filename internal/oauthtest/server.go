package oauthtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Server is the authorization server behind a Provider's endpoints. The Provider's
// handler in front of it counts, records, faults and translates Zoom's grant; the
// Server answers what is left as an RFC 6749 server would.
//
// The plugin module's unit tests run against stdServer (this file, the standard
// library only, so the plugin's go.mod names no OAuth server library). The
// end-to-end module (e2e/internal/oauthtest) puts go-oauth2's server here instead: a
// separate implementation, which catches the places where the client and a provider
// read RFC 6749 differently. The package's own tests run against both.
type Server interface {
	// Token answers a token request. Its form is parsed and a Zoom grant has become
	// client_credentials already.
	Token(w http.ResponseWriter, r *http.Request)
	// Authorize answers an authorization request as a user who approves at once: a
	// redirect to the client's redirect_uri with a code, or with an error. It returns
	// an error, having written nothing, for a request it cannot redirect.
	Authorize(w http.ResponseWriter, r *http.Request) error
	// Set makes the tokens issued from now on live accessTTL, and refresh_token
	// grants rotate the refresh token or not (Options.Rotate). The Provider calls it
	// with no request in flight.
	Set(accessTTL time.Duration, rotate bool)
	TokenStore
}

// ServerConfig is what a Server is built from: the Options with their defaults
// filled in, and Issued, which the Server calls for every token it issues.
type ServerConfig struct {
	Domain, ClientSecret, Password, ClientAuth string
	ForcePKCE                                  bool
	AccessTTL                                  time.Duration
	Rotate                                     bool
	Issued                                     func(Token)
}

// TokenStore is what a user or an administrator does at the provider.
type TokenStore interface {
	// RemoveByRefresh revokes the grant of a refresh token: it is refused from now
	// on. An unknown token is no error.
	RemoveByRefresh(ctx context.Context, refresh string) error
	// GetByAccess is what the server knows of an access token it issued, expired or
	// not; nil (and no error) for one it does not know, or whose grant was refreshed.
	GetByAccess(ctx context.Context, access string) (TokenInfo, error)
}

// TokenInfo is an issued access token's lifetime.
type TokenInfo interface {
	GetAccessCreateAt() time.Time
	GetAccessExpiresIn() time.Duration
}

// The lifetimes of what stdServer issues besides access tokens (go-oauth2's
// defaults, which the tests were written against).
const codeTTL = 10 * time.Minute

// stdServer is an RFC 6749 authorization server on the standard library, shaped as
// the go-oauth2 server the tests first ran against was configured: one client, one
// user, the authorization code (PKCE S256 only), password, client credentials and
// refresh token grants; refresh tokens for the code and password grants only; a
// refresh issues a new access token, retires the old one, and rotates the refresh
// token only when told. Where go-oauth2 answered server_error for a request a
// client got wrong (an unknown client, a redirect URI off the domain, a verifier
// without a challenge), this answers the same, so a test sees what it saw before.
type stdServer struct {
	cfg ServerConfig

	mu        sync.Mutex
	accessTTL time.Duration
	rotate    bool
	codes     map[string]*grant
	access    map[string]*issue
	refresh   map[string]*grant
}

// grant is what a code or a refresh token stands for.
type grant struct {
	userID, redirectURI, scope string
	challenge                  string    // codes: the S256 code challenge, "" for none
	expires                    time.Time // codes: when the code lapses
	access                     string    // refresh tokens: the access token issued last
}

// issue is one access token issued.
type issue struct {
	created time.Time
	ttl     time.Duration
}

func (i *issue) GetAccessCreateAt() time.Time      { return i.created }
func (i *issue) GetAccessExpiresIn() time.Duration { return i.ttl }

// NewStdServer is the standard-library Server (the default of Options.Server).
func NewStdServer(cfg ServerConfig) (Server, error) {
	return &stdServer{cfg: cfg, accessTTL: cfg.AccessTTL, rotate: cfg.Rotate,
		codes: map[string]*grant{}, access: map[string]*issue{}, refresh: map[string]*grant{}}, nil
}

// oauthError is an RFC 6749 error with its status, as go-oauth2 sent it.
type oauthError struct {
	code        string
	status      int
	description string
}

func (e *oauthError) Error() string { return e.code }

var (
	errInvalidRequest    = &oauthError{"invalid_request", http.StatusBadRequest, "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed"}
	errUnauthorized      = &oauthError{"unauthorized_client", http.StatusUnauthorized, "The client is not authorized to request an authorization code using this method"}
	errUnsupportedResp   = &oauthError{"unsupported_response_type", http.StatusUnauthorized, "The authorization server does not support obtaining an authorization code using this method"}
	errServer            = &oauthError{"server_error", http.StatusInternalServerError, "The authorization server encountered an unexpected condition that prevented it from fulfilling the request"}
	errInvalidClient     = &oauthError{"invalid_client", http.StatusUnauthorized, "Client authentication failed"}
	errInvalidGrant      = &oauthError{"invalid_grant", http.StatusUnauthorized, "The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client"}
	errUnsupportedGrant  = &oauthError{"unsupported_grant_type", http.StatusUnauthorized, "The authorization grant type is not supported by the authorization server"}
	errChallengeRequired = &oauthError{"invalid_request", http.StatusBadRequest, "PKCE is required. code_challenge is missing"}
	errChallengeMethod   = &oauthError{"invalid_request", http.StatusBadRequest, "Selected code_challenge_method not supported"}
	errChallengeLength   = &oauthError{"invalid_request", http.StatusBadRequest, "Code challenge length must be between 43 and 128 characters long"}
)

func (s *stdServer) Set(accessTTL time.Duration, rotate bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessTTL, s.rotate = accessTTL, rotate
}

func (s *stdServer) RemoveByRefresh(_ context.Context, refresh string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, refresh)
	return nil
}

func (s *stdServer) GetByAccess(_ context.Context, access string) (TokenInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.access[access]; ok {
		return i, nil
	}
	return nil, nil
}

func (s *stdServer) Authorize(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost || r.FormValue("client_id") == "" {
		return errInvalidRequest
	}
	switch r.FormValue("response_type") {
	case "":
		return errUnsupportedResp
	case "code":
	default:
		return errUnauthorized
	}
	challenge := r.FormValue("code_challenge")
	if challenge == "" && s.cfg.ForcePKCE {
		return errChallengeRequired
	}
	if challenge != "" && (len(challenge) < 43 || len(challenge) > 128) {
		return errChallengeLength
	}
	// No method means plain, which is refused as every method but S256 is.
	if r.FormValue("code_challenge_method") != "S256" {
		return errChallengeMethod
	}
	redirectURI := r.FormValue("redirect_uri")
	var answer url.Values
	switch {
	case r.FormValue("client_id") != ClientID:
		answer = s.errorValues(errServer) // go-oauth2's client store: "not found"
	case redirectURI != "" && !s.onDomain(redirectURI):
		answer = s.errorValues(errServer) // go-oauth2: "invalid redirect uri"
	default:
		code := newToken()
		s.mu.Lock()
		s.codes[code] = &grant{userID: UserID, redirectURI: redirectURI, scope: r.FormValue("scope"),
			challenge: challenge, expires: time.Now().Add(codeTTL)}
		s.mu.Unlock()
		answer = url.Values{"code": {code}}
	}
	if redirectURI == "" {
		redirectURI = s.cfg.Domain
	}
	u, err := url.Parse(redirectURI)
	if err != nil {
		return err
	}
	q := u.Query()
	if state := r.FormValue("state"); state != "" {
		q.Set("state", state)
	}
	for k, v := range answer {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
	return nil
}

// onDomain is go-oauth2's check of a redirect URI against the client's domain: its
// host ends with the domain's host.
func (s *stdServer) onDomain(redirectURI string) bool {
	base, err1 := url.Parse(s.cfg.Domain)
	u, err2 := url.Parse(redirectURI)
	return err1 == nil && err2 == nil && strings.HasSuffix(u.Host, base.Host)
}

func (s *stdServer) Token(w http.ResponseWriter, r *http.Request) {
	answer, err := s.token(r)
	if err != nil {
		var oe *oauthError
		if !errors.As(err, &oe) {
			oe = errServer
		}
		writeToken(w, oe.status, map[string]any{"error": oe.code, "error_description": oe.description + " " + Marker})
		return
	}
	writeToken(w, http.StatusOK, answer)
}

// writeToken sends a token endpoint's JSON answer with go-oauth2's headers.
func writeToken(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *stdServer) token(r *http.Request) (map[string]any, error) {
	if r.Method != http.MethodPost {
		return nil, errInvalidRequest
	}
	gt := r.FormValue("grant_type")
	switch gt {
	case "authorization_code", "password", "client_credentials", "refresh_token":
	default:
		return nil, errUnsupportedGrant // before client authentication, as go-oauth2
	}
	id, secret, err := s.client(r)
	if err != nil {
		return nil, err
	}
	switch gt {
	case "authorization_code":
		redirectURI, code, verifier := r.FormValue("redirect_uri"), r.FormValue("code"), r.FormValue("code_verifier")
		if redirectURI == "" || code == "" || s.cfg.ForcePKCE && verifier == "" {
			return nil, errInvalidRequest
		}
		if err := s.authenticate(id, secret); err != nil {
			return nil, err
		}
		if !s.onDomain(redirectURI) {
			return nil, errServer
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		g, ok := s.codes[code]
		if !ok || time.Now().After(g.expires) || g.redirectURI != "" && g.redirectURI != redirectURI {
			return nil, errInvalidGrant
		}
		delete(s.codes, code) // a code is good once
		switch {
		case g.challenge == "" && verifier == "":
		case g.challenge == "" || verifier == "":
			return nil, errServer // go-oauth2: "missing code verifier"
		default:
			sum := sha256.Sum256([]byte(verifier))
			if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.challenge)) != 1 {
				return nil, errInvalidGrant
			}
		}
		return s.issueLocked(&grant{userID: g.userID, redirectURI: redirectURI, scope: g.scope}, true), nil
	case "password":
		username, password := r.FormValue("username"), r.FormValue("password")
		if username == "" || password == "" {
			return nil, errInvalidRequest
		}
		if username != Username || password != s.cfg.Password {
			return nil, errInvalidGrant
		}
		if err := s.authenticate(id, secret); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.issueLocked(&grant{userID: UserID, scope: r.FormValue("scope")}, true), nil
	case "client_credentials":
		if err := s.authenticate(id, secret); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.issueLocked(&grant{scope: r.FormValue("scope")}, false), nil
	case "refresh_token":
		// As go-oauth2: the client is named but its secret is not checked on a refresh.
		rt := r.FormValue("refresh_token")
		if rt == "" {
			return nil, errInvalidRequest
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		g, ok := s.refresh[rt]
		if !ok {
			return nil, errInvalidGrant
		}
		if scope := r.FormValue("scope"); scope != "" {
			g.scope = scope
		}
		delete(s.access, g.access) // as go-oauth2, a refresh retires the access token it replaces
		if !s.rotate {
			answer := s.accessLocked(g)
			s.cfg.Issued(Token{Access: answer["access_token"].(string)})
			return answer, nil
		}
		delete(s.refresh, rt)
		return s.issueLocked(g, true), nil
	}
	return nil, errUnsupportedGrant
}

// client is the client's id and secret, from HTTP Basic or the form as
// Options.ClientAuth allows.
func (s *stdServer) client(r *http.Request) (id, secret string, err error) {
	if id, secret, ok := r.BasicAuth(); ok && s.cfg.ClientAuth != ClientAuthBody {
		return id, secret, nil
	}
	if s.cfg.ClientAuth == ClientAuthHeader || r.Form.Get("client_id") == "" {
		return "", "", errInvalidClient
	}
	return r.Form.Get("client_id"), r.Form.Get("client_secret"), nil
}

func (s *stdServer) authenticate(id, secret string) error {
	if id != ClientID {
		return errServer // go-oauth2's client store: "not found"
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) != 1 {
		return errInvalidClient
	}
	return nil
}

// issueLocked issues an access token for g, with a new refresh token when
// withRefresh, records it and returns the token endpoint's answer. The caller holds
// s.mu.
func (s *stdServer) issueLocked(g *grant, withRefresh bool) map[string]any {
	answer := s.accessLocked(g)
	tok := Token{Access: answer["access_token"].(string)}
	if withRefresh {
		tok.Refresh = newToken()
		s.refresh[tok.Refresh] = g
		answer["refresh_token"] = tok.Refresh
	}
	s.cfg.Issued(tok)
	return answer
}

// accessLocked issues an access token for g and returns the answer without a
// refresh token. The caller holds s.mu.
func (s *stdServer) accessLocked(g *grant) map[string]any {
	access := newToken()
	g.access = access
	s.access[access] = &issue{created: time.Now(), ttl: s.accessTTL}
	answer := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int64(s.accessTTL / time.Second)}
	if g.scope != "" {
		answer["scope"] = g.scope
	}
	return answer
}

// errorValues is an error as the redirect of an authorization request carries it.
func (s *stdServer) errorValues(e *oauthError) url.Values {
	return url.Values{"error": {e.code}, "error_description": {e.description + " " + Marker}}
}

// newToken is an opaque token or code of go-oauth2's shape: 36 characters of random
// text, base64url and upper case (48 characters).
func newToken() string {
	return strings.ToUpper(base64.RawURLEncoding.EncodeToString([]byte((rand.Text() + rand.Text())[:36])))
}
