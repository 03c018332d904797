//go:build e2e

package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// slackMITM stands in for https://slack.com on loopback. The plugin posts Slack
// notifications to the fixed URL https://slack.com/api/chat.postMessage; registered
// with HTTPS_PROXY pointing at this proxy and SSL_CERT_FILE holding this CA, the
// plugin process reaches slack.com through a CONNECT tunnel to a local TLS server
// whose certificate for slack.com the CA signed. Nothing in the plugin changes.
type slackMITM struct {
	proxy  *httptest.Server
	api    *httptest.Server
	caFile string

	mu       sync.Mutex
	connects []string
	messages []slackPost
}

type slackPost struct {
	path, auth string
	body       []byte
}

func newSlackMITM(t *testing.T) *slackMITM {
	t.Helper()
	m := &slackMITM{}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "slack.com"},
		DNSNames: []string{"slack.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	m.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(m.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	m.api = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		m.mu.Lock()
		m.messages = append(m.messages, slackPost{r.URL.Path, r.Header.Get("Authorization"), body})
		m.mu.Unlock()
		oauthtest.WriteJSON(w, http.StatusOK, `{"ok":true,"channel":"C0HOSTILE","ts":"1.2"}`)
	}))
	m.api.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	m.api.StartTLS()
	t.Cleanup(m.api.Close)

	m.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.connects = append(m.connects, r.Method+" "+r.Host)
		m.mu.Unlock()
		if r.Method != http.MethodConnect || r.Host != "slack.com:443" {
			http.Error(w, "this proxy only tunnels to slack.com:443", http.StatusForbidden)
			return
		}
		upstream, err := net.Dial("tcp", m.api.Listener.Addr().String())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		client, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		_, _ = client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
		go pipe(upstream, client, buf.Reader)
		go pipe(client, upstream, nil)
	}))
	t.Cleanup(m.proxy.Close)
	return m
}

// pipe copies from src (after what buffered already holds) to dst, then closes both.
func pipe(dst, src net.Conn, buffered *bufio.Reader) {
	defer dst.Close()
	defer src.Close()
	if buffered != nil && buffered.Buffered() > 0 {
		b, _ := buffered.Peek(buffered.Buffered())
		if _, err := dst.Write(b); err != nil {
			return
		}
	}
	_, _ = io.Copy(dst, src)
}

func (m *slackMITM) env() []string {
	return []string{"HTTPS_PROXY=" + m.proxy.URL, "https_proxy=" + m.proxy.URL, "SSL_CERT_FILE=" + m.caFile}
}

func (m *slackMITM) posts() []slackPost {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.messages)
}

func (m *slackMITM) connectsSeen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.connects)
}

// hostileCase is one answer of the hostile token endpoint.
type hostileCase struct {
	name      string
	answer    func(w http.ResponseWriter, mk string) // what the provider sends
	wantCodes []string                               // what callers and stored state may name instead
	permanent bool                                   // the refusal makes the credential needs_reauth
}

// hostileFragments are pieces of what the hostile provider sends that must never
// come out anywhere (besides each case's marker).
var hostileFragments = []string{"<script", "</script", "<b>", "<!channel>", "<!here>", "<@U123>", "INJECTED", "alert(", "forged log line"}

func hostileCases() []hostileCase {
	big := func(mk string, n int) string {
		chunk := "line one\n2026-12-01T00:00:00.000Z [ERROR] INJECTED forged log line " + mk +
			" <script>alert(1)</script> <b>bold</b> <!channel> <@U123> &amp; "
		return strings.Repeat(chunk, n/len(chunk)+1)[:n]
	}
	jsonAnswer := func(status int, v map[string]any) func(http.ResponseWriter, string) {
		return func(w http.ResponseWriter, mk string) {
			out := map[string]any{}
			for k, x := range v {
				if s, ok := x.(string); ok {
					x = strings.ReplaceAll(s, "MK", mk)
				}
				out[k] = x
			}
			b, _ := json.Marshal(out)
			oauthtest.WriteJSON(w, status, string(b))
		}
	}
	return []hostileCase{
		{name: "newline-code", wantCodes: []string{"http_400"}, permanent: true,
			answer: jsonAnswer(400, map[string]any{"error": "invalid_grant\n2026-12-01T00:00:00.000Z [ERROR] INJECTED forged log line MK", "error_description": "MK"})},
		{name: "markup-code", wantCodes: []string{"http_400"}, permanent: true,
			answer: jsonAnswer(400, map[string]any{"error": "<script>alert('MK')</script><b>bold</b>"})},
		{name: "mention-code", wantCodes: []string{"http_400"}, permanent: true,
			answer: jsonAnswer(400, map[string]any{"error": "<!channel> <@U123> MK"})},
		{name: "overlong-code", wantCodes: []string{"http_400"}, permanent: true,
			answer: func(w http.ResponseWriter, mk string) {
				oauthtest.WriteJSON(w, 400, `{"error":"invalid_`+mk+strings.Repeat("x", 5000)+`"}`)
			}},
		{name: "long-description", wantCodes: []string{"invalid_client"}, permanent: true,
			answer: func(w http.ResponseWriter, mk string) {
				// 300 KB, under the 1 MiB response cap even with JSON's escapes.
				b, _ := json.Marshal(map[string]any{"error": "invalid_client", "error_description": big(mk, 300<<10)})
				oauthtest.WriteJSON(w, 400, string(b))
			}},
		{name: "megabyte-description", wantCodes: []string{"invalid_client", "http_400", "response_too_large"},
			answer: func(w http.ResponseWriter, mk string) {
				b, _ := json.Marshal(map[string]any{"error": "invalid_client", "error_description": big(mk, 3<<20)})
				oauthtest.WriteJSON(w, 400, string(b))
			}},
		{name: "markup-body", wantCodes: []string{"http_400"}, permanent: true,
			answer: func(w http.ResponseWriter, mk string) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(400)
				fmt.Fprintf(w, "<html><body><script>alert(1)</script><b>%s</b> <!channel></body></html>", mk)
			}},
		{name: "mention-500", wantCodes: []string{"http_500"},
			answer: jsonAnswer(500, map[string]any{"error": "<!here> MK", "error_description": "<@U123> MK"})},
		{name: "megabyte-200", wantCodes: []string{"response_too_large", "http_200", "bad_response"},
			answer: func(w http.ResponseWriter, mk string) {
				b, _ := json.Marshal(map[string]any{"access_token": "tok-" + mk, "token_type": "Bearer", "expires_in": 3600,
					"padding": big(mk, 4<<20)})
				oauthtest.WriteJSON(w, 200, string(b))
			}},
	}
}

// reasonRule is what a stored status_reason or a code in an error may look like: an
// RFC 6749 error code of the usual shape, short, or the generic http_<status>.
var reasonRule = regexp.MustCompile(`^(http_[1-5][0-9][0-9]|[a-z][a-z0-9_]{0,63})$`)

// TestHostileProvider: a token endpoint answers with newlines, markup, Slack mentions,
// an overlong code and multi-megabyte bodies. Callers (API and CLI), stored state
// (status_reason, logs), the server log and the notifications — to Slack's
// chat.postMessage and to a webhook — carry none of it: only a validated code or a
// generic http_<status>. The OAuth callback page reflects nothing a stranger sent.
func TestHostileProvider(t *testing.T) {
	t.Parallel()
	slack := newSlackMITM(t)
	v := newVault(t, serverOptions{pluginEnv: slack.env()})
	cases := hostileCases()
	markers := map[string]string{} // case -> marker
	for i, c := range cases {
		markers[c.name] = fmt.Sprintf("HSTL%02d%s", i, randomHex(4))
	}
	// exchanged lists the codes of the authorization_code grants the token endpoint
	// received: only the callback subtest sends them.
	var exchangedMu sync.Mutex
	var exchanged []string
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if r.ParseForm() == nil && r.PostForm.Get("grant_type") == "authorization_code" {
			exchangedMu.Lock()
			exchanged = append(exchanged, r.PostForm.Get("code"))
			exchangedMu.Unlock()
		}
		_, _ = io.Copy(io.Discard, r.Body)
		for _, c := range cases {
			if r.URL.Path == "/"+c.name {
				c.answer(w, markers[c.name])
				return
			}
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(token.Close)
	fragments := slices.Clone(hostileFragments)
	for _, mk := range markers {
		fragments = append(fragments, mk)
	}
	// leaks lists the hostile fragments in text, and in the strings of text when it
	// is JSON (where < may stand escaped as \u003c).
	leaks := func(text string) []string {
		all := text
		var decoded any
		if json.Unmarshal([]byte(text), &decoded) == nil {
			all += "\n" + strings.Join(jsonStrings(decoded), "\n")
		}
		var found []string
		for _, f := range fragments {
			if strings.Contains(all, f) {
				found = append(found, fmt.Sprintf("%q", f))
			}
		}
		return found
	}

	hook := newReceiver(t, http.StatusOK)
	for _, notifier := range []string{"slack", "webhook"} {
		t.Run("notify via "+notifier, func(t *testing.T) {
			mount := v.mount(t)
			r := newRecorder(t, v, mount)
			switch notifier {
			case "slack":
				r.must(r.do(http.MethodPost, "credentials/notify", nil, map[string]any{"type": "slack", "token": "xoxb-hostile-test"}), 200, 204)
				r.must(r.do(http.MethodPost, "config", nil, map[string]any{"notify_credential": "notify", "notify_channel": "C0HOSTILE"}), 200, 204)
			case "webhook":
				r.must(r.do(http.MethodPost, "credentials/notify", nil, map[string]any{"type": "webhook", "url": hook.URL + "/" + mount}), 200, 204)
				r.must(r.do(http.MethodPost, "config", nil, map[string]any{"notify_credential": "notify"}), 200, 204)
			}
			for _, c := range cases {
				name := "h-" + c.name
				r.must(r.do(http.MethodPost, "credentials/"+name, nil, map[string]any{"type": "oauth2_client_credentials",
					"token_url": token.URL + "/" + c.name, "client_id": "hostile-client", "client_secret": "hostile-secret"}), 200, 204)

				// The caller: the API's error and the CLI's.
				api := r.do(http.MethodGet, "access/"+name, nil, nil)
				if api.Status < 400 {
					t.Errorf("%s: access succeeded (%d)", c.name, api.Status)
				}
				_, cliErr := v.cli("read", mount+"/access/"+name)
				if cliErr == nil {
					t.Errorf("%s: vault read access/ succeeded", c.name)
					cliErr = fmt.Errorf("")
				}
				for what, text := range map[string]string{"API error": api.errorText(), "CLI error": cliErr.Error()} {
					if l := leaks(text); len(l) > 0 {
						t.Errorf("%s: the %s carries the provider's text %v (%d bytes)", c.name, what, l, len(text))
					}
					if !containsAny(text, c.wantCodes) {
						t.Errorf("%s: the %s names none of %v: %.300q", c.name, what, c.wantCodes, text)
					}
					if len(text) > 2000 {
						t.Errorf("%s: the %s is %d bytes long", c.name, what, len(text))
					}
				}

				// Stored state: the management read and the log.
				read := r.must(r.do(http.MethodGet, "credentials/"+name, nil, nil), 200)
				if l := leaks(string(read.Body)); len(l) > 0 {
					t.Errorf("%s: credentials/%s carries the provider's text %v", c.name, name, l)
				}
				status, _ := read.data()["status"].(string)
				reason, _ := read.data()["status_reason"].(string)
				if c.permanent {
					if status != "needs_reauth" {
						t.Errorf("%s: status %q after a permanent refusal, want needs_reauth", c.name, status)
					}
					if !slices.Contains(c.wantCodes, reason) {
						t.Errorf("%s: status_reason %.200q, want one of %v", c.name, reason, c.wantCodes)
					}
				}
				if reason != "" && !reasonRule.MatchString(reason) {
					t.Errorf("%s: status_reason %.200q is not a validated code or http_<status>", c.name, reason)
				}
				logs := r.must(r.do(http.MethodGet, "credentials/"+name+"/logs", nil, nil), 200)
				if l := leaks(string(logs.Body)); len(l) > 0 {
					t.Errorf("%s: credentials/%s/logs carries the provider's text %v", c.name, name, l)
				}
			}
			for _, c := range []*call{r.do("LIST", "credentials", nil, nil), r.do(http.MethodGet, "alerts", nil, nil)} {
				if l := leaks(string(c.Body)); len(l) > 0 {
					t.Errorf("%s carries the provider's text %v", c, l)
				}
			}

			// The notifications: one per credential that needs re-authorization.
			type note struct{ credential, text string }
			received := func() []note {
				var out []note
				switch notifier {
				case "slack":
					// Only this mount notifies through Slack, and only the next one
					// through the webhook.
					for _, p := range slack.posts() {
						var m struct{ Channel, Text string }
						_ = json.Unmarshal(p.body, &m)
						out = append(out, note{m.Text, m.Text})
					}
				case "webhook":
					for _, b := range hook.received() {
						var n struct{ Credential string }
						_ = json.Unmarshal(b, &n)
						out = append(out, note{n.Credential, string(b)})
					}
				}
				return out
			}
			for _, c := range cases {
				if !c.permanent {
					continue
				}
				name := "h-" + c.name
				var got []note
				waitFor(t, time.Minute, "the "+notifier+" notification about "+name, func() bool {
					got = nil
					for _, n := range received() {
						if strings.Contains(n.credential, name) {
							got = append(got, n)
						}
					}
					return len(got) > 0
				})
				for _, n := range got {
					if l := leaks(n.text); len(l) > 0 {
						t.Errorf("%s: the %s notification carries the provider's text %v", c.name, notifier, l)
					}
					if !containsAny(n.text, c.wantCodes) {
						t.Errorf("%s: the %s notification names none of %v: %.300q", c.name, notifier, c.wantCodes, n.text)
					}
					if notifier == "slack" {
						// Slack reads <…> as mentions and links and & as an entity.
						if strings.ContainsAny(n.text, "<>") || strings.Contains(n.text, "&lt;") || strings.Contains(n.text, "&gt;") {
							t.Errorf("%s: the Slack text carries markup: %.300q", c.name, n.text)
						}
					}
				}
			}
			if notifier == "slack" {
				for _, p := range slack.posts() {
					if p.path != "/api/chat.postMessage" || p.auth != "Bearer xoxb-hostile-test" {
						t.Errorf("Slack was called at %s with Authorization %q", p.path, p.auth)
					}
				}
				for _, c := range slack.connectsSeen() {
					if c != "CONNECT slack.com:443" {
						t.Errorf("the proxy was asked for %s", c)
					}
				}
			}
		})
	}

	// The OAuth callback page, visited by a stranger with hostile parameters.
	t.Run("callback", func(t *testing.T) {
		mount := v.mount(t)
		r := newRecorder(t, v, mount)
		r.must(r.do(http.MethodPost, "config", nil, map[string]any{"callback_base_url": v.addr}), 200, 204)
		r.must(r.do(http.MethodPost, "credentials/ac", nil, map[string]any{"type": "oauth2_authorization_code",
			"auth_url": "https://idp.example.com/authorize", "token_url": token.URL + "/markup-code", "client_id": "c", "client_secret": "s"}), 200, 204)
		state := func() string {
			c := r.must(r.do(http.MethodPost, "credentials/ac/authorize", nil, map[string]any{}), 200)
			u, _ := url.Parse(c.data()["auth_url"].(string))
			return u.Query().Get("state")
		}
		mk := markers["markup-code"]
		hostileText := "<script>alert('" + mk + "')</script><b>x</b> <!channel>"
		// Each visit is answered, with the page its case calls for: a blank or
		// failed page would reflect nothing either.
		for _, v := range []struct {
			q     url.Values
			title string
		}{
			{url.Values{"state": {state()}, "error": {hostileText}, "error_description": {strings.Repeat(hostileText, 2000)}}, "Authorization was not granted"},
			{url.Values{"state": {state()}, "error": {"access_denied"}, "error_description": {hostileText}}, "Authorization was not granted"},
			{url.Values{"state": {"<b>" + mk + "</b>"}, "code": {hostileText}}, "Authorization not recognised"},
			{url.Values{"state": {state()}, "code": {hostileText}}, "Authorization failed"}, // the exchange answers with the hostile markup-code case
		} {
			c := r.anon(http.MethodGet, "oauth/callback", v.q)
			if l := leaks(string(c.Body)); len(l) > 0 {
				t.Errorf("callback page for %v reflects %v", keys(v.q), l)
			}
			if c.Status != http.StatusBadRequest || !strings.Contains(string(c.Body), v.title) {
				t.Errorf("callback page for %v: status %d, want 400 with %q: %.300q", keys(v.q), c.Status, v.title, c.Body)
			}
		}
		// The last visit's code reached the provider's token endpoint: its hostile
		// answer was read and not reflected.
		exchangedMu.Lock()
		got := slices.Clone(exchanged)
		exchangedMu.Unlock()
		if len(got) != 1 || got[0] != hostileText {
			t.Errorf("the token endpoint received %d code exchanges (%.100q), want 1 with the code the callback was given", len(got), got)
		}
		for _, c := range []*call{r.do(http.MethodGet, "credentials/ac", nil, nil), r.do(http.MethodGet, "credentials/ac/logs", nil, nil)} {
			if l := leaks(string(c.Body)); len(l) > 0 {
				t.Errorf("%s carries the stranger's text %v", c, l)
			}
		}
	})

	// The server log: no hostile text, so no forged line.
	serverLog, err := os.ReadFile(v.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(serverLog), "\n") {
		if strings.HasPrefix(line, "2026-12-01T00:00:00.000Z") {
			t.Errorf("server log line %d is a line the provider forged with a newline", i+1)
		}
		if l := leaks(line); len(l) > 0 {
			t.Errorf("server log line %d carries the provider's text %v (%d bytes)", i+1, l, len(line))
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// jsonStrings is every string (keys and values) in a decoded JSON value.
func jsonStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, jsonStrings(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for k, e := range x {
			out = append(out, k)
			out = append(out, jsonStrings(e)...)
		}
		return out
	}
	return nil
}

func keys(q url.Values) []string {
	var out []string
	for k := range q {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
