// Package githubtest is test support: a GitHub REST API server for GitHub Apps that
// follows GitHub's documented contract for the calls an App makes to get installation
// access tokens — GET /app, GET /app/installations, GET /app/installations/{id} and
// POST /app/installations/{id}/access_tokens — as "Authenticating as a GitHub App"
// and the REST reference describe them: the App JWT checked as GitHub checks it
// (RS256 only, signed by the App's key, iss the App ID or client ID, iat not in the
// future, exp in the future and at most 10 minutes ahead), answers shaped as GitHub's
// (installation, integration, installation-token, repository and error objects, the
// x-ratelimit-* headers on every answer, Link pagination), and GitHub's refusals: 401
// for a JWT it cannot accept, 404 for an installation not the App's, 403 for a
// suspended one, 422 for repositories or permissions the installation does not grant,
// rate limits as 403 or 429 with retry-after or x-ratelimit-remaining 0. The e2e suite
// checks its answers and the engine's requests against GitHub's OpenAPI description.
package githubtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Installation is one installation of the App.
type Installation struct {
	ID           int64
	Account      string            // the login of the user or organization
	Permissions  map[string]string // what the installation grants
	Repositories []string          // the repositories it can reach
	// Selection is "all" or "selected" (default "selected").
	Selection string
	Suspended bool
}

// Request is one request the server received, as it received it.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
	// Claims are the App JWT's claims when it parsed (whether or not accepted).
	Claims map[string]any
	// Alg is the JWT header's alg.
	Alg string
	// Status is what the server answered.
	Status int
}

// Fault is an answer given instead of the real one to the next request.
type Fault struct {
	Status int
	Header map[string]string
	Body   string
}

// Server is the GitHub API of one App. Use Handler with an httptest server; set
// BaseURL to its URL so the answers' URLs point at it.
type Server struct {
	AppID    int64
	ClientID string
	Slug     string
	// Key is the App's public key, which its JWTs must be signed by.
	Key *rsa.PublicKey
	// TokenLifetime is how long an installation token lives (GitHub: 1 hour).
	TokenLifetime time.Duration
	// Now is the server's clock (default time.Now).
	Now func() time.Time

	mu            sync.Mutex
	baseURL       string
	installations []*Installation
	requests      []Request
	faults        []Fault
	tokens        map[string]time.Time // issued tokens and their expiry
	// remaining is the primary rate limit's remaining requests (GitHub: 5,000 an
	// hour for an App); at 0 every answer is GitHub's 403 rate-limit answer.
	remaining int
	reset     time.Time
}

// New returns the server of App appID (client ID clientID) whose key is key.
func New(appID int64, clientID string, key *rsa.PublicKey, installs ...*Installation) *Server {
	return &Server{AppID: appID, ClientID: clientID, Slug: "integrations-test-app", Key: key, TokenLifetime: time.Hour,
		installations: installs, tokens: map[string]time.Time{}, remaining: RateLimit}
}

// RateLimit is the primary rate limit the server starts with, as GitHub gives an App.
const RateLimit = 5000

// SetBaseURL sets the URL the server is reached at (its answers' URLs are under it).
func (s *Server) SetBaseURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL = strings.TrimRight(u, "/")
}

// Fail queues faults, answered in order to the next requests.
func (s *Server) Fail(fs ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fs...)
}

// Exhaust sets the primary rate limit's remaining requests to 0 until reset.
func (s *Server) Exhaust(reset time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remaining, s.reset = 0, reset
}

// Uninstall removes the installation id.
func (s *Server) Uninstall(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installations = slices.DeleteFunc(s.installations, func(in *Installation) bool { return in.ID == id })
}

// Suspend suspends the installation id.
func (s *Server) Suspend(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.installations {
		if in.ID == id {
			in.Suspended = true
		}
	}
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// TokenRequests counts the POST .../access_tokens requests received.
func (s *Server) TokenRequests() int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/access_tokens") {
			n++
		}
	}
	return n
}

// Issued returns every installation token the server issued.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for tok := range s.tokens {
		out = append(out, tok)
	}
	slices.Sort(out)
	return out
}

// Valid reports whether token is an installation token the server issued that has
// not expired.
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	return ok && s.now().Before(exp)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

type answer struct {
	status int
	header map[string]string
	body   any
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	a := s.answer(r, body, &rec)
	rec.Status = a.status
	s.requests = append(s.requests, rec)
	now := s.now()
	h := w.Header()
	// Every answer of the REST API carries these (docs: "Rate limits for the REST API").
	if s.remaining > 0 && s.reset.Before(now) {
		s.reset = now.Add(time.Hour)
	}
	h.Set("Date", now.UTC().Format(http.TimeFormat)) // the server's clock, as GitHub's
	h.Set("X-RateLimit-Limit", strconv.Itoa(RateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(s.remaining))
	h.Set("X-RateLimit-Used", strconv.Itoa(RateLimit-s.remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(s.reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	h.Set("X-GitHub-Request-Id", requestID())
	h.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range a.header {
		h.Set(k, v)
	}
	w.WriteHeader(a.status)
	switch b := a.body.(type) {
	case nil:
	case string:
		_, _ = io.WriteString(w, b)
	default:
		_ = json.NewEncoder(w).Encode(b)
	}
}

func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

func basicError(status int, msg string) answer {
	return answer{status: status, body: map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest", "status": strconv.Itoa(status)}}
}

// answer decides the answer to r; it runs under s.mu.
func (s *Server) answer(r *http.Request, body []byte, rec *Request) answer {
	now := s.now()
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		return answer{status: f.Status, header: f.Header, body: f.Body}
	}
	if s.remaining == 0 {
		if now.Before(s.reset) {
			return basicError(http.StatusForbidden, "API rate limit exceeded for app ID "+strconv.FormatInt(s.AppID, 10)+".")
		}
		s.remaining = RateLimit
	}
	s.remaining--
	if r.Header.Get("User-Agent") == "" {
		// "All API requests must include a valid User-Agent header."
		return basicError(http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.")
	}
	if v := r.Header.Get("X-GitHub-Api-Version"); v != "" && v != "2022-11-28" {
		return basicError(http.StatusBadRequest, "API version "+v+" is not supported.")
	}
	if msg := s.checkJWT(r, rec, now); msg != "" {
		return basicError(http.StatusUnauthorized, msg)
	}
	path := r.URL.Path
	switch {
	case r.Method == http.MethodGet && path == "/app":
		return answer{status: http.StatusOK, body: s.integration()}
	case r.Method == http.MethodGet && path == "/app/installations":
		return s.listInstallations(r)
	case strings.HasPrefix(path, "/app/installations/"):
		rest := strings.TrimPrefix(path, "/app/installations/")
		idStr, tail, _ := strings.Cut(rest, "/")
		id, err := strconv.ParseInt(idStr, 10, 64)
		in := s.installation(id)
		switch {
		case err != nil || in == nil:
			return basicError(http.StatusNotFound, "Not Found")
		case r.Method == http.MethodGet && tail == "":
			return answer{status: http.StatusOK, body: s.installationObject(in)}
		case r.Method == http.MethodPost && tail == "access_tokens":
			return s.accessToken(in, body, now)
		}
	}
	return basicError(http.StatusNotFound, "Not Found")
}

// checkJWT checks the App JWT as GitHub documents it; "" when it is accepted, else
// GitHub's message.
func (s *Server) checkJWT(r *http.Request, rec *Request, now time.Time) string {
	auth := r.Header.Get("Authorization")
	scheme, jwt, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "A JSON web token could not be decoded"
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "A JSON web token could not be decoded"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	claims := map[string]any{}
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &header) != nil || json.Unmarshal(cb, &claims) != nil {
		return "A JSON web token could not be decoded"
	}
	rec.Claims, rec.Alg = claims, header.Alg
	if header.Alg != "RS256" {
		return "'alg' must be RS256"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(s.Key, crypto.SHA256, sum[:], sig) != nil {
		return "A JSON web token could not be decoded"
	}
	switch iss := claims["iss"].(type) {
	case float64:
		if int64(iss) != s.AppID {
			return "Integration not found"
		}
	case string:
		if iss != strconv.FormatInt(s.AppID, 10) && iss != s.ClientID {
			return "Integration not found"
		}
	default:
		return "'Issuer' claim ('iss') must be an Integer"
	}
	iat, ok1 := claims["iat"].(float64)
	exp, ok2 := claims["exp"].(float64)
	switch {
	case !ok1 || time.Unix(int64(iat), 0).After(now):
		return "'Issued at' claim ('iat') must be an Integer representing a time in the past."
	case !ok2 || !time.Unix(int64(exp), 0).After(now):
		return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires."
	case time.Unix(int64(exp), 0).After(now.Add(10 * time.Minute)):
		return "'Expiration time' claim ('exp') is too far in the future"
	}
	return ""
}

func (s *Server) installation(id int64) *Installation {
	for _, in := range s.installations {
		if in.ID == id {
			return in
		}
	}
	return nil
}

func (s *Server) listInstallations(r *http.Request) answer {
	q := r.URL.Query()
	perPage, page := 30, 1
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	list := []any{}
	from := (page - 1) * perPage
	for i := from; i < len(s.installations) && i < from+perPage; i++ {
		list = append(list, s.installationObject(s.installations[i]))
	}
	a := answer{status: http.StatusOK, body: list}
	if from+perPage < len(s.installations) {
		next := fmt.Sprintf("%s/app/installations?per_page=%d&page=%d", s.baseURL, perPage, page+1)
		a.header = map[string]string{"Link": "<" + next + `>; rel="next"`}
	}
	return a
}

func (s *Server) accessToken(in *Installation, body []byte, now time.Time) answer {
	if in.Suspended {
		return basicError(http.StatusForbidden, "This installation has been suspended")
	}
	var req struct {
		Repositories  []string          `json:"repositories"`
		RepositoryIDs []int64           `json:"repository_ids"`
		Permissions   map[string]string `json:"permissions"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return answer{status: http.StatusBadRequest, body: map[string]any{"message": "Problems parsing JSON", "documentation_url": "https://docs.github.com/rest"}}
		}
	}
	if len(req.Repositories) > 500 {
		return validationFailed("repositories", "too_many")
	}
	for _, name := range req.Repositories {
		if !slices.ContainsFunc(in.Repositories, func(r string) bool { return strings.EqualFold(r, name) }) {
			return validationFailedMsg("There is at least one repository that does not exist or is not accessible to the parent installation.")
		}
	}
	rank := map[string]int{"read": 1, "write": 2, "admin": 3}
	for k, v := range req.Permissions {
		have, ok := in.Permissions[k]
		if !ok || rank[v] == 0 || rank[v] > rank[have] {
			return validationFailedMsg("The permissions requested are not granted to this installation.")
		}
	}
	perms := in.Permissions
	if len(req.Permissions) > 0 {
		perms = req.Permissions
	}
	tok := "ghs_" + randomToken(36)
	exp := now.Add(s.TokenLifetime).UTC().Truncate(time.Second)
	s.tokens[tok] = exp
	out := map[string]any{
		"token":                tok,
		"expires_at":           exp.Format(time.RFC3339),
		"permissions":          perms,
		"repository_selection": cmpOr(in.Selection, "selected"),
	}
	repos := in.Repositories
	if len(req.Repositories) > 0 {
		out["repository_selection"] = "selected"
		repos = req.Repositories
	}
	if out["repository_selection"] == "selected" {
		list := make([]any, 0, len(repos))
		for _, name := range repos {
			list = append(list, s.repository(in, name))
		}
		out["repositories"] = list
	}
	return answer{status: http.StatusCreated, body: out}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func validationFailed(field, code string) answer {
	return answer{status: http.StatusUnprocessableEntity, body: map[string]any{
		"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest",
		"errors": []any{map[string]any{"resource": "InstallationToken", "field": field, "code": code}},
	}}
}

func validationFailedMsg(msg string) answer {
	return answer{status: http.StatusUnprocessableEntity, body: map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"}}
}

func randomToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Objects as GitHub's REST API shapes them (the OpenAPI schemas integration,
// installation, simple-user and repository, with their required fields).

const created = "2024-01-02T03:04:05Z"

func (s *Server) user(login string, id int64, typ string) map[string]any {
	u := s.baseURL + "/users/" + url.PathEscape(login)
	return map[string]any{
		"login": login, "id": id, "node_id": "MDQ6VXNlcj" + strconv.FormatInt(id, 10), "avatar_url": "https://avatars.githubusercontent.com/u/" + strconv.FormatInt(id, 10),
		"gravatar_id": "", "url": u, "html_url": "https://github.com/" + login, "followers_url": u + "/followers",
		"following_url": u + "/following{/other_user}", "gists_url": u + "/gists{/gist_id}", "starred_url": u + "/starred{/owner}{/repo}",
		"subscriptions_url": u + "/subscriptions", "organizations_url": u + "/orgs", "repos_url": u + "/repos", "events_url": u + "/events{/privacy}",
		"received_events_url": u + "/received_events", "type": typ, "site_admin": false,
	}
}

func (s *Server) integration() map[string]any {
	return map[string]any{
		"id": s.AppID, "slug": s.Slug, "node_id": "MDExOkludGVncmF0aW9uMQ==", "client_id": s.ClientID,
		"owner": s.user("octo-org", 1, "Organization"), "name": "Integrations test app", "description": "The e2e suite's GitHub App",
		"external_url": "https://example.com", "html_url": "https://github.com/apps/" + s.Slug, "created_at": created, "updated_at": created,
		"permissions": map[string]string{"contents": "write", "issues": "write", "metadata": "read"}, "events": []string{"push"},
		"installations_count": len(s.installations),
	}
}

func (s *Server) installationObject(in *Installation) map[string]any {
	id := strconv.FormatInt(in.ID, 10)
	var suspendedAt any
	var suspendedBy any
	if in.Suspended {
		suspendedAt, suspendedBy = created, s.user("octocat", 583231, "User")
	}
	// The description's list answer (GET /app/installations) types the account as
	// allOf Simple User and Enterprise: the account carries Enterprise's required
	// fields too (name, slug, created_at, updated_at), which Simple User allows.
	account := s.user(in.Account, in.ID+1000, "Organization")
	account["name"], account["slug"], account["created_at"], account["updated_at"] = in.Account, in.Account, created, created
	return map[string]any{
		"id": in.ID, "account": account, "repository_selection": cmpOr(in.Selection, "selected"),
		"access_tokens_url": s.baseURL + "/app/installations/" + id + "/access_tokens", "repositories_url": s.baseURL + "/installation/repositories",
		"html_url": "https://github.com/organizations/" + in.Account + "/settings/installations/" + id, "app_id": s.AppID, "client_id": s.ClientID,
		"target_id": in.ID + 1000, "target_type": "Organization", "permissions": maps.Clone(in.Permissions), "events": []string{"push"},
		"created_at": created, "updated_at": created, "single_file_name": nil, "app_slug": s.Slug,
		"suspended_by": suspendedBy, "suspended_at": suspendedAt,
	}
}

func (s *Server) repository(in *Installation, name string) map[string]any {
	full := in.Account + "/" + name
	u := s.baseURL + "/repos/" + full
	id := int64(len(full)) * 7919
	r := map[string]any{
		"id": id, "node_id": "MDEwOlJlcG9zaXRvcnk" + strconv.FormatInt(id, 10), "name": name, "full_name": full,
		"owner": s.user(in.Account, in.ID+1000, "Organization"), "private": true, "html_url": "https://github.com/" + full,
		"description": nil, "fork": false, "url": u, "homepage": nil, "language": nil, "mirror_url": nil, "license": nil,
		"pushed_at": created, "created_at": created, "updated_at": created, "default_branch": "main",
		"clone_url": "https://github.com/" + full + ".git", "git_url": "git://github.com/" + full + ".git",
		"ssh_url": "git@github.com:" + full + ".git", "svn_url": "https://github.com/" + full,
		"forks": 0, "forks_count": 0, "open_issues": 0, "open_issues_count": 0, "size": 1, "stargazers_count": 0,
		"watchers": 0, "watchers_count": 0, "has_downloads": true, "has_issues": true, "has_projects": false,
		"has_wiki": false, "has_pages": false, "archived": false, "disabled": false,
	}
	for _, k := range []string{"archive_url", "assignees_url", "blobs_url", "branches_url", "collaborators_url", "comments_url",
		"commits_url", "compare_url", "contents_url", "contributors_url", "deployments_url", "downloads_url", "events_url",
		"forks_url", "git_commits_url", "git_refs_url", "git_tags_url", "hooks_url", "issue_comment_url", "issue_events_url",
		"issues_url", "keys_url", "labels_url", "languages_url", "merges_url", "milestones_url", "notifications_url",
		"pulls_url", "releases_url", "stargazers_url", "statuses_url", "subscribers_url", "subscription_url", "tags_url",
		"teams_url", "trees_url"} {
		r[k] = u + "/" + strings.TrimSuffix(k, "_url")
	}
	return r
}
