package backend

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/notify"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/ownedkeys"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// configPath is both the API path and the storage key of the engine-wide settings.
const configPath = "config"

const day = lifecycle.Day

// Defaults of the engine-wide settings; README.md (Configuration) documents them.
// Those of suspend_after, purge_after and warn_before are lifecycle's DefaultPolicy.
var (
	defaultExpiryBuffer         = 60 * time.Second
	defaultRequestTimeout       = 30 * time.Second
	defaultLogSize              = 250
	defaultUsageFlushInterval   = 10 * time.Second
	defaultDefaultTokenLifetime = time.Hour
)

// Bounds that keep a typo from turning into an outage or unbounded memory.
const (
	// maxUsageEntry is the most bytes a credential's stored usage (its log) may take at
	// worst: half of the 1 MiB Vault's raft storage allows for one entry.
	maxUsageEntry = 512 << 10
	// maxLogSize is the largest log_size whose log stays within maxUsageEntry with every
	// event at its largest (see usage.MaxEncodedEvent).
	maxLogSize        = (maxUsageEntry - usage.MaxEncodedEnvelope) / usage.MaxEncodedEvent
	maxRequestTimeout = 5 * time.Minute
	maxFlushInterval  = time.Hour
	// The host bound's limits: beyond them it would bound nothing a provider accepts.
	maxTokenHostConcurrency = 1000
	maxTokenHostRate        = 10000
)

// engineConfig is the stored form of config. Durations are stored as nanoseconds.
type engineConfig struct {
	SuspendAfter         time.Duration   `json:"suspend_after"`
	PurgeAfter           time.Duration   `json:"purge_after"`
	WarnBefore           []time.Duration `json:"warn_before"`
	ExpiryBuffer         time.Duration   `json:"expiry_buffer"`
	RequestTimeout       time.Duration   `json:"request_timeout"`
	LogSize              int             `json:"log_size"`
	UsageFlushInterval   time.Duration   `json:"usage_flush_interval"`
	DefaultTokenLifetime time.Duration   `json:"default_token_lifetime"`
	CallbackBaseURL      string          `json:"callback_base_url,omitempty"`
	NotifyCredential     string          `json:"notify_credential,omitempty"`
	NotifyChannel        string          `json:"notify_channel,omitempty"`
	// RefreshAhead makes a read of a token in its refresh window (refreshAt) start
	// its refresh in the background, so no reader waits at the due point.
	RefreshAhead bool `json:"refresh_ahead"`
	// MetricsCredentialLabel adds credential names to the metrics (metrics_config.go).
	MetricsCredentialLabel bool `json:"metrics_credential_label,omitempty"`
	// VerifyInterval re-verifies every credential this often (0, the default, is off);
	// VerifySince, when it was last changed, is where the schedule's slots start from
	// for credentials not verified since (lifecycle.NextVerify).
	VerifyInterval time.Duration `json:"verify_interval,omitempty"`
	VerifySince    time.Time     `json:"verify_since,omitzero"`
	// KeepaliveInterval is how often a held refresh token is exercised at least
	// (keepalive.go); 0 is off. KeepaliveSince, when it was last changed, is from where the
	// keep-alives then overdue are spread (lifecycle.NextKeepAlive).
	KeepaliveInterval time.Duration `json:"keepalive_interval"`
	KeepaliveSince    time.Time     `json:"keepalive_since,omitzero"`
	// TokenHostConcurrency and TokenHostRate bound the token requests to one token host
	// (scheme, host and port of a token URL), shared by every credential there
	// (oauth's host gate): requests in flight at once, and requests a second.
	TokenHostConcurrency int `json:"token_host_concurrency"`
	TokenHostRate        int `json:"token_host_rate"`
	// DeniedNetworks and AllowedNetworks are where the engine may connect
	// (netpolicy), in canonical form; network is the parsed pair, set by loadConfig
	// and validate.
	DeniedNetworks  []string `json:"denied_networks"`
	AllowedNetworks []string `json:"allowed_networks"`
	network         *netpolicy.Policy
	// Issuer is the public URL of this mount's oidc path as providers reach it: the
	// iss of federated client assertions (issuer.go); "" is unset.
	// IssuerKeyRotationPeriod is how long an issuer key signs before the next one.
	Issuer                  string        `json:"issuer,omitempty"`
	IssuerKeyRotationPeriod time.Duration `json:"issuer_key_rotation_period"`
	// Record is the version of the stored format: a field a config stored in an
	// older one lacks reads as its default (upgradeConfig, records.go).
	Record int `json:"record_version,omitempty"`
}

func defaultConfig() *engineConfig {
	p := lifecycle.DefaultPolicy()
	return &engineConfig{
		SuspendAfter:         p.SuspendAfter,
		PurgeAfter:           p.PurgeAfter,
		WarnBefore:           p.WarnBefore,
		ExpiryBuffer:         defaultExpiryBuffer,
		RequestTimeout:       defaultRequestTimeout,
		LogSize:              defaultLogSize,
		UsageFlushInterval:   defaultUsageFlushInterval,
		DefaultTokenLifetime: defaultDefaultTokenLifetime,
		RefreshAhead:         true,
		KeepaliveInterval:    lifecycle.DefaultKeepaliveInterval,
		// A config stored before the field keeps this default: decoding leaves it.
		IssuerKeyRotationPeriod: defaultIssuerKeyRotationPeriod,
		TokenHostConcurrency:    oauth.DefaultHostConcurrency,
		TokenHostRate:           oauth.DefaultHostRate,
		DeniedNetworks:          slices.Clone(netpolicy.DefaultDenied),
		AllowedNetworks:         []string{},
		network:                 netpolicy.Default(),
	}
}

// policy is the lifecycle policy of a credential without overrides of its own.
func (c *engineConfig) policy() lifecycle.Policy {
	return lifecycle.Policy{SuspendAfter: c.SuspendAfter, PurgeAfter: c.PurgeAfter, WarnBefore: c.WarnBefore}
}

func pathConfig(b *integrationsBackend) *framework.Path {
	def := lifecycle.DefaultPolicy()
	warnDefault := make([]string, len(def.WarnBefore))
	warnDays := make([]string, len(def.WarnBefore))
	for i, w := range def.WarnBefore {
		warnDefault[i] = strconv.FormatInt(seconds(w), 10)
		warnDays[i] = strconv.FormatInt(int64(w/day), 10) + "d"
	}
	return &framework.Path{
		Pattern: configPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"suspend_after": {
				Type:        framework.TypeDurationSecond,
				Description: fmt.Sprintf("Suspend a credential after this long without a successful access. Default %d days.", def.SuspendAfter/day),
				Default:     int(def.SuspendAfter.Seconds()),
			},
			"purge_after": {
				Type:        framework.TypeDurationSecond,
				Description: fmt.Sprintf("Delete a credential after this long without a successful access; must exceed suspend_after. Default %d days.", def.PurgeAfter/day),
				Default:     int(def.PurgeAfter.Seconds()),
			},
			"warn_before": {
				Type:        framework.TypeCommaStringSlice,
				Description: fmt.Sprintf(`Warn this long before suspension and before purge, once per threshold; durations such as "90d" or seconds, largest first, at most %d, each shorter than suspend_after. Default %s.`, lifecycle.MaxWarnThresholds, strings.Join(warnDays, ",")),
				Default:     warnDefault,
			},
			"expiry_buffer": {
				Type:        framework.TypeDurationSecond,
				Description: "A cached OAuth token is handed out only while it stays valid at least this long. Default 60 seconds.",
				Default:     int(defaultExpiryBuffer.Seconds()),
			},
			"request_timeout": {
				Type:        framework.TypeDurationSecond,
				Description: "Time limit for each request to a provider (token endpoints, notifications). Default 30 seconds, at most 5 minutes.",
				Default:     int(defaultRequestTimeout.Seconds()),
			},
			"verify_interval": {
				Type:        framework.TypeDurationSecond,
				Description: "Re-verify every credential this often on the active node (as credentials/<name>/verify does; a credential's own verify_interval overrides it), spread over the interval: " + lifecycle.VerifyIntervalRule + ", or 0 for off. Default 0 (off).",
			},
			"keepalive_interval": {
				Type:        framework.TypeDurationSecond,
				Description: fmt.Sprintf("Exercise a held OAuth refresh token (one refresh, on the active node) at least this often since it was last used, so providers that expire unused refresh tokens do not; not an access. %s, or 0 for off. Default %d days.", lifecycle.KeepaliveIntervalRule, lifecycle.DefaultKeepaliveInterval/day),
				Default:     int(lifecycle.DefaultKeepaliveInterval.Seconds()),
			},
			"token_host_concurrency": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("At most this many token requests in flight at once to one token host (the scheme, host and port of a token URL), shared by every credential there: access/ mints, refresh ahead, keep-alive, verify, exchanges, the device flow. A quarter (at least one) is kept for requests a reader waits on. 1 to %d. Default %d.", maxTokenHostConcurrency, oauth.DefaultHostConcurrency),
				Default:     oauth.DefaultHostConcurrency,
			},
			"token_host_rate": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("At most this many token requests a second to one token host, evenly paced, shared as token_host_concurrency is; a 429 or 503 from the host pauses it until its Retry-After (at most %s) and halves the pace for a minute. 1 to %d. Default %d.", oauth.MaxHostPause, maxTokenHostRate, oauth.DefaultHostRate),
				Default:     oauth.DefaultHostRate,
			},
			"log_size": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("How many of the most recent events each credential's log keeps: 1 to %d, so that a log stays under %d KiB, well within Vault's storage entry limit. Default %d.", maxLogSize, maxUsageEntry>>10, defaultLogSize),
				Default:     defaultLogSize,
			},
			"usage_flush_interval": {
				Type:        framework.TypeDurationSecond,
				Description: "How often usage counted in memory is written to storage. Default 10 seconds.",
				Default:     int(defaultUsageFlushInterval.Seconds()),
			},
			"default_token_lifetime": {
				Type:        framework.TypeDurationSecond,
				Description: "Lifetime assumed for an OAuth access token whose provider sent no expires_in. Default 1 hour.",
				Default:     int(defaultDefaultTokenLifetime.Seconds()),
			},
			"refresh_ahead": {
				Type:        framework.TypeBool,
				Description: "Refresh an OAuth token that is being read in the background before it falls due (less than expiry_buffer left), so no reader waits on the provider; a token nobody reads is not refreshed. Off, the reader that finds the token due waits for the new one. Default true.",
				Default:     true,
			},
			"callback_base_url": {
				Type:        framework.TypeString,
				Description: `Externally reachable Vault address used to build the OAuth redirect URL, e.g. "https://vault.example.com:8200" (at most 1024 printable ASCII characters). Default: taken from the request.`,
			},
			"notify_credential": {
				Type:        framework.TypeString,
				Description: fmt.Sprintf("Name of a credential that receives lifecycle notifications (a JSON POST, or a Slack message): %s. Notifications wait in an outbox in storage (at most %d) until delivered, retried with backoff up to %s; alerts show those not delivered.", credtype.NotifyRule(), notify.MaxOutbox, notify.MaxBackoff),
			},
			"notify_channel": {
				Type:        framework.TypeString,
				Description: "Slack channel (ID or name) for notifications when notify_credential posts through the Slack API: " + notifyChannelRule + ".",
			},
			"denied_networks": {
				Type:        framework.TypeCommaStringSlice,
				Description: "Networks the engine never connects to (token requests, verification, notifications, SSH sign-ins), judged on the resolved address of every connection and on literal addresses (and localhost) in a credential's endpoint fields when it is written; they win over allowed_networks. " + netpolicy.Rule + ". Default: " + strings.Join(netpolicy.DefaultDenied, ",") + " (this network and the unspecified addresses, link-local, the cloud metadata services); loopback and the private ranges stay reachable until listed here.",
				Default:     netpolicy.DefaultDenied,
			},
			"allowed_networks": {
				Type:        framework.TypeCommaStringSlice,
				Description: "When not empty, the only networks the engine connects to (less what denied_networks refuses). " + netpolicy.Rule + ". Default: empty (everything not denied).",
			},
			metricsLabelField: metricsLabelSchema,
			"issuer": {
				Type:        framework.TypeString,
				Description: "Public URL of this mount's oidc path as providers reach it, e.g. https://vault.example.com/v1/integrations/oidc: the iss of the client assertions of auth_style=federated credentials, where oidc/.well-known/openid-configuration and oidc/.well-known/keys are found. https (http only to a loopback host), no query, fragment or trailing slash, at most 1024 characters. Default: unset (no federated credentials; the oidc/.well-known paths answer as missing ones).",
			},
			"issuer_key_rotation_period": {
				Type:        framework.TypeDurationSecond,
				Description: fmt.Sprintf("How long an issuer key signs before the next one does; the next key is published a day ahead (half the period when shorter) and the previous one stays published %s after it stops signing. %s to %d days. Default %d days.", issuerKeyKeep, minIssuerKeyRotationPeriod, maxIssuerKeyRotationPeriod/day, defaultIssuerKeyRotationPeriod/day),
				Default:     int(defaultIssuerKeyRotationPeriod.Seconds()),
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
			},
			logical.UpdateOperation: writeOperation(b.pathConfigWrite, "configure", ""),
			logical.DeleteOperation: writeOperation(b.pathConfigDelete, "reset", "configuration"),
		},
		HelpSynopsis: "Engine-wide defaults: inactivity windows, warnings, token caching and provider limits.",
		HelpDescription: "Reading returns the settings in force (defaults where nothing was written). Writing changes only the fields given. Deleting restores every default." +
			examples("vault read integrations/config", "vault write integrations/config expiry_buffer=120 warn_before=30d,7d"),
	}
}

// loadConfig returns the settings in force, decoding them from storage at most once
// until a write or an invalidation.
func (b *integrationsBackend) loadConfig(ctx context.Context, s logical.Storage) (*engineConfig, error) {
	lockAcquire(rankConfig)
	b.configMu.RLock()
	c := b.config
	b.configMu.RUnlock()
	lockReleased(rankConfig)
	if c != nil {
		return c, nil
	}
	defer lockRanked(rankConfig, &b.configMu)()
	if b.config != nil {
		return b.config, nil
	}
	entry, err := s.Get(ctx, configPath)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c = defaultConfig()
	if entry != nil {
		if err := entry.DecodeJSON(c); err != nil {
			return nil, fmt.Errorf("decoding config: %w", err)
		}
		upgradeConfig(c)
	}
	if c.network, err = netpolicy.New(c.DeniedNetworks, c.AllowedNetworks); err != nil {
		return nil, fmt.Errorf("decoding config: the stored network lists: %w", err)
	}
	b.config = c
	return c, nil
}

func (b *integrationsBackend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	c, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: c.responseData()}, nil
}

func (c *engineConfig) responseData() map[string]any {
	warn := make([]int64, len(c.WarnBefore))
	for i, w := range c.WarnBefore {
		warn[i] = seconds(w)
	}
	return map[string]any{
		"suspend_after":              seconds(c.SuspendAfter),
		"purge_after":                seconds(c.PurgeAfter),
		"warn_before":                warn,
		"expiry_buffer":              seconds(c.ExpiryBuffer),
		"request_timeout":            seconds(c.RequestTimeout),
		"log_size":                   c.LogSize,
		"usage_flush_interval":       seconds(c.UsageFlushInterval),
		"default_token_lifetime":     seconds(c.DefaultTokenLifetime),
		"refresh_ahead":              c.RefreshAhead,
		"verify_interval":            seconds(c.VerifyInterval),
		"keepalive_interval":         seconds(c.KeepaliveInterval),
		"token_host_concurrency":     c.TokenHostConcurrency,
		"token_host_rate":            c.TokenHostRate,
		"callback_base_url":          c.CallbackBaseURL,
		"notify_credential":          c.NotifyCredential,
		"notify_channel":             c.NotifyChannel,
		"denied_networks":            c.network.Denied(),
		"allowed_networks":           c.network.Allowed(),
		metricsLabelField:            c.MetricsCredentialLabel,
		"issuer":                     c.Issuer,
		"issuer_key_rotation_period": seconds(c.IssuerKeyRotationPeriod),
	}
}

func (b *integrationsBackend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(d); resp != nil {
		return resp, nil
	}
	// The update applies to the config in force when it is stored: no other write may
	// land between this read and the store. Nothing below calls out to the network.
	defer lockRanked(rankConfigWrite, &b.configWriteMu)()
	current, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	next := *current
	next.WarnBefore = slices.Clone(current.WarnBefore)
	if err := next.update(d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := next.validate(); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if next.VerifyInterval != current.VerifyInterval {
		next.VerifySince = b.now().UTC()
	}
	if next.KeepaliveInterval != current.KeepaliveInterval {
		next.KeepaliveSince = b.now().UTC()
	}
	if err := b.checkNotifyCredential(ctx, req.Storage, &next, next.NotifyCredential != current.NotifyCredential); err != nil {
		return validationResponse(err)
	}
	if err := b.storeConfig(ctx, req.Storage, &next); err != nil {
		return nil, err
	}
	if err := b.configChanged(ctx, req.Storage, current, &next); err != nil {
		return nil, err
	}
	b.rebuildIndex(req.Storage) //nolint:contextcheck // background work that outlives this call: it runs under the backend's own lifetime, not the request's context
	resp := &logical.Response{Data: next.responseData()}
	if next.Issuer != "" && current.Issuer == "" {
		// The first issuer key, made now rather than by the first token request.
		if _, err := b.issuer.update(ctx, req.Storage, func(set *ownedkeys.Set) (bool, error) {
			return ensureSigning(ctx, set, b.now().UTC())
		}); err != nil {
			resp.AddWarning("the first issuer key could not be made now; the issuer key rotation job or the first federated token request makes it: " + err.Error())
		}
	}
	return resp, nil
}

func (b *integrationsBackend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	defer lockRanked(rankConfigWrite, &b.configWriteMu)()
	if err := b.deleteConfig(ctx, req.Storage); err != nil {
		return nil, err
	}
	// After configMu is released: the scan reads config.
	b.rebuildIndex(req.Storage) //nolint:contextcheck // background work that outlives this call: it runs under the backend's own lifetime, not the request's context
	return nil, nil
}

func (b *integrationsBackend) deleteConfig(ctx context.Context, s logical.Storage) error {
	defer lockRanked(rankConfig, &b.configMu)()
	if err := s.Delete(ctx, configPath); err != nil {
		return fmt.Errorf("deleting config: %w", err)
	}
	b.config = nil
	b.activity.configChanged()
	return nil
}

func (b *integrationsBackend) storeConfig(ctx context.Context, s logical.Storage, c *engineConfig) error {
	entry, err := recordEntry(configPath, c)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	defer lockRanked(rankConfig, &b.configMu)()
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing config: %w", err)
	}
	b.config = c
	b.activity.configChanged()
	return nil
}

// update copies the fields present in the request onto c.
func (c *engineConfig) update(d *framework.FieldData) error {
	durations := map[string]*time.Duration{
		"suspend_after":              &c.SuspendAfter,
		"purge_after":                &c.PurgeAfter,
		"expiry_buffer":              &c.ExpiryBuffer,
		"request_timeout":            &c.RequestTimeout,
		"usage_flush_interval":       &c.UsageFlushInterval,
		"default_token_lifetime":     &c.DefaultTokenLifetime,
		"verify_interval":            &c.VerifyInterval,
		"keepalive_interval":         &c.KeepaliveInterval,
		"issuer_key_rotation_period": &c.IssuerKeyRotationPeriod,
	}
	for name, dst := range durations {
		if v, ok := d.GetOk(name); ok {
			*dst = time.Duration(v.(int)) * time.Second
		}
	}
	if v, ok := d.GetOk("warn_before"); ok {
		raw := v.([]string)
		c.WarnBefore = make([]time.Duration, 0, len(raw))
		for _, s := range raw {
			w, err := parseutil.ParseDurationSecond(s)
			if err != nil {
				return fieldErr("warn_before", "each threshold must be a duration such as 30d, 72h or a number of seconds")
			}
			c.WarnBefore = append(c.WarnBefore, w)
		}
	}
	if v, ok := d.GetOk("log_size"); ok {
		c.LogSize = v.(int)
	}
	if v, ok := d.GetOk("token_host_concurrency"); ok {
		c.TokenHostConcurrency = v.(int)
	}
	if v, ok := d.GetOk("token_host_rate"); ok {
		c.TokenHostRate = v.(int)
	}
	if v, ok, err := d.GetOkErr("refresh_ahead"); err != nil {
		return fieldErr("refresh_ahead", "must be a boolean (true or false)")
	} else if ok {
		c.RefreshAhead = v.(bool)
	}
	if v, ok := d.GetOk("callback_base_url"); ok {
		c.CallbackBaseURL = v.(string)
	}
	if v, ok := d.GetOk("issuer"); ok {
		c.Issuer = v.(string)
	}
	if v, ok := d.GetOk("notify_credential"); ok {
		c.NotifyCredential = v.(string)
	}
	if v, ok := d.GetOk("notify_channel"); ok {
		c.NotifyChannel = v.(string)
	}
	if v, ok := d.GetOk("denied_networks"); ok {
		c.DeniedNetworks = v.([]string)
	}
	if v, ok := d.GetOk("allowed_networks"); ok {
		c.AllowedNetworks = v.([]string)
	}
	return c.updateMetricsLabel(d)
}

// validate checks the settings as a whole, so that a change to one field cannot leave
// the combination inconsistent.
func (c *engineConfig) validate() error {
	if err := policyErr(c.policy().ValidateDefault()); err != nil {
		return err
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"expiry_buffer", c.ExpiryBuffer},
		{"request_timeout", c.RequestTimeout},
		{"usage_flush_interval", c.UsageFlushInterval},
		{"default_token_lifetime", c.DefaultTokenLifetime},
	}
	for _, p := range positive {
		if p.d <= 0 {
			return fieldErr(p.name, "must be a positive duration")
		}
	}
	if c.RequestTimeout > maxRequestTimeout {
		return fieldErr("request_timeout", fmt.Sprintf("must be at most %s", maxRequestTimeout))
	}
	if c.UsageFlushInterval > maxFlushInterval {
		return fieldErr("usage_flush_interval", fmt.Sprintf("must be at most %s", maxFlushInterval))
	}
	if c.VerifyInterval != 0 {
		if err := lifecycle.CheckVerifyInterval(c.VerifyInterval); err != nil {
			return fieldErr("verify_interval", err.Error()+", or 0 for off")
		}
	}
	if c.KeepaliveInterval != 0 {
		if err := lifecycle.CheckKeepaliveInterval(c.KeepaliveInterval); err != nil {
			return fieldErr("keepalive_interval", err.Error()+", or 0 for off")
		}
	}
	if c.TokenHostConcurrency < 1 || c.TokenHostConcurrency > maxTokenHostConcurrency {
		return fieldErr("token_host_concurrency", fmt.Sprintf("must be between 1 and %d", maxTokenHostConcurrency))
	}
	if c.TokenHostRate < 1 || c.TokenHostRate > maxTokenHostRate {
		return fieldErr("token_host_rate", fmt.Sprintf("must be between 1 and %d requests a second", maxTokenHostRate))
	}
	if c.LogSize < 1 || c.LogSize > maxLogSize {
		return fieldErr("log_size", fmt.Sprintf("must be between 1 and %d", maxLogSize))
	}
	if c.CallbackBaseURL != "" {
		if err := validateBaseURL(c.CallbackBaseURL); err != nil {
			return fieldErr("callback_base_url", err.Error())
		}
	}
	if c.Issuer != "" {
		if err := checkIssuer(c.Issuer); err != nil {
			return err
		}
	}
	if c.IssuerKeyRotationPeriod < minIssuerKeyRotationPeriod || c.IssuerKeyRotationPeriod > maxIssuerKeyRotationPeriod {
		return fieldErr("issuer_key_rotation_period", fmt.Sprintf("must be between %s and %d days", minIssuerKeyRotationPeriod, maxIssuerKeyRotationPeriod/day))
	}
	if c.NotifyCredential != "" && !validName(c.NotifyCredential) {
		return fieldErr("notify_credential", nameRule)
	}
	if err := c.validateNetworks(); err != nil {
		return err
	}
	if len(c.NotifyChannel) > maxNotifyChannel || strings.ContainsFunc(c.NotifyChannel, func(r rune) bool { return r == ',' || !unicode.IsGraphic(r) || unicode.IsSpace(r) }) {
		return fieldErr("notify_channel", notifyChannelRule)
	}
	return nil
}

// validateNetworks parses denied_networks and allowed_networks, keeps them in
// canonical form and sets the policy they make.
func (c *engineConfig) validateNetworks() error {
	p, err := netpolicy.New(c.DeniedNetworks, c.AllowedNetworks)
	var le *netpolicy.ListError
	switch {
	case errors.As(err, &le) && le.Allowed:
		return fieldErr("allowed_networks", le.Error())
	case errors.As(err, &le):
		return fieldErr("denied_networks", le.Error())
	case err != nil:
		return err
	}
	c.network, c.DeniedNetworks, c.AllowedNetworks = p, p.Denied(), p.Allowed()
	return nil
}

// policyErr is the field error of the lifecycle rule a policy breaks; nil for nil.
func policyErr(err error) error {
	var re *lifecycle.RuleError
	if errors.As(err, &re) {
		return fieldErr(re.Field, re.Rule)
	}
	return err
}

// notify_channel is a Slack channel ID or name.
const (
	maxNotifyChannel  = 80
	notifyChannelRule = "must be a Slack channel ID or name: at most 80 bytes, no spaces, commas or control characters"
)

// maxBaseURL bounds callback_base_url: it is put before every redirect URL.
const maxBaseURL = 1024

func validateBaseURL(raw string) error {
	if len(raw) > maxBaseURL || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) {
		return fmt.Errorf("must be an absolute http(s) URL of at most %d printable ASCII characters without spaces", maxBaseURL)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be an absolute http(s) URL with a host and no credentials, query or fragment")
	}
	return nil
}
