// github_app's part of the access/ path: its answer's shape (gitHubAccess), a
// caller's narrowing (access/<name> repositories and permissions, gitHubNarrowingOf)
// and the narrowed tokens, minted through the Broker under a variant key of the
// credential (its own single flight and backoff, the credential's request bucket) and
// kept in memory per distinct narrowing (narrowedCache, bounded). The credential's own
// token goes through tokenAccess like every OAuth token: cached in tokens/, single
// flight, refresh ahead. The token request itself is backend/oauth/githubapp.go.

package backend

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// Bounds of the narrowed tokens kept in memory: in all, and per credential. The least
// recently used is dropped (with its Broker state) beyond either.
const (
	maxNarrowed              = 1024
	maxNarrowedPerCredential = 32
)

// accessNarrowingFields are access/'s github_app parameters.
func accessNarrowingFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		credtype.FieldRepositories: {
			Type:        framework.TypeCommaStringSlice,
			Description: "github_app only: narrow the installation token to these repositories (names without the owner), among the credential's own when it names any.",
			Query:       true,
		},
		credtype.FieldPermissions: {
			Type:        framework.TypeKVPairs,
			Description: "github_app only: narrow the installation token to these permissions (name=read|write|admin), none above the credential's own level.",
			Query:       true,
		},
	}
}

// isGitHubApp reports whether t is the github_app type.
func isGitHubApp(t *credtype.Type) bool {
	return t.OAuth != nil && t.OAuth.Grant == credtype.GrantGitHubApp
}

// gitHubNarrowing is a caller's narrowing of a github_app token.
type gitHubNarrowing struct {
	repositories []string
	permissions  map[string]string
}

// gitHubNarrowingOf reads access/'s narrowing parameters: nil when neither is given;
// a 400 naming the parameter when a type other than github_app is given one.
func gitHubNarrowingOf(t *credtype.Type, d *framework.FieldData) (*gitHubNarrowing, error) {
	repos, _ := d.GetOk(credtype.FieldRepositories)
	perms, _ := d.GetOk(credtype.FieldPermissions)
	r, _ := repos.([]string)
	p, _ := perms.(map[string]string)
	if len(r) == 0 && len(p) == 0 {
		return nil, nil
	}
	if !isGitHubApp(t) {
		param := credtype.FieldRepositories
		if len(r) == 0 {
			param = credtype.FieldPermissions
		}
		return nil, logical.CodedError(http.StatusBadRequest, fieldErr(param, "is taken by github_app credentials only").Error())
	}
	return &gitHubNarrowing{repositories: r, permissions: p}, nil
}

// gitHubAccess is the access/ answer of a github_app token: the token, its expiry,
// ttl, rotation_period and last_vault_rotation (as every OAuth answer), what GitHub
// granted, and the authorization header value.
func gitHubAccess(tok *oauth.Token, answered, handOver time.Time) map[string]any {
	g := tok.GitHub
	if g == nil {
		g = &oauth.GitHubGrant{}
	}
	repos := g.Repositories
	if repos == nil {
		repos = []string{}
	}
	perms := maps.Clone(g.Permissions)
	if perms == nil {
		perms = map[string]string{}
	}
	return map[string]any{
		"token":                tok.AccessToken,
		"expires_at":           rfc3339(tok.Expiry),
		"ttl":                  int64(handOver.Sub(answered) / time.Second),
		"rotation_period":      int64(tok.Expiry.Sub(tok.IssuedAt) / time.Second),
		"last_vault_rotation":  rfc3339Nano(tok.IssuedAt),
		"permissions":          perms,
		"repositories":         repos,
		"repository_selection": g.RepositorySelection,
		"authorization":        "Bearer " + tok.AccessToken,
	}
}

// narrowedAccess answers access/ for a github_app credential c with a caller's
// narrowing n: a 400 naming the parameter when n asks for more than c allows; the
// credential's own token (tokenAccess) when n narrows nothing; otherwise a narrowed
// token, served from memory while valid for the demand, else minted through the
// Broker's single flight under the variant key of c's name, its token-state
// generation and the narrowing. A narrowed token is never refreshed ahead and never
// stored: it is kept in memory only (narrowedCache) and dropped with the generation.
func (b *integrationsBackend) narrowedAccess(ctx context.Context, s logical.Storage, cfg *engineConfig, c *credential, n *gitHubNarrowing, minimumSeconds int, now time.Time) (map[string]any, []string, error) {
	if minimumSeconds < 0 || minimumSeconds > maxMinimumSeconds {
		return nil, nil, logical.CodedError(http.StatusBadRequest, fieldErr("minimum_seconds", fmt.Sprintf("must be between 0 and %d", maxMinimumSeconds)).Error())
	}
	minValid := max(cfg.ExpiryBuffer, time.Duration(minimumSeconds)*time.Second)
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return nil, nil, fmt.Errorf("building the GitHub App configuration of %q: %w", c.Name, err)
	}
	_, variant, err := oc.GitHub.Narrow(n.repositories, n.permissions)
	if err != nil {
		return nil, nil, narrowingRefusal(err)
	}
	if variant == "" {
		return b.tokenAccess(ctx, s, cfg, c, minimumSeconds, now)
	}
	gen := b.tokens.generation(c.Name)
	key := oauth.VariantKey(c.Name, strconv.FormatUint(gen, 10)+"."+variant)
	if tok := b.narrowed.get(key, gen); tok != nil && !tok.IssuedAt.Before(c.UpdatedAt) &&
		tok.Fresh(now, shortLivedDemand(minValid, cfg.ExpiryBuffer, tok), cfg.DefaultTokenLifetime) {
		b.metrics.fromCache.Inc()
		return gitHubAccess(tok, now, b.narrowedHandOver(cfg, key, tok, minValid, now)), nil, nil
	}
	b.metrics.fromProvider.Inc()
	res, t, err := b.mintNarrowed(ctx, s, cfg, c.Name, n, minValid)
	if refused := mintRefusal(c.Name, err, "read it again"); refused != nil {
		return nil, nil, refused
	}
	var oe *oauth.Error
	var ne *oauth.NarrowingError
	switch {
	case errors.Is(err, logical.ErrReadOnly):
		return nil, nil, err
	case errors.As(err, &ne):
		return nil, nil, narrowingRefusal(err)
	case errors.As(err, &oe) && oe.Code == oauth.CodeGitHubUnprocessable:
		// The installation does not grant what this caller narrowed to: the caller's
		// request, not the credential, is at fault.
		return nil, nil, logical.CodedError(http.StatusBadRequest, fmt.Sprintf(
			"repositories or permissions: GitHub refused the narrowing (%s)", oe.Error()))
	case err != nil:
		return nil, nil, b.tokenFailure(ctx, s, t, err, now)
	}
	var warnings []string
	if res.Warning != "" {
		warnings = append(warnings, res.Warning)
		b.recordEvent(c.Name, usage.EventRefreshFailed, false, "", res.Warning)
	}
	answered := b.now()
	return gitHubAccess(res.Token, answered, b.narrowedHandOver(cfg, t.name, res.Token, minValid, answered)), warnings, nil
}

// mintNarrowed mints c's token narrowed by n, as mintOnce does for the credential's
// own: on a node that may write, from the credential read again with its generation
// (the narrowing checked against it), stored (in memory) only while that generation
// holds.
func (b *integrationsBackend) mintNarrowed(ctx context.Context, s logical.Storage, cfg *engineConfig, name string, n *gitHubNarrowing, minValid time.Duration) (oauth.Result, tokenTicket, error) {
	if !b.WriteSafeReplicationState() {
		// As mintOnce: the request is the active node's, whose bucket bounds it.
		return oauth.Result{}, tokenTicket{name: name}, logical.ErrReadOnly
	}
	ts := b.tokens
	t, c, err := ts.ticket(ctx, s, name)
	if err != nil {
		return oauth.Result{}, t, err
	}
	if c == nil {
		return oauth.Result{}, t, errCredentialGone
	}
	oc, err := b.oauthConfig(cfg, c)
	if err != nil {
		return oauth.Result{}, t, fmt.Errorf("building the GitHub App configuration of %q: %w", name, err)
	}
	narrowed, variant, err := oc.GitHub.Narrow(n.repositories, n.permissions)
	if err != nil {
		return oauth.Result{}, t, err
	}
	oc.GitHub = narrowed
	key := oauth.VariantKey(name, strconv.FormatUint(t.gen, 10)+"."+variant)
	var src *oauth.Token
	if tok := b.narrowed.get(key, t.gen); tok != nil && !tok.IssuedAt.Before(c.UpdatedAt) {
		src = tok
	}
	demand := shortLivedDemand(minValid, cfg.ExpiryBuffer, src)
	res, err := ts.brokerOf().Token(ctx, key, oc, src, demand, func(_ context.Context, tok *oauth.Token) error {
		if ts.generation(name) != t.gen {
			return errTokenDiscarded
		}
		for _, old := range b.narrowed.put(key, name, t.gen, tok) {
			ts.brokerOf().Forget(old)
		}
		b.recordEvent(name, usage.EventTokenMinted, true, "", "narrowed; expires "+rfc3339(tok.Expiry))
		return nil
	})
	return res, t, err
}

// narrowedHandOver is the ttl point of a narrowed token: when it falls due for this
// demand (no refresh ahead), or the Broker's next attempt once it has; at least 1 s on.
func (b *integrationsBackend) narrowedHandOver(cfg *engineConfig, key string, tok *oauth.Token, minValid time.Duration, now time.Time) time.Time {
	soonest := now.Add(time.Second)
	point := tok.Expiry.Add(-shortLivedDemand(minValid, cfg.ExpiryBuffer, tok))
	if !point.After(now) {
		point = b.tokens.brokerOf().RetryAt(key)
	}
	if point.Before(soonest) {
		return soonest
	}
	return point
}

// narrowingRefusal is the 400 of a narrowing asking for more than the credential
// allows, naming the parameter.
func narrowingRefusal(err error) error {
	var ne *oauth.NarrowingError
	if errors.As(err, &ne) {
		return logical.CodedError(http.StatusBadRequest, fieldErr(ne.Param, ne.Rule).Error())
	}
	return err
}

// narrowedCache keeps narrowed installation tokens in memory, by variant key: at most
// maxNarrowed in all and maxNarrowedPerCredential per credential, the least recently
// used dropped first; an entry of an older generation of its credential is dropped
// when a newer one is stored. The zero value is ready to use.
type narrowedCache struct {
	mu      sync.Mutex
	lru     list.List // of *narrowedEntry, most recently used first
	byKey   map[string]*list.Element
	perName map[string]int
}

type narrowedEntry struct {
	key, name string
	gen       uint64
	tok       *oauth.Token
}

// get returns the token kept under key for generation gen, nil when none.
func (nc *narrowedCache) get(key string, gen uint64) *oauth.Token {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	el, ok := nc.byKey[key]
	if !ok {
		return nil
	}
	e := el.Value.(*narrowedEntry)
	if e.gen != gen {
		return nil
	}
	nc.lru.MoveToFront(el)
	return e.tok
}

// put keeps tok under key and returns the keys it dropped to stay within its bounds
// (and the entries of name's older generations), for the caller to forget in the
// Broker.
func (nc *narrowedCache) put(key, name string, gen uint64, tok *oauth.Token) []string {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.byKey == nil {
		nc.byKey, nc.perName = make(map[string]*list.Element), make(map[string]int)
	}
	if el, ok := nc.byKey[key]; ok {
		el.Value.(*narrowedEntry).tok = tok
		nc.lru.MoveToFront(el)
		return nil
	}
	var dropped []string
	drop := func(el *list.Element) {
		e := el.Value.(*narrowedEntry)
		nc.lru.Remove(el)
		delete(nc.byKey, e.key)
		if nc.perName[e.name]--; nc.perName[e.name] == 0 {
			delete(nc.perName, e.name)
		}
		dropped = append(dropped, e.key)
	}
	if nc.perName[name] > 0 {
		for el := nc.lru.Back(); el != nil; {
			prev := el.Prev()
			if e := el.Value.(*narrowedEntry); e.name == name && e.gen != gen {
				drop(el)
			}
			el = prev
		}
	}
	for nc.perName[name] >= maxNarrowedPerCredential {
		for el := nc.lru.Back(); el != nil; el = el.Prev() {
			if el.Value.(*narrowedEntry).name == name {
				drop(el)
				break
			}
		}
	}
	for nc.lru.Len() >= maxNarrowed {
		drop(nc.lru.Back())
	}
	nc.byKey[key] = nc.lru.PushFront(&narrowedEntry{key: key, name: name, gen: gen, tok: tok})
	nc.perName[name]++
	return dropped
}

// len is how many narrowed tokens are kept.
func (nc *narrowedCache) len() int {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.lru.Len()
}

// withFields is base with extra's fields added.
func withFields(extra, base map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	maps.Copy(base, extra)
	return base
}
