package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// servedBackend is the backend as Factory serves it to Vault.
func servedBackend(t *testing.T) (logical.Backend, logical.Storage) {
	t.Helper()
	s := logical.NewStorageView(&logical.InmemStorage{}, "")
	conf := &logical.BackendConfig{
		Logger:      hclog.NewNullLogger(),
		System:      &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour},
		StorageView: s,
	}
	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b, s
}

// errorAnswerOf asserts a raw JSON answer {"errors": [one sentence]} with status
// code, and no error beside it (Vault would wrap that as "* 1 error occurred").
func errorAnswerOf(t *testing.T, resp *logical.Response, err error, code int) string {
	t.Helper()
	if err != nil {
		t.Fatalf("want a %d answer, got the error %v", code, err)
	}
	if resp == nil || resp.Data[logical.HTTPStatusCode] != code || resp.Data[logical.HTTPContentType] != "application/json" {
		t.Fatalf("want a raw JSON %d answer, got %#v", code, resp)
	}
	var body struct{ Errors []string }
	if err := json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("body %s: %v", resp.Data[logical.HTTPRawBody], err)
	}
	return body.Errors[0]
}

// The served backend answers a coded error (403, 404) as Vault's own engines do: the
// status and {"errors": ["<sentence>"]}, so the CLI prints the sentence once. A 400 and
// a success are untouched.
func TestServedBackendAnswersCodedErrorsAsJSON(t *testing.T) {
	t.Parallel()
	b, s := servedBackend(t)
	do := func(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
		return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: s})
	}
	resp, err := do(logical.UpdateOperation, "credentials/missing/suspend", nil)
	if msg := errorAnswerOf(t, resp, err, http.StatusNotFound); msg != `credential "missing" does not exist` {
		t.Fatalf("404 sentence %q", msg)
	}
	if resp, err := do(logical.UpdateOperation, "credentials/ticketing", basicCredential()); err != nil || resp.IsError() {
		t.Fatalf("create: %v %v", resp, err)
	}
	if resp, err := do(logical.UpdateOperation, "credentials/ticketing/suspend", nil); err != nil || resp.IsError() {
		t.Fatalf("suspend: %v %v", resp, err)
	}
	resp, err = do(logical.ReadOperation, "access/ticketing", nil)
	if msg := errorAnswerOf(t, resp, err, http.StatusForbidden); !strings.Contains(msg, `credential "ticketing" cannot be used`) || strings.Contains(msg, "error occurred") {
		t.Fatalf("403 sentence %q", msg)
	}
	// A 400 stays Vault's ordinary error response, naming the field.
	resp, err = do(logical.UpdateOperation, "credentials/other", map[string]any{"type": "basic", "username": "svc"})
	if err == nil {
		wantFieldError(t, resp, "password")
	} else if resp == nil || !resp.IsError() {
		t.Fatalf("400: %v %v", resp, err)
	}
	if resp, err := do(logical.ReadOperation, "credentials/ticketing", nil); err != nil || resp.IsError() || resp.Data["type"] != "basic" {
		t.Fatalf("read: %v %v", resp, err)
	}
}

// types/<unknown> and access/<missing> answer 404 with a sentence, not an empty 404.
func TestUnknownTypeAndMissingCredentialAre404WithASentence(t *testing.T) {
	t.Parallel()
	b, s := servedBackend(t)
	for _, c := range []struct {
		op        logical.Operation
		path, say string
	}{
		{logical.ReadOperation, "types/no_such_type", `credential type "no_such_type" does not exist; vault read integrations/types lists the types`},
		{logical.ListOperation, "types/no_such_type/", `credential type "no_such_type" does not exist; vault read integrations/types lists the types`},
		{logical.ReadOperation, "access/missing", `credential "missing" does not exist`},
	} {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: c.op, Path: c.path, Storage: s})
		if msg := errorAnswerOf(t, resp, err, http.StatusNotFound); msg != c.say {
			t.Fatalf("%s %s: %q, want %q", c.op, c.path, msg, c.say)
		}
	}
}

// A refusal of a request that asks for response wrapping stays an error: Vault wraps
// every answer that is not one, so a raw 403 body would reach the caller as a wrapping
// token and the refusal only on unwrap.
func TestWrappedRequestRefusalStaysAnError(t *testing.T) {
	t.Parallel()
	b, s := servedBackend(t)
	do := func(op logical.Operation, path string, data map[string]any, wrap *logical.RequestWrapInfo) (*logical.Response, error) {
		return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: s, WrapInfo: wrap})
	}
	if resp, err := do(logical.UpdateOperation, "credentials/ticketing", basicCredential(), nil); err != nil || resp.IsError() {
		t.Fatalf("create: %v %v", resp, err)
	}
	if resp, err := do(logical.UpdateOperation, "credentials/ticketing/suspend", nil, nil); err != nil || resp.IsError() {
		t.Fatalf("suspend: %v %v", resp, err)
	}
	resp, err := do(logical.ReadOperation, "access/ticketing", nil, &logical.RequestWrapInfo{TTL: 5 * time.Minute})
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != http.StatusForbidden {
		t.Fatalf("wrapped read of a suspended credential: %#v, %v; want the 403 as an error", resp, err)
	}
	if resp != nil && resp.Data[logical.HTTPRawBody] != nil {
		t.Fatalf("wrapped read answered a raw body %s beside the error", resp.Data[logical.HTTPRawBody])
	}
}

// A coded error after which the same request may succeed (429, 503) carries when to
// try again, in the body and as Retry-After, like the key-work gate's 503.
func TestRetryableErrorsSayWhenToRetry(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		code int
		secs int
	}{
		{retryAfterError(http.StatusTooManyRequests, "too many", 2500*time.Millisecond), http.StatusTooManyRequests, 3},
		{retryAfterError(http.StatusServiceUnavailable, "retry", 0), http.StatusServiceUnavailable, 1},
	} {
		resp, ok := codedAnswer(fmt.Errorf("wrapped: %w", c.err))
		if !ok {
			t.Fatalf("%v: no coded answer", c.err)
		}
		var err error
		if msg := errorAnswerOf(t, resp, err, c.code); msg != c.err.Error() {
			t.Fatalf("sentence %q", msg)
		}
		var body struct {
			RetryAfter int `json:"retry_after"`
		}
		if err := json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &body); err != nil || body.RetryAfter != c.secs {
			t.Fatalf("retry_after %d (%v), want %d", body.RetryAfter, err, c.secs)
		}
		if got := resp.Headers["Retry-After"]; len(got) != 1 || got[0] != strconv.Itoa(c.secs) {
			t.Fatalf("Retry-After %v, want %d", got, c.secs)
		}
	}
}
