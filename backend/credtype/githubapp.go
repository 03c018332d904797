// The github_app type: a GitHub App's private key, its app (app_id or client_id) and
// installation (installation_id or owner), minting installation access tokens. Its
// fields and rules are here; the token request is backend/oauth/githubapp.go.

package credtype

import (
	"crypto/rsa"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// GrantGitHubApp is the preset grant of github_app: an App JWT traded for an
// installation access token (POST /app/installations/{id}/access_tokens), not an
// OAuth 2.0 grant.
const GrantGitHubApp = "github_app"

// The github_app fields.
const (
	FieldAppID          = "app_id"
	FieldInstallationID = "installation_id"
	FieldOwner          = "owner"
	FieldRepositories   = "repositories"
	FieldPermissions    = "permissions"
	FieldBaseURL        = "base_url"
	fieldPrivateKey     = "private_key"
)

// DefaultGitHubAPI is base_url's default: github.com's REST API.
const DefaultGitHubAPI = "https://api.github.com"

// Bounds GitHub sets on one installation token request: at most 500 repositories
// (REST docs, "Create an installation access token for an app"); a repository name is
// at most 100 characters; an owner's login at most 39.
const (
	MaxGitHubRepositories = 500
	maxRepoName           = 100
	maxOwnerLogin         = 39
	maxPermissionName     = 64
)

// GitHubPermissionLevels are the values a permission takes in GitHub's API, least
// first: a narrowing may only lower a level.
var GitHubPermissionLevels = []string{"read", "write", "admin"}

const (
	ruleGitHubKey   = "PEM RSA private key of the GitHub App, not encrypted (GitHub issues PKCS#1 \"RSA PRIVATE KEY\"; PKCS#8 is accepted), at least 2048 bits; at most 65536 bytes"
	ruleRepoName    = "repository names without the owner (letters, digits, '.', '_' and '-', at most 100 bytes each; not \".\" or \"..\"), at most 500; duplicates dropped"
	rulePermissions = "object of GitHub App permission names (lower-case letters, digits and '_') to \"read\", \"write\" or \"admin\"; at most 64 keys"
)

// The github_app fields are defined as the package's variables are initialized: before
// init builds the catalog.
var _ = defineGitHubApp()

func defineGitHubApp() []string {
	define(Field{Name: FieldAppID, Type: FieldString, GrantOwner: true, check: checkDigits, maxLen: 20,
		Rule:        "GitHub App ID: decimal digits, at most 20",
		Description: "The GitHub App's ID (App settings, \"App ID\"): the iss claim of the App JWT."})
	define(Field{Name: FieldInstallationID, Type: FieldString, GrantOwner: true, check: checkDigits, maxLen: 20,
		Rule:        "installation ID: decimal digits, at most 20",
		Description: "The App's installation to mint tokens for (…/settings/installations/<id>)."})
	define(Field{Name: FieldOwner, Type: FieldString, GrantOwner: true, check: checkGitHubLogin, maxLen: maxOwnerLogin,
		Rule:        "GitHub user or organization login: letters, digits and single hyphens, not starting or ending with one, at most 39 bytes",
		Description: "The account the App is installed on; the engine looks its installation up (GET /app/installations) when installation_id is unset."})
	define(Field{Name: FieldRepositories, Type: FieldList, item: repoItem, maxLen: maxRepoName, maxItems: MaxGitHubRepositories,
		Rule:        ruleRepoName,
		Description: "Repositories the installation token is narrowed to (names, without the owner); unset: every repository the installation can reach."})
	define(Field{Name: FieldPermissions, Type: FieldStringMap, mapKey: checkPermissionName, maxItems: 64, maxKeyLen: maxPermissionName, maxLen: 8,
		Rule:        rulePermissions,
		Description: "Permissions the installation token is narrowed to, such as contents=read; unset: every permission the installation has."})
	define(Field{Name: FieldBaseURL, Type: FieldString, Destination: true, check: checkHTTPSURL,
		Rule:        ruleHTTPSURL,
		Description: "GitHub REST API root: https://api.github.com (default), or https://HOST/api/v3 for GitHub Enterprise Server."})
	return []string{FieldAppID, FieldInstallationID, FieldOwner, FieldRepositories, FieldPermissions, FieldBaseURL}
}

// githubAppType is the github_app entry of the catalog.
func githubAppType() *Type {
	return &Type{
		Name: "github_app",
		// TokenURL names base_url, so the preset's endpoint is the REST root; the
		// token request itself is oauth's (githubapp.go).
		OAuth:       &OAuthPreset{Grant: GrantGitHubApp, TokenURL: "{base_url}", OwnAuth: true, NoClientAuth: true}, //nolint:gosec // G101: a template naming another field, not a credential
		Description: "A GitHub App: its private key signs an App JWT, traded for an installation access token (1 hour), optionally narrowed to repositories and permissions.",
		Fields: fields(false,
			use(FieldAppID),
			use("client_id", describe("The GitHub App's client ID (Iv1.… or Iv23…), accepted by GitHub as the App JWT's iss instead of app_id.")),
			use(fieldPrivateKey, required, describe("The GitHub App's private key (PEM, as downloaded from the App's settings)."),
				tighten(ruleGitHubKey, checkGitHubKey)),
			use(FieldInstallationID),
			use(FieldOwner),
			use(FieldRepositories),
			use(FieldPermissions),
			use(FieldBaseURL, defaultValue(DefaultGitHubAPI)),
		),
		oneOf:  []*OneOf{oneOf(true, FieldAppID, "client_id"), oneOf(true, FieldInstallationID, FieldOwner)},
		finish: finishGitHubApp,
	}
}

func checkDigits(s string) (string, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return "", ruleError("must be decimal digits")
	}
	if t := strings.TrimLeft(s, "0"); t != "" {
		return t, nil
	}
	return "", ruleError("must be a positive number")
}

func checkGitHubLogin(s string) (string, error) {
	if !ValidGitHubLogin(s) {
		return "", ruleError("must be a GitHub login: letters, digits and single hyphens, not starting or ending with one")
	}
	return s, nil
}

// ValidGitHubLogin reports whether s can be a GitHub user or organization login.
func ValidGitHubLogin(s string) bool {
	if s == "" || len(s) > maxOwnerLogin || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func repoItem(s string) ([]string, error) {
	if err := CheckGitHubRepository(s); err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// CheckGitHubRepository refuses what cannot be a repository name (without its owner).
func CheckGitHubRepository(s string) error {
	if s == "" || len(s) > maxRepoName || s == "." || s == ".." {
		return ruleError("must have repository names of 1 to 100 bytes, not \".\" or \"..\"")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return ruleError("must have repository names of letters, digits, '.', '_' and '-' (without the owner)")
		}
	}
	return nil
}

func checkPermissionName(k string) (string, error) {
	if err := CheckGitHubPermissionName(k); err != nil {
		return "", err
	}
	return k, nil
}

// CheckGitHubPermissionName refuses what cannot be a GitHub App permission name.
func CheckGitHubPermissionName(k string) error {
	if k == "" || len(k) > maxPermissionName {
		return ruleError("must have permission names of 1 to 64 bytes")
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') { //nolint:staticcheck // QF1001: reads as the set of allowed bytes
			return ruleError("must have permission names of lower-case letters, digits and '_'")
		}
	}
	return nil
}

// GitHubPermissionRank is the rank of a permission level (read 1, write 2, admin 3),
// 0 for anything else.
func GitHubPermissionRank(level string) int {
	return slices.Index(GitHubPermissionLevels, level) + 1
}

// checkGitHubKey keeps the App's key as written (GitHub's PKCS#1 PEM, or PKCS#8),
// refusing anything but an unencrypted RSA key of at least 2048 bits: GitHub signs and
// verifies App JWTs with RS256 only.
func checkGitHubKey(s string) (string, error) {
	key, err := parseClientKey(s)
	if err != nil {
		return "", err
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return "", ruleError("must be an RSA key: GitHub App JWTs are RS256")
	}
	return s, nil
}

// GitHubAppKey parses a stored github_app private_key into its RSA key.
func GitHubAppKey(keyPEM string) (*rsa.PrivateKey, error) {
	key, err := parseClientKey(keyPEM)
	if err != nil {
		return nil, fieldError(fieldPrivateKey, err)
	}
	k, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, &FieldError{Field: fieldPrivateKey, Rule: ruleGitHubKey}
	}
	return k, nil
}

// finishGitHubApp checks the permission levels (a map field's values have no rule
// of their own).
func finishGitHubApp(v *Validated) FieldErrors {
	perms := StringMap(v.Values[FieldPermissions])
	for _, k := range slices.Sorted(maps.Keys(perms)) {
		if GitHubPermissionRank(perms[k]) == 0 {
			return FieldErrors{{Field: FieldPermissions, Rule: fmt.Sprintf("must map %s to \"read\", \"write\" or \"admin\"", k)}}
		}
	}
	return nil
}

// gitHubRefusedField is RefusedField for github_app's refusals: the key for a JWT
// GitHub refused, the installation (or owner) for one it does not know, the
// narrowing for one it will not grant.
func gitHubRefusedField(t *Type, values Fields, code string) string {
	if t.OAuth == nil || t.OAuth.Grant != GrantGitHubApp {
		return ""
	}
	switch code {
	case "github_app_unauthorized":
		return fieldPrivateKey
	case "github_installation_not_found", "github_forbidden":
		if values.Str(FieldOwner) != "" {
			return FieldOwner
		}
		return FieldInstallationID
	case "github_unprocessable":
		return FieldPermissions
	}
	return ""
}
