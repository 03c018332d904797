// The device authorization grant (RFC 8628) of oauth2_device_code credentials:
// credentials/<name>/authorize starts an attempt, credentials/<name> shows what the
// person needs while it is pending, and the device polling job (device_poll.go) polls
// the token endpoint until the person has consented, refused, or the code expired.

package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// startDeviceAuthorization is authorize on a device-code credential: the device
// authorization request is sent with no lock held, and its answer is stored as the
// credential's pending authorization (replacing, and so cancelling, any earlier one)
// only if the credential still points where it did for the same client. The answer
// is what the person needs; the device code stays in the engine.
func (b *integrationsBackend) startDeviceAuthorization(ctx context.Context, req *logical.Request, d *framework.FieldData, c *credential) (*logical.Response, error) {
	name := c.Name
	if code, _ := d.Get("code").(string); code != "" {
		return logical.ErrorResponse(fieldErr("code", "is for authorization-code credentials: a device-code credential is completed by the person entering user_code at verification_uri, and the engine polls").Error()), nil
	}
	if state, _ := d.Get("state").(string); state != "" {
		return logical.ErrorResponse(fieldErr("state", "is for authorization-code credentials").Error()), nil
	}
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return logical.ErrorResponse("credential %q cannot start a device authorization: %s", name, err.Error()), nil
	}
	dest, client := destination(c), grantOwner(c)
	da, err := b.tokens.brokerOf().DeviceAuthorize(ctx, name, oc)
	if err != nil {
		return deviceAuthorizeError(name, err)
	}
	id, err := oauth.NewState()
	if err != nil {
		return nil, err
	}
	now := b.now().UTC()
	p := pendingAuthorization{
		State: id, DeviceCode: da.DeviceCode, UserCode: da.UserCode,
		VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete,
		ExpiresAt: now.Add(da.ExpiresIn), Interval: da.Interval,
	}
	held, unlock := b.credentials.lock(name)
	cur, err := b.credentials.get(ctx, req.Storage, name)
	if err == nil && (cur == nil || destination(cur) != dest || grantOwner(cur) != client) {
		unlock()
		return nil, logical.CodedError(http.StatusConflict, fmt.Sprintf("credential %q was changed or deleted while its device authorization started: authorize again", name))
	}
	if err == nil {
		err = b.authorizations.put(ctx, req.Storage, held, p)
	}
	unlock()
	if err != nil {
		return nil, err
	}
	// The first poll one interval on (RFC 8628 section 3.5: no sooner).
	b.deviceFlow.schedule(name, id, now.Add(p.Interval))
	b.recordEvent(name, usage.EventAuthorized, true, "", "device authorization started; waiting for the person to enter the user code")
	return &logical.Response{Data: deviceAnswer(&p)}, nil
}

// deviceAnswer is what authorize answers and credentials/<name> shows of a pending
// device authorization: everything but the device code.
func deviceAnswer(p *pendingAuthorization) map[string]any {
	out := map[string]any{
		"user_code":        p.UserCode,
		"verification_uri": p.VerificationURI,
		"expires_at":       rfc3339(p.ExpiresAt),
		"interval":         int64(max(p.Interval.Seconds(), 1)),
	}
	if p.VerificationURIComplete != "" {
		out["verification_uri_complete"] = p.VerificationURIComplete
	}
	return out
}

// deviceAuthorizeError answers a device authorization request that failed: the
// provider's code and status, never its text. A refusal is the caller's to fix (400),
// a held-back request 429, anything else the provider's trouble (502).
func deviceAuthorizeError(name string, err error) (*logical.Response, error) {
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		return nil, err
	}
	switch {
	case oe.Code == oauth.CodeThrottled:
		return nil, retryAfterError(http.StatusTooManyRequests, fmt.Sprintf("credential %q: too many requests to the provider; authorize again later: %s", name, oe.Error()), oe.RetryAfter)
	case oe.Permanent():
		return logical.ErrorResponse("the provider refused the device authorization of credential %q: %s", name, oe.Error()), nil
	}
	return nil, logical.CodedError(http.StatusBadGateway, fmt.Sprintf("the device authorization of credential %q failed: %s", name, oe.Error()))
}

// deviceView adds a pending device authorization, if any, to c's management view
// (data): what the person is to enter and where, never the device code.
func (b *integrationsBackend) deviceView(ctx context.Context, s logical.Storage, c *credential, data map[string]any) error {
	p, err := b.authorizations.load(ctx, s, c.Name)
	if err != nil || p == nil || !p.device() || !b.now().Before(p.ExpiresAt) {
		return err
	}
	data["device_authorization"] = deviceAnswer(p)
	return nil
}
