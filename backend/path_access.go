package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

func pathAccess(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: "access/" + nameSegment + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credential-material",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the credential.", Required: true},
			"integration": {
				Type:        framework.TypeString,
				Description: "Name of the calling integration, for the usage log: " + credtype.IntegrationRule + ". Default: the caller's Vault display name (shortened to 128 characters, anything unprintable replaced by '?').",
				Query:       true,
			},
			"minimum_seconds": {
				Type:        framework.TypeInt,
				Description: "OAuth types: the token handed out stays valid at least this long (default: the engine's expiry_buffer).",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathAccessRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
			},
		},
		HelpSynopsis: "What an integration reads: working material for one credential.",
		HelpDescription: `Static types return their secret fields, with a ready "authorization" header value where
one applies and "totp_code" where a TOTP secret is set. OAuth types return a valid
access_token, token_type, expires_at and scope, minted or refreshed as needed.
Every read is recorded as usage and renews the credential's inactivity window.
Refused while the credential is suspended, expired or needs re-authorization.`,
	}
}

func (b *integrationsBackend) pathAccessRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		return nil, nil // no such credential can exist
	}
	c, err := b.credentials.get(ctx, req.Storage, name)
	if err != nil || c == nil {
		return nil, err
	}
	integration, err := integrationLabel(req, d.Get("integration").(string))
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	now := b.now().UTC()
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if err := b.policyFor(cfg, c).Usable(b.currentState(c), now); err != nil {
		b.activity.recorder.Access(name, now, integration, false, err.Error())
		return nil, unavailable(name, err)
	}
	var data map[string]any
	var warnings []string
	if t := c.typeDef(); t.Kind == credtype.KindStatic {
		var secrets map[string]string
		if secrets, err = c.accessSecrets(); err == nil {
			data, err = t.Access(c.Values, secrets, now)
		}
	} else {
		data, warnings, err = b.tokenAccess(ctx, req.Storage, cfg, c, d.Get("minimum_seconds").(int))
	}
	if err != nil {
		b.activity.recorder.Access(name, b.now().UTC(), integration, false, err.Error())
		return nil, err
	}
	b.activity.recorder.Access(name, now, integration, true, "")
	return &logical.Response{Data: data, Warnings: warnings}, nil
}

// unavailable is the refusal of a credential that cannot be handed out: 403 with the
// state and what a person can do about it.
func unavailable(name string, err error) error {
	var ue *lifecycle.UnavailableError
	if !errors.As(err, &ue) {
		return err
	}
	hint := ""
	switch {
	case ue.Status == lifecycle.StatusNeedsReauth:
		hint = fmt.Sprintf("; re-authorize it with credentials/%s/authorize, or update its settings", name)
	case ue.Reason == lifecycle.ReasonExpired:
		hint = fmt.Sprintf("; update its expires_at, then unsuspend it at credentials/%s/unsuspend", name)
	case ue.Status == lifecycle.StatusSuspended:
		hint = fmt.Sprintf("; unsuspend it at credentials/%s/unsuspend", name)
	}
	return logical.CodedError(http.StatusForbidden, fmt.Sprintf("credential %q cannot be used: %s%s", name, ue.Error(), hint))
}

// integrationLabel is who a request is logged as: the explicit label, refused unless it
// follows integrationRule, else the caller's Vault identity (requestIntegration).
func integrationLabel(req *logical.Request, explicit string) (string, error) {
	if explicit != "" {
		if !credtype.ValidIntegration(explicit) {
			return "", fieldErr("integration", "must be "+credtype.IntegrationRule)
		}
		return explicit, nil
	}
	return requestIntegration(req), nil
}

// clampIntegration makes s follow credtype.IntegrationRule: unprintable runes (and
// invalid UTF-8) become '?', and only the first MaxIntegration characters are kept.
func clampIntegration(s string) string {
	if credtype.ValidIntegration(s) {
		return s
	}
	var out strings.Builder
	n := 0
	for _, r := range s {
		if n == credtype.MaxIntegration {
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		out.WriteRune(r)
		n++
	}
	return out.String()
}
