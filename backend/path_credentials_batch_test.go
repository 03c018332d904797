package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// batchItem is one item of a batch: name, type and the type's fields.
func batchItem(name, typeName string, values map[string]any) map[string]any {
	item := credWithType(typeName, values)
	item["name"] = name
	return item
}

// bearerItem is a small valid item whose secret carries marker.
func bearerItem(name, marker string) map[string]any {
	return map[string]any{"name": name, "type": "bearer", "token": "tok." + marker}
}

// batch sends items to credentials-batch and returns the answer (an error answer too).
func batch(t testing.TB, b logical.Backend, s logical.Storage, items any) *logical.Response {
	t.Helper()
	return call(t, b, s, logical.CreateOperation, batchPath, map[string]any{"items": items})
}

// batchReport is a batch answer's created names and failures by index.
func batchReport(t testing.TB, resp *logical.Response) ([]string, map[int]map[string]any) {
	t.Helper()
	if resp == nil || resp.IsError() {
		t.Fatalf("batch: want a report, got %#v", resp)
	}
	created := resp.Data["created"].([]string)
	failed := map[int]map[string]any{}
	for _, f := range resp.Data["failed"].([]map[string]any) {
		failed[f["index"].(int)] = f
	}
	if resp.Data["created_count"] != len(created) || resp.Data["failed_count"] != len(failed) {
		t.Fatalf("counts %v/%v do not match %d created, %d failed", resp.Data["created_count"], resp.Data["failed_count"], len(created), len(failed))
	}
	if len(failed) > 0 && len(resp.Warnings) == 0 {
		t.Error("a report with failures carries no warning")
	}
	return created, failed
}

// readWithout is a credential read without the keys that differ between two
// credentials made from the same fields (the name).
func readWithout(t testing.TB, b logical.Backend, s logical.Storage, name string) map[string]any {
	t.Helper()
	d := maps.Clone(mustOK(t, b, s, logical.ReadOperation, "credentials/"+name, nil).Data)
	delete(d, "name")
	return d
}

// TestBatchCreatesEveryTypeAsSingleCreate: one batch holding an example of every
// type in the catalog creates each exactly as credentials/<name> creates it (the same
// read, the same "created" event), and the answer holds no secret.
func TestBatchCreatesEveryTypeAsSingleCreate(t *testing.T) {
	t.Parallel()
	b, s, clock := newTestBackend(t)
	one, oneS, _ := newTestBackend(t) // single creates on their own mount: device accounts may not share a triple
	var items []any
	var want []string
	for _, typ := range credtype.All() {
		values := exampleValues(t, typ.Name, "BATCHMARK")
		mustOK(t, one, oneS, logical.CreateOperation, "credentials/"+typ.Name, credWithType(typ.Name, values))
		items = append(items, batchItem("batch-"+typ.Name, typ.Name, values))
		want = append(want, "batch-"+typ.Name)
	}
	resp := batch(t, b, s, items)
	created, failed := batchReport(t, resp)
	if len(failed) != 0 {
		t.Fatalf("failed: %v", failed)
	}
	if !reflect.DeepEqual(created, want) {
		t.Fatalf("created %v, want %v", created, want)
	}
	if strings.Contains(fmt.Sprint(resp.Data, resp.Warnings), "BATCHMARK") {
		t.Fatal("the answer holds a secret")
	}
	for _, typ := range credtype.All() {
		single, batched := readWithout(t, one, oneS, typ.Name), readWithout(t, b, s, "batch-"+typ.Name)
		if !reflect.DeepEqual(single, batched) {
			t.Errorf("%s: batch read differs from single create's:\n%v\n%v", typ.Name, batched, single)
		}
		events, want := lcLogs(t, b, s, "batch-"+typ.Name, nil), lcLogs(t, one, oneS, typ.Name, nil)
		if !reflect.DeepEqual(events, want) || events[len(events)-1]["event"] != usage.EventCreated {
			t.Errorf("%s: log %v, want the single create's %v", typ.Name, events, want)
		}
	}
	// Listed, filed in the label index (a filtered list) and in the lifecycle index.
	list := mustOK(t, b, s, logical.ListOperation, "credentials/", map[string]any{"type": "bearer"})
	if keys := list.Data["keys"].([]string); !reflect.DeepEqual(keys, []string{"batch-bearer"}) {
		t.Errorf("type=bearer list %v", keys)
	}
	if due := b.activity.index.Due(clock.Now().Add(100*365*day), 1000); !slices.Contains(due, "batch-basic") {
		t.Error("batch-basic is not in the due-time index")
	}
}

// TestBatchItemRefusalsAreSingleCreates: each refused item carries the refusal a
// single create of the same fields answers (the 400's error text, and its fields and
// rules), never a value; the items that pass are stored, the failures are not.
func TestBatchItemRefusalsAreSingleCreates(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	const mark = "REFUSEDMARK"
	bad := []map[string]any{
		{"name": "no-type", "token": "tok." + mark},
		{"name": "bad-type", "type": "nosuch", "token": "tok." + mark},
		{"name": "missing-field", "type": "basic", "username": "svc"},
		{"name": "unknown-field", "type": "bearer", "token": "tok." + mark, "tokn": mark},
		{"name": "other-type-field", "type": "bearer", "token": "tok." + mark, "password": mark},
		{"name": "wrong-form", "type": "basic", "username": "svc", "password": []any{mark, map[string]any{"x": mark}}},
		{"name": "bad-url", "type": "bearer", "token": "tok." + mark, "url": "http://example.com/" + mark},
		{"name": "bad-duration", "type": "bearer", "token": "tok." + mark, "suspend_after": "soon" + mark},
	}
	var items []any
	for i, it := range bad {
		items = append(items, it)
		items = append(items, bearerItem(fmt.Sprintf("good-%d", i), mark))
	}
	resp := batch(t, b, s, items)
	created, failed := batchReport(t, resp)
	if len(created) != len(bad) || len(failed) != len(bad) {
		t.Fatalf("created %v, failed %v", created, failed)
	}
	if strings.Contains(fmt.Sprint(resp.Data, resp.Warnings), mark) {
		t.Fatalf("the answer holds a value: %v", resp.Data)
	}
	for i, it := range bad {
		name := it["name"].(string)
		f := failed[2*i]
		if f == nil || f["name"] != name {
			t.Fatalf("item %d (%s): failure %v", 2*i, name, f)
		}
		single := maps.Clone(it)
		delete(single, "name")
		r := call(t, b, s, logical.CreateOperation, "credentials/"+name, single)
		if r == nil || !r.IsError() {
			t.Fatalf("%s: the single create passed", name)
		}
		if f["error"] != r.Error().Error() {
			t.Errorf("%s: batch error %q, single create's %q", name, f["error"], r.Error())
		}
		fields := f["fields"].([]map[string]any)
		if len(fields) == 0 {
			t.Errorf("%s: no field named", name)
		}
		for _, fr := range fields {
			if !strings.Contains(f["error"].(string), fr["field"].(string)) || fr["rule"] == "" {
				t.Errorf("%s: field %v not in the error %q", name, fr, f["error"])
			}
		}
		if e, _ := s.Get(context.Background(), credentialPrefix+name); e != nil {
			t.Errorf("%s: stored", name)
		}
	}
}

// TestBatchNames: an invalid name, a name that exists and a name sent twice fail
// with a rule naming the field; the existing credential is unchanged; the other
// items are created.
func TestBatchNames(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/taken", map[string]any{"type": "bearer", "token": "old"})
	before := readWithout(t, b, s, "taken")
	items := []any{
		bearerItem("a", "x"),
		bearerItem("taken", "new"),
		bearerItem("twice", "1"),
		bearerItem("../up", "x"),
		map[string]any{"type": "bearer", "token": "t"},
		"not an object",
		bearerItem("twice", "2"),
		bearerItem("b", "x"),
	}
	created, failed := batchReport(t, batch(t, b, s, items))
	if !reflect.DeepEqual(created, []string{"a", "b"}) {
		t.Fatalf("created %v", created)
	}
	wantFail := map[int]string{1: "credentials-batch only creates", 2: "appears 2 times in this batch (items 2, 6)",
		3: "must be 1-128", 4: "must be 1-128", 5: "must be a JSON object", 6: "appears 2 times"}
	if len(failed) != len(wantFail) {
		t.Fatalf("failed %v", failed)
	}
	for i, want := range wantFail {
		if msg, _ := failed[i]["error"].(string); !strings.Contains(msg, want) {
			t.Errorf("item %d: error %q, want %q", i, msg, want)
		}
	}
	if failed[1]["name"] != "taken" || failed[3]["name"] != "" {
		t.Errorf("names %v %v", failed[1]["name"], failed[3]["name"])
	}
	if after := readWithout(t, b, s, "taken"); !reflect.DeepEqual(before, after) {
		t.Errorf("the existing credential changed: %v", after)
	}
	if e, _ := s.Get(context.Background(), credentialPrefix+"twice"); e != nil {
		t.Error("a name sent twice was stored")
	}
}

// TestBatchWholeRequestRefusals: no items, an empty list, more than maxBatchItems,
// not a list, a string that is not a JSON list, an unknown parameter: a 400 naming
// the field, never a value, and nothing stored.
func TestBatchWholeRequestRefusals(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	var tooMany []any
	for i := range maxBatchItems + 1 {
		tooMany = append(tooMany, bearerItem(fmt.Sprintf("n-%d", i), "x"))
	}
	for name, data := range map[string]map[string]any{
		"missing":   {},
		"empty":     {"items": []any{}},
		"too many":  {"items": tooMany},
		"an object": {"items": map[string]any{"name": "x", "type": "bearer", "token": "SECRETMARK"}},
		"bad json":  {"items": `[{"name": "x", "token": "SECRETMARK"`},
		"a number":  {"items": 5},
		"unknown":   {"items": []any{bearerItem("x", "y")}, "overwrite": true},
	} {
		t.Run(name, func(t *testing.T) {
			resp := call(t, b, s, logical.CreateOperation, batchPath, data)
			field := "items"
			if name == "unknown" {
				field = "overwrite"
			}
			wantFieldError(t, resp, field)
			if strings.Contains(resp.Error().Error(), "SECRETMARK") {
				t.Errorf("the refusal quotes a value: %v", resp.Error())
			}
		})
	}
	if names, _ := s.List(context.Background(), credentialPrefix); len(names) != 0 {
		t.Fatalf("stored %v", names)
	}
	if !strings.Contains(batch(t, b, s, []any{}).Error().Error(), "at least one") {
		t.Error("empty list: rule does not say at least one")
	}
	if msg := batch(t, b, s, tooMany).Error().Error(); !strings.Contains(msg, fmt.Sprintf("at most %d", maxBatchItems)) {
		t.Errorf("too many: %q", msg)
	}
}

// TestBatchFullAndJSONString: a full batch of maxBatchItems is created, and a JSON
// string holding the list (the CLI's items=@file.json) is read as the list.
func TestBatchFullAndJSONString(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	var items []any
	for i := range maxBatchItems {
		items = append(items, bearerItem(fmt.Sprintf("full-%04d", i), "x"))
	}
	created, failed := batchReport(t, batch(t, b, s, items))
	if len(created) != maxBatchItems || len(failed) != 0 {
		t.Fatalf("created %d, failed %v", len(created), failed)
	}
	names, _ := s.List(context.Background(), credentialPrefix)
	if len(names) != maxBatchItems {
		t.Fatalf("stored %d", len(names))
	}
	created, _ = batchReport(t, batch(t, b, s, `[{"name": "from-string", "type": "basic", "username": "u", "password": "p", "suspend_after": 86400}]`))
	if !reflect.DeepEqual(created, []string{"from-string"}) {
		t.Fatalf("created %v", created)
	}
}

// TestBatchConcurrentWithSingleCreates: batches with overlapping names and single
// creates of the same names race; every name is created exactly once (by exactly
// one of them), every other attempt fails as taken, and nothing is lost. Run with
// -race, which also checks the lock order (lockorder_race.go).
func TestBatchConcurrentWithSingleCreates(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	const names, batches = 60, 4
	var mu sync.Mutex
	wins := map[string]int{}
	var wg sync.WaitGroup
	for k := range batches {
		wg.Go(func() {
			var items []any
			for i := range names {
				items = append(items, bearerItem(fmt.Sprintf("race-%02d", (i+k*7)%names), fmt.Sprint(k)))
			}
			created, failed := batchReport(t, batch(t, b, s, items))
			for _, f := range failed {
				if !strings.Contains(f["error"].(string), "credentials-batch only creates") {
					t.Errorf("unexpected failure %v", f)
				}
			}
			mu.Lock()
			for _, n := range created {
				wins[n]++
			}
			mu.Unlock()
		})
	}
	for i := range names {
		wg.Go(func() {
			name := fmt.Sprintf("race-%02d", i)
			r := call(t, b, s, logical.CreateOperation, "credentials/"+name, map[string]any{"type": "bearer", "token": "t", "cas": 0})
			if r != nil && r.IsError() {
				return // taken by a batch
			}
			mu.Lock()
			wins[name]++
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := range names {
		name := fmt.Sprintf("race-%02d", i)
		if wins[name] != 1 {
			t.Errorf("%s created %d times", name, wins[name])
		}
		if c := readWithout(t, b, s, name); c["version"] != 1 {
			t.Errorf("%s at version %v", name, c["version"])
		}
	}
}

// readOnlyStorage refuses every write, as a performance standby's storage does.
type readOnlyStorage struct{ logical.Storage }

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return logical.ErrReadOnly }
func (readOnlyStorage) Delete(context.Context, string) error             { return logical.ErrReadOnly }

// TestBatchOnReadOnlyNodeIsForwarded: on a node whose storage refuses writes the
// batch answers logical.ErrReadOnly whole, as a single create does, so Vault sends
// the request to the active node; nothing is reported as created.
func TestBatchOnReadOnlyNodeIsForwarded(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ro := readOnlyStorage{s}
	_, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: batchPath, Storage: ro,
		Data: map[string]any{"items": []any{bearerItem("a", "x"), bearerItem("b", "x")}}})
	if !errors.Is(err, logical.ErrReadOnly) {
		t.Fatalf("batch on a read-only node: %v, want ErrReadOnly", err)
	}
	_, err = b.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "credentials/a", Storage: ro,
		Data: map[string]any{"type": "bearer", "token": "t"}})
	if !errors.Is(err, logical.ErrReadOnly) {
		t.Fatalf("single create on a read-only node: %v, want ErrReadOnly", err)
	}
}

// TestBatchKeyWorkBusyPerItem: an item whose key derivation gets no turn of the
// process-wide key-work gate before the request's deadline fails on its own, with
// status 503 and retry_after, as the single create's 503; nothing of it is stored,
// and the other items are created. Not parallel: it fills the process-wide gate.
func TestBatchKeyWorkBusyPerItem(t *testing.T) {
	b, s, _ := newTestBackend(t)
	cert := encryptedECKey(t, "pw-batch")
	release := fillKeyWork(t)
	defer release()
	resp := requestBy(t, pastDeadline(t), b, s, logical.CreateOperation, batchPath, map[string]any{"items": []any{
		bearerItem("before", "x"),
		map[string]any{"name": "enc-cert", "type": "certificate", "certificate": cert.certPEM, "private_key": cert.keyPEM, "private_key_password": "pw-batch"},
		bearerItem("after", "x"),
	}})
	created, failed := batchReport(t, resp)
	if !reflect.DeepEqual(created, []string{"before", "after"}) || len(failed) != 1 {
		t.Fatalf("created %v, failed %v", created, failed)
	}
	f := failed[1]
	if f["status"] != 503 || f["retry_after"].(int) < 1 || !strings.Contains(f["error"].(string), "busy with other key derivations") {
		t.Errorf("busy item: %v", f)
	}
	if storedEntry(t, s, "enc-cert") != nil {
		t.Error("the busy item was stored")
	}
	release()
	created, _ = batchReport(t, batch(t, b, s, []any{map[string]any{"name": "enc-cert", "type": "certificate", "certificate": cert.certPEM, "private_key": cert.keyPEM, "private_key_password": "pw-batch"}}))
	if !reflect.DeepEqual(created, []string{"enc-cert"}) {
		t.Errorf("after the gate freed: created %v", created)
	}
}

// TestBatchStorageFailurePerItem: an item whose store fails is reported as a 500 of
// its own (the error is the server log's, not the answer's) and is not stored; the
// other items are created.
func TestBatchStorageFailurePerItem(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	b, s, _ := newBackendWith(t, backendOptions{storage: cs, initialize: true})
	failPut(cs, credentialPrefix+"broken")
	created, failed := batchReport(t, batch(t, b, s, []any{bearerItem("ok-1", "x"), bearerItem("broken", "x"), bearerItem("ok-2", "x")}))
	if !reflect.DeepEqual(created, []string{"ok-1", "ok-2"}) || len(failed) != 1 {
		t.Fatalf("created %v, failed %v", created, failed)
	}
	if f := failed[1]; f["status"] != 500 || f["name"] != "broken" || strings.Contains(f["error"].(string), "storage unavailable") {
		t.Errorf("failure %v", f)
	}
	if storedEntry(t, cs, "broken") != nil {
		t.Error("stored")
	}
}
