// Package oauthtest is the plugin module's internal/oauthtest with go-oauth2's
// authorization server behind it, for the end-to-end tests: go-oauth2's own manager,
// in-memory token and client stores and server, not a server of ours. A server of
// ours would only agree with our reading of RFC 6749, while a separate implementation
// catches the places where the client and a provider disagree. It lives in this
// module so that the plugin's go.mod names no OAuth server library.
//
// Everything but New and Server is the plugin module's, under the same names, so a
// test reads the same against either.
package oauthtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oautherrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"

	base "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// The plugin module's types, so that tests need only this import.

// Provider is base.Provider.
type Provider = base.Provider

// Options is base.Options.
type Options = base.Options

// Request is base.Request.
type Request = base.Request

// Token is base.Token.
type Token = base.Token

// Fault is base.Fault.
type Fault = base.Fault

// ServerConfig is base.ServerConfig.
type ServerConfig = base.ServerConfig

// TokenStore is base.TokenStore.
type TokenStore = base.TokenStore

// TokenInfo is base.TokenInfo.
type TokenInfo = base.TokenInfo

// ClientID and the other constants are the plugin module's (the registered client, its
// user and Zoom account, the error marker, the client authentications).
const (
	ClientID         = base.ClientID
	ClientSecret     = base.ClientSecret
	Username         = base.Username
	Password         = base.Password
	UserID           = base.UserID
	AccountID        = base.AccountID
	Marker           = base.Marker
	ClientAuthHeader = base.ClientAuthHeader
	ClientAuthBody   = base.ClientAuthBody
)

// Fail and WriteJSON are the plugin module's helpers for faults.
var (
	Fail      = base.Fail
	WriteJSON = base.WriteJSON
)

// refreshTTL is the lifetime of the refresh tokens issued: longer than any test runs.
const refreshTTL = 24 * time.Hour

// New starts a provider backed by go-oauth2 for the length of the test t. o.Server
// must be nil.
func New(t testing.TB, o Options) *Provider {
	t.Helper()
	if o.Server != nil {
		t.Fatal("oauthtest.New: the server is go-oauth2's here")
	}
	o.Server = Server
	return base.New(t, o)
}

// goOAuth2 is go-oauth2's server as a base.Server.
type goOAuth2 struct {
	mgr    *manage.Manager
	srv    *server.Server
	tokens oauth2.TokenStore
}

// Server builds go-oauth2's server from cfg (Options.Server).
func Server(cfg ServerConfig) (base.Server, error) {
	g := &goOAuth2{mgr: manage.NewDefaultManager()}
	tokens, err := store.NewMemoryTokenStore()
	if err != nil {
		return nil, err
	}
	g.tokens = tokens
	g.mgr.MapTokenStorage(tokens)
	clients := store.NewClientStore()
	if err := clients.Set(ClientID, &models.Client{ID: ClientID, Secret: cfg.ClientSecret, Domain: cfg.Domain}); err != nil {
		return nil, err
	}
	g.mgr.MapClientStorage(clients)
	g.Set(cfg.AccessTTL, cfg.Rotate) // nothing runs yet

	sc := server.NewConfig()
	sc.ForcePKCE = cfg.ForcePKCE
	sc.AllowedCodeChallengeMethods = []oauth2.CodeChallengeMethod{oauth2.CodeChallengeS256}
	g.srv = server.NewServer(sc, g.mgr)
	g.srv.SetClientInfoHandler(func(r *http.Request) (string, string, error) {
		if id, secret, ok := r.BasicAuth(); ok && cfg.ClientAuth != ClientAuthBody {
			return id, secret, nil
		}
		if cfg.ClientAuth == ClientAuthHeader {
			return "", "", oautherrors.ErrInvalidClient
		}
		return server.ClientFormHandler(r)
	})
	g.srv.SetPasswordAuthorizationHandler(func(_ context.Context, _, username, password string) (string, error) {
		if username == Username && password == cfg.Password {
			return UserID, nil
		}
		return "", nil // the server answers invalid_grant
	})
	// The consent screen: the user approves at once.
	g.srv.SetUserAuthorizationHandler(func(http.ResponseWriter, *http.Request) (string, error) {
		return UserID, nil
	})
	g.srv.SetResponseErrorHandler(func(re *oautherrors.Response) { re.Description += " " + Marker })
	// Called for every token the server issues, whatever the grant.
	g.srv.SetExtensionFieldsHandler(func(ti oauth2.TokenInfo) map[string]any {
		cfg.Issued(Token{Access: ti.GetAccess(), Refresh: ti.GetRefresh()})
		return nil
	})
	return g, nil
}

func (g *goOAuth2) Token(w http.ResponseWriter, r *http.Request) { _ = g.srv.HandleTokenRequest(w, r) }

func (g *goOAuth2) Authorize(w http.ResponseWriter, r *http.Request) error {
	return g.srv.HandleAuthorizeRequest(w, r)
}

// Set hands the lifetime and rotation to the manager, whose settings are not safe
// for concurrent use: the Provider calls it with no request in flight.
func (g *goOAuth2) Set(d time.Duration, rotate bool) {
	g.mgr.SetClientTokenCfg(&manage.Config{AccessTokenExp: d})
	g.mgr.SetPasswordTokenCfg(&manage.Config{AccessTokenExp: d, RefreshTokenExp: refreshTTL, IsGenerateRefresh: true})
	g.mgr.SetAuthorizeCodeTokenCfg(&manage.Config{AccessTokenExp: d, RefreshTokenExp: refreshTTL, IsGenerateRefresh: true})
	g.mgr.SetRefreshTokenCfg(&manage.RefreshingConfig{
		AccessTokenExp: d, IsGenerateRefresh: rotate, IsRemoveAccess: true, IsRemoveRefreshing: rotate,
	})
}

func (g *goOAuth2) RemoveByRefresh(ctx context.Context, refresh string) error {
	return g.tokens.RemoveByRefresh(ctx, refresh)
}

func (g *goOAuth2) GetByAccess(ctx context.Context, access string) (TokenInfo, error) {
	ti, err := g.tokens.GetByAccess(ctx, access)
	if err != nil || ti == nil {
		return nil, err // a nil interface, not a nil oauth2.TokenInfo in one
	}
	return ti, nil
}
