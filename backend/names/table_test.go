package names

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestAcquireReleaseReuse(t *testing.T) {
	tab := NewTable()
	a := tab.Acquire("alpha")
	b := tab.Acquire("beta")
	if a == b {
		t.Fatalf("two names share id %d", a)
	}
	if again := tab.Acquire("alpha"); again != a {
		t.Fatalf("alpha filed twice: %d and %d", a, again)
	}
	if got := tab.Name(a); got != "alpha" {
		t.Fatalf("Name(%d) = %q", a, got)
	}
	tab.Release(a)
	if id, ok := tab.Lookup("alpha"); !ok || id != a {
		t.Fatalf("alpha unfiled while one reference is held: %d %v", id, ok)
	}
	tab.Release(a)
	if _, ok := tab.Lookup("alpha"); ok {
		t.Fatal("alpha still filed after its last release")
	}
	if tab.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tab.Len())
	}
	c := tab.Acquire("gamma")
	if c != a {
		t.Fatalf("the freed id %d was not reused (got %d)", a, c)
	}
	if tab.Name(c) != "gamma" || !tab.Is(c, "gamma") || tab.Is(c, "alpha") {
		t.Fatalf("reused id %d names %q", c, tab.Name(c))
	}
	if tab.IDs() != 2 {
		t.Fatalf("IDs = %d, want 2", tab.IDs())
	}
}

func TestReleaseNotHeldPanics(t *testing.T) {
	tab := NewTable()
	id := tab.Acquire("x")
	tab.Release(id)
	defer func() {
		if recover() == nil {
			t.Fatal("a second release did not panic")
		}
	}()
	tab.Release(id)
}

func TestTooLongPanics(t *testing.T) {
	tab := NewTable()
	if id := tab.Acquire(strings.Repeat("n", MaxLen)); tab.Name(id) != strings.Repeat("n", MaxLen) {
		t.Fatal("a name of MaxLen bytes did not round-trip")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a name longer than MaxLen did not panic")
		}
	}()
	tab.Acquire(strings.Repeat("n", MaxLen+1))
}

// TestGrowthAndShrink files many names (the hash index and the arena grow), releases
// most (the index shrinks, the arena is compacted) and checks every answer against a
// map on the way.
func TestGrowthAndShrink(t *testing.T) {
	tab := NewTable()
	const n = 50000
	ids := make(map[string]uint32, n)
	for i := range n {
		name := fmt.Sprintf("credential-%06d-%s", i, strings.Repeat("x", i%40))
		ids[name] = tab.Acquire(name)
	}
	if tab.Len() != n || tab.IDs() != n {
		t.Fatalf("Len %d IDs %d, want %d", tab.Len(), tab.IDs(), n)
	}
	grown := len(tab.slots)
	if grown < n*4/3 {
		t.Fatalf("hash index of %d slots for %d names: load above 3/4", grown, n)
	}
	chunks := len(tab.chunks)
	kept := make(map[string]uint32)
	held := make(map[uint32]string) // strings handed out before compaction
	for name, id := range ids {
		held[id] = tab.Name(id)
		if id%10 == 0 {
			kept[name] = id
			continue
		}
		tab.Release(id)
	}
	if len(tab.slots) >= grown {
		t.Fatalf("hash index did not shrink: %d slots for %d names", len(tab.slots), tab.Len())
	}
	if len(tab.chunks) >= chunks {
		t.Fatalf("arena not compacted: %d chunks, was %d", len(tab.chunks), chunks)
	}
	for name, id := range kept {
		if got, ok := tab.Lookup(name); !ok || got != id || tab.Name(id) != name {
			t.Fatalf("%s: Lookup %d %v, Name %q; want %d", name, got, ok, tab.Name(id), id)
		}
	}
	for id, s := range held {
		if want, ok := kept[s]; ok && want != id {
			t.Fatalf("held string %q changed owner", s)
		}
		if !strings.HasPrefix(s, "credential-") {
			t.Fatalf("a string handed out before compaction changed: %q", s)
		}
	}
	for name := range ids {
		if _, ok := kept[name]; !ok {
			if _, filed := tab.Lookup(name); filed {
				t.Fatalf("%s released but still filed", name)
			}
		}
	}
}

// TestRandomAgainstModel runs random acquires and releases against a map of
// reference counts.
func TestRandomAgainstModel(t *testing.T) {
	tab := NewTable()
	rng := rand.New(rand.NewPCG(1, 2))
	refs := map[string]int{}
	ids := map[string]uint32{}
	for range 200000 {
		name := fmt.Sprintf("n%d", rng.IntN(3000))
		if rng.IntN(2) == 0 || refs[name] == 0 {
			id := tab.Acquire(name)
			if old, ok := ids[name]; ok && refs[name] > 0 && old != id {
				t.Fatalf("%s moved from id %d to %d while held", name, old, id)
			}
			ids[name] = id
			refs[name]++
			continue
		}
		tab.Release(ids[name])
		refs[name]--
		if refs[name] == 0 {
			delete(refs, name)
		}
	}
	if tab.Len() != len(refs) {
		t.Fatalf("Len %d, model %d", tab.Len(), len(refs))
	}
	for name := range refs {
		if id, ok := tab.Lookup(name); !ok || id != ids[name] || tab.Name(id) != name {
			t.Fatalf("%s: %d %v", name, id, ok)
		}
	}
}

// TestConcurrentReaders reads held names while writers file and release others; run
// under -race.
func TestConcurrentReaders(t *testing.T) {
	tab := NewTable()
	const stable = 1000
	ids := make([]uint32, stable)
	for i := range stable {
		ids[i] = tab.Acquire(fmt.Sprintf("stable-%d", i))
	}
	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		writers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := tab.Acquire(fmt.Sprintf("churn-%d-%d", w, i))
				tab.Release(id)
			}
		})
	}
	errs := make(chan string, 4)
	for r := range 4 {
		readers.Go(func() {
			for round := range 20000 {
				i := (round*7 + r) % stable
				want := fmt.Sprintf("stable-%d", i)
				if got := tab.Name(ids[i]); got != want {
					errs <- fmt.Sprintf("Name(%d) = %q, want %q", ids[i], got, want)
					return
				}
				if id, ok := tab.Lookup(want); !ok || id != ids[i] {
					errs <- fmt.Sprintf("Lookup(%q) = %d %v", want, id, ok)
					return
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	writers.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestSearch(t *testing.T) {
	tab := NewTable()
	var ids []uint32
	for _, n := range []string{"b", "d", "f"} {
		ids = append(ids, tab.Acquire(n))
	}
	for name, want := range map[string]struct {
		i     int
		found bool
	}{"a": {0, false}, "b": {0, true}, "c": {1, false}, "d": {1, true}, "f": {2, true}, "g": {3, false}} {
		if i, found := tab.Search(ids, name); i != want.i || found != want.found {
			t.Errorf("Search(%q) = %d %v, want %d %v", name, i, found, want.i, want.found)
		}
	}
}

// TestInsertRemove keeps a sorted list of ids against a model of sorted strings: each
// name in the list holds one reference, so the table files exactly the listed names
// (plus one held outside the list, which must survive its removal from the list).
func TestInsertRemove(t *testing.T) {
	tab := NewTable()
	outside := tab.Acquire("n07")
	var ids []uint32
	model := map[string]bool{}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		name := fmt.Sprintf("n%02d", rnd.IntN(60))
		var changed bool
		if rnd.IntN(2) == 0 {
			ids, changed = tab.Insert(ids, name)
			if changed == model[name] {
				t.Fatalf("Insert(%q) added = %v with the name listed = %v", name, changed, model[name])
			}
			model[name] = true
		} else {
			ids, changed = tab.Remove(ids, name)
			if changed != model[name] {
				t.Fatalf("Remove(%q) removed = %v with the name listed = %v", name, changed, model[name])
			}
			delete(model, name)
		}
		var want []string
		for n := range model {
			want = append(want, n)
		}
		slices.Sort(want)
		got := make([]string, len(ids))
		for i, id := range ids {
			got[i] = tab.Name(id)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list %v, want %v", got, want)
		}
		filed := len(model)
		if !model["n07"] {
			filed++
		}
		if tab.Len() != filed {
			t.Fatalf("%d names filed, want %d (the listed ones and n07)", tab.Len(), filed)
		}
	}
	for len(ids) > 0 {
		ids, _ = tab.Remove(ids, tab.Name(ids[0]))
	}
	if tab.Len() != 1 || !tab.Is(outside, "n07") {
		t.Fatalf("after emptying the list: %d names filed, n07 filed: %v", tab.Len(), tab.Is(outside, "n07"))
	}
}
