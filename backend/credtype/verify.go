// How each type is verified (credentials/<name>/verify): the catalog declares the
// method, and VerifyPlan turns a credential's stored values into what the check needs.
// The checks that go over the network are the backend's; the date check is here.

package credtype

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// VerifyMethod is how a credential is proved to work.
type VerifyMethod string

// Verification methods.
const (
	// VerifyUnsupported: no check that is safe to repeat (a test event would post or page).
	VerifyUnsupported VerifyMethod = "unsupported"
	// VerifyMint: an OAuth type mints a token through its grant.
	VerifyMint VerifyMethod = "oauth_mint"
	// VerifySSH: connect, require the host key to match host_key_fingerprint,
	// authenticate, close without running anything.
	VerifySSH VerifyMethod = "ssh"
	// VerifyHTTP: one GET with the credential's authorization; 2xx is ok.
	VerifyHTTP VerifyMethod = "http_get"
	// VerifySlack: Slack's auth.test with the token; {"ok": true} is ok.
	VerifySlack VerifyMethod = "slack_auth_test"
	// VerifyDates: the certificates are within their validity dates.
	VerifyDates VerifyMethod = "certificate_dates"
)

// SlackAuthTestURL is the Slack Web API method that checks a token.
const SlackAuthTestURL = "https://slack.com/api/auth.test"

// verifySpec is a type's verification as the catalog declares it.
type verifySpec struct {
	method VerifyMethod
	// urlFields are tried in order for the URL of an HTTP check (verify_url, then url);
	// none set makes the check unsupported.
	urlFields []string
	// path is appended to the URL (Okta's own user).
	path string
	// header is the credential's authorization header; nil: Authorization built as
	// access/ builds it.
	header func(values Fields) (name, value string)
	// why says why a type cannot be verified.
	why string
}

func httpVerify(path string, urlFields ...string) *verifySpec {
	return &verifySpec{method: VerifyHTTP, urlFields: urlFields, path: path}
}

func unsupportedVerify(why string) *verifySpec {
	return &verifySpec{method: VerifyUnsupported, why: why}
}

// VerifyMethod is how credentials of type t are verified: oauth_mint for every OAuth
// type, else what the catalog declares.
func (t *Type) VerifyMethod() VerifyMethod {
	switch {
	case t.OAuth != nil:
		return VerifyMint
	case t.verify == nil:
		return VerifyUnsupported
	}
	return t.verify.method
}

// VerifyPlan is what a check of one credential needs, from its stored values. It holds
// secrets: it is never shown, logged or stored.
type VerifyPlan struct {
	Method VerifyMethod
	// Unsupported says why, when Method is VerifyUnsupported.
	Unsupported string

	// HTTP and Slack checks: the URL, and the header carrying the credential.
	URL                 string
	Header, HeaderValue string
	// CACertificate is the credential's ca_certificate (extra trust anchors for
	// URL), empty for the system's roots alone.
	CACertificate string

	// SSH checks: host:port, the expected SHA256 host key fingerprint, and how to sign in.
	Address     string
	Fingerprint string
	Username    string
	Password    string
	Signer      ssh.Signer
}

// VerifyPlan turns a credential of type t with the stored (validated) values into its
// check; secrets are those derived when they were validated (Validated.Secrets, or
// DeriveSecrets for values stored without them). It runs no KDF: an encrypted SSH key
// signs through its decrypted copy in secrets, and without one the plan is an error.
// The plan is built per verification and dropped after it.
func (t *Type) VerifyPlan(values Fields, secrets map[string]string) (VerifyPlan, error) {
	p := VerifyPlan{Method: t.VerifyMethod()}
	spec := t.verify
	switch p.Method {
	case VerifyUnsupported:
		p.Unsupported = "this type has no check that is safe to repeat"
		if spec != nil && spec.why != "" {
			p.Unsupported = spec.why
		}
	case VerifyHTTP, VerifySlack:
		p.URL = SlackAuthTestURL
		if p.Method == VerifyHTTP {
			p.URL = ""
			for _, f := range spec.urlFields {
				if u := values.Str(f); u != "" {
					p.URL = strings.TrimSuffix(u, "/") + spec.path
					if spec.path == "" {
						p.URL = u
					}
					break
				}
			}
			if p.URL == "" {
				p.Method, p.Unsupported = VerifyUnsupported, "no "+strings.Join(spec.urlFields, " or ")+" to check against"
				return p, nil
			}
		}
		if p.Method == VerifyHTTP {
			p.CACertificate = values.Str(FieldCACertificate)
		}
		switch {
		case spec.header != nil:
			p.Header, p.HeaderValue = spec.header(values)
		case t.access != nil && t.access.authorization != nil:
			p.Header, p.HeaderValue = "Authorization", t.access.authorization(values)
		}
	case VerifySSH:
		u, err := url.Parse(values.Str("host"))
		if err != nil || u.Host == "" {
			return p, fieldError("host", errSFTPHost)
		}
		p.Address, p.Fingerprint, p.Username = u.Host, values.Str("host_key_fingerprint"), values.Str("username")
		if p.Password = values.Str("password"); p.Password != "" {
			return p, nil
		}
		key, err := sshVerifySigner(values.Str("private_key"), secrets)
		if err != nil {
			return p, err
		}
		p.Signer = key
	}
	return p, nil
}

// apiKeyHeader is an api_key's header: header_name (default X-API-Key) carrying the key.
func apiKeyHeader(values Fields) (string, string) {
	return values.Str("header_name"), values.Str("key")
}

// CheckDates is the verification of a certificate: every certificate of the stored
// PEM (leaf first, then its chain) is within its validity dates at now. The detail
// names the first that is not, and when.
func CheckDates(values Fields, now time.Time) (bool, string) {
	blocks, err := pemBlocks(values.Str("certificate"))
	if err != nil || len(blocks) == 0 {
		return false, "the stored certificate does not parse"
	}
	var leafEnd time.Time
	for i, b := range blocks {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return false, fmt.Sprintf("certificate %d of the chain does not parse", i+1)
		}
		which := "the certificate"
		if i == 0 {
			leafEnd = c.NotAfter
		} else {
			which = fmt.Sprintf("chain certificate %d", i+1)
		}
		switch {
		case now.Before(c.NotBefore):
			return false, which + " is not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
		case now.After(c.NotAfter):
			return false, which + " expired at " + c.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	return true, "valid until " + leafEnd.UTC().Format(time.RFC3339)
}
