// GitHub App installation tokens: the App JWT (RS256, iss = the App's ID or client ID,
// iat 60 s in the past, exp at most 10 minutes on), the installation looked up by its
// owner (GET /app/installations), the token request (POST
// /app/installations/{id}/access_tokens) with an optional narrowing, and the
// classification of GitHub's answers (401/403/404 refuse the App or installation;
// 403/429 with Retry-After or X-RateLimit-Reset are rate limits). The Broker runs it
// like any grant: single flight, backoff, a request bucket per credential.

package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// GrantGitHubApp is github_app's grant (credtype.GrantGitHubApp).
const GrantGitHubApp Grant = credtype.GrantGitHubApp

// GitHub's documented limits on the App JWT: exp at most 10 minutes after it is
// made; iat set 60 s in the past to allow for clock drift.
const (
	GitHubJWTBackdate = 60 * time.Second
	GitHubJWTLifetime = 9 * time.Minute // exp − now; exp − iat is 10 minutes
	// GitHubAPIVersion is the REST API version the engine speaks.
	GitHubAPIVersion = "2022-11-28"
	// maxInstallationPages bounds the installation lookup by owner (100 a page).
	maxInstallationPages = 10
)

// Failure codes of GitHub's answers (the reason a credential needs re-authorization).
const (
	CodeGitHubUnauthorized         = "github_app_unauthorized"       // 401: the JWT was refused (App deleted, key revoked)
	CodeGitHubForbidden            = "github_forbidden"              // 403 without a rate limit: installation suspended, token creation refused
	CodeGitHubInstallationNotFound = "github_installation_not_found" // 404, or no installation for owner
	CodeGitHubUnprocessable        = "github_unprocessable"          // 422: repositories or permissions the installation does not grant
)

// GitHubApp is what a github_app credential gives its token request.
type GitHubApp struct {
	// Issuer is the JWT's iss: the App ID (digits) or the client ID.
	Issuer string
	// PrivateKey is the App's key, PKCS#8 PEM as the catalog stores it (secret).
	PrivateKey     string
	InstallationID string // "" when Owner names the installation
	Owner          string
	// Repositories and Permissions narrow the token; empty: what the installation has.
	Repositories []string
	Permissions  map[string]string
	// BaseURL is the REST root, without a trailing slash.
	BaseURL string
	// Check makes the request a verification: GET /app, then the installation,
	// before the token is minted.
	Check bool
}

// GitHubGrant is what GitHub granted an installation token, kept with it.
type GitHubGrant struct {
	Permissions         map[string]string `json:"permissions,omitempty"`
	Repositories        []string          `json:"repositories,omitempty"`
	RepositorySelection string            `json:"repository_selection,omitempty"`
}

// gitHubFromFields is FromFields for github_app.
func gitHubFromFields(typeName string, f *fieldReader) (Config, error) {
	g := &GitHubApp{
		Issuer:         f.str(credtype.FieldAppID),
		PrivateKey:     f.secret("private_key"),
		InstallationID: f.str(credtype.FieldInstallationID),
		Owner:          f.str(credtype.FieldOwner),
		Repositories:   f.list(credtype.FieldRepositories),
		Permissions:    credtype.StringMap(f.fields[credtype.FieldPermissions]),
		BaseURL:        strings.TrimRight(f.str(credtype.FieldBaseURL), "/"),
	}
	if g.Issuer == "" {
		g.Issuer = f.str("client_id")
	}
	if g.BaseURL == "" {
		g.BaseURL = credtype.DefaultGitHubAPI
	}
	cfg := Config{Grant: GrantGitHubApp, TokenURL: g.BaseURL, ClientID: g.Issuer, GitHub: g,
		CACertificate: f.str(credtype.FieldCACertificate)}
	if f.err != nil {
		return Config{}, fmt.Errorf("%s: %w", typeName, f.err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", typeName, err)
	}
	return cfg, nil
}

// list reads a list field ([]string, or []any of strings as JSON decodes it).
func (f *fieldReader) list(name string) []string {
	switch v := f.fields[name].(type) {
	case nil:
		return nil
	case []string:
		return slices.Clone(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				f.fail(name, "must be a list of strings")
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	f.fail(name, "must be a list of strings")
	return nil
}

// validate is Config.Validate for github_app.
func (g *GitHubApp) validate(c Config) error {
	var errs []error
	if g == nil {
		return errors.New("github_app: the App's settings are missing")
	}
	if g.Issuer == "" {
		errs = append(errs, errors.New("app_id or client_id is required"))
	}
	if g.PrivateKey == "" {
		errs = append(errs, errors.New("private_key is required"))
	}
	if (g.InstallationID == "") == (g.Owner == "") {
		errs = append(errs, errors.New("exactly one of installation_id and owner must be set"))
	}
	if g.InstallationID != "" && strings.Trim(g.InstallationID, "0123456789") != "" {
		errs = append(errs, errors.New("installation_id must be decimal digits"))
	}
	if g.Owner != "" && !credtype.ValidGitHubLogin(g.Owner) {
		errs = append(errs, errors.New("owner must be a GitHub login"))
	}
	if err := CheckEndpoint(g.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("base_url: %w", err))
	}
	if c.TokenURL != g.BaseURL {
		errs = append(errs, errors.New("base_url: the token endpoint must be the App's REST root"))
	}
	if err := CheckGitHubNarrowing(g.Repositories, g.Permissions); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckGitHubNarrowing checks repositories and permissions as GitHub takes them:
// repository names, at most 500; permission names to read, write or admin. The error
// names the parameter, never a value.
func CheckGitHubNarrowing(repos []string, perms map[string]string) error {
	if len(repos) > credtype.MaxGitHubRepositories {
		return fmt.Errorf("repositories: at most %d", credtype.MaxGitHubRepositories)
	}
	for i, r := range repos {
		if credtype.CheckGitHubRepository(r) != nil {
			return fmt.Errorf("repositories: item %d is not a repository name (letters, digits, '.', '_' and '-', at most 100 bytes, without the owner)", i+1)
		}
	}
	if len(perms) > 64 {
		return errors.New("permissions: at most 64")
	}
	for _, k := range slices.Sorted(maps.Keys(perms)) {
		if credtype.CheckGitHubPermissionName(k) != nil {
			return errors.New("permissions: names are lower-case letters, digits and '_', at most 64 bytes")
		}
		if credtype.GitHubPermissionRank(perms[k]) == 0 {
			return fmt.Errorf("permissions: %s must be \"read\", \"write\" or \"admin\"", k)
		}
	}
	return nil
}

// NarrowingError is a caller's narrowing that asks for more than the credential
// allows, or is malformed: a 400 naming the parameter.
type NarrowingError struct {
	Param string // "repositories" or "permissions"
	Rule  string
}

func (e *NarrowingError) Error() string { return e.Param + ": " + e.Rule }

// Narrow returns g narrowed to repos and perms (each nil: as g has it), and a key
// naming the narrowing ("" when it narrows nothing: the credential's own token). It
// refuses a request for more than g allows: a repository outside g's repositories
// (when it names any), a permission g does not name (when it names any) or a higher
// level than g's.
func (g *GitHubApp) Narrow(repos []string, perms map[string]string) (*GitHubApp, string, error) {
	if err := CheckGitHubNarrowing(repos, nil); err != nil {
		return nil, "", &NarrowingError{Param: "repositories", Rule: strings.TrimPrefix(err.Error(), "repositories: ")}
	}
	if err := CheckGitHubNarrowing(nil, perms); err != nil {
		return nil, "", &NarrowingError{Param: "permissions", Rule: strings.TrimPrefix(err.Error(), "permissions: ")}
	}
	n := *g
	n.Check = false
	if len(repos) > 0 {
		set := make([]string, 0, len(repos))
		for i, r := range repos {
			if len(g.Repositories) > 0 && !slices.ContainsFunc(g.Repositories, func(o string) bool { return strings.EqualFold(o, r) }) {
				return nil, "", &NarrowingError{Param: "repositories", Rule: fmt.Sprintf("item %d is not one of the credential's repositories: a narrowing may only remove repositories", i+1)}
			}
			if !slices.ContainsFunc(set, func(o string) bool { return strings.EqualFold(o, r) }) {
				set = append(set, strings.ToLower(r))
			}
		}
		slices.Sort(set)
		n.Repositories = set
	}
	if len(perms) > 0 {
		for _, k := range slices.Sorted(maps.Keys(perms)) {
			if len(g.Permissions) == 0 {
				continue
			}
			have, ok := g.Permissions[k]
			if !ok {
				return nil, "", &NarrowingError{Param: "permissions", Rule: fmt.Sprintf("%s is not one of the credential's permissions: a narrowing may only remove or lower permissions", k)}
			}
			if credtype.GitHubPermissionRank(perms[k]) > credtype.GitHubPermissionRank(have) {
				return nil, "", &NarrowingError{Param: "permissions", Rule: fmt.Sprintf("%s may be at most %q, the credential's level", k, have)}
			}
		}
		n.Permissions = maps.Clone(perms)
	}
	if sameRepos(n.Repositories, g.Repositories) && maps.Equal(n.Permissions, g.Permissions) {
		return g, "", nil
	}
	h := sha256.New()
	for _, r := range n.Repositories {
		_, _ = fmt.Fprintf(h, "r%d:%s\x00", len(r), r)
	}
	for _, k := range slices.Sorted(maps.Keys(n.Permissions)) {
		_, _ = fmt.Fprintf(h, "p%d:%s=%s\x00", len(k), k, n.Permissions[k])
	}
	return &n, base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16]), nil
}

func sameRepos(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(r string) bool {
		return !slices.ContainsFunc(b, func(o string) bool { return strings.EqualFold(o, r) })
	})
}

// SignGitHubAppJWT signs the App JWT GitHub documents ("Generating a JSON Web Token
// (JWT) for a GitHub App"): RS256, iat now − 60 s, exp now + 9 min (10 minutes after
// iat, GitHub's limit), iss the App ID (a number) or client ID (a string).
func SignGitHubAppJWT(key *rsa.PrivateKey, issuer string, now time.Time) (string, error) {
	var iss any = issuer
	if n, err := strconv.ParseInt(issuer, 10, 64); err == nil {
		iss = n
	}
	claims, err := json.Marshal(map[string]any{
		"iat": now.Add(-GitHubJWTBackdate).Unix(),
		"exp": now.Add(GitHubJWTLifetime).Unix(),
		"iss": iss,
	})
	if err != nil {
		return "", err
	}
	signing := gitHubJWTHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

var gitHubJWTHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))

// gitHubCall is one Mint's conversation with GitHub's REST API.
type gitHubCall struct {
	c    *Client
	hc   *http.Client
	tr   *exchangeTrace
	base string
	jwt  string
}

// mintGitHubApp mints an installation access token for cfg.GitHub. ctx carries the
// bounded HTTP client and trace (requestContext).
func (c *Client) mintGitHubApp(ctx context.Context, cfg Config, tr *exchangeTrace) (*Token, error) {
	g := cfg.GitHub
	start := time.Now()
	tok, err := c.gitHubToken(ctx, g, tr)
	c.observe(string(GrantGitHubApp), start, err)
	return tok, err
}

func (c *Client) gitHubToken(ctx context.Context, g *GitHubApp, tr *exchangeTrace) (*Token, error) {
	key, err := credtype.GitHubAppKey(g.PrivateKey)
	if err != nil {
		return nil, configError(err.Error())
	}
	jwt, err := SignGitHubAppJWT(key, g.Issuer, c.now())
	if err != nil {
		return nil, configError("the App JWT could not be signed")
	}
	hc, _ := ctx.Value(oauth2.HTTPClient).(*http.Client)
	if hc == nil {
		hc = c.http
	}
	call := &gitHubCall{c: c, hc: hc, tr: tr, base: g.BaseURL, jwt: jwt}
	if g.Check {
		if _, err := call.do(ctx, http.MethodGet, "/app", nil, http.StatusOK); err != nil {
			return nil, err
		}
	}
	id := g.InstallationID
	if id == "" {
		if id, err = call.installationOf(ctx, g.Owner); err != nil {
			return nil, err
		}
	} else if g.Check {
		if _, err := call.do(ctx, http.MethodGet, "/app/installations/"+id, nil, http.StatusOK); err != nil {
			return nil, err
		}
	}
	body := map[string]any{}
	if len(g.Repositories) > 0 {
		body["repositories"] = g.Repositories
	}
	if len(g.Permissions) > 0 {
		body["permissions"] = g.Permissions
	}
	var payload []byte
	if len(body) > 0 {
		payload, _ = json.Marshal(body) // strings only: always encodes
	}
	resp, err := call.do(ctx, http.MethodPost, "/app/installations/"+id+"/access_tokens", payload, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	return c.gitHubAnswer(resp)
}

// gitHubResponse is an answer GitHub gave with the status asked for.
type gitHubResponse struct {
	body []byte
	date time.Time // its Date header, zero when absent or unparseable
}

// do sends one request with the App JWT and reads the answer, bounded by the
// Client's response cap. An answer with another status than want is classified.
func (g *gitHubCall) do(ctx context.Context, method, path string, body []byte, want int) (*gitHubResponse, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, rd)
	if err != nil {
		return nil, configError("base_url does not make a request URL")
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Authorization", "Bearer "+g.jwt)
	req.Header.Set("X-GitHub-Api-Version", GitHubAPIVersion)
	req.Header.Set("User-Agent", "vault-plugin-secrets-integrations")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return nil, classify(err, g.tr, g.c.now())
	}
	defer func() { _ = resp.Body.Close() }() // read whole below; the close error changes nothing
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		g.tr.noteReadErr(err)
		return nil, classify(err, g.tr, g.c.now())
	}
	if resp.StatusCode != want {
		return nil, classifyGitHub(resp.StatusCode, resp.Header, g.c.now())
	}
	r := &gitHubResponse{body: data}
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		r.date = d
	}
	return r, nil
}

// installationOf finds owner's installation of the App (GET /app/installations, at
// most maxInstallationPages pages of 100), comparing logins case-insensitively as
// GitHub does.
func (g *gitHubCall) installationOf(ctx context.Context, owner string) (string, error) {
	for page := 1; page <= maxInstallationPages; page++ {
		resp, err := g.do(ctx, http.MethodGet, "/app/installations?per_page=100&page="+strconv.Itoa(page), nil, http.StatusOK)
		if err != nil {
			return "", err
		}
		var list []struct {
			ID      json.Number `json:"id"`
			Account *struct {
				Login string `json:"login"`
			} `json:"account"`
		}
		if err := json.Unmarshal(resp.body, &list); err != nil {
			return "", badGitHubAnswer("an installation list that is not a JSON array of installations")
		}
		for _, in := range list {
			if in.Account != nil && strings.EqualFold(in.Account.Login, owner) {
				id := in.ID.String()
				if id == "" || strings.Trim(id, "0123456789") != "" || len(id) > 20 {
					return "", badGitHubAnswer("an installation id that is not a number")
				}
				return id, nil
			}
		}
		if len(list) < 100 {
			break
		}
	}
	return "", &Error{Class: Permanent, Code: CodeGitHubInstallationNotFound,
		detail: "the App has no installation on the account named by owner"}
}

func badGitHubAnswer(what string) *Error {
	return &Error{Class: Transient, Code: CodeBadResponse, Status: http.StatusOK,
		detail: "GitHub's answer has " + what}
}

// gitHubAnswer reads an installation token answer: the token, its expires_at
// (reckoned from the answer's Date, so a skewed local clock does not move it), and
// what was granted, each bounded and checked.
func (c *Client) gitHubAnswer(resp *gitHubResponse) (*Token, error) {
	var a struct {
		Token               string            `json:"token"`
		ExpiresAt           string            `json:"expires_at"`
		Permissions         map[string]string `json:"permissions"`
		RepositorySelection string            `json:"repository_selection"`
		Repositories        []struct {
			Name string `json:"name"`
		} `json:"repositories"`
	}
	if err := json.Unmarshal(resp.body, &a); err != nil {
		return nil, badGitHubAnswer("no usable installation token")
	}
	switch {
	case a.Token == "":
		return nil, badGitHubAnswer("no token")
	case len(a.Token) > MaxAccessTokenBytes:
		return nil, badGitHubAnswer(fmt.Sprintf("a token of more than %d bytes", MaxAccessTokenBytes))
	case strings.ContainsFunc(a.Token, func(r rune) bool { return r <= ' ' || r > '~' }):
		return nil, badGitHubAnswer("a token that is not printable ASCII")
	}
	expires, err := time.Parse(time.RFC3339, a.ExpiresAt)
	if err != nil {
		return nil, badGitHubAnswer("an expires_at that is not an RFC 3339 time")
	}
	now := c.now()
	issued := now
	if !resp.date.IsZero() {
		issued = resp.date
	}
	life := expires.Sub(issued)
	capped := false
	switch {
	case life <= 0:
		return nil, badGitHubAnswer("an expires_at that is not after the answer's date")
	case life > MaxLifetime:
		life, capped = MaxLifetime, true
	}
	grant := &GitHubGrant{}
	if err := CheckGitHubNarrowing(nil, a.Permissions); err != nil {
		return nil, badGitHubAnswer("permissions that are not GitHub permission names and levels")
	}
	grant.Permissions = a.Permissions
	if len(a.Repositories) > credtype.MaxGitHubRepositories {
		return nil, badGitHubAnswer(fmt.Sprintf("more than %d repositories", credtype.MaxGitHubRepositories))
	}
	for _, r := range a.Repositories {
		if credtype.CheckGitHubRepository(r.Name) != nil {
			return nil, badGitHubAnswer("a repository without a valid name")
		}
		grant.Repositories = append(grant.Repositories, r.Name)
	}
	switch a.RepositorySelection {
	case "", "all", "selected":
		grant.RepositorySelection = a.RepositorySelection
	default:
		return nil, badGitHubAnswer("a repository_selection other than all or selected")
	}
	return &Token{
		AccessToken:    a.Token,
		TokenType:      "Bearer",
		Expiry:         now.Add(life),
		IssuedAt:       now,
		LifetimeCapped: capped,
		GitHub:         grant,
	}, nil
}

// classifyGitHub classifies an answer of GitHub's with an unexpected status, from the
// status and headers only (the body's message is never read): a rate limit — 429, or
// 403 with Retry-After or X-RateLimit-Remaining 0 — is transient, retried after
// Retry-After or at X-RateLimit-Reset; 401, 403, 404 and 422 refuse the App, the
// installation or the narrowing; 5xx is transient.
func classifyGitHub(status int, h http.Header, now time.Time) *Error {
	e := &Error{Status: status}
	retry := parseRetryAfter(h.Get("Retry-After"), now)
	if retry == 0 && strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0" {
		if reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil {
			retry = min(max(time.Unix(reset, 0).Sub(now), time.Second), maxRetryAfter)
		}
	}
	limited := h.Get("Retry-After") != "" || strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0"
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusForbidden && limited:
		e.Class, e.Code, e.RetryAfter = Transient, CodeRateLimited, retry
		e.detail = "GitHub's rate limit"
	case status == http.StatusUnauthorized:
		e.Class, e.Code = Permanent, CodeGitHubUnauthorized
		e.detail = "GitHub refused the App JWT: the App, or this private key, is no longer valid"
	case status == http.StatusForbidden:
		e.Class, e.Code = Permanent, CodeGitHubForbidden
		e.detail = "GitHub refused the App access to the installation (suspended, or the token request is not allowed)"
	case status == http.StatusNotFound:
		e.Class, e.Code = Permanent, CodeGitHubInstallationNotFound
		e.detail = "GitHub does not know the App's installation (uninstalled, or another App's)"
	case status == http.StatusUnprocessableEntity:
		e.Class, e.Code = Permanent, CodeGitHubUnprocessable
		e.detail = "GitHub refused the repositories or permissions asked for: the installation does not grant them"
	case status >= 500:
		e.Class, e.Code = Transient, HTTPCode(status)
		if status == http.StatusServiceUnavailable {
			e.RetryAfter = retry
		}
	case status >= 400:
		e.Class, e.Code = Permanent, HTTPCode(status)
	default:
		e.Class, e.Code = Transient, CodeBadResponse
	}
	return e
}

// GitHubInstallationURL is the URL path of an installation's token request, for
// tests and docs.
func GitHubInstallationURL(base, id string) string {
	return strings.TrimRight(base, "/") + "/app/installations/" + url.PathEscape(id) + "/access_tokens"
}
