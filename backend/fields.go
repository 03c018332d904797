package backend

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// nameRule is the rule credential names follow; it is quoted in every refusal.
const nameRule = "must be 1-128 letters, digits, '-', '_' or '.', beginning and ending with a letter, digit or '_', without '..'"

// nameRe is nameRule. A name must begin and end with a word character because the
// paths below a credential (credentials/<name>/suspend, /logs, /authorize, …) route
// names with framework.GenericNameRegex, which requires that: a name like "x-" could
// otherwise be created but never suspended or authorized.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_])?$`)

// nameSegment is the path pattern of credentials/<name> and access/<name>: any one
// path segment, so that a name nameRule refuses still reaches the handler, which
// answers with a 400 naming the field and the rule instead of an "unsupported path".
const nameSegment = `(?P<name>[^/]+)`

// validName reports whether s follows nameRule. Vault's storage refuses any key with a
// ".." in it, so such a name could only ever fail with a 500.
func validName(s string) bool {
	return nameRe.MatchString(s) && !strings.Contains(s, "..")
}

// fieldErr is a validation failure naming the field and the rule it broke: the
// catalog's FieldError, the one field-error type of the engine. It never carries the
// value, so it is safe for secrets.
func fieldErr(field, rule string) error { return &credtype.FieldError{Field: field, Rule: rule} }

// rejectUnknownFields refuses a request carrying parameters the path does not define.
// Vault itself only warns about them; for a credential store, a misspelt secret field
// silently dropped is worse than a refusal.
func rejectUnknownFields(d *framework.FieldData) *logical.Response {
	if msg := unknownFields(d.Raw, d.Schema); msg != "" {
		return logical.ErrorResponse(msg)
	}
	return nil
}

// unknownFields is rejectUnknownFields' refusal of the parameters of raw that schema
// does not define ("" when there are none): it names them, never their values, with
// the nearest known names. credentials-batch refuses each item's so.
func unknownFields(raw map[string]any, schema map[string]*framework.FieldSchema) string {
	var unknown []string
	for k := range raw {
		if _, ok := schema[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	slices.Sort(unknown)
	known := make([]string, 0, len(schema))
	for k := range schema {
		known = append(known, k)
	}
	var near []string
	for _, k := range unknown {
		if n, ok := credtype.NearName(k, known); ok {
			near = append(near, n)
		}
	}
	if len(near) > 0 {
		return fmt.Sprintf("unknown field(s) %q: not accepted at this path; did you mean %s?", unknown, strings.Join(near, ", "))
	}
	return fmt.Sprintf("unknown field(s) %q: not accepted at this path", unknown)
}

func writeOperation(cb framework.OperationFunc, verb, suffix string) *framework.PathOperation {
	return &framework.PathOperation{
		Callback:                    cb,
		DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: verb, OperationSuffix: suffix},
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
}
