package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// labelled is a credential the label tests write: its type and tags.
func writeLabelled(t testing.TB, b *integrationsBackend, s logical.Storage, op logical.Operation, name, typ, tags string) {
	t.Helper()
	data := map[string]any{"type": typ, "tags": tags}
	switch typ {
	case "basic":
		data["username"], data["password"] = "u-"+name, "p-"+name
	default:
		data["token"] = "tok-" + name
	}
	mustOK(t, b, s, op, "credentials/"+name, data)
}

// labelTruth is what a filtered list must return: every stored credential, read from
// storage, of type typ ("" any) carrying tag ("" any).
func labelTruth(t testing.TB, s logical.Storage, typ, tag string) []string {
	t.Helper()
	ctx := context.Background()
	listed, err := s.List(ctx, credentialPrefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	out := []string{}
	for _, n := range listed {
		c, err := newCredentialStore(names.NewTable()).get(ctx, s, n)
		if err != nil || c == nil {
			t.Fatalf("%s: %v", n, err)
		}
		if (typ == "" || c.Type == typ) && (tag == "" || slices.Contains(c.Tags, tag)) {
			out = append(out, n)
		}
	}
	return out
}

var labelFilters = []struct{ typ, tag string }{
	{"basic", ""}, {"bearer", ""}, {"", "red"}, {"", "blue"}, {"", "absent"}, {"basic", "red"}, {"bearer", "blue"},
}

// checkFilteredLists lists with every filter, in pages of 3, and compares with what
// storage holds; with indexed, it also checks the store answered from the label index
// (a page of only matching names, never a pass over every name).
func checkFilteredLists(t testing.TB, b *integrationsBackend, s logical.Storage, indexed bool) {
	t.Helper()
	for _, f := range labelFilters {
		q := map[string]any{}
		if f.typ != "" {
			q["type"] = f.typ
		}
		if f.tag != "" {
			q["tag"] = f.tag
		}
		want := labelTruth(t, s, f.typ, f.tag)
		got, _ := listAllCredentials(t, b, s, q, 3)
		if !slices.Equal(nonNil(got), want) {
			t.Fatalf("list %v: %v, want %v", q, got, want)
		}
		if !indexed {
			continue
		}
		var typ *credtype.Type
		if f.typ != "" {
			typ = catalogType(t, f.typ)
		}
		page, ok := b.credentials.labels.after(typ, f.tag, "", 1000)
		if !ok || !slices.Equal(page, want) {
			t.Fatalf("label index %v: %v (answered %v), want %v", q, page, ok, want)
		}
	}
}

// TestLabelIndexFollowsWrites: creates, tag changes and deletes are in the label index
// at once, and filtered lists come from it.
func TestLabelIndexFollowsWrites(t *testing.T) {
	t.Parallel()
	b, s, _ := newBackendWith(t, backendOptions{initialize: true})
	for i := range 20 {
		typ := []string{"basic", "bearer"}[i%2]
		tags := []string{"red", "blue", "red,blue", ""}[i%4]
		writeLabelled(t, b, s, logical.CreateOperation, fmt.Sprintf("c-%02d", i), typ, tags)
	}
	checkFilteredLists(t, b, s, true)
	writeLabelled(t, b, s, logical.UpdateOperation, "c-00", "basic", "blue")                            // red → blue
	mustOK(t, b, s, logical.PatchOperation, "credentials/c-01", map[string]any{"tags": "red"})          // blue → red
	mustOK(t, b, s, logical.PatchOperation, "credentials/c-02", map[string]any{"description": "other"}) // tags kept
	for _, n := range []string{"c-03", "c-05", "c-06"} {
		mustOK(t, b, s, logical.DeleteOperation, "credentials/"+n, nil)
	}
	checkFilteredLists(t, b, s, true)
}

// TestLabelIndexBuiltByScan: after a restart the label index is built by the index
// scan. While it runs, filtered lists are exact (from every name); a delete and a tag
// change during the scan win over what the scan read, and nothing deleted comes back.
func TestLabelIndexBuiltByScan(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	gs := newGateStorage(logical.NewStorageView(&logical.InmemStorage{}, ""))
	first, _, _ := newBackendWith(t, backendOptions{storage: gs, clock: clock})
	for i := range 12 {
		writeLabelled(t, first, gs, logical.CreateOperation, fmt.Sprintf("c-%02d", i), []string{"basic", "bearer"}[i%2], []string{"red", "blue", "red,blue"}[i%3])
	}
	// The scan is held after it read c-04 (Get holds the answer): its copy is stale.
	b, gt := startWithScanHeld(t, gs, clock, "get:"+credentialPrefix+"c-04")
	if _, ok := b.credentials.labels.after(nil, "red", "", 100); ok {
		t.Fatal("the label index answers before the scan ended")
	}
	checkFilteredLists(t, b, gs, false)
	mustOK(t, b, gs, logical.PatchOperation, "credentials/c-04", map[string]any{"tags": "blue"})
	mustOK(t, b, gs, logical.DeleteOperation, "credentials/c-03", nil) // read by the scan already
	mustOK(t, b, gs, logical.DeleteOperation, "credentials/c-07", nil) // not yet read
	writeLabelled(t, b, gs, logical.CreateOperation, "c-99", "basic", "red")
	checkFilteredLists(t, b, gs, false)
	close(gt.release)
	waitIndexBuilt(t, b)
	checkFilteredLists(t, b, gs, true)
}

// TestLabelIndexInvalidation: what another node writes, retags or deletes is seen by
// this node's filtered lists once Vault invalidates the key.
func TestLabelIndexInvalidation(t *testing.T) {
	t.Parallel()
	s := logical.NewStorageView(&logical.InmemStorage{}, "")
	other, _, _ := newBackendWith(t, backendOptions{storage: s})
	for i := range 10 {
		writeLabelled(t, other, s, logical.CreateOperation, fmt.Sprintf("c-%02d", i), []string{"basic", "bearer"}[i%2], []string{"red", "blue"}[i%2])
	}
	b, _, _ := newBackendWith(t, backendOptions{storage: s, initialize: true})
	checkFilteredLists(t, b, s, true)
	ctx := context.Background()
	mustOK(t, other, s, logical.PatchOperation, "credentials/c-00", map[string]any{"tags": "blue"})
	mustOK(t, other, s, logical.DeleteOperation, "credentials/c-01", nil)
	writeLabelled(t, other, s, logical.CreateOperation, "c-50", "bearer", "red,blue")
	for _, n := range []string{"c-00", "c-01", "c-50"} {
		b.InvalidateKey(ctx, credentialPrefix+n)
		other.InvalidateKey(ctx, credentialPrefix+n)
	}
	checkFilteredLists(t, b, s, true)
	// A node that never scans (other: not initialized) keeps no pending names, and
	// its filtered lists are exact all the same.
	if n := len(other.credentials.labels.pending); n != 0 {
		t.Fatalf("a node that does not scan keeps %d pending names", n)
	}
	checkFilteredLists(t, other, s, false)
}

// TestLabelIndexConcurrent: filtered lists while credentials are created, retagged,
// deleted and invalidated from every side (run with -race). Every page is sorted and
// holds only matching credentials (the list checks each); at the end the index is
// exactly what storage holds.
func TestLabelIndexConcurrent(t *testing.T) {
	t.Parallel()
	b, s, _ := newBackendWith(t, backendOptions{initialize: true})
	for i := range 30 {
		writeLabelled(t, b, s, logical.CreateOperation, fmt.Sprintf("c-%02d", i), []string{"basic", "bearer"}[i%2], "red")
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				name := fmt.Sprintf("c-%02d", (i*7+w*11)%30)
				switch i % 4 {
				case 0, 1:
					var op logical.Operation = logical.PatchOperation
					data := map[string]any{"tags": []string{"red", "blue", "red,blue"}[(i+w)%3]}
					if i%4 == 1 {
						op, data = logical.DeleteOperation, nil
					}
					// A patch of a credential another worker deleted is a 404.
					resp, err := b.HandleRequest(ctx, &logical.Request{Operation: op, Path: "credentials/" + name, Storage: s, Data: data})
					if err != nil && !errors.Is(err, logical.ErrNotFound) && !strings.Contains(err.Error(), "does not exist") || (resp != nil && resp.IsError()) {
						t.Errorf("%s %s: %v %v", op, name, resp, err)
					}
				case 2:
					writeLabelled(t, b, s, logical.UpdateOperation, name, []string{"basic", "bearer"}[(i+w)%2], "blue")
				case 3:
					b.InvalidateKey(ctx, credentialPrefix+name)
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				f := labelFilters[i%len(labelFilters)]
				got, _ := listAllCredentials(t, b, s, map[string]any{"type": f.typ, "tag": f.tag}, 4)
				if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
					t.Errorf("list %v: not sorted and unique: %v", f, got)
				}
			}
		}()
	}
	wg.Wait()
	checkFilteredLists(t, b, s, true)
}

// TestFilteredListAfterRestartReadsOnlyMatches: after a restart (nothing cached), a
// list filtered by a tag few credentials carry reads those credentials only, not every
// one stored.
func TestFilteredListAfterRestartReadsOnlyMatches(t *testing.T) {
	t.Parallel()
	cs := newCountingStorage()
	first, _, _ := newBackendWith(t, backendOptions{storage: cs})
	for i := range 100 {
		tags := ""
		if i%50 == 7 {
			tags = "rare"
		}
		writeLabelled(t, first, cs, logical.CreateOperation, fmt.Sprintf("c-%03d", i), "basic", tags)
	}
	b, _, _ := newBackendWith(t, backendOptions{storage: cs, initialize: true})
	cs.reset()
	got, _ := listAllCredentials(t, b, cs, map[string]any{"tag": "rare"}, 100)
	if want := []string{"c-007", "c-057"}; !slices.Equal(got, want) {
		t.Fatalf("list: %v, want %v", got, want)
	}
	// The two credentials, the config at most once, and the usage of each listed one.
	if gets := cs.gets.Load(); gets > 6 {
		t.Fatalf("a filtered list after a restart read %d entries (%s)", gets, cs)
	}
}

// TestLabelIndexMatchesModel: random filings, retags, deletes and invalidations of a
// few names, checked after each against a plain model of what each name carries.
func TestLabelIndexMatchesModel(t *testing.T) {
	t.Parallel()
	types := []*credtype.Type{catalogType(t, "basic"), catalogType(t, "bearer")}
	tagSets := [][]string{nil, {"a"}, {"b"}, {"a", "b"}, {"b", "c"}, {"c"}}
	type carried struct {
		t    *credtype.Type
		tags []string
	}
	x := newLabelIndex(names.NewTable())
	x.startFill()
	x.markComplete()
	model := map[string]carried{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 3000 {
		name := fmt.Sprintf("n-%02d", rng.IntN(40))
		switch op := rng.IntN(10); {
		case op < 6:
			c := carried{types[rng.IntN(len(types))], tagSets[rng.IntN(len(tagSets))]}
			if old, ok := model[name]; ok {
				c.t = old.t // a name keeps its type while it exists
			}
			x.file(name, c.t, c.tags)
			model[name] = c
		case op < 8:
			x.unfile(name)
			delete(model, name)
		default:
			// Invalidated, then read again as it is.
			x.invalidate(name)
			if c, ok := model[name]; ok {
				x.file(name, c.t, c.tags)
			} else {
				x.unfile(name)
			}
		}
		for _, typ := range append([]*credtype.Type{nil}, types...) {
			for _, tag := range []string{"", "a", "b", "c"} {
				if typ == nil && tag == "" {
					continue
				}
				want := []string{}
				for n, c := range model {
					if (typ == nil || c.t == typ) && (tag == "" || slices.Contains(c.tags, tag)) {
						want = append(want, n)
					}
				}
				slices.Sort(want)
				got, ok := x.after(typ, tag, "", 100)
				if !ok || !slices.Equal(got, want) {
					t.Fatalf("step %d: after(%v, %q) = %v, %v; want %v", step, typ, tag, got, ok, want)
				}
			}
		}
		checkTagSets(t, x)
	}
}

// checkTagSets checks the label index's tag sets against what it files: each name with
// a set is in every list of the set and holds a reference to its id, each set is
// counted once per name filed under it and found by its key, and a freed set is empty
// and listed for reuse once.
func checkTagSets(t testing.TB, x *labelIndex) {
	t.Helper()
	x.mu.RLock()
	defer x.mu.RUnlock()
	refs := make([]uint32, len(x.sets))
	for id, set := range x.tagsOf {
		if set == 0 {
			continue
		}
		refs[set]++
		name := x.names.Name(uint32(id))
		if !x.names.Is(uint32(id), name) {
			t.Fatalf("id %d has a tag set and no name", id)
		}
		for _, tn := range x.sets[set].tags {
			if _, in := x.search(tn.names, name); !in || x.byTag[tn.tag] != tn {
				t.Fatalf("%s: filed under set %d but not in the list of %q", name, set, tn.tag)
			}
		}
	}
	if x.sets[0].refs != 0 || x.sets[0].tags != nil {
		t.Fatalf("set 0 is used: %+v", x.sets[0])
	}
	for id := 1; id < len(x.sets); id++ {
		s := x.sets[id]
		if s.refs != refs[id] {
			t.Fatalf("set %d (%q): %d references, %d names filed under it", id, s.key, s.refs, refs[id])
		}
		free := slices.Contains(x.freeSets, uint32(id))
		if s.refs == 0 {
			if !free || s.key != "" || s.tags != nil {
				t.Fatalf("set %d unused but not freed: %+v (free %v)", id, s, free)
			}
			continue
		}
		if free || x.setIDs[s.key] != uint32(id) || setKey(s.tags) != s.key {
			t.Fatalf("set %d (%q): free %v, found as %d", id, s.key, free, x.setIDs[s.key])
		}
	}
	if live := len(x.sets) - 1 - len(x.freeSets); len(x.setIDs) != live {
		t.Fatalf("%d sets by key, %d in use", len(x.setIDs), live)
	}
}

// setsInUse returns the keys of the tag sets in use, sorted.
func setsInUse(x *labelIndex) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Sorted(maps.Keys(x.setIDs))
}

// TestLabelIndexTagSets: credentials with the same tags, in any order or repeated,
// share one set; a retag moves a credential to another set, the last one to leave a
// set frees it and its id is reused; once every name is unfiled the index holds no set
// and no reference in the names table.
func TestLabelIndexTagSets(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	x := newLabelIndex(tab)
	x.markComplete() // no scan: invalidated names are not kept pending
	typ := catalogType(t, "basic")
	for i := range 100 {
		tags := [][]string{{"a"}, {"a", "b"}, {"b", "a"}, {"b", "a", "b"}}[i%4]
		x.file(fmt.Sprintf("n-%03d", i), typ, tags)
	}
	checkTagSets(t, x)
	ab, a := setKey([]*taggedNames{{tag: "a"}, {tag: "b"}}), setKey([]*taggedNames{{tag: "a"}})
	if got := setsInUse(x); !slices.Equal(got, []string{a, ab}) || len(x.sets) != 3 {
		t.Fatalf("sets in use %q (%d ids), want {a} and {a,b}", got, len(x.sets)-1)
	}
	if x.sets[x.setIDs[ab]].refs != 75 || x.sets[x.setIDs[a]].refs != 25 {
		t.Fatalf("{a,b} filed %d times, {a} %d", x.sets[x.setIDs[ab]].refs, x.sets[x.setIDs[a]].refs)
	}
	// Every {a} credential retagged {c}: {a} is freed when the last leaves it, and the
	// next new set takes its id.
	freed := x.setIDs[a]
	for i := 0; i < 100; i += 4 {
		x.file(fmt.Sprintf("n-%03d", i), typ, []string{"c"})
	}
	checkTagSets(t, x)
	if _, ok := x.setIDs[a]; ok || !slices.Equal(x.freeSets, []uint32{freed}) {
		t.Fatalf("after the retag: sets %q, free %v, want %d freed", setsInUse(x), x.freeSets, freed)
	}
	x.file("n-004", typ, []string{"d"})
	checkTagSets(t, x)
	if d := x.setIDs[setKey([]*taggedNames{{tag: "d"}})]; d != freed || len(x.sets) != 4 {
		t.Fatalf("a new set is %d (%d ids), want the freed id %d", d, len(x.sets)-1, freed)
	}
	x.file("n-004", typ, []string{"c"})
	if got, _ := x.after(nil, "a", "", 1000); len(got) != 75 {
		t.Fatalf("%d names tagged a after the retag, want 75", len(got))
	}
	// Untagged, deleted and invalidated: each leaves its set.
	x.file("n-001", typ, nil)
	x.unfile("n-002")
	x.invalidate("n-003")
	checkTagSets(t, x)
	if x.sets[x.setIDs[ab]].refs != 72 {
		t.Fatalf("{a,b} filed %d times, want 72", x.sets[x.setIDs[ab]].refs)
	}
	for i := range 100 {
		x.unfile(fmt.Sprintf("n-%03d", i))
	}
	checkTagSets(t, x)
	if n := tab.Len(); n != 0 || len(x.setIDs) != 0 || len(x.byTag) != 0 || len(x.byType) != 0 {
		t.Fatalf("after every name was unfiled: %d names in the table, sets %q, %d tags, %d types", n, setsInUse(x), len(x.byTag), len(x.byType))
	}
	if slices.ContainsFunc(x.tagsOf, func(set uint32) bool { return set != 0 }) {
		t.Fatal("a tag set is still held by an id")
	}
}

// TestLabelIndexUniqueTagsChurn: credentials each created with tags no other carries
// and then deleted or retagged (an attacker making one credential per unique
// combination) leave nothing behind: the sets, their ids and the names' ids stay as
// many as the credentials alive at once.
func TestLabelIndexUniqueTagsChurn(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	x := newLabelIndex(tab)
	typ := catalogType(t, "bearer")
	for i := range 2000 {
		name := fmt.Sprintf("n-%d", i%10) // ten alive at most
		switch i % 3 {
		case 0:
			x.unfile(name)
		default:
			x.file(name, typ, []string{"shared", fmt.Sprintf("unique-%d", i)})
		}
	}
	checkTagSets(t, x)
	x.mu.RLock()
	sets, ids, tags := len(x.sets), len(x.tagsOf), len(x.byTag)
	x.mu.RUnlock()
	if sets > 11 || ids > 10 || tab.IDs() > 10 || tags > 11 {
		t.Fatalf("after churn of unique tags on ten names: %d set ids, %d name ids (table %d), %d tags", sets-1, ids, tab.IDs(), tags)
	}
	for i := range 10 {
		x.unfile(fmt.Sprintf("n-%d", i))
	}
	checkTagSets(t, x)
	if tab.Len() != 0 || len(x.setIDs) != 0 || len(x.byTag) != 0 {
		t.Fatalf("after every name was unfiled: %d names, %d sets, %d tags", tab.Len(), len(x.setIDs), len(x.byTag))
	}
}

// TestLabelIndexConcurrentFileUnfile: workers file, retag, unfile and invalidate their
// own names under tags they share while readers page through the lists (run with
// -race); at the end each list is what each worker's last filings make it, the sets
// are consistent, and unfiling every name leaves the names table empty.
func TestLabelIndexConcurrentFileUnfile(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	x := newLabelIndex(tab)
	x.startFill()
	x.markComplete()
	typ := catalogType(t, "basic")
	tagSets := [][]string{nil, {"a"}, {"b"}, {"a", "b"}, {"b", "c"}, {"c", "a", "b"}}
	const workers = 4
	models := make([]map[string][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		models[w] = map[string][]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7)) //nolint:gosec // G115: w is a small worker number
			for range 2000 {
				name := fmt.Sprintf("w%d-%02d", w, rng.IntN(30))
				switch op := rng.IntN(10); {
				case op < 6:
					tags := tagSets[rng.IntN(len(tagSets))]
					x.file(name, typ, tags)
					models[w][name] = tags
				case op < 8:
					x.unfile(name)
					delete(models[w], name)
				default:
					x.invalidate(name)
					if tags, ok := models[w][name]; ok {
						x.file(name, typ, tags)
					} else {
						x.unfile(name)
					}
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				page, _ := x.after(nil, []string{"a", "b", "c"}[i%3], "", 1000)
				if !slices.IsSorted(page) || len(slices.Compact(slices.Clone(page))) != len(page) {
					t.Errorf("page not sorted and unique: %v", page)
				}
				x.intern([]string{"a", "c"})
			}
		}()
	}
	wg.Wait()
	checkTagSets(t, x)
	for _, tag := range []string{"a", "b", "c"} {
		want := []string{}
		for _, m := range models {
			for name, tags := range m {
				if slices.Contains(tags, tag) {
					want = append(want, name)
				}
			}
		}
		slices.Sort(want)
		if got, ok := x.after(nil, tag, "", 1000); !ok || !slices.Equal(got, want) {
			t.Fatalf("after(%q) = %v, %v; want %v", tag, got, ok, want)
		}
	}
	for w := range workers {
		for i := range 30 {
			x.unfile(fmt.Sprintf("w%d-%02d", w, i))
		}
	}
	checkTagSets(t, x)
	if tab.Len() != 0 || len(x.setIDs) != 0 {
		t.Fatalf("after every name was unfiled: %d names in the table, sets %q", tab.Len(), setsInUse(x))
	}
}
