// The access/ read path, top-down: the path and its handler (pathAccessRead), the
// static material (staticAccess), token access (tokenAccess, mintToken), then failure handling (tokenFailure, markNeedsReauth,
// unavailable). The timing rules (servable, due, the demand of each kind of mint) are
// token_timing.go. Refresh ahead, which a token read may start, is refreshahead.go; the
// token state it all reads and writes is tokenStore (tokenstore.go); the integration
// label is integration.go.

package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

func pathAccess(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: "access/" + nameSegment + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credential-material",
		},
		Fields: withFields(accessNarrowingFields(), map[string]*framework.FieldSchema{
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
		}),
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
OAuth answers also carry ttl (seconds until this reader would be handed another
token, counted from this read), rotation_period (the token's lifetime) and
last_vault_rotation (when the token was issued, RFC 3339 with nanoseconds), which
Vault Agent templates and Vault Secrets Operator re-read by. Every read is recorded
as usage and renews the credential's inactivity window. Refused while the credential
is suspended, expired, awaiting consent or needs re-authorization.` +
			examples("vault read integrations/access/billing-db integration=nightly-export",
				"vault read -field=access_token integrations/access/crm-api minimum_seconds=300"),
	}
}

// reader is what every read of a credential's material (access/, exchange/) starts
// from: the credential called by the path's name, or the 404, and the integration
// label the request names (resp is the 400 of a bad one).
func (b *integrationsBackend) reader(ctx context.Context, req *logical.Request, d *framework.FieldData) (c *credential, integration string, resp *logical.Response, err error) {
	c, err = b.credentialOr404(ctx, req.Storage, d.Get("name").(string))
	if err != nil {
		return nil, "", nil, err
	}
	integration, err = integrationLabel(req, d.Get("integration").(string))
	if err != nil {
		return nil, "", logical.ErrorResponse(err.Error()), nil
	}
	return c, integration, nil, nil
}

// refuseUnusable is nil when c's lifecycle state lets it be used at now; otherwise it
// records the refused read (usage, metrics) and returns the refusal (unavailable).
func (b *integrationsBackend) refuseUnusable(cfg *engineConfig, c *credential, integration string, now time.Time) error {
	err := b.policyFor(cfg, c).Usable(b.currentState(c), now)
	if err == nil {
		return nil
	}
	b.activity.recorder.Access(c.Name, now, integration, false, err.Error())
	b.metrics.accessRead(c.typeDef().Kind, c.Name, accessResultRefused, cfg.MetricsCredentialLabel)
	return b.unavailable(c, err)
}

// pathAccessRead is the access/ read, top-down: the credential (from memory once
// cached), who is asking, whether its lifecycle state lets it be used, then its
// material — static (staticAccess) or an OAuth token (tokenAccess) — and the usage
// record. The read takes the time once: the refusal, the failure and the success are
// all recorded at now.
func (b *integrationsBackend) pathAccessRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	c, integration, resp, err := b.reader(ctx, req, d)
	if resp != nil || err != nil {
		return resp, err
	}
	name := c.Name
	now := b.now().UTC()
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	t := c.typeDef()
	if err := b.refuseUnusable(cfg, c, integration, now); err != nil {
		return nil, err
	}
	var data map[string]any
	var warnings []string
	narrowing, err := gitHubNarrowingOf(t, d)
	switch {
	case err != nil:
	case t.Kind == credtype.KindStatic:
		data, err = staticAccess(ctx, t, c, now)
	case narrowing != nil:
		data, warnings, err = b.narrowedAccess(ctx, req.Storage, cfg, c, narrowing, d.Get("minimum_seconds").(int), now)
	default:
		data, warnings, err = b.tokenAccess(ctx, req.Storage, cfg, c, d.Get("minimum_seconds").(int), now)
	}
	if keywork.AsBusy(err) != nil || errors.Is(err, logical.ErrReadOnly) {
		// The engine's load, not the credential's fault, or a performance standby
		// handing the read to the active node (mintToken): no failure is recorded.
		return nil, err
	}
	if err != nil {
		b.activity.recorder.Access(name, now, integration, false, err.Error())
		b.metrics.accessRead(t.Kind, name, accessResultError, cfg.MetricsCredentialLabel)
		return nil, err
	}
	b.activity.recorder.Access(name, now, integration, true, "")
	b.metrics.accessRead(t.Kind, name, accessResultOK, cfg.MetricsCredentialLabel)
	return &logical.Response{Data: data, Warnings: warnings}, nil
}

// staticAccess is the material of a static credential: the catalog's Access over its
// values and the secrets derived when they were written (a decrypted private key), so
// no KDF runs here.
func staticAccess(ctx context.Context, t *credtype.Type, c *credential, now time.Time) (map[string]any, error) {
	if !t.AccessUsesSecrets() {
		return t.Access(&c.Values, nil, now)
	}
	secrets, err := c.derivedSecrets(ctx)
	if err != nil {
		return nil, err
	}
	return t.Access(&c.Values, secrets, now)
}

// maxMinimumSeconds bounds what a caller may ask of a token's remaining life.
const maxMinimumSeconds = 24 * 60 * 60

// tokenAccess hands out a valid access token for an OAuth credential, minting one when
// the cached token will not last minimum_seconds (default expiry_buffer).
//
// A provider whose tokens live no longer than that demand (lifetime = expiry − issue
// time of the newest token) cannot satisfy it however often it is asked, so the demand
// is lowered for such a token (shortLivedDemand): the token minted is served, with a
// warning saying how long it lasts, and it is served again (with the warning) until
// it has less than expiry_buffer left — or, when expiry_buffer itself is not shorter
// than the token's lifetime, less than half its lifetime — and only then is another
// minted.
//
// With refresh_ahead, a read that finds the cached token in its refresh window
// (refreshAt, before that due point) also starts its refresh in the background
// (refreshAhead), and is served the current token without waiting.
//
// now is the read's: the cached token is judged at it, and a failure is recorded at
// it. An answer that waited for the provider is reckoned (expires_in, the short-lived
// warning) from when it is given.
func (b *integrationsBackend) tokenAccess(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, minimumSeconds int, now time.Time) (map[string]any, []string, error) {
	if minimumSeconds < 0 || minimumSeconds > maxMinimumSeconds {
		return nil, nil, logical.CodedError(http.StatusBadRequest, fieldErr("minimum_seconds", fmt.Sprintf("must be between 0 and %d", maxMinimumSeconds)).Error())
	}
	minValid := cfg.ExpiryBuffer
	if m := time.Duration(minimumSeconds) * time.Second; m > minValid {
		minValid = m
	}
	cached, err := b.tokens.cached(ctx, s, c.Name)
	if err != nil {
		return nil, nil, err
	}
	var res oauth.Result
	var aheadWarning string
	answered := now
	held := cached // the cache entry of the token served; nil once one was minted
	if servable(cached, c, cfg, now, minValid) != nil {
		b.metrics.fromCache.Inc()
		res.Token = &cached.Token // the hot path: no lock, no allocation beyond the response
		if inRefreshWindow(cfg, res.Token, minValid, now) {
			// In the refresh window: one read starts the refresh in the background;
			// this one and every other is served the current token meanwhile.
			aheadWarning = b.refreshAhead(cfg, cached, c.Name, minValid, now)
		}
	} else {
		b.metrics.fromProvider.Inc()
		held = nil
		var t tokenTicket
		res, t, err = b.mintToken(ctx, s, cfg, mintForRead(c.Name, minValid))
		if refused := mintRefusal(c.Name, err, "read it again"); refused != nil {
			return nil, nil, refused
		}
		if errors.Is(err, logical.ErrReadOnly) {
			return nil, nil, err // Vault forwards it to the active node: nothing failed
		}
		if err != nil {
			return nil, nil, b.tokenFailure(ctx, s, t, err, now)
		}
		answered = b.now()
	}
	var warnings []string
	b.activity.setTransient(c.Name, res.Warning != "" || aheadWarning != "")
	if res.Warning != "" {
		warnings = append(warnings, res.Warning)
		b.recordEvent(c.Name, usage.EventRefreshFailed, false, "", res.Warning)
	}
	if aheadWarning != "" {
		// Recorded once, by the background refresh that failed.
		warnings = append(warnings, aheadWarning)
	}
	tok := res.Token
	if tok.LifetimeCapped {
		warnings = append(warnings, fmt.Sprintf(
			"the provider's expires_in is longer than the %d days the engine accepts; this token is taken to expire at %s",
			oauth.MaxLifetime/day, rfc3339(tok.Expiry)))
	}
	if life, left := tok.Expiry.Sub(tok.IssuedAt), tok.Expiry.Sub(answered); life <= minValid && left < minValid {
		warnings = append(warnings, fmt.Sprintf(
			"the provider's tokens last %s, not longer than the %s asked for (minimum_seconds or the engine's expiry_buffer); this one is valid for %s more",
			life.Round(time.Second), minValid, left.Round(time.Second)))
	}
	tokenType := tok.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	if held != nil && &held.Token != tok {
		held = nil // the Broker answered with another token than the cached one
	}
	// ttl and rotation_period are what Vault Agent's templates re-render a secret
	// without a lease by: it reads again ttl seconds later, when this reader would be
	// handed another token. Vault Secrets Operator (VaultDynamicSecret with
	// allowStaticCreds) reads the same two and last_vault_rotation, the served token's
	// issue time: it syncs again ttl after its read, and after its own restart at
	// last_vault_rotation + ttl, which is that hand-over point moved earlier by the
	// token's age at the read — early (one more read of the same token), never late.
	handOver := b.handOverAt(cfg, held, c.Name, tok, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok), answered)
	if isGitHubApp(c.typeDef()) {
		return gitHubAccess(tok, answered, handOver), warnings, nil
	}
	data := map[string]any{
		"access_token":        tok.AccessToken,
		"token_type":          tokenType,
		"expires_at":          rfc3339(tok.Expiry),
		"expires_in":          int64(tok.Expiry.Sub(answered) / time.Second),
		"scope":               tok.Scope,
		"authorization":       tokenType + " " + tok.AccessToken,
		"ttl":                 int64(handOver.Sub(answered) / time.Second),
		"rotation_period":     int64(tok.Expiry.Sub(tok.IssuedAt) / time.Second),
		"last_vault_rotation": rfc3339Nano(tok.IssuedAt),
	}
	for k, v := range tok.Extra {
		if _, own := data[k]; !own { // a preset's answer member (Salesforce's instance_url), never one of these
			data[k] = v
		}
	}
	return data, warnings, nil
}

// errCredentialGone is what mintToken returns when the credential no longer exists.
var errCredentialGone = errors.New("the credential does not exist")

// mintRefusal is the caller's answer to a mint whose credential went (404) or changed
// while its token was requested (409, saying what to do again); nil for any other
// outcome, which the caller handles.
func mintRefusal(name string, err error, again string) error {
	switch {
	case errors.Is(err, errCredentialGone):
		return errNoCredential(name)
	case isDiscarded(err):
		return logical.CodedError(http.StatusConflict, fmt.Sprintf("credential %q changed while its token was requested; %s", name, again))
	}
	return nil
}

// errAheadStale is what mintToken returns for a background refresh whose token is no
// longer the credential's current one: someone else refreshed it, or the credential
// changed. There is nothing left for it to do.
var errAheadStale = errors.New("the token to refresh ahead is no longer current")

// mintToken obtains a token for the request r through the Broker's single flight;
// r's reason and demand say what is asked (token_timing.go: a read's slow path, a
// background refresh ahead, a forced verification or keep-alive). It returns the
// ticket the request was made under, for tokenFailure. A mint that succeeds and was
// not forced supersedes a failed verification (verifiedByMint).
//
// It does not use the credential its caller holds: it reads the credential again,
// together with the generation of its token state (tokenStore.ticket, under the
// credential's read lock). The copy a read holds was taken before that generation,
// so an update falling between them would pair the new generation with the old
// settings, and a token minted under those would be stored as current. Read
// together, the token is stored only if neither changed meanwhile (tokenStore.put).
// Once the credential is cached this read is from memory.
func (b *integrationsBackend) mintToken(ctx context.Context, s logical.Storage, cfg *engineConfig, r mintRequest) (oauth.Result, tokenTicket, error) {
	if r.reason == mintAhead || r.reason == mintKeepAlive {
		// Nobody waits on it: behind every reader at the token host (oauth's host gate).
		ctx = oauth.WithPriority(ctx, oauth.Background)
	}
	for attempt := 1; ; attempt++ {
		res, t, err := b.mintOnce(ctx, s, cfg, r)
		// ErrRetry: a request detached by an edit (Forget) was still at the provider,
		// perhaps spending the refresh token this one would have sent; it has ended, so
		// start again from the token state it left. Edits are rare; a few rounds bound it.
		if !errors.Is(err, oauth.ErrRetry) || attempt == maxMintAttempts {
			return res, t, err
		}
	}
}

// maxMintAttempts bounds how often mintToken starts again after oauth.ErrRetry.
const maxMintAttempts = 4

// mintOnce is one attempt of mintToken.
func (b *integrationsBackend) mintOnce(ctx context.Context, s logical.Storage, cfg *engineConfig, r mintRequest) (oauth.Result, tokenTicket, error) {
	ts := b.tokens
	name := r.name
	if !b.WriteSafeReplicationState() {
		// A performance standby cannot store what the provider answers, and a rotated
		// refresh token that cannot be stored is lost: Vault forwards a request that
		// returns ErrReadOnly to the active node, which mints there.
		return oauth.Result{}, tokenTicket{name: name}, logical.ErrReadOnly
	}
	// A refresh token the provider issued that storage refused is stored first: until
	// it is, no request is made (the one it replaced is retired).
	if err := ts.saveUnsaved(ctx, s, name); err != nil {
		b.Logger().Error("a token state the provider issued is still not stored; no token request until it is", "credential", name, "error", err)
		return oauth.Result{}, tokenTicket{name: name}, err
	}
	t, c, err := ts.ticket(ctx, s, name)
	if err != nil {
		return oauth.Result{}, t, err
	}
	if c == nil {
		return oauth.Result{}, t, errCredentialGone
	}
	cached, err := ts.cached(ctx, s, c.Name)
	if err != nil {
		return oauth.Result{}, t, err
	}
	usable := cached
	if cached != nil && !cached.learntFor(t.dest, t.client) {
		// A token learnt under another destination or for another client is never
		// used, not even its refresh token: a repoint or a new client_id forgets it.
		usable = nil
	}
	src := mintSource(usable, c, cfg, b.now(), r.minValid)
	if r.reason == mintAhead && (cached != r.ahead || src == nil) {
		return oauth.Result{}, t, errAheadStale
	}
	demand := r.demand(src, cfg.ExpiryBuffer)
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return oauth.Result{}, t, fmt.Errorf("building the OAuth configuration of %q: %w", c.Name, err)
	}
	oc.RedirectURL = b.redirectURL(cfg, c)
	if oc.GitHub != nil {
		oc.GitHub.Check = r.reason == mintVerify // verify: GET /app and the installation first
	}
	res, err := ts.brokerOf().Token(ctx, c.Name, oc, src, demand, func(ctx context.Context, tok *oauth.Token) error {
		if err := ts.putMinted(ctx, s, t, tok); err != nil {
			return err
		}
		// Recorded here, once per token: every reader that joined the request
		// gets Minted too.
		b.recordEvent(c.Name, usage.EventTokenMinted, true, "", "expires "+rfc3339(tok.Expiry))
		return nil
	})
	if err == nil && res.Minted && !r.forced && c.State.VerifyFailed() {
		b.verifiedByMint(ctx, s, t, res.Token.IssuedAt)
	}
	if err == nil && res.Minted {
		b.overlapAfterMint(ctx, s, t, c, res.Token)
	}
	var pe *oauth.PanicError
	if errors.As(err, &pe) {
		b.Logger().Error("a token request panicked", "credential", c.Name, "panic_type", pe.Type, "stack", string(pe.Stack))
	}
	return res, t, err
}

// tokenFailure records the failed mint of the request t started (at now, the time of
// the read or the background refresh that made it) and turns it into the caller's
// error: a permanent refusal marks the credential needs_reauth (403), anything else
// is a 502 naming the provider's status, never its body.
func (b *integrationsBackend) tokenFailure(ctx context.Context, s logical.Storage, t tokenTicket, err error, now time.Time) error {
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		b.recordEventAt(now, t.name, usage.EventRefreshFailed, false, "", "token request did not complete")
		if errors.Is(err, errUnsaved) {
			// Kept in memory and retried: the caller may retry too, and is told so.
			return retryAfterError(http.StatusServiceUnavailable, fmt.Sprintf("credential %q: %s", t.name, errUnsaved), time.Second)
		}
		if errors.Is(err, oauth.ErrRetry) {
			// Edits kept detaching the requests this one waited for (mintToken's rounds).
			return retryAfterError(http.StatusServiceUnavailable, fmt.Sprintf("credential %q changed repeatedly while its token was requested; retry", t.name), time.Second)
		}
		return err
	}
	if oe.Code == oauth.CodeThrottled {
		return throttledError(t.name, oe, now)
	}
	b.recordEventAt(now, t.name, usage.EventRefreshFailed, false, "", oe.Error())
	if !oe.Permanent() {
		b.activity.setTransient(t.name, true)
		return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("credential %q: the provider could not issue a token: %s", t.name, oe.Error()))
	}
	awaiting := oe.Code == oauth.CodeNoRefreshToken // nothing was refused: no consent yet
	current, c, err := b.markNeedsReauth(ctx, s, t, lifecycle.Reason(oe.Code), awaiting, now)
	if err != nil {
		b.Logger().Error("recording needs_reauth failed", "credential", t.name, "error", err)
	} else if !current {
		return logical.CodedError(http.StatusConflict, fmt.Sprintf("credential %q changed while its token was requested; read it again", t.name))
	}
	if awaiting {
		return logical.CodedError(http.StatusForbidden, fmt.Sprintf(
			"credential %q is awaiting consent: it holds no refresh token (%s); %s", t.name, oe.Error(), b.refusalFix(t.name, c, lifecycle.StatusAwaitingConsent, "")))
	}
	return logical.CodedError(http.StatusForbidden, fmt.Sprintf(
		"credential %q needs re-authorization: the provider refused the grant (%s); %s",
		t.name, oe.Error(), b.refusalFix(t.name, c, lifecycle.StatusNeedsReauth, lifecycle.Reason(oe.Code))))
}

// throttledError is the answer to a request the credential's token-request bucket
// held back (oauth.RequestBurst, oauth.RequestsPerMinute): 429 with the time it may
// be asked again. Nothing reached the provider and nothing failed there, so it is
// neither recorded as a failed refresh nor a transient fault of the credential.
func throttledError(name string, oe *oauth.Error, now time.Time) error {
	return retryAfterError(http.StatusTooManyRequests, fmt.Sprintf(
		"credential %q: too many token requests; retry after %s: %s", name, rfc3339(now.Add(oe.RetryAfter)), oe.Error()), oe.RetryAfter)
}

// markNeedsReauth stores the needs_reauth state, dated now, after the provider
// permanently refused the request t started; awaiting: the awaiting_consent state
// instead, for a request that had no refresh token to send (the credential was never
// authorized under its settings). It returns the credential as stored (nil when it
// is gone), and reports false, changing nothing, when
// the refusal is of settings the credential no longer has: it is gone, or its token
// state moved on since t (an update, a repoint, a re-authorization; each moves the
// generation under the credential's lock, which is held here).
//
// The credential is read again under the lock, and that read is the write's, not the
// failure's: the copy the failed request held was read before the provider was asked,
// and writing it back would lose a state change stored since (a usage flush renewing
// the inactivity window, a suspend, the sweep's warnings).
func (b *integrationsBackend) markNeedsReauth(ctx context.Context, s logical.Storage, t tokenTicket, reason lifecycle.Reason, awaiting bool, now time.Time) (bool, *credential, error) {
	held, unlock := b.credentials.lock(t.name)
	defer unlock()
	if b.tokens.generation(t.name) != t.gen {
		return false, nil, nil
	}
	c, err := b.credentials.get(ctx, s, t.name)
	if err != nil || c == nil {
		return false, nil, err
	}
	n := c.clone()
	if awaiting {
		n.State = lifecycle.AwaitingConsent(n.State, now.UTC())
	} else {
		n.State = lifecycle.NeedsReauth(n.State, reason, now.UTC())
	}
	if n.State.Status == c.State.Status && n.State.Reason == c.State.Reason {
		return true, c, nil
	}
	if err := b.credentials.put(ctx, s, held, n); err != nil {
		return true, c, err
	}
	if n.State.Status == lifecycle.StatusNeedsReauth {
		// Awaiting consent is not news: nothing failed, and alerts list it.
		b.notifyState(ctx, n, "needs_reauth", "The provider refused the grant ("+string(reason)+"); re-authorize the credential.")
	}
	return true, n, b.afterCredentialChange(ctx, s, t.name)
}

// unavailable is the refusal of c, which cannot be handed out: 403 with the state and
// what a person can do about it.
func (b *integrationsBackend) unavailable(c *credential, err error) error {
	var ue *lifecycle.UnavailableError
	if !errors.As(err, &ue) {
		return err
	}
	name := c.Name
	hint := ""
	switch {
	case ue.Status == lifecycle.StatusNeedsReauth, ue.Status == lifecycle.StatusAwaitingConsent:
		hint = "; " + b.refusalFix(name, c, ue.Status, ue.Reason)
	case ue.Reason == lifecycle.ReasonExpired:
		hint = fmt.Sprintf("; update its expires_at, then unsuspend it at credentials/%s/unsuspend", name)
	case ue.Status == lifecycle.StatusSuspended:
		hint = fmt.Sprintf("; unsuspend it at credentials/%s/unsuspend", name)
	}
	return logical.CodedError(http.StatusForbidden, fmt.Sprintf("credential %q cannot be used: %s%s", name, ue.Error(), hint))
}

// refusalFix says, as a CLI command, what a person does about the credential called
// name (c, nil when unknown) that is refused in status for reason (the provider's
// error code): authorize one awaiting consent; update the field the refusal is about
// (credtype RefusedField: a client_credentials credential refused with invalid_client
// is told to patch its client_secret, never to authorize, which it cannot); authorize
// again an authorization-code credential whose grant was refused; otherwise fix the
// settings with a patch, which gives it a new attempt, as a verification that mints
// does.
func (b *integrationsBackend) refusalFix(name string, c *credential, status lifecycle.Status, reason lifecycle.Reason) string {
	path := b.mountPath() + "credentials/" + name
	authorize := fmt.Sprintf("authorize it: vault write -f %s/authorize, and open the auth_url it answers", path)
	var t *credtype.Type
	if c != nil {
		t = c.typeDef()
	}
	if t != nil && t.DeviceFlow() {
		authorize = fmt.Sprintf("authorize it: vault write -f %s/authorize, and have a person enter the user_code it answers at its verification_uri", path)
	}
	if status == lifecycle.StatusAwaitingConsent {
		return authorize
	}
	if t != nil {
		if f := t.RefusedField(&c.Values, string(reason)); f != "" {
			return fmt.Sprintf("update its %s: vault patch %s %s=…", f, path, f)
		}
		if t.Consents() {
			return fmt.Sprintf("re-%s; or fix its settings: vault patch %s <field>=…", authorize, path)
		}
	}
	return fmt.Sprintf("fix the setting it refused: vault patch %s <field>=… (a patch of any setting gives it a new attempt), or once the provider accepts it again: vault write -f %s/verify", path, path)
}
