// Package backend is the Vault-facing half of the integrations secrets engine: the
// Factory, the paths, storage, and the lifecycle hooks. Domain logic that needs no
// Vault SDK lives in the packages below it.
package backend

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/jobs"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/tlsclient"
)

// Version is the plugin's semantic version, set at build time with
// -ldflags "-X .../backend.Version=v1.2.3" from the VERSION file.
var Version = "v0.0.0-dev"

// operationPrefix names every operation in the OpenAPI document, e.g.
// "integrations-read-configuration".
const operationPrefix = "integrations"

// Factory creates and sets up the backend; it is what the plugin binary serves.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(time.Now)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	b.storage = conf.StorageView
	return &codedErrorAnswers{b}, nil
}

// integrationsBackend keeps the credentials integrations use to reach other products.
type integrationsBackend struct {
	*framework.Backend

	// now is the clock; tests inject their own so lifecycle rules run without waiting.
	now func() time.Time
	// hostNow is the clock of the token hosts' bound (oauth.ClientOptions.HostNow):
	// the wall clock, but in tests.
	hostNow func() time.Time

	// names interns the mount's credential names once for every per-credential
	// structure keyed by them (the lifecycle indexes, the metrics' counts, the usage
	// summaries, the token store's generations): see docs/ARCHITECTURE.md, Memory.
	names *names.Table

	// storage is the mount's storage, for background work outside requests.
	storage logical.Storage
	// guard applies the network policy in force (config denied_networks and
	// allowed_networks) to every outbound connection (network.go).
	guard *netpolicy.Guard
	// transport is the base HTTP transport of every outbound request: token requests,
	// verification and notification deliveries. Its connections pass guard.
	transport http.RoundTripper
	// transports are the per-credential TLS transports over transport (tls.go).
	transportsOnce sync.Once
	transports     *tlsclient.Cache

	// configMu guards config, the decoded engine-wide settings (nil until first read).
	configMu sync.RWMutex
	config   *engineConfig
	// configWriteMu serialises config writes and resets, read-modify-write as a whole,
	// so concurrent partial updates do not lose each other's fields. Its place in the
	// lock order (before credential locks and configMu) is lockorder.go's.
	configWriteMu sync.Mutex

	// The stores, each the one owner of its storage keys (credential_save.go cascades
	// a credential's changes through the secondary ones).
	credentials    *credentialStore    // credentials/
	devices        *deviceIndex        // device-index/
	authorizations *authorizationStore // authorizations/, oauth-states/
	tokens         *tokenStore         // tokens/
	exchanges      *exchangeCache      // exchanged tokens, memory only (exchange.go)
	narrowed       narrowedCache       // github_app tokens narrowed per caller, in memory (githubapp.go)
	usage          *usageStore         // usage/
	activity       *activity
	snapshot       *indexSnapshot // index/: the indexes' inputs, loaded at start (index_snapshot.go)
	metrics        *metrics       // this mount's Prometheus registry (metrics.go)

	// jobs runs the background work, every job registered in jobs.go; the handles
	// below are the jobs started from elsewhere than the tick.
	jobs       *jobs.Runner
	verifier   *jobs.Handle // the verify schedule's runs
	keepalives *jobs.Handle // keep-alive's runs (keepalive.go)
	ahead      *jobs.Handle // background refreshes (refreshahead.go)
	indexScan  *jobs.Handle // the scan that builds the indexes (sweep.go)
	// clientKeyJob rotates and destroys generated client keys on schedule (client_keys.go).
	clientKeyJob *jobs.Handle
	jwks         jwksCache // rendered jwks/<name> bodies (path_jwks.go)

	// deviceFlow schedules the polls of pending device authorizations, run by the
	// device polling job (device_poll.go).
	deviceFlow  *devicePoller
	devicePolls *jobs.Handle

	// verifyFull and keepAliveFull are test hooks: called when a run waits because its
	// in-flight bound is reached; nil in production.
	verifyFull, keepAliveFull func()

	outbox *notify.Outbox // notifications waiting for delivery, and their delivery

	// slackPostURL is Slack's chat.postMessage; tests point it at a local server.
	slackPostURL string
	// slackVerifyURL is Slack's auth.test, which verifies a slack credential; tests
	// point it at a local server.
	slackVerifyURL string
	cleanOnce      sync.Once

	mount    atomic.Pointer[string] // where the engine is mounted, learnt from requests
	accessor atomic.Pointer[string] // the mount's accessor, learnt from requests

	// issuer is the mount's OIDC issuer key set (issuer.go).
	issuer issuerKeys

	// eventsMissing is set once the server has answered that it has no event support,
	// which is then logged once (eventNotSent).
	eventsMissing atomic.Bool
}

func newBackend(now func() time.Time) *integrationsBackend {
	tab := names.NewTable()
	b := &integrationsBackend{
		now:            now,
		hostNow:        time.Now,
		names:          tab,
		credentials:    newCredentialStore(tab),
		activity:       newActivity(tab),
		slackPostURL:   notify.SlackPostMessageURL,
		slackVerifyURL: credtype.SlackAuthTestURL,
	}
	b.guard = netpolicy.NewGuard(b.networkPolicy)
	b.transport = b.guard.Transport()
	b.metrics = newMetrics(b.activity.states)
	b.outbox = b.newOutbox()
	b.devices = newDeviceIndex(b.credentials)
	b.authorizations = &authorizationStore{credentials: b.credentials}
	b.tokens = newTokenStore(tokenDepsOf(b))
	b.metrics.registry.MustRegister(newHostGauges(b.tokens.hostStats))
	b.exchanges = newExchangeCache()
	b.usage = newUsageStore(b.activity.recorder, tab)
	b.snapshot = newIndexSnapshot(tab, func() logical.Storage { return b.storage })
	b.credentials.snap = b.snapshot
	b.tokens.kept.changed = b.snapshot.markDirty
	b.usage.failingChanged = b.snapshot.markDirty
	b.deviceFlow = newDevicePoller()
	b.registerJobs()
	b.Backend = &framework.Backend{
		Help:           strings.TrimSpace(backendHelp),
		BackendType:    logical.TypeLogical,
		RunningVersion: Version,
		PathsSpecial: &logical.Paths{
			// Everything holding a secret is seal-wrapped where the server supports it.
			SealWrapStorage: []string{configPath, credentialPrefix, tokenPrefix, authorizationPrefix, notify.Prefix, notify.DroppedKey,
				issuerKeysPath},
			// The provider redirects a browser here, which carries no Vault token.
			// jwks/<name>: providers fetch a client's published keys (path_jwks.go);
			// the issuer's documents: providers verifying federated client assertions (issuer.go).
			Unauthenticated: []string{callbackPath, jwksPrefix + "*", issuerDiscoveryPath, issuerJWKSPath},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b), pathAccess(b), pathMetrics(b)},
			pathTypes(b),
			pathOAuth(b),
			pathLifecycle(b),
			[]*framework.Path{pathVerify(b), pathRotateClientKey(b), pathJWKS(b)},
			pathCredentials(b),
			[]*framework.Path{pathCredentialsBatch(b)},
			pathDeviceAccounts(b),
			[]*framework.Path{pathExchange(b)},
			pathIssuer(b),
		),
		InitializeFunc: b.initialize,
		PeriodicFunc:   b.periodic,
		Clean:          b.clean,
		Invalidate:     b.invalidate,
	}
	return b
}

// initialize starts the background work: the usage flush loop, the notifier, and the
// scan that builds the due-time index the sweep works from.
func (b *integrationsBackend) initialize(ctx context.Context, req *logical.InitializationRequest) error {
	if b.storage == nil {
		b.storage = req.Storage
	}
	b.jobs.Start() // the loops: the usage flush and the outbox delivery
	if b.WriteSafeReplicationState() {
		// The index is built in the background: Initialize returns at once however many
		// credentials the mount holds, and reads and lists are served from storage
		// meanwhile. Vault calls Initialize on every mount setup of the node that does
		// background work: a plugin reload, a restart, a standby becoming active.
		// Usage an earlier Clean handed off goes back into the recorder before
		// anything judges inactivity: a few reads, however many credentials it holds.
		if err := b.restoreHandoff(ctx, req.Storage); err != nil {
			b.Logger().Error("restoring the usage handed off at the last unload failed; it stays stored for the next start", "error", err)
		}
		b.tokens.kept.start(b.now().UTC())
		b.snapshot.active.Store(true)  // this node keeps the index snapshot from now on
		b.indexScan.Start(req.Storage) //nolint:contextcheck // background work that outlives this call: it runs under the job's own context, which Clean ends, not the request's
		// What an earlier run left in the outbox is delivered now. Loading it here keeps
		// the notifier from touching storage while there is nothing to deliver.
		if waiting, err := b.outbox.Load(ctx, req.Storage); err != nil {
			b.Logger().Error("reading the notification outbox failed; the notifier will retry", "error", err)
		} else if waiting > 0 {
			b.outbox.Wake()
		}
		// Likewise the device authorizations an earlier active node left pending: read
		// here, so the device poller touches storage only for what is due (it reads
		// them itself when this fails).
		if err := b.loadDevicePolls(ctx, req.Storage); err != nil {
			b.Logger().Error("reading pending device authorizations failed; the device poller will retry", "error", err)
		} else {
			b.deviceFlow.wake()
		}
	}
	return nil
}

// periodic runs on Vault's rollback tick (about once a minute): the jobs the tick
// triggers, in the order jobs.go registers them.
func (b *integrationsBackend) periodic(ctx context.Context, req *logical.Request) error {
	return b.jobs.Tick(ctx, req.Storage)
}

// clean runs when the mount is unloaded: every job stopped, in the order jobs.go
// registers them, and waited for.
func (b *integrationsBackend) clean(ctx context.Context) {
	b.cleanOnce.Do(func() {
		b.jobs.Stop(ctx)
		if unstored := b.outbox.Unstored(); unstored > 0 {
			b.Logger().Error("notifications storage refused are lost with this unload", "count", unstored)
		}
	})
}

// invalidate drops cached copies of a storage entry another node (or a replicated
// write) has changed, so the next read decodes it afresh: each key goes to the store
// that owns it. The device index, pending authorizations and the outbox cache nothing
// another node writes.
func (b *integrationsBackend) invalidate(_ context.Context, key string) {
	if key == configPath {
		unlock := lockRanked(rankConfig, &b.configMu)
		b.config = nil
		unlock()
		b.activity.configChanged()
		return
	}
	if key == issuerKeysPath {
		b.issuer.drop() // the active node rotated the issuer keys
		return
	}
	if name, ok := strings.CutPrefix(key, credentialPrefix); ok {
		// Another node changed the credential: its settings may be new, so what was
		// learnt under the old ones (token, backoff, the Broker's last token) goes
		// too, and requests in flight here cannot store their answers, as on a local
		// update. The stored token is the other node's to keep or delete.
		b.credentials.forget(name)
		b.tokens.invalidated(name)
		b.exchanges.drop(name)
	} else if name, ok := strings.CutPrefix(key, tokenPrefix); ok {
		// Another node stored or deleted the token (a mint, an exchange, a repoint):
		// the copies here, the Broker's included, are older.
		b.tokens.invalidated(name)
	} else if name, ok := strings.CutPrefix(key, usagePrefix); ok {
		b.usage.invalidated(name)
	}
}

// rememberMount learns the mount path from a request, for callback URLs, events and
// notifications. Every request passes here (HandleRequest), so it costs one atomic
// load unless the mount moved.
func (b *integrationsBackend) rememberMount(req *logical.Request) {
	if a := req.MountAccessor; a != "" {
		if cur := b.accessor.Load(); cur == nil || *cur != a {
			b.accessor.Store(&a)
		}
	}
	if req.MountPoint == "" {
		return
	}
	if cur := b.mount.Load(); cur != nil && *cur == req.MountPoint {
		return
	}
	m := req.MountPoint
	b.mount.Store(&m)
}

// mountAccessor is the mount's accessor, learnt from requests ("" before any).
func (b *integrationsBackend) mountAccessor() string {
	if a := b.accessor.Load(); a != nil {
		return *a
	}
	return ""
}

// mountPath is where the engine is mounted, with a trailing slash.
func (b *integrationsBackend) mountPath() string {
	if m := b.mount.Load(); m != nil {
		return *m
	}
	return "integrations/"
}

const backendHelp = `
The integrations secrets engine keeps the credentials that integrations use to reach
other products: basic auth, bearer and API tokens, certificates, SFTP accounts with a
pinned host key, device accounts, and OAuth 2.0 clients (client credentials, password and
authorization-code grants, with presets for Microsoft 365, Zoom, ServiceNow, Cisco,
Slack, PagerDuty and Okta).

Stored secrets are never shown again by management reads. Integrations read
"access/<name>" to get working material: static secrets with ready authorization headers,
or a valid OAuth access token, minted and refreshed as needed.

Engine-wide settings live at "config".
`
