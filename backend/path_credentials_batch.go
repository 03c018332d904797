// credentials-batch: many credentials created in one request, each item through the
// single create's code path (applyCredentialWrite), a failing item reported by index
// and name with the single create's refusal, the others stored.

package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/errgroup"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

const (
	// batchPath is the path of a bulk create.
	batchPath = "credentials-batch"
	// maxBatchItems is the most credentials one batch creates. A full batch of
	// typical items stays far below Vault's max_request_size (32 MiB by default),
	// which Vault enforces before the engine sees the request (413).
	maxBatchItems = 1000
	// batchWorkers bounds the items of one batch written at once. An item's cost is
	// mostly waiting: five storage calls for a created bearer credential (its entry
	// read and written, the pending authorization read, the token state deleted
	// before and after), each a round trip from the plugin process into Vault. Sixteen
	// in flight hide those round trips on a 2-core server (measured from outside:
	// bearer credentials at ~1,760/s with 8, ~2,070/s with 16) while a batch still
	// cannot occupy more than a bounded share of Vault's request handling; more only
	// queue in Vault's storage layer (Raft applies writes one at a time) and in the
	// key-work gate, whose own bound KDF types wait on. Each worker holds one
	// credential's name lock at a time, as a single create does, so the lock order
	// (lockorder.go) is the single create's.
	batchWorkers = 16
	// fieldItems is the parameter holding the batch.
	fieldItems = "items"
)

// existsInBatchRule refuses, in a batch, a name that is taken: a batch only creates.
const existsInBatchRule = "names a credential that exists: credentials-batch only creates, and changed nothing; change it with a write to credentials/<name>"

// batchItemSchema is the schema an item is checked against: credentials/<name>'s
// fields (the catalog's, with name and type) without cas, which a batch does not take
// (every item is create-only).
var batchItemSchema = sync.OnceValue(func() map[string]*framework.FieldSchema {
	f := credentialFields()
	delete(f, fieldCAS)
	return f
})

func pathCredentialsBatch(b *integrationsBackend) *framework.Path {
	return &framework.Path{
		Pattern: batchPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "credentials-batch",
		},
		Fields: map[string]*framework.FieldSchema{
			fieldItems: {
				Type: framework.TypeSlice,
				Description: fmt.Sprintf("The credentials to create, at most %d: a JSON list of objects, each with name, type and the type's fields as credentials/<name> takes them "+
					"(a JSON string holding such a list is read too, for items=@file.json).", maxBatchItems),
				Required: true,
			},
		},
		// Every write is a create (a batch never replaces a credential), so Vault asks
		// for the create capability on this path.
		ExistenceCheck: func(context.Context, *logical.Request, *framework.FieldData) (bool, error) { return false, nil },
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: writeOperation(b.pathCredentialsBatchWrite, "create", ""),
		},
		HelpSynopsis: fmt.Sprintf("Create up to %d credentials in one request; each item is validated and stored as credentials/<name> creates it.", maxBatchItems),
		HelpDescription: fmt.Sprintf(`"items" is a list of credentials, each {"name": ..., "type": ..., <the type's fields>}, at most %d.
Each item is checked with the rules of a create of credentials/<name>; the items that pass
are stored, those that fail are reported in "failed" by index and name with the refusal a
single create would answer (never a value). A name that exists, or that appears twice in
the batch, fails; nothing is replaced. The answer lists the created names in "created".
The create capability on this path lets the caller create credentials of any name.`, maxBatchItems) + examples(
			"vault write -format=json integrations/credentials-batch @items.json",
			"curl -s -H \"X-Vault-Token: $VAULT_TOKEN\" -X POST --data @items.json \"$VAULT_ADDR/v1/integrations/credentials-batch\""),
	}
}

// batchRefusal is an item refused before its write: its message as the single create
// would answer it, and the fields and rules it names.
type batchRefusal struct {
	msg    string
	fields credtype.FieldErrors
}

func (r *batchRefusal) Error() string { return r.msg }

// errBatchNotAttempted is an item the batch did not write because the request ended
// first (its context: the caller went away, or Vault's request timeout).
var errBatchNotAttempted = errors.New("not attempted: the request ended before this item was written; send it again")

// pathCredentialsBatchWrite creates the batch's credentials. The request is refused
// whole (a 400, nothing stored) only when "items" is not a list of 1 to maxBatchItems
// entries; otherwise each item succeeds or fails on its own and the answer says which.
func (b *integrationsBackend) pathCredentialsBatchWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if resp := rejectUnknownFields(d); resp != nil {
		return resp, nil
	}
	items, err := batchItems(d.Raw[fieldItems])
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	names := make([]string, len(items))
	raws := make([]map[string]any, len(items))
	results := make([]error, len(items)) // nil: created
	at := make(map[string][]int, len(items))
	for i, item := range items {
		names[i], raws[i], results[i] = checkBatchItem(item)
		if results[i] == nil {
			at[names[i]] = append(at[names[i]], i)
		}
	}
	for _, idx := range at {
		if len(idx) < 2 {
			continue
		}
		rule := fmt.Sprintf("appears %d times in this batch (items %s): none of them was created; send each name once", len(idx), joinInts(idx))
		for _, i := range idx {
			results[i] = fieldErr("name", rule)
		}
	}

	integration := requestIntegration(req)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchWorkers)
	for i := range items {
		if results[i] != nil {
			continue
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				results[i] = errBatchNotAttempted
				return nil
			}
			_, err := b.applyCredentialWrite(gctx, req.Storage, names[i], raws[i], credentialWriteMode{createOnly: true}, integration)
			results[i] = err
			if errors.Is(err, logical.ErrReadOnly) {
				return err // this node cannot write: the request goes to the active node whole
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	created := make([]string, 0, len(items))
	failed := make([]map[string]any, 0)
	for i, err := range results {
		if err == nil {
			created = append(created, names[i])
			continue
		}
		failed = append(failed, b.batchFailure(i, names[i], err))
	}
	b.Logger().Info("credentials-batch", "items", len(items), "created", len(created), "failed", len(failed))
	resp := &logical.Response{Data: map[string]any{
		"created":       created,
		"created_count": len(created),
		"failed":        failed,
		"failed_count":  len(failed),
	}}
	if len(failed) > 0 {
		resp.AddWarning(fmt.Sprintf("%d of %d credentials were not created: \"failed\" names each by index and name, with why. The other %d were created.", len(failed), len(items), len(created)))
	}
	return resp, nil
}

// batchItems reads the items parameter: a list, or a JSON string holding one (the
// CLI's items=@file.json), of 1 to maxBatchItems entries. Its refusals never quote
// what was sent.
func batchItems(raw any) ([]any, error) {
	const shape = "must be a JSON list of credentials, each {\"name\": ..., \"type\": ..., <the type's fields>}"
	var items []any
	switch v := raw.(type) {
	case nil:
		return nil, fieldErr(fieldItems, "is required: "+shape[len("must be "):])
	case []any:
		items = v
	case []map[string]any:
		for _, m := range v {
			items = append(items, m)
		}
	case string:
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber()
		if err := dec.Decode(&items); err != nil || dec.More() {
			return nil, fieldErr(fieldItems, shape)
		}
	default:
		return nil, fieldErr(fieldItems, shape)
	}
	switch {
	case len(items) == 0:
		return nil, fieldErr(fieldItems, "must hold at least one credential")
	case len(items) > maxBatchItems:
		return nil, fieldErr(fieldItems, fmt.Sprintf("must hold at most %d credentials (this request holds %d): send them in several requests", maxBatchItems, len(items)))
	}
	return items, nil
}

// checkBatchItem is what the framework and writeCredential check of a single create
// before its write, in the same words: the name, each field's conversion to its
// schema type, fields credentials/<name> does not take. It returns the item's name
// ("" when it has no valid one) and its fields.
func checkBatchItem(item any) (string, map[string]any, error) {
	raw, ok := item.(map[string]any)
	if !ok {
		return "", nil, fieldErr("items", "each item must be a JSON object: name, type and the type's fields")
	}
	name, _ := raw["name"].(string)
	if !validName(name) {
		return "", nil, fieldErr("name", nameRule)
	}
	schema := batchItemSchema()
	fd := framework.FieldData{Raw: raw, Schema: schema}
	if err := fd.Validate(); err != nil {
		// As HandleRequest words the framework's refusal: the field and the rule,
		// without the value.
		if m := conversionFailure.FindStringSubmatch("Field validation failed: " + err.Error()); m != nil {
			return name, nil, fieldErr(m[1], conversionRule(m[2]))
		}
		return name, nil, &batchRefusal{msg: "a field has a value of the wrong type or form"}
	}
	if msg := unknownFields(raw, schema); msg != "" {
		r := &batchRefusal{msg: msg}
		for k := range raw {
			if _, ok := schema[k]; !ok {
				r.fields = append(r.fields, &credtype.FieldError{Field: k, Rule: "is not accepted at this path"})
			}
		}
		slices.SortFunc(r.fields, func(a, b *credtype.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return name, nil, r
	}
	return name, raw, nil
}

// batchFailure is one entry of the answer's "failed": the item's index and name, the
// refusal as the single create's 400 (or 503, 500) would carry it in "errors", and
// each field with its rule. A storage failure is logged, and answered only as one.
func (b *integrationsBackend) batchFailure(i int, name string, err error) map[string]any {
	out := map[string]any{"index": i, "name": name}
	var fields credtype.FieldErrors
	var refusal *batchRefusal
	var coded logical.HTTPCodedError
	switch {
	case errors.As(err, &refusal):
		out["error"], fields = refusal.msg, refusal.fields
	case errors.As(err, new(*credtype.FieldError)):
		out["error"] = err.Error()
		var fes credtype.FieldErrors
		var fe *credtype.FieldError
		if errors.As(err, &fes) {
			fields = fes
		} else if errors.As(err, &fe) {
			fields = credtype.FieldErrors{fe}
		}
	case keywork.AsBusy(err) != nil:
		busy := keywork.AsBusy(err)
		out["error"], out["retry_after"], out["status"] = busy.Error(), busy.RetrySeconds(), http.StatusServiceUnavailable
	case errors.Is(err, errBatchNotAttempted):
		out["error"] = err.Error()
	case errors.As(err, &coded):
		out["error"], out["status"] = coded.Error(), coded.Code()
	default:
		b.Logger().Error("credentials-batch: writing an item failed", "index", i, "credential", name, "error", err)
		out["error"], out["status"] = "an internal error ended this item's write (the server log has it); send it again", http.StatusInternalServerError
	}
	list := make([]map[string]any, 0, len(fields))
	for _, fe := range fields {
		list = append(list, map[string]any{"field": fe.Field, "rule": fe.Rule})
	}
	out["fields"] = list
	return out
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ", ")
}
