package backend

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

// conversionFailure matches the framework's refusal of a value it cannot convert to
// its field's schema type. The framework appends the conversion library's message,
// which quotes the value: a JSON list or object sent as a password comes back in the
// error (and so in clear in the audit log, which does not HMAC error text).
var conversionFailure = regexp.MustCompile(`(?s)^Field validation failed: error converting input for field "([^"]*)": (.*)$`)

var (
	// quotedValue is a Go-quoted string in a conversion message (strconv, time).
	quotedValue = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// trailingValue is mapstructure's ", value: '…'" suffix, which runs to the end.
	trailingValue = regexp.MustCompile(`(?s),? value: '.*$`)
	// singleQuoted is a single-quoted span, as parseutil and mapstructure quote values
	// ("cannot provide negative value '-5'") and type names ("expected type 'string'").
	singleQuoted = regexp.MustCompile(`(type )?'[^']*'`)
)

// conversionRule is the conversion message without any part of the value: what the
// value should have been, in the library's words.
func conversionRule(detail string) string {
	detail = trailingValue.ReplaceAllString(detail, "")
	detail = quotedValue.ReplaceAllString(detail, "(value not shown)")
	detail = singleQuoted.ReplaceAllStringFunc(detail, func(q string) string {
		if strings.HasPrefix(q, "type ") || q == "''" {
			return q // a Go type name, or the empty name mapstructure gives the value
		}
		return "(value not shown)"
	})
	if detail == "" || len(detail) > 200 {
		return "has a value of the wrong type or form for this field"
	}
	return "has a value of the wrong type or form for this field: " + detail
}

// busyResponse answers a request the key-work gate refused: 503 with Vault's usual
// "errors" and "retry_after" (seconds) in the body, and a Retry-After header, which
// Vault passes on only where the mount allows it (allowed_response_headers), so the
// body carries it too. Nothing was changed.
func busyResponse(busy *keywork.Busy) (*logical.Response, error) {
	secs := busy.RetrySeconds()
	body, err := json.Marshal(map[string]any{"errors": []string{busy.Error()}, "retry_after": secs})
	if err != nil {
		return nil, err
	}
	return &logical.Response{
		Data: map[string]any{
			logical.HTTPStatusCode:  http.StatusServiceUnavailable,
			logical.HTTPContentType: "application/json",
			logical.HTTPRawBody:     string(body),
		},
		Headers: map[string][]string{"Retry-After": {strconv.Itoa(secs)}},
	}, nil
}

// HandleRequest is the framework's, with its conversion errors stripped of the value:
// what remains names the field and the rule, as every refusal of this engine does. A
// key derivation refused by the key-work gate, on any path, is a 503 with retry_after
// (busyResponse), never a 500. It also learns the mount path from every request.
func (b *integrationsBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	b.rememberMount(req)
	resp, err := b.Backend.HandleRequest(ctx, req)
	if busy := keywork.AsBusy(err); busy != nil {
		return busyResponse(busy)
	}
	if resp != nil && resp.IsError() && resp.Data != nil {
		if msg, ok := resp.Data["error"].(string); ok {
			if m := conversionFailure.FindStringSubmatch(msg); m != nil {
				resp.Data["error"] = fieldErr(m[1], conversionRule(m[2])).Error()
			}
		}
	}
	return resp, err
}

// codedErrorAnswers is the backend Vault is served (Factory): the same backend, whose
// coded errors (logical.CodedError: a 403, 404, 409, 429, 502, 503 … of this engine)
// are answered the way Vault's own engines answer them, a JSON body {"errors":
// ["<sentence>"]} with that status. Returned as an error instead, Vault wraps it as a
// multierror and the CLI prints "* 1 error occurred: * <sentence>"; answered so, it
// prints "Code: 403. Errors:" and the sentence once. Errors without a code (a storage
// failure, logical.ErrReadOnly, which a performance standby forwards on) pass as they
// are, and so do responses: busyResponse keeps its Retry-After header.
type codedErrorAnswers struct {
	*integrationsBackend
}

func (c *codedErrorAnswers) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	resp, err := c.integrationsBackend.HandleRequest(ctx, req)
	if err == nil {
		return resp, nil
	}
	if req.WrapInfo != nil && req.WrapInfo.TTL > 0 {
		// A caller asking for response wrapping: Vault wraps any answer that is not
		// an error, so a refusal answered as a raw body would come back as a
		// wrapping token, found out only on unwrap. Left an error, it is not wrapped.
		return resp, err
	}
	if answer, ok := codedAnswer(err); ok {
		return answer, nil
	}
	return resp, err
}

// codedAnswer is the raw answer to a coded error of 400 or more (errorAnswer, with
// retry_after when the error is a retryLater); false for any other error.
func codedAnswer(err error) (*logical.Response, bool) {
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() < 400 {
		return nil, false
	}
	retry := -1
	var later *retryLater
	if errors.As(err, &later) {
		retry = later.seconds
	}
	answer, mErr := errorAnswer(coded.Code(), coded.Error(), retry)
	if mErr != nil {
		return nil, false
	}
	return answer, true
}

// retryLater is a coded error (a 429 or 503) after which the same request may
// succeed: the answer carries retry_after (whole seconds, at least 1) in its body and
// a Retry-After header, as busyResponse does.
type retryLater struct {
	code    int
	msg     string
	seconds int
}

func (e *retryLater) Error() string { return e.msg }
func (e *retryLater) Code() int     { return e.code }

// retryAfterError is a coded error whose answer says when to try again (d, rounded
// up to whole seconds, at least 1).
func retryAfterError(code int, msg string, d time.Duration) error {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &retryLater{code: code, msg: msg, seconds: secs}
}

// errorAnswer is a raw JSON answer {"errors": [msg]} with status code; with
// retryAfter >= 0 also "retry_after" and a Retry-After header (which Vault passes on
// where the mount allows it, allowed_response_headers).
func errorAnswer(code int, msg string, retryAfter int) (*logical.Response, error) {
	payload := map[string]any{"errors": []string{msg}}
	if retryAfter >= 0 {
		payload["retry_after"] = retryAfter
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: map[string]any{
		logical.HTTPStatusCode:  code,
		logical.HTTPContentType: "application/json",
		logical.HTTPRawBody:     body,
	}}
	if retryAfter >= 0 {
		resp.Headers = map[string][]string{"Retry-After": {strconv.Itoa(retryAfter)}}
	}
	return resp, nil
}
