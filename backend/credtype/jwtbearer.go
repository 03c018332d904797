// The JWT-bearer authorization grant (RFC 7523 §2.1): the fields of oauth2_jwt_bearer,
// google_service_account and salesforce_jwt, their rules, and how each type's values
// become the assertion the oauth package signs for every token request (Assertion).

package credtype

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GrantJWTBearer is the grant_type of the JWT-bearer authorization grant.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer" //nolint:gosec // G101: a grant type, not a credential

// Assertion lifetimes: the default and the longest an oauth2_jwt_bearer credential
// may ask for (Google accepts at most an hour), and Salesforce's three minutes.
const (
	DefaultAssertionLifetime    = 5 * time.Minute
	MaxAssertionLifetime        = time.Hour
	minAssertionLifetime        = 10 * time.Second
	salesforceAssertionLifetime = 3 * time.Minute
)

// The scope_in values: the scopes go in the token request's scope parameter, or in
// the assertion's scope claim (space-separated, as Google's is).
const (
	ScopeInForm  = "form"
	ScopeInClaim = "claim"
)

// Salesforce's assertion audiences: the production and sandbox login servers. A My
// Domain login_url is where the token is requested; the aud stays one of these.
const (
	salesforceLogin = "https://login.salesforce.com"
	salesforceTest  = "https://test.salesforce.com"
)

// registeredClaims are the claims the engine sets in every assertion; claims may not.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti"}

// maxServiceAccountKey bounds a Google key file: they are about 2.3 KB.
const maxServiceAccountKey = 16 << 10

// Assertion is what a JWT-bearer credential's assertion is made of; the oauth package
// signs a fresh one (iss, sub, aud, iat, exp, jti and Claims) for every token
// request. It holds the signing key: String redacts it.
type Assertion struct {
	Issuer   string
	Subject  string // "" leaves sub out
	Audience string
	// Key is the PEM private key (PKCS#8, as Validate stores client_key, or the
	// private_key of a Google key file) that signs the assertion.
	Key       string
	KeyID     string // kid header; "" leaves it out
	Algorithm string // JWS algorithm; "" is the key's default (AssertionAlgorithm)
	Lifetime  time.Duration
	// ScopeClaim puts the scopes in the assertion's scope claim instead of the
	// request's scope parameter.
	ScopeClaim bool
	// Claims are extra string claims (none of the registered ones).
	Claims map[string]string
	// TokenURL is the token endpoint the key file names (Google's token_uri); "" when
	// the endpoint comes from the type's fields.
	TokenURL string
}

// String describes a with its key redacted.
func (a Assertion) String() string {
	key := ""
	if a.Key != "" {
		key = "[redacted]"
	}
	return fmt.Sprintf("credtype.Assertion{Issuer:%s Subject:%s Audience:%s Key:%s KeyID:%s Algorithm:%s Lifetime:%s ScopeClaim:%t Claims:%v TokenURL:%s}",
		a.Issuer, a.Subject, a.Audience, key, a.KeyID, a.Algorithm, a.Lifetime, a.ScopeClaim, a.Claims, a.TokenURL)
}

// GoString is String, so %#v redacts too.
func (a Assertion) GoString() string { return a.String() }

// The fields of the JWT-bearer types are defined with the package's variables, before
// the catalog is built (catalog.go's init).
var _ = defineJWTBearer()

func defineJWTBearer() []string {
	define(Field{Name: "issuer", Type: FieldString, check: checkNoSpace, Rule: ruleNoSpace,
		Description: "iss claim of the assertion: who the provider knows the key by."})
	define(Field{Name: "subject", Type: FieldString, check: checkNoSpace, Rule: ruleNoSpace,
		Description: "sub claim of the assertion: the principal the token is for."})
	define(Field{Name: "scope_in", Type: FieldString, check: checkScopeIn, maxLen: 16,
		Rule:        `"form" (the token request's scope parameter) or "claim" (the assertion's scope claim, space-separated)`,
		Description: "Where the scopes are sent."})
	define(Field{Name: "assertion_lifetime", Type: FieldString, check: checkAssertionLifetime, maxLen: maxShort,
		Rule:        "duration such as 5m or 300 (seconds), from 10s to 1h",
		Description: "How long each assertion is valid (exp - iat); a fresh one is signed for every token request."})
	define(Field{Name: "claims", Type: FieldStringMap, mapKey: checkClaimName,
		Rule:        "object of extra string claims of the assertion; none of the registered claims " + strings.Join(registeredClaims, ", "),
		Description: "Extra claims of the assertion, for providers that need them."})
	define(Field{Name: "service_account_key", Type: FieldString, Sensitive: true, Destination: true, check: checkServiceAccountKey,
		maxLen: maxServiceAccountKey, multiline: true,
		Rule: "the JSON key file of a Google service account as Google issues it: type \"service_account\", client_email, private_key_id, " +
			"private_key (PEM PKCS#8 RSA of at least 2048 bits) and token_uri (https); at most 16384 bytes",
		Description: "Google service account key file (JSON). Its private_key_id and client_email show in reads; the key never does. It names the token endpoint (token_uri): changing it requires resending it."})
	define(Field{Name: "login_url", Type: FieldString, Destination: true, check: checkLoginURL, Rule: ruleHTTPSURL + "; no path, query or fragment",
		Description: "Salesforce login server: https://login.salesforce.com (default), https://test.salesforce.com for sandboxes, or a My Domain URL."})
	define(Field{Name: "consumer_key", Type: FieldString, check: checkNoSpace, Rule: ruleNoSpace,
		Description: "Consumer key of the Salesforce connected app: the assertion's iss."})
	return []string{"issuer", "subject", "scope_in", "assertion_lifetime", "claims", "service_account_key", "login_url", "consumer_key"}
}

// principal makes a field one that says who a JWT-bearer grant's token is for (the
// assertion's iss or sub): a grant-owner field, so a change forgets the cached token
// (as a changed client_id does) instead of serving the previous principal's.
func principal(f *Field) { f.GrantOwner = true }

// jwtBearerKeyRule is client_key's rule on the JWT-bearer types.
const jwtBearerKeyRule = "client_key signs the grant's assertion (and the client assertion with auth_style private_key_jwt)"

func checkScopeIn(s string) (string, error) {
	if s = strings.ToLower(s); s == ScopeInForm || s == ScopeInClaim {
		return s, nil
	}
	return "", ruleError(`must be "form" or "claim"`)
}

// parseAssertionLifetime reads a duration such as 5m or a number of seconds.
func parseAssertionLifetime(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(MaxAssertionLifetime/time.Second) {
			return 0, ruleError("must be from 10s to 1h")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ruleError("must be a duration such as 5m, or a number of seconds")
	}
	return d, nil
}

func checkAssertionLifetime(s string) (string, error) {
	d, err := parseAssertionLifetime(s)
	if err != nil {
		return "", err
	}
	if d < minAssertionLifetime || d > MaxAssertionLifetime {
		return "", ruleError("must be from 10s to 1h")
	}
	return d.String(), nil
}

func checkClaimName(k string) (string, error) {
	if slices.Contains(registeredClaims, k) {
		return "", ruleError("must not be a claim the engine sets (" + strings.Join(registeredClaims, ", ") + ")")
	}
	return k, nil
}

// checkLoginURL is an https origin: the token endpoint is its /services/oauth2/token.
func checkLoginURL(s string) (string, error) {
	s, err := checkHTTPSURL(s)
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(s) // checkHTTPSURL parsed it
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.ForceQuery {
		return "", ruleError("must be the login server's origin, without a path or query")
	}
	u.Path, u.RawPath = "", ""
	return u.String(), nil
}

// serviceAccountKey is the part of a Google key file the engine reads.
type serviceAccountKey struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	TokenURI     string `json:"token_uri"`
}

// parseServiceAccountKey reads and checks a key file. Its errors are rules: nothing
// of the file (which holds a key) is ever quoted.
func parseServiceAccountKey(s string) (*serviceAccountKey, *rsa.PrivateKey, error) {
	k, err := readServiceAccountKey(s)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseClientKey(k.PrivateKey)
	if err != nil {
		return nil, nil, ruleError("must have a private_key that is an unencrypted PEM RSA key of at least 2048 bits")
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, ruleError("must have a private_key that is an RSA key (Google signs with RS256)")
	}
	return k, rk, nil
}

// readServiceAccountKey reads a key file and checks all but its key, which the
// signer parses (and refuses) again: a mint reads the file without parsing the key
// twice.
func readServiceAccountKey(s string) (*serviceAccountKey, error) {
	var k serviceAccountKey
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&k); err != nil {
		return nil, ruleError("must be the JSON key file of a Google service account")
	}
	if dec.More() {
		return nil, ruleError("must be one JSON object")
	}
	switch {
	case k.Type != "service_account":
		return nil, ruleError(`must be a service account key (type "service_account"); other Google credential files (authorized_user, external_account, …) are not accepted`)
	case k.ClientEmail == "" || strings.ContainsFunc(k.ClientEmail, isSpaceOrControl) || !strings.Contains(k.ClientEmail, "@") || len(k.ClientEmail) > 320:
		return nil, ruleError("must have a client_email (the service account's address)")
	case k.PrivateKeyID == "" || strings.ContainsFunc(k.PrivateKeyID, isSpaceOrControl) || len(k.PrivateKeyID) > 256:
		return nil, ruleError("must have a private_key_id")
	case k.PrivateKey == "":
		return nil, ruleError("must have a private_key")
	}
	if _, err := checkHTTPSURL(k.TokenURI); err != nil {
		return nil, ruleError("must have a token_uri that is an https URL (http only for loopback hosts)")
	}
	return &k, nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func checkServiceAccountKey(s string) (string, error) {
	if _, _, err := parseServiceAccountKey(s); err != nil {
		return "", err
	}
	return s, nil
}

// checkRSAClientKey is client_key where only RS256 is accepted (Salesforce).
func checkRSAClientKey(s string) (string, error) {
	key, err := parseClientKey(s)
	if err != nil {
		return "", err
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return "", ruleError("must be an RSA key: Salesforce accepts RS256 assertions only")
	}
	return pkcs8PEM(key)
}

// finishServiceAccount shows the key file's client_email and private_key_id in
// reads (the key never).
func finishServiceAccount(v *Validated) FieldErrors {
	k, _, err := parseServiceAccountKey(str(v.Values, "service_account_key"))
	if err != nil {
		return FieldErrors{fieldError("service_account_key", err)}
	}
	v.Derived["client_email"] = k.ClientEmail
	v.Derived["private_key_id"] = k.PrivateKeyID
	v.Derived["token_uri"] = k.TokenURI
	return nil
}

// finishJWTBearer refuses a scope claim set both ways, and a client_secret without
// the client_id it belongs to.
func finishJWTBearer(v *Validated) FieldErrors {
	var errs FieldErrors
	if _, ok := StringMap(v.Values["claims"])["scope"]; ok && str(v.Values, "scope_in") == ScopeInClaim {
		errs = append(errs, &FieldError{Field: "claims", Rule: `must not set scope when scope_in is "claim" (the scopes are the scope claim)`})
	}
	if str(v.Values, "client_secret") != "" && str(v.Values, "client_id") == "" {
		errs = append(errs, &FieldError{Field: "client_id", Rule: "is required when client_secret is set"})
	}
	return errs
}

var errNoAssertion = errors.New("credtype: not a JWT-bearer type")

// jwtBearerAssertion is oauth2_jwt_bearer's assertion: issuer, subject, audience
// (default token_url), client_key and client_key_id, assertion_lifetime, scope_in
// and claims, all from its fields.
func jwtBearerAssertion(values map[string]any) (*Assertion, error) {
	d, err := parseAssertionLifetime(str(values, "assertion_lifetime"))
	if str(values, "assertion_lifetime") == "" {
		d, err = DefaultAssertionLifetime, nil
	}
	if err != nil || d < minAssertionLifetime || d > MaxAssertionLifetime {
		return nil, &FieldError{Field: "assertion_lifetime", Rule: "must be from 10s to 1h"}
	}
	aud := str(values, "audience")
	if aud == "" {
		aud = str(values, "token_url")
	}
	claims := StringMap(values["claims"])
	for k := range claims {
		if slices.Contains(registeredClaims, k) {
			return nil, &FieldError{Field: "claims", Rule: "must not set a registered claim"}
		}
	}
	return &Assertion{
		Issuer: str(values, "issuer"), Subject: str(values, "subject"), Audience: aud,
		Key: str(values, "client_key"), KeyID: str(values, "client_key_id"),
		Algorithm: str(values, "client_assertion_algorithm"), Lifetime: d,
		ScopeClaim: str(values, "scope_in") == ScopeInClaim, Claims: claims,
	}, nil
}

// googleAssertion follows Google's "Using OAuth 2.0 for Server to Server
// Applications": RS256, kid = private_key_id, iss = client_email, aud = token_uri,
// the scopes in the scope claim, sub the user of domain-wide delegation, exp at most
// an hour on (five minutes here: a fresh one is signed for every request).
func googleAssertion(values map[string]any) (*Assertion, error) {
	k, err := readServiceAccountKey(str(values, "service_account_key"))
	if err != nil {
		return nil, fieldError("service_account_key", err)
	}
	return &Assertion{
		Issuer: k.ClientEmail, Subject: str(values, "subject"), Audience: k.TokenURI,
		Key: k.PrivateKey, KeyID: k.PrivateKeyID, Algorithm: "RS256",
		Lifetime: DefaultAssertionLifetime, ScopeClaim: true, TokenURL: k.TokenURI,
	}, nil
}

// SalesforceAudience is the aud of a Salesforce assertion for login_url: the sandbox
// login server for test.salesforce.com and sandbox My Domains
// (*.sandbox.my.salesforce.com), the production one for everything else.
func SalesforceAudience(loginURL string) string {
	u, err := url.Parse(loginURL)
	if err == nil {
		h := strings.ToLower(u.Hostname())
		if h == "test.salesforce.com" || strings.HasSuffix(h, ".sandbox.my.salesforce.com") {
			return salesforceTest
		}
	}
	return salesforceLogin
}

// salesforceAssertion follows Salesforce's "OAuth 2.0 JWT Bearer Flow for
// Server-to-Server Integration": RS256, iss = consumer_key, sub = username, aud = the
// login server (SalesforceAudience), exp within three minutes.
func salesforceAssertion(values map[string]any) (*Assertion, error) {
	login := str(values, "login_url")
	if login == "" {
		login = salesforceLogin
	}
	return &Assertion{
		Issuer: str(values, "consumer_key"), Subject: str(values, "username"), Audience: SalesforceAudience(login),
		Key: str(values, "client_key"), Algorithm: "RS256", Lifetime: salesforceAssertionLifetime,
	}, nil
}

// JWTAssertion is the assertion of a credential of t with values (as Validate
// normalized them); an error for a type without the JWT-bearer grant, or values that
// no longer pass its rules. The error is a *FieldError naming the field, never a value.
func (t *Type) JWTAssertion(values map[string]any) (*Assertion, error) {
	if t.OAuth == nil || t.OAuth.assertion == nil {
		return nil, errNoAssertion
	}
	a, err := t.OAuth.assertion(values)
	if err != nil {
		return nil, err
	}
	if a.Key == "" {
		return nil, &FieldError{Field: "client_key", Rule: "is required"}
	}
	return a, nil
}
