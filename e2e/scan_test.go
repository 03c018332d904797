//go:build e2e

package e2e

// Helpers of the leak-scan and hostile-provider tests: a recorder of every HTTP
// exchange with a mount, the mount's operations as its OpenAPI document lists them,
// and secrets with every encoded form a leak could take.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one HTTP exchange with the mount, kept for the scan.
type call struct {
	Method string // as sent: GET, LIST, POST, PATCH, DELETE
	Path   string // relative to the mount, without the query
	Query  url.Values
	Status int
	Header http.Header
	Body   []byte
}

func (c *call) String() string { return fmt.Sprintf("%s %s (%d)", c.Method, c.Path, c.Status) }

// errorText is the errors array of an error answer, or the body.
func (c *call) errorText() string {
	var e struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(c.Body, &e) == nil && e.Errors != nil {
		return strings.Join(e.Errors, "; ")
	}
	return string(c.Body)
}

// data is the data object of a JSON answer (nil when there is none).
func (c *call) data() map[string]any {
	var s struct {
		Data map[string]any `json:"data"`
	}
	_ = json.Unmarshal(c.Body, &s)
	return s.Data
}

// recorder sends requests to one mount over plain HTTP (no retries, no redirects
// followed) and keeps every exchange.
type recorder struct {
	t      *testing.T
	v      *vaultServer
	mount  string
	client *http.Client
	redact func(string) string // hides known secrets in failure messages

	mu    sync.Mutex
	calls []*call
}

func newRecorder(t *testing.T, v *vaultServer, mount string) *recorder {
	return &recorder{t: t, v: v, mount: mount, redact: func(s string) string { return s },
		client: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends method to path (relative to the mount) with query and, when body is not
// nil, body as JSON. LIST is sent as Vault's LIST verb.
func (r *recorder) do(method, path string, query url.Values, body any) *call {
	return r.send(method, path, query, body, true)
}

// anon is do without a Vault token (what a browser sends to oauth/callback).
func (r *recorder) anon(method, path string, query url.Values) *call {
	return r.send(method, path, query, nil, false)
}

// anonForm POSTs form, url-encoded, without a Vault token: what a provider's
// form_post page makes the browser send to oauth/callback.
func (r *recorder) anonForm(path string, form url.Values) *call {
	return r.send(http.MethodPost, path, nil, form, false)
}

func (r *recorder) send(method, path string, query url.Values, body any, token bool) *call {
	r.t.Helper()
	u := r.v.addr + "/v1/" + r.mount + "/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	form, isForm := body.(url.Values)
	if isForm {
		rd = strings.NewReader(form.Encode())
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token {
		req.Header.Set("X-Vault-Token", r.v.token)
	}
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	} else if isForm {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		r.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	c := &call{Method: method, Path: path, Query: query, Status: resp.StatusCode, Header: resp.Header, Body: b}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return c
}

// want fails the test (without stopping it) unless c answered with one of statuses.
func (r *recorder) want(c *call, statuses ...int) bool {
	r.t.Helper()
	if slices.Contains(statuses, c.Status) {
		return true
	}
	msg := c.errorText()
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	r.t.Errorf("%s: want status %v; answer: %s", c, statuses, r.redact(msg))
	return false
}

// must is want that stops the test: what follows depends on it.
func (r *recorder) must(c *call, statuses ...int) *call {
	r.t.Helper()
	if !r.want(c, statuses...) {
		r.t.FailNow()
	}
	return c
}

func (r *recorder) all() []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// apiOp is one operation of the mount as the server's OpenAPI document lists it.
type apiOp struct {
	Template string // relative to the mount, trailing "/" dropped: "credentials/{name}/logs"
	Method   string // OpenAPI's: get, post, patch, delete
	Inputs   bool   // takes a path parameter, a query parameter (other than list) or a body
	Params   []string
	re       *regexp.Regexp
}

func (o apiOp) String() string { return strings.ToUpper(o.Method) + " " + o.Template }

// mountOps reads sys/internal/specs/openapi and returns every operation under mount.
func mountOps(t *testing.T, v *vaultServer, mount string) []apiOp {
	t.Helper()
	resp, err := v.client.Logical().ReadRawWithContext(context.Background(), "sys/internal/specs/openapi")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type param struct {
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var ops []apiOp
	for p, item := range doc.Paths {
		rel, ok := strings.CutPrefix(p, "/"+mount+"/")
		if !ok {
			continue
		}
		rel = strings.TrimSuffix(rel, "/")
		var pathParams []param
		if raw, ok := item["parameters"]; ok {
			_ = json.Unmarshal(raw, &pathParams)
		}
		pattern := "^" + regexp.MustCompile(`\\\{[a-z_]+\\\}`).ReplaceAllString(regexp.QuoteMeta(rel), `[^/]+`) + "/?$"
		for _, method := range []string{"get", "post", "put", "patch", "delete"} {
			raw, ok := item[method]
			if !ok {
				continue
			}
			var op struct {
				Parameters  []param         `json:"parameters"`
				RequestBody json.RawMessage `json:"requestBody"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("OpenAPI %s %s: %v", method, p, err)
			}
			o := apiOp{Template: rel, Method: method, Inputs: len(pathParams) > 0 || len(op.RequestBody) > 0, re: regexp.MustCompile(pattern)}
			for _, q := range append(pathParams, op.Parameters...) {
				o.Params = append(o.Params, q.Name)
				if q.In == "query" && q.Name != "list" {
					o.Inputs = true
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].String() < ops[j].String() })
	if len(ops) == 0 {
		t.Fatalf("the OpenAPI document lists no operation under %s", mount)
	}
	return ops
}

// openAPIMethod is the OpenAPI operation an HTTP request is: LIST is a get with list=true.
func openAPIMethod(method string) string {
	switch method {
	case "LIST", http.MethodGet:
		return "get"
	case http.MethodPut, http.MethodPost:
		return "post"
	}
	return strings.ToLower(method)
}

// checkCoverage fails for an operation the calls never reached, never succeeded at,
// or (when it takes input) never failed at, and for a call no operation describes.
// It returns a summary line.
func checkCoverage(t *testing.T, ops []apiOp, calls []*call) string {
	t.Helper()
	type tally struct{ ok, fail, other int }
	count := make([]tally, len(ops))
	for _, c := range calls {
		matched := false
		for i, o := range ops {
			if o.Method != openAPIMethod(c.Method) || !o.re.MatchString(c.Path) {
				continue
			}
			matched = true
			switch {
			case c.Status < 400:
				count[i].ok++
			case c.Status < 500:
				count[i].fail++
			default:
				count[i].other++
			}
		}
		if !matched {
			t.Errorf("%s: no operation of the OpenAPI document describes this call", c)
		}
	}
	var lines []string
	for i, o := range ops {
		n := count[i]
		switch {
		case n.ok+n.fail+n.other == 0:
			t.Errorf("OpenAPI lists %s; the test never calls it", o)
		case n.ok == 0:
			t.Errorf("%s: never succeeded (%d refusals, %d 5xx)", o, n.fail, n.other)
		case o.Inputs && n.fail == 0:
			t.Errorf("%s takes input but no call was refused with a 4xx", o)
		}
		lines = append(lines, fmt.Sprintf("%s: %d ok, %d 4xx, %d 5xx", o, n.ok, n.fail, n.other))
	}
	return strings.Join(lines, "\n")
}

// secret is one secret value the scan looks for, in every form a leak could take.
type secret struct {
	Owner  string // the credential it belongs to
	Kind   string // the field, or what it is: access_token, refresh_token, code_verifier, …
	Marker string // a recognisable part, safe to print
	forms  []form
}

type form struct{ name, text string }

// newSecret is a single-line secret.
func newSecret(owner, kind, marker, value string) *secret {
	s := &secret{Owner: owner, Kind: kind, Marker: marker}
	s.forms = encodings("", value)
	return s
}

// newPEMSecret is a PEM-encoded secret: each line of its base64 body is looked for, so
// the scan finds it however the PEM is wrapped or escaped.
func newPEMSecret(owner, kind, marker, pemText string) *secret {
	s := &secret{Owner: owner, Kind: kind, Marker: marker}
	n := 0
	for _, line := range strings.Split(pemText, "\n") {
		line = strings.TrimSpace(line)
		if len(line) < 40 || strings.Contains(line, ":") || strings.HasPrefix(line, "-----") {
			continue
		}
		n++
		s.forms = append(s.forms, encodings(fmt.Sprintf("body line %d, ", n), line)...)
	}
	if n == 0 {
		panic("newPEMSecret: no body line in " + kind)
	}
	return s
}

// withBasic adds the HTTP Basic form "user:secret" (base64) of a password.
func (s *secret) withBasic(user, value string) *secret {
	s.forms = append(s.forms, form{"Basic user:password base64", base64.StdEncoding.EncodeToString([]byte(user + ":" + value))})
	return s
}

// encodings are the forms of value: clear, JSON-escaped, query- and path-escaped, and
// standard and URL-safe base64 at each of the three alignments value can have inside
// a longer encoded string (the characters that depend on value alone).
func encodings(prefix, value string) []form {
	out := []form{{prefix + "clear", value}}
	add := func(name, text string) {
		if len(text) < 12 {
			return
		}
		for _, f := range out {
			if f.text == text || strings.Contains(text, f.text) {
				return // a form already looked for finds this one too
			}
		}
		out = append(out, form{prefix + name, text})
	}
	for _, escapeHTML := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escapeHTML)
		_ = enc.Encode(value)
		add("JSON-escaped", strings.TrimSuffix(strings.TrimSpace(b.String()), `"`)[1:])
	}
	add("query-escaped", url.QueryEscape(value))
	add("path-escaped", url.PathEscape(value))
	for _, e := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
		for k := 0; k < 3; k++ {
			in := append(make([]byte, k), value...)
			encoded := e.enc.EncodeToString(in)
			start := 0
			if k > 0 {
				start = 4 // the first quantum mixes in what precedes the value
			}
			end := len(in) / 3 * 4 // the last partial quantum mixes in what follows
			if end-start >= 12 {
				add(fmt.Sprintf("%s (offset %d)", e.name, k), encoded[start:end])
			}
		}
	}
	return out
}

// hit is a secret found somewhere.
type hit struct {
	s     *secret
	form  string
	where string
}

func (h hit) String() string {
	return fmt.Sprintf("secret %s.%s (marker %s) as %s in %s", h.s.Owner, h.s.Kind, h.s.Marker, h.form, h.where)
}

// find returns every secret of secrets in text, once per secret and form.
func find(secrets []*secret, text, where string) []hit {
	var hits []hit
	for _, s := range secrets {
		for _, f := range s.forms {
			if strings.Contains(text, f.text) {
				hits = append(hits, hit{s, f.name, where})
			}
		}
	}
	return hits
}

// findLines is find over a log, naming the lines (at most five per secret and form).
func findLines(secrets []*secret, text, what string) []hit {
	lines := strings.Split(text, "\n")
	var hits []hit
	for _, s := range secrets {
		for _, f := range s.forms {
			if !strings.Contains(text, f.text) {
				continue
			}
			var at []string
			for i, l := range lines {
				if strings.Contains(l, f.text) {
					at = append(at, fmt.Sprint(i+1))
					if len(at) == 5 {
						at = append(at, "…")
						break
					}
				}
			}
			hits = append(hits, hit{s, f.name, what + " line " + strings.Join(at, ", ")})
		}
	}
	return hits
}

// redactor replaces every form of secrets in a message by the secret's name.
func redactor(secrets func() []*secret) func(string) string {
	return func(msg string) string {
		for _, s := range secrets() {
			for _, f := range s.forms {
				msg = strings.ReplaceAll(msg, f.text, "<"+s.Owner+"."+s.Kind+">")
			}
		}
		return msg
	}
}

// headerText is the response headers as text, for the scan.
func headerText(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.String()
}

// waitFor polls cond every 50 ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
