//go:build !oauth2lib

package oauth

// The go-oauth2 server package (protocol handling: request parsing, client
// authentication, grant dispatch, PKCE mapping, error responses) is used as
// is. Its manage and store packages need github.com/google/uuid,
// github.com/golang-jwt/jwt/v5 and github.com/tidwall/buntdb, which are not
// in go.sum; until they are, this file provides the oauth2.Manager behind the
// server: an in-memory port of manage.Manager with the same semantics for
// the parts the tests use (client secret check, code and PKCE validation,
// refresh with or without rotation like manage.RefreshingConfig
// {IsGenerateRefresh, IsRemoveAccess, IsRemoveRefreshing}).
//
// With those modules available, `go test -tags oauth2lib` runs the same tests
// against the library's own manage.Manager and store (manager_lib_test.go).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/models"
)

const (
	memCodeExp   = 10 * time.Minute // manage.DefaultCodeExp
	memAccessExp = 2 * time.Hour    // manage's default access token lifetime for every grant
)

func newManager(_ testing.TB, o providerOptions, clients ...*models.Client) oauth2.Manager {
	m := &memoryManager{
		rotate:  o.rotateRefresh,
		clients: make(map[string]*models.Client),
		codes:   make(map[string]*models.Token),
		access:  make(map[string]*models.Token),
		refresh: make(map[string]*models.Token),
	}
	for _, c := range clients {
		m.clients[c.ID] = c
	}
	return m
}

type memoryManager struct {
	rotate bool

	mu      sync.Mutex
	clients map[string]*models.Client
	codes   map[string]*models.Token
	access  map[string]*models.Token
	refresh map[string]*models.Token
}

func (m *memoryManager) GetClient(_ context.Context, id string) (oauth2.ClientInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	if !ok {
		return nil, errors.ErrInvalidClient
	}
	return c, nil
}

func (m *memoryManager) GenerateAuthToken(ctx context.Context, rt oauth2.ResponseType, tgr *oauth2.TokenGenerateRequest) (oauth2.TokenInfo, error) {
	cli, err := m.GetClient(ctx, tgr.ClientID)
	if err != nil {
		return nil, err
	}
	if tgr.RedirectURI != "" {
		if err := validateURI(cli.GetDomain(), tgr.RedirectURI); err != nil {
			return nil, err
		}
	}
	if rt != oauth2.Code {
		return nil, errors.ErrUnsupportedResponseType
	}
	ti := models.NewToken()
	ti.SetClientID(tgr.ClientID)
	ti.SetUserID(tgr.UserID)
	ti.SetRedirectURI(tgr.RedirectURI)
	ti.SetScope(tgr.Scope)
	ti.SetCodeCreateAt(time.Now())
	ti.SetCodeExpiresIn(memCodeExp)
	if tgr.CodeChallenge != "" {
		ti.SetCodeChallenge(tgr.CodeChallenge)
		ti.SetCodeChallengeMethod(tgr.CodeChallengeMethod)
	}
	ti.SetCode(randomValue())
	m.mu.Lock()
	m.codes[ti.GetCode()] = ti
	m.mu.Unlock()
	return ti, nil
}

func (m *memoryManager) GenerateAccessToken(ctx context.Context, gt oauth2.GrantType, tgr *oauth2.TokenGenerateRequest) (oauth2.TokenInfo, error) {
	cli, err := m.GetClient(ctx, tgr.ClientID)
	if err != nil {
		return nil, err
	}
	if len(cli.GetSecret()) > 0 && tgr.ClientSecret != cli.GetSecret() {
		return nil, errors.ErrInvalidClient
	}
	if tgr.RedirectURI != "" {
		if err := validateURI(cli.GetDomain(), tgr.RedirectURI); err != nil {
			return nil, err
		}
	}
	if gt == oauth2.ClientCredentials && cli.IsPublic() {
		return nil, errors.ErrInvalidClient
	}
	if gt == oauth2.AuthorizationCode {
		code, err := m.takeCode(tgr)
		if err != nil {
			return nil, err
		}
		if err := validateCodeChallenge(code, tgr.CodeVerifier); err != nil {
			return nil, err
		}
		tgr.UserID, tgr.Scope = code.GetUserID(), code.GetScope()
	}
	ti := models.NewToken()
	ti.SetClientID(tgr.ClientID)
	ti.SetUserID(tgr.UserID)
	ti.SetRedirectURI(tgr.RedirectURI)
	ti.SetScope(tgr.Scope)
	ti.SetAccessCreateAt(time.Now())
	ti.SetAccessExpiresIn(memAccessExp)
	ti.SetAccess(randomValue())
	// manage's defaults: refresh tokens for code and password grants only.
	if gt == oauth2.AuthorizationCode || gt == oauth2.PasswordCredentials {
		ti.SetRefreshCreateAt(time.Now())
		ti.SetRefresh(randomValue())
	}
	m.store(ti)
	return ti, nil
}

func (m *memoryManager) takeCode(tgr *oauth2.TokenGenerateRequest) (oauth2.TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ti, ok := m.codes[tgr.Code]
	if !ok || ti.GetCodeCreateAt().Add(ti.GetCodeExpiresIn()).Before(time.Now()) {
		return nil, errors.ErrInvalidAuthorizeCode
	}
	if ti.GetClientID() != tgr.ClientID {
		return nil, errors.ErrInvalidAuthorizeCode
	}
	if uri := ti.GetRedirectURI(); uri != "" && uri != tgr.RedirectURI {
		return nil, errors.ErrInvalidAuthorizeCode
	}
	delete(m.codes, tgr.Code) // single use, even when PKCE then fails
	return ti, nil
}

func validateCodeChallenge(ti oauth2.TokenInfo, verifier string) error {
	cc := ti.GetCodeChallenge()
	switch {
	case cc == "" && verifier == "":
		return nil
	case cc == "" || verifier == "":
		return errors.ErrMissingCodeVerifier
	}
	ccm := ti.GetCodeChallengeMethod()
	if ccm.String() == "" {
		ccm = oauth2.CodeChallengePlain
	}
	if !ccm.Validate(cc, verifier) {
		return errors.ErrInvalidCodeChallenge
	}
	return nil
}

func (m *memoryManager) RefreshAccessToken(_ context.Context, tgr *oauth2.TokenGenerateRequest) (oauth2.TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.refresh[tgr.Refresh]
	if !ok {
		return nil, errors.ErrInvalidRefreshToken
	}
	ti := *old
	ti.SetAccessCreateAt(time.Now())
	ti.SetAccessExpiresIn(memAccessExp)
	ti.SetAccess(randomValue())
	if scope := tgr.Scope; scope != "" {
		ti.SetScope(scope)
	}
	delete(m.access, old.GetAccess()) // IsRemoveAccess
	if m.rotate {                     // IsGenerateRefresh + IsRemoveRefreshing
		delete(m.refresh, old.GetRefresh())
		ti.SetRefresh(randomValue())
	}
	m.access[ti.GetAccess()] = &ti
	m.refresh[ti.GetRefresh()] = &ti
	resp := ti
	if !m.rotate {
		resp.SetRefresh("") // like manage: no new refresh token in the answer
	}
	return &resp, nil
}

func (m *memoryManager) store(ti *models.Token) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.access[ti.GetAccess()] = ti
	if r := ti.GetRefresh(); r != "" {
		m.refresh[r] = ti
	}
}

func (m *memoryManager) RemoveAccessToken(_ context.Context, access string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.access, access)
	return nil
}

func (m *memoryManager) RemoveRefreshToken(_ context.Context, refresh string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.refresh, refresh)
	return nil
}

func (m *memoryManager) LoadAccessToken(_ context.Context, access string) (oauth2.TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ti, ok := m.access[access]
	if !ok {
		return nil, errors.ErrInvalidAccessToken
	}
	return ti, nil
}

func (m *memoryManager) LoadRefreshToken(_ context.Context, refresh string) (oauth2.TokenInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ti, ok := m.refresh[refresh]
	if !ok {
		return nil, errors.ErrInvalidRefreshToken
	}
	return ti, nil
}

// validateURI is manage.DefaultValidateURI.
func validateURI(baseURI, redirectURI string) error {
	base, err := url.Parse(baseURI)
	if err != nil {
		return err
	}
	redirect, err := url.Parse(redirectURI)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(redirect.Host, base.Host) {
		return errors.ErrInvalidRedirectURI
	}
	return nil
}

func randomValue() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
