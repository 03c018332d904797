//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// slowDownProxy is a thin loopback proxy in front of the provider's token endpoint:
// the first `inject` device-code polls of each device code are answered slow_down
// (RFC 8628 section 3.5) without reaching the provider, everything else is forwarded.
// It records the time of every poll and whether it was forwarded.
type slowDownProxy struct {
	*httptest.Server
	inject int
	mu     sync.Mutex
	seen   map[string]int // polls per device code
	polls  []devicePollSeen
	codes  []string // the device codes seen, for the leak check
	other  int      // forwarded requests of other grants (refreshes)
}

type devicePollSeen struct {
	at        time.Time
	forwarded bool
}

func newSlowDownProxy(t *testing.T, target string, inject int) *slowDownProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &slowDownProxy{inject: inject, seen: map[string]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" {
			p.mu.Lock()
			p.other++
			p.mu.Unlock()
			rp.ServeHTTP(w, r)
			return
		}
		code := form.Get("device_code")
		p.mu.Lock()
		p.seen[code]++
		if p.seen[code] == 1 {
			p.codes = append(p.codes, code)
		}
		slow := p.seen[code] <= p.inject
		p.polls = append(p.polls, devicePollSeen{at: time.Now(), forwarded: !slow})
		p.mu.Unlock()
		if slow {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"slow_down","error_description":"injected by the test's proxy"}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *slowDownProxy) seenPolls() ([]devicePollSeen, []string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]devicePollSeen(nil), p.polls...), append([]string(nil), p.codes...), p.other
}

// deviceConsent plays the person of a device authorization at oidc-provider: opens
// verification_uri_complete, confirms the user code shown (or aborts: deny), logs in as
// login and consents, until the provider's closing page. It returns that page.
func (p *oidcProvider) deviceConsent(t *testing.T, verificationURI, login string, deny bool) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next, err := url.Parse(verificationURI)
	if err != nil {
		t.Fatal(err)
	}
	method, body := http.MethodGet, url.Values(nil)
	aborted := false
	for step := 0; step < 12; step++ {
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, next.String(), strings.NewReader(body.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, next.String(), nil)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, next.Path, err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc, err := next.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatalf("bad Location %q", resp.Header.Get("Location"))
			}
			next, method, body = loc, http.MethodGet, nil
			continue
		}
		action, fields, ok := htmlForm(string(page))
		if !ok || aborted {
			// The closing page: success, or the abort's (the user-code form again,
			// with the error).
			return string(page)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: status %d: %.500s", method, next.Path, resp.StatusCode, page)
		}
		to, err := next.Parse(action)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fields.Has("user_code") && fields.Has("xsrf"):
			// The confirmation of the user code the device shows.
			if deny {
				fields.Del("confirm")
				fields.Set("abort", "yes")
				aborted = true
			}
		case fields.Get("prompt") == "login":
			fields.Set("login", login)
			fields.Set("password", "any password")
		case fields.Get("prompt") == "consent":
		default:
			t.Fatalf("unexpected form at %s: %v", next.Path, fields)
		}
		next, method, body = to, http.MethodPost, fields
	}
	t.Fatal("the device flow did not end within 12 steps")
	return ""
}

// TestDeviceAuthorizationGrant runs the device authorization grant (RFC 8628) against
// panva's oidc-provider (OpenID Certified) with features.deviceFlow:
//   - authorize answers user_code, verification_uri, verification_uri_complete,
//     expires_at and interval; credentials/<name> shows them while pending;
//   - the test plays the person over HTTP (confirms the code, logs in, consents); the
//     engine's polls pass a loopback proxy that answers slow_down to the first two
//     of them: the engine waits 5 s, then 10 s, then 15 s (the polls are counted and
//     timed); the third reaches the provider and brings the tokens;
//   - access/ serves the consent's token, then refreshes it through the consented
//     refresh token once it falls due;
//   - a person who aborts gives needs_reauth, reason access_denied;
//   - the device code appears in no read, list, log or audit entry.
func TestDeviceAuthorizationGrant(t *testing.T) {
	t.Parallel()
	began := time.Now()
	v := newVault(t, serverOptions{})
	auditLog := filepath.Join(v.dir, "audit-device.log")
	if err := v.client.Sys().EnableAuditWithOptions("devicefile", &api.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditLog}}); err != nil {
		t.Fatalf("enabling the file audit device: %v", err)
	}
	mount := v.mount(t)
	if _, err := v.client.Logical().Write(mount+"/config", map[string]any{"expiry_buffer": 1, "refresh_ahead": false}); err != nil {
		t.Fatal(err)
	}
	const accessTTL = 5
	p := startOIDCProvider(t, v.addr+"/v1/"+mount+"/oauth/callback", accessTTL)
	proxy := newSlowDownProxy(t, p.issuer, 2)
	create := func(name, tokenURL string) {
		t.Helper()
		// Written with the CLI, as the README's walkthrough does.
		if out, err := v.cli("write", mount+"/credentials/"+name, "type=oauth2_device_code",
			"device_authorization_url="+p.issuer+"/device/auth", "token_url="+tokenURL,
			"client_id="+p.clientID, "client_secret="+p.clientSecret, "scopes=openid,offline_access"); err != nil {
			t.Fatalf("vault write credentials/%s: %v\n%s", name, err, out)
		}
	}
	read := func(path string) (map[string]any, error) {
		s, err := v.client.Logical().Read(mount + "/" + path)
		if err != nil || s == nil {
			return nil, fmt.Errorf("read %s: %v", path, err)
		}
		return s.Data, nil
	}
	mustRead := func(path string) map[string]any {
		t.Helper()
		d, err := read(path)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	authorize := func(name string) map[string]any {
		t.Helper()
		s, err := v.client.Logical().Write(mount+"/credentials/"+name+"/authorize", map[string]any{})
		if err != nil {
			t.Fatalf("authorize %s: %v", name, err)
		}
		return s.Data
	}
	// waitStatus polls the credential's management read (not the provider) until its
	// status is want, within limit.
	waitStatus := func(name, want string, limit time.Duration) map[string]any {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			d := mustRead("credentials/" + name)
			if d["status"] == want {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("credential %s: status %v after %s, want %s", name, d["status"], limit, want)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// 1. Consent through the slowed-down token endpoint.
	create("device", proxy.URL+"/token")
	if st := mustRead("credentials/device")["status"]; st != "awaiting_consent" {
		t.Fatalf("status %v before authorize", st)
	}
	started := time.Now()
	ans := authorize("device")
	for _, k := range []string{"user_code", "verification_uri", "verification_uri_complete", "expires_at", "interval"} {
		if ans[k] == nil || ans[k] == "" {
			t.Fatalf("authorize answered %v: no %s", ans, k)
		}
	}
	if ans["verification_uri"] != p.issuer+"/device" || fmt.Sprint(ans["interval"]) != "5" {
		t.Fatalf("authorize answered %v", ans)
	}
	pending, _ := mustRead("credentials/device")["device_authorization"].(map[string]any)
	if pending["user_code"] != ans["user_code"] || pending["verification_uri"] != ans["verification_uri"] {
		t.Fatalf("credentials/device shows %v while pending, authorize answered %v", pending, ans)
	}
	page := p.deviceConsent(t, ans["verification_uri_complete"].(string), "device-user", false)
	if !strings.Contains(page, "Sign-in Success") {
		t.Fatalf("the person's flow ended on %.300s", page)
	}
	// Meanwhile a second person aborts another credential's authorization (straight to
	// the provider, no proxy): its poll comes while the first waits out its slow_downs.
	create("denied", p.issuer+"/token")
	denied := authorize("denied")
	if page := p.deviceConsent(t, denied["verification_uri_complete"].(string), "denied-user", true); strings.Contains(page, "Sign-in Success") {
		t.Fatalf("aborting ended on the success page")
	}
	d := waitStatus("device", "active", 60*time.Second)
	consented := time.Since(started)
	if _, still := d["device_authorization"]; still {
		t.Error("a completed device authorization is still shown")
	}
	polls, codes, _ := proxy.seenPolls()
	if len(polls) != 3 || polls[0].forwarded || polls[1].forwarded || !polls[2].forwarded {
		t.Fatalf("polls %+v: want two answered slow_down by the proxy, then one reaching the provider", polls)
	}
	gaps := []time.Duration{polls[0].at.Sub(started), polls[1].at.Sub(polls[0].at), polls[2].at.Sub(polls[1].at)}
	// RFC 8628: interval 5 s, +5 s per slow_down, for every later poll. A poll is never
	// early; the slack above is the job's scheduling, not a target.
	for i, want := range []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second} {
		if gaps[i] < want-500*time.Millisecond || gaps[i] > want+3*time.Second {
			t.Errorf("poll %d came %s after the previous step, want %s (+5 s per slow_down)", i+1, gaps[i], want)
		}
	}
	t.Logf("FIGURE device polls: %d polls in %s (gaps %v); under slow_down the engine polled at %.1f then %.1f polls/minute (12/minute at the provider's 5 s interval); consent stored %s after authorize",
		len(polls), polls[2].at.Sub(started).Round(time.Millisecond), gaps, 60/gaps[1].Seconds(), 60/gaps[2].Seconds(), consented.Round(time.Millisecond))

	// 2. access/ serves the consent's token, then refreshes it through the consented
	// refresh token once it falls due (expiry_buffer 1 s of a 5 s token).
	a := mustRead("access/device")
	due, err := time.Parse(time.RFC3339, a["expires_at"].(string))
	if err != nil {
		t.Fatalf("expires_at %v: %v", a["expires_at"], err)
	}
	time.Sleep(time.Until(due.Add(100 * time.Millisecond)))
	b := mustRead("access/device")
	if a["access_token"] == nil || a["access_token"] == b["access_token"] {
		t.Fatalf("access tokens %v then %v: want a refresh once the first fell due", a["access_token"], b["access_token"])
	}
	if _, _, refreshes := proxy.seenPolls(); refreshes != 1 {
		t.Errorf("%d refresh requests reached the provider, want 1", refreshes)
	}

	// 3. The person who aborted: needs_reauth, reason access_denied.
	d = waitStatus("denied", "needs_reauth", 30*time.Second)
	if d["status_reason"] != "access_denied" {
		t.Fatalf("status %v/%v after the person aborted, want needs_reauth/access_denied", d["status"], d["status_reason"])
	}
	if _, err := read("access/denied"); err == nil || !strings.Contains(err.Error(), "user_code") {
		t.Errorf("access/ of a denied credential: %v (want 403 saying to authorize again)", err)
	}

	// 4. The device codes were never shown or logged.
	if len(codes) == 0 {
		t.Fatal("the proxy saw no device code")
	}
	for _, name := range []string{"device", "denied"} {
		assertNothingShows(t, v, mount, name, codes...)
	}
	audit, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range codes {
		if bytes.Contains(audit, []byte(c)) {
			t.Error("a device code is in the audit log")
		}
	}
	t.Logf("FIGURE device e2e wall time: %s", time.Since(began).Round(time.Millisecond))
}
