// credentials/<name>/verify: prove a credential works against the system it is for,
// and record the outcome in its lifecycle state. The catalog says how each type is
// checked (credtype.VerifyPlan), the verify package runs the network checks, lifecycle
// owns what a result means (health, alerts, the schedule); the schedule itself is
// verify_schedule.go.

package backend

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/verify"
)

func pathVerify(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: "credentials/" + nameSegment + "/verify$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credential",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the credential.", Required: true},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: writeOperation(b.pathVerifyWrite, "verify", ""),
		},
		HelpSynopsis: "Check a credential against the system it is for, and record the result.",
		HelpDescription: `OAuth types mint a token through their grant (it becomes the cached token); sftp types
connect, require the host key to match host_key_fingerprint and sign in, running
nothing; slack calls auth.test; okta reads its own user; basic, bearer and api_key send
one GET to verify_url (default url) with their authorization; certificate checks its
dates; webhook, pagerduty and device_account are unsupported. The answer has result
(ok, failed, unsupported), detail, checked_at and latency_ms. A failure turns health red
and is listed in alerts until a later verification succeeds. Not an access: the
inactivity window is not renewed.` + examples("vault write -f integrations/credentials/crm-sftp/verify"),
	}
}

func (b *integrationsBackend) pathVerifyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if !validName(name) {
		// No such credential can exist: say why, as a create would.
		return logical.ErrorResponse(fieldErr("name", nameRule).Error()), nil
	}
	v, warning, err := b.verifyCredential(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if v == nil {
		// An update answering nothing would be a 204: say that there is nothing to verify.
		return nil, errNoCredential(name)
	}
	resp := &logical.Response{Data: map[string]any{
		"result":     v.Result,
		"detail":     v.Detail,
		"checked_at": rfc3339(v.CheckedAt),
		"latency_ms": v.LatencyMS,
	}}
	if warning != "" {
		resp.AddWarning(warning)
	}
	return resp, nil
}

// verifyCredential checks the credential called name and stores the outcome; nil when
// it does not exist. No lock is held while the check runs. The outcome is stored only
// if the credential's settings did not change meanwhile (else warning says so).
func (b *integrationsBackend) verifyCredential(ctx context.Context, s logical.Storage, name string) (*lifecycle.Verification, string, error) {
	c, err := b.credentials.get(ctx, s, name)
	if err != nil || c == nil {
		return nil, "", err
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, "", err
	}
	start := b.now()
	out, err := b.check(ctx, s, cfg, c, start)
	if err != nil {
		return nil, "", err
	}
	v := lifecycle.Verification{Result: out.Result, Detail: oneLine(out.Detail, maxNotifyMessage), CheckedAt: start.UTC(),
		LatencyMS: b.now().Sub(start).Milliseconds()}
	stored, err := b.recordVerification(ctx, s, c, v)
	if err != nil {
		return nil, "", err
	}
	if !stored {
		return &v, "the credential changed while it was verified; this result was not recorded", nil
	}
	return &v, "", nil
}

// check runs the check the catalog declares for c's type.
func (b *integrationsBackend) check(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, now time.Time) (verify.Outcome, error) {
	t, values := c.typeDef(), &c.Values // the stored values: read here only
	switch t.VerifyMethod() {
	case credtype.VerifyMint:
		return b.verifyMint(ctx, s, cfg, c.Name, now)
	case credtype.VerifyDates:
		out := verify.Outcome{Result: lifecycle.VerifyFailed}
		ok, detail := credtype.CheckDates(values, now)
		if out.Detail = detail; ok {
			out.Result = lifecycle.VerifyOK
		}
		return out, nil
	}
	// An encrypted key signs through the copy decrypted when it was written; one stored
	// without it is decrypted now, under the key-work limits, and kept (keepDerivedFrom).
	secrets, err := c.derivedSecrets(ctx)
	switch {
	case keywork.AsBusy(err) != nil:
		return verify.Outcome{}, err // no verdict on the credential: the engine is busy
	case err != nil:
		return verify.Outcome{Result: lifecycle.VerifyFailed, Detail: "the stored credential cannot be used: " + err.Error()}, nil
	}
	plan, err := t.VerifyPlan(values, secrets)
	switch {
	case err != nil:
		return verify.Outcome{Result: lifecycle.VerifyFailed, Detail: "the stored credential cannot be used: " + err.Error()}, nil
	case plan.Method == credtype.VerifyUnsupported:
		return verify.Outcome{Result: lifecycle.VerifyUnsupported, Detail: plan.Unsupported}, nil
	case plan.Method == credtype.VerifySlack:
		plan.URL = b.slackVerifyURL
	}
	checker := verify.Checker{Timeout: cfg.RequestTimeout, Transport: b.transport, Transports: b.tlsTransports(), Dial: b.guard.DialContext}
	return checker.Run(ctx, plan), nil
}

// verifyMint mints a token through the grant. The token is stored as the cached one,
// like any other; a permanent refusal marks the credential needs_reauth exactly as on
// the access path (tokenFailure).
func (b *integrationsBackend) verifyMint(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, now time.Time) (verify.Outcome, error) {
	res, t, err := b.mintToken(ctx, s, cfg, mintForVerify(name, cfg))
	if refused := mintRefusal(name, err, "verify it again"); refused != nil {
		return verify.Outcome{}, refused
	}
	var oe *oauth.Error
	switch {
	case errors.As(err, &oe) && oe.Code == oauth.CodeThrottled:
		// No request was sent: no verdict either (429 with the time to try again).
		return verify.Outcome{}, throttledError(name, oe, now)
	case res.Failure != nil && res.Failure.Code == oauth.CodeThrottled:
		return verify.Outcome{}, throttledError(name, res.Failure, now)
	case err != nil:
		// For its effects: the log event, and needs_reauth on a permanent refusal.
		ferr := b.tokenFailure(ctx, s, t, err, now)
		if oe == nil {
			return verify.Outcome{}, ferr // storage or cancellation: no verdict on the credential
		}
		return verify.Outcome{Result: lifecycle.VerifyFailed, Detail: "the provider did not issue a token: " + oe.Error()}, nil
	case res.Warning != "":
		// Minting failed transiently; the Broker served the older token instead.
		return verify.Outcome{Result: lifecycle.VerifyFailed, Detail: res.Warning}, nil
	}
	return verify.Outcome{Result: lifecycle.VerifyOK, Detail: "token minted, expires " + rfc3339(res.Token.Expiry)}, nil
}

// recordVerification stores v in the lifecycle state of the credential read as was,
// unless it changed since (another update's settings were not the ones verified, or
// its status moved on, e.g. a refusal recorded meanwhile), and logs it. It reports whether v was stored.
func (b *integrationsBackend) recordVerification(ctx context.Context, s logical.Storage, was *credential, v lifecycle.Verification) (bool, error) {
	held, unlock := b.credentials.lock(was.Name)
	defer unlock()
	c, err := b.credentials.get(ctx, s, was.Name)
	if err != nil || c == nil || !c.UpdatedAt.Equal(was.UpdatedAt) {
		return false, err
	}
	if v.Result == lifecycle.VerifyOK && c.State.NeedsReauthAt.After(was.State.NeedsReauthAt) {
		// A refusal recorded while this successful verification ran is newer than
		// what it found: it neither overrides it nor makes the credential usable. (A
		// mint of this verification that cleared a failed one changes the status
		// too, so the status itself is not compared.)
		return false, nil
	}
	n := c.clone()
	n.keepDerivedFrom(was) // the same values: what was derived for was holds for n
	n.State = lifecycle.Verified(n.State, v)
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		return false, err
	}
	b.recordEvent(n.Name, usage.EventVerify, v.Result != lifecycle.VerifyFailed, "", v.Result+": "+v.Detail)
	b.metrics.verifications.WithLabelValues(v.Result).Inc()
	return true, b.afterCredentialChange(ctx, s, n.Name)
}

// verifiedByMint records that a token minted at at supersedes a failed verification
// of the credential the request t was made for, unless its settings moved on since.
func (b *integrationsBackend) verifiedByMint(ctx context.Context, s logical.Storage, t tokenTicket, at time.Time) {
	held, unlock := b.credentials.lock(t.name)
	defer unlock()
	if b.tokens.generation(t.name) != t.gen {
		return
	}
	c, err := b.credentials.get(ctx, s, t.name)
	if err != nil || c == nil {
		return
	}
	st, changed := lifecycle.Minted(c.State, at.UTC())
	if !changed {
		return
	}
	n := c.clone()
	n.State = st
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		b.Logger().Warn("recording the mint that supersedes a failed verification failed", "credential", t.name, "error", err)
		return
	}
	if err := b.afterCredentialChange(ctx, s, t.name); err != nil {
		b.Logger().Warn("re-indexing after a mint failed", "credential", t.name, "error", err)
	}
}
