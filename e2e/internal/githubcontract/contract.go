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
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

// Load reads the description from dir (the installed package's root).
func Load(dir string) (*Contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join(dir, DescriptionFile))
	if err != nil {
		return nil, fmt.Errorf("loading GitHub's OpenAPI description: %w", err)
	}
	return &Contract{doc: doc, Version: doc.Info.Version}, nil
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
		check := r.Clone(context.Background())
		check.Body = io.NopCloser(bytes.NewReader(body))
		in = &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
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
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
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
