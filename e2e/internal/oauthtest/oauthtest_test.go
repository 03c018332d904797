package oauthtest

import (
	"testing"

	base "github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// The plugin module's oauthtest tests against go-oauth2's server: the standard-library
// server the unit tests use passes the same ones there.
func TestGoOAuth2Server(t *testing.T) { base.RunServerTests(t, Server) }
