package oauth

// The library's own manager and in-memory stores behind the go-oauth2 server: the
// tests talk to a real OAuth 2.0 implementation, not a fake of ours.

import (
	"testing"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/store"
)

func newManager(t testing.TB, o providerOptions, clients ...*models.Client) oauth2.Manager {
	t.Helper()
	m := manage.NewDefaultManager()
	m.MustTokenStorage(store.NewMemoryTokenStore())
	cs := store.NewClientStore()
	for _, c := range clients {
		if err := cs.Set(c.ID, c); err != nil {
			t.Fatal(err)
		}
	}
	m.MapClientStorage(cs)
	// Rotation: a new refresh token per refresh and the old one retired.
	// Without it the answer has no refresh_token and the old one stays valid.
	m.SetRefreshTokenCfg(&manage.RefreshingConfig{
		IsGenerateRefresh:  o.rotateRefresh,
		IsRemoveAccess:     true,
		IsRemoveRefreshing: o.rotateRefresh,
	})
	return m
}
