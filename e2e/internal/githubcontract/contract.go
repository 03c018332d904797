// Package githubcontract checks HTTP exchanges with a GitHub API server against
// GitHub's official OpenAPI description of its REST API (the npm package
// @octokit/openapi, generated/api.github.com.json, installed by scripts/lib.sh
// github_openapi_dir): each request against its operation's parameters and request
// body schema, each answer against the schema of its documented status. It wraps the
// e2e suite's GitHub server (internal/githubtest), so both sides of the contract —
// what the engine sends and what the server answers — are GitHub's, not ours.
package githubcontract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// DescriptionFile is where the description is in the package's directory.
const DescriptionFile = "node_modules/@octokit/openapi/generated/api.github.com.json"

// Contract is GitHub's description, loaded.
type Contract struct {
	doc *openapi3.T
	// Version is the description's info.version.
	Version string
}

// Operations are the paths of GitHub's REST API an App calls to get installation
// tokens: the part of the description Load keeps.
var Operations = []string{
	"/app",
	"/app/installations",
	"/app/installations/{installation_id}",
	"/app/installations/{installation_id}/access_tokens",
}

// Load reads the description from dir (the installed package's root) and keeps
// Operations with every component they reference, as GitHub wrote them: the whole
// description (over 10 MB) takes seconds to load, its subset a fraction of one.
func Load(dir string) (*Contract, error) {
	raw, err := os.ReadFile(filepath.Join(dir, DescriptionFile))
	if err != nil {
		return nil, fmt.Errorf("reading GitHub's OpenAPI description: %w", err)
	}
	sub, err := subset(raw, Operations)
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(sub)
	if err != nil {
		return nil, fmt.Errorf("loading GitHub's OpenAPI description: %w", err)
	}
	return &Contract{doc: doc, Version: doc.Info.Version}, nil
}

// subset is the description with only paths and the components they reference
// (transitively, through "$ref": "#/components/<kind>/<name>").
func subset(raw []byte, paths []string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("GitHub's OpenAPI description is not JSON: %w", err)
	}
	allPaths, _ := doc["paths"].(map[string]any)
	components, _ := doc["components"].(map[string]any)
	keptPaths := map[string]any{}
	kept := map[string]map[string]any{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				if len(parts) == 2 {
					kind, name := parts[0], parts[1]
					if kept[kind] == nil {
						kept[kind] = map[string]any{}
					}
					if _, done := kept[kind][name]; !done {
						c, _ := components[kind].(map[string]any)
						kept[kind][name] = c[name]
						walk(c[name])
					}
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, p := range paths {
		item, ok := allPaths[p]
		if !ok {
			return nil, fmt.Errorf("GitHub's OpenAPI description has no path %s", p)
		}
		keptPaths[p] = item
		walk(item)
	}
	out := map[string]any{"openapi": doc["openapi"], "info": doc["info"], "servers": doc["servers"], "paths": keptPaths}
	comps := map[string]any{}
	for kind, m := range kept {
		comps[kind] = m
	}
	out["components"] = comps
	return json.Marshal(out)
}

// Operation is one checked exchange.
type Operation struct {
	Method, Template string
	Status           int
	// Problems are the contract's complaints; empty when both sides conform.
	Problems []string
}

// Checker wraps a handler and checks every exchange through it.
type Checker struct {
	c     *Contract
	inner http.Handler

	mu  sync.Mutex
	ops []Operation
}

// Wrap returns a Checker in front of inner.
func (c *Contract) Wrap(inner http.Handler) *Checker {
	return &Checker{c: c, inner: inner}
}

// Checked returns the exchanges checked so far.
func (k *Checker) Checked() []Operation {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Operation(nil), k.ops...)
}

// route finds the operation of r in the description: its template and path parameters.
func (c *Contract) route(r *http.Request) (*routers.Route, map[string]string) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	for tmpl, item := range c.doc.Paths.Map() {
		op := item.GetOperation(r.Method)
		if op == nil {
			continue
		}
		ts := strings.Split(strings.Trim(tmpl, "/"), "/")
		if len(ts) != len(segs) {
			continue
		}
		params := map[string]string{}
		ok := true
		for i, t := range ts {
			switch {
			case strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}"):
				params[t[1:len(t)-1]] = segs[i]
			case t != segs[i]:
				ok = false
			}
			if !ok {
				break
			}
		}
		if ok {
			return &routers.Route{Spec: c.doc, Path: tmpl, PathItem: item, Method: r.Method, Operation: op}, params
		}
	}
	return nil, nil
}

// ServeHTTP checks the request, serves it with the inner handler, and checks the answer.
func (k *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	op := Operation{Method: r.Method, Template: r.URL.Path}
	route, params := k.c.route(r)
	var in *openapi3filter.RequestValidationInput
	if route == nil {
		op.Problems = append(op.Problems, "no operation of GitHub's REST API is "+r.Method+" "+r.URL.Path)
	} else {
		op.Template = route.Path
		check := r.Clone(r.Context())
		check.Body = io.NopCloser(bytes.NewReader(body))
		in = &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			op.Problems = append(op.Problems, "request: "+err.Error())
		}
	}
	rec := httptest.NewRecorder()
	k.inner.ServeHTTP(rec, r)
	op.Status = rec.Code
	if in != nil {
		if route.Operation.Responses.Status(rec.Code) == nil {
			op.Problems = append(op.Problems, fmt.Sprintf("answer: status %d is not documented for %s %s", rec.Code, r.Method, route.Path))
		} else {
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
				Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
			if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
				op.Problems = append(op.Problems, "answer: "+err.Error())
			}
		}
	}
	k.mu.Lock()
	k.ops = append(k.ops, op)
	k.mu.Unlock()
	for key, vs := range rec.Header() {
		w.Header()[key] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
