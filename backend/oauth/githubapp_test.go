package oauth

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// TestSignGitHubAppJWT: RS256 over header.claims with the App's key; iat 60 s back,
// exp 9 minutes on (10 after iat); iss a number for an App ID, a string for a client ID.
func TestSignGitHubAppJWT(t *testing.T) {
	t.Parallel()
	key := fixtures.GitHubAppKey()
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		iss  string
		want any
	}{{"123456", float64(123456)}, {"Iv23liClient", "Iv23liClient"}} {
		jwt, err := SignGitHubAppJWT(key, c.iss, now)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(jwt, ".")
		hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
		cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		var claims map[string]any
		if err := json.Unmarshal(cb, &claims); err != nil || string(hb) != `{"alg":"RS256","typ":"JWT"}` {
			t.Fatalf("header %s claims %s", hb, cb)
		}
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("signature: %v", err)
		}
		if claims["iss"] != c.want || claims["iat"] != float64(now.Unix()-60) || claims["exp"] != float64(now.Unix()+540) || len(claims) != 3 {
			t.Fatalf("claims %v", claims)
		}
		if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat > 600 {
			t.Fatalf("exp − iat = %v s, GitHub's limit is 600", exp-iat)
		}
	}
}

// TestClassifyGitHub: every answer GitHub documents for the token request, by class,
// code and backoff.
func TestClassifyGitHub(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	reset := func(d time.Duration) string { return strconvI(now.Add(d).Unix()) }
	for _, c := range []struct {
		status int
		header map[string]string
		class  Class
		code   string
		retry  time.Duration
	}{
		{401, nil, Permanent, CodeGitHubUnauthorized, 0},
		{403, nil, Permanent, CodeGitHubForbidden, 0},
		{404, nil, Permanent, CodeGitHubInstallationNotFound, 0},
		{422, nil, Permanent, CodeGitHubUnprocessable, 0},
		{400, nil, Permanent, "http_400", 0},
		{403, map[string]string{"Retry-After": "60"}, Transient, CodeRateLimited, time.Minute},
		{403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset(10 * time.Minute)}, Transient, CodeRateLimited, 10 * time.Minute},
		{403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset(5 * time.Hour)}, Transient, CodeRateLimited, time.Hour},
		{403, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset(-time.Minute)}, Transient, CodeRateLimited, time.Second},
		{403, map[string]string{"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": reset(time.Minute)}, Permanent, CodeGitHubForbidden, 0},
		{429, nil, Transient, CodeRateLimited, 0},
		{429, map[string]string{"Retry-After": "30"}, Transient, CodeRateLimited, 30 * time.Second},
		{500, nil, Transient, "http_500", 0},
		{503, map[string]string{"Retry-After": "5"}, Transient, "http_503", 5 * time.Second},
		{302, nil, Transient, CodeBadResponse, 0},
	} {
		h := http.Header{}
		for k, v := range c.header {
			h.Set(k, v)
		}
		e := classifyGitHub(c.status, h, now)
		if e.Class != c.class || e.Code != c.code || e.RetryAfter != c.retry || e.Status != c.status {
			t.Errorf("%d %v: %s (retry %s), want %s %s retry %s", c.status, c.header, e, e.RetryAfter, c.class, c.code, c.retry)
		}
	}
}

func strconvI(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestGitHubAnswerBounds: GitHub's answer is a stranger's data: a missing or
// oversized token, a bad expiry, bad names or too many repositories are bad responses
// (transient), never stored; the lifetime is reckoned from the answer's Date.
func TestGitHubAnswerBounds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	c := NewClient(ClientOptions{Now: func() time.Time { return now }})
	date := now.Add(-10 * time.Minute) // GitHub's clock is 10 minutes behind ours
	ok := `{"token":"ghs_abc","expires_at":"` + date.Add(time.Hour).Format(time.RFC3339) + `","permissions":{"contents":"read"},"repository_selection":"selected","repositories":[{"name":"a"}]}`
	tok, err := c.gitHubAnswer(&gitHubResponse{body: []byte(ok), date: date})
	if err != nil || tok.AccessToken != "ghs_abc" || !tok.Expiry.Equal(now.Add(time.Hour)) || tok.GitHub.Repositories[0] != "a" || tok.GitHub.Permissions["contents"] != "read" {
		t.Fatalf("good answer: %v %v", tok, err)
	}
	many := `{"token":"t","expires_at":"2026-03-01T11:00:00Z","repositories":[` + strings.Repeat(`{"name":"a"},`, 500) + `{"name":"a"}]}`
	for name, body := range map[string]string{
		"not json":         `<html>`,
		"no token":         `{"expires_at":"2026-03-01T11:00:00Z"}`,
		"huge token":       `{"token":"` + strings.Repeat("a", MaxAccessTokenBytes+1) + `","expires_at":"2026-03-01T11:00:00Z"}`,
		"token with space": `{"token":"a b","expires_at":"2026-03-01T11:00:00Z"}`,
		"bad expiry":       `{"token":"t","expires_at":"tomorrow"}`,
		"past expiry":      `{"token":"t","expires_at":"2026-03-01T09:00:00Z"}`,
		"bad repo":         `{"token":"t","expires_at":"2026-03-01T11:00:00Z","repositories":[{"name":"a/b"}]}`,
		"bad permission":   `{"token":"t","expires_at":"2026-03-01T11:00:00Z","permissions":{"contents":"everything"}}`,
		"bad selection":    `{"token":"t","expires_at":"2026-03-01T11:00:00Z","repository_selection":"some"}`,
		"501 repos":        many,
	} {
		_, err := c.gitHubAnswer(&gitHubResponse{body: []byte(body)})
		e, _ := err.(*Error)
		if e == nil || e.Code != CodeBadResponse || e.Class != Transient || strings.Contains(e.Error(), "ghs_") {
			t.Errorf("%s: %v, want a transient bad_response", name, err)
		}
	}
}

// TestGitHubNarrow: a narrowing may only remove repositories and remove or lower
// permissions; the refusal names the parameter; one that narrows nothing has no key;
// the key does not depend on order or case.
func TestGitHubNarrow(t *testing.T) {
	t.Parallel()
	g := &GitHubApp{Repositories: []string{"a", "B"}, Permissions: map[string]string{"contents": "write", "issues": "read"}}
	for _, c := range []struct {
		repos []string
		perms map[string]string
		param string
	}{
		{[]string{"c"}, nil, "repositories"},
		{[]string{"a/b"}, nil, "repositories"},
		{nil, map[string]string{"contents": "admin"}, "permissions"},
		{nil, map[string]string{"issues": "write"}, "permissions"},
		{nil, map[string]string{"checks": "read"}, "permissions"},
		{nil, map[string]string{"Contents": "read"}, "permissions"},
		{nil, map[string]string{"contents": "none"}, "permissions"},
	} {
		_, _, err := g.Narrow(c.repos, c.perms)
		ne, _ := err.(*NarrowingError)
		if ne == nil || ne.Param != c.param {
			t.Errorf("Narrow(%v, %v) = %v, want a refusal of %s", c.repos, c.perms, err, c.param)
		}
	}
	n1, k1, err := g.Narrow([]string{"b", "a"}, map[string]string{"contents": "read"})
	n2, k2, _ := g.Narrow([]string{"A", "B", "a"}, map[string]string{"contents": "read"})
	if err != nil || k1 == "" || k1 != k2 || n1.Permissions["contents"] != "read" || len(n1.Repositories) != 2 || n2 == g {
		t.Fatalf("narrowing keys %q %q, %v %v", k1, k2, n1, err)
	}
	if same, k, err := g.Narrow([]string{"a", "b"}, nil); err != nil || k != "" || same != g {
		t.Fatalf("a narrowing to everything: %q %v", k, err)
	}
	// A credential naming no repositories or permissions lets a caller name any.
	open := &GitHubApp{}
	if _, k, err := open.Narrow([]string{"x"}, map[string]string{"checks": "write"}); err != nil || k == "" {
		t.Fatalf("narrowing an unrestricted App: %q %v", k, err)
	}
}
