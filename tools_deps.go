//go:build deps

package main

import (
	_ "github.com/go-oauth2/oauth2/v4/manage"
	_ "github.com/go-oauth2/oauth2/v4/server"
	_ "github.com/go-oauth2/oauth2/v4/store"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/go-plugin"
	_ "github.com/hashicorp/vault/api"
	_ "github.com/hashicorp/vault/sdk/framework"
	_ "github.com/hashicorp/vault/sdk/plugin"
	_ "github.com/pquerna/otp/totp"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/oauth2"
	_ "golang.org/x/sync/singleflight"
)
