package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// The credential store's list of every name (credentialStore.names) holds ids in the
// mount's names table, a reference each. These tests drive a store of its own table:
// a credential of type "bearer" is also filed by the label index (a reference of its
// own), one of no known type only by the list, so the table's Len shows what the list
// holds.

// putNamed stores a credential called name under its lock: of type bearer when typed,
// else of no type the catalog knows (filed by the list alone).
func putNamed(t testing.TB, cs *credentialStore, s logical.Storage, name string, typed bool) {
	t.Helper()
	c := &credential{Name: name, Type: "untyped"}
	if typed {
		c.Type = "bearer"
	}
	h, unlock := cs.lock(name)
	defer unlock()
	if err := cs.put(context.Background(), s, h, c); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func removeNamed(t testing.TB, cs *credentialStore, s logical.Storage, name string) {
	t.Helper()
	h, unlock := cs.lock(name)
	defer unlock()
	if err := cs.remove(context.Background(), s, h); err != nil {
		t.Fatalf("remove %s: %v", name, err)
	}
}

// pagesOf lists every name through namesAfter in pages of size, checking that each
// page but the last is full.
func pagesOf(t testing.TB, cs *credentialStore, s logical.Storage, size int) []string {
	t.Helper()
	all := []string{}
	after := ""
	for {
		page, err := cs.namesAfter(context.Background(), s, after, size)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < size {
			return all
		}
		after = page[len(page)-1]
	}
}

func storedNames(t testing.TB, s logical.Storage) []string {
	t.Helper()
	listed, err := s.List(context.Background(), credentialPrefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	return listed
}

func TestNameListReleasesReferences(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	cs := newCredentialStore(tab)
	s := &logical.InmemStorage{}
	typed := 0
	for i := range 40 {
		putNamed(t, cs, s, fmt.Sprintf("c-%02d", i), i%2 == 0)
		if i%2 == 0 {
			typed++
		}
	}
	if tab.Len() != typed {
		t.Fatalf("%d names filed before the list is loaded, want the %d the label index holds", tab.Len(), typed)
	}
	if got := pagesOf(t, cs, s, 7); !slices.Equal(got, storedNames(t, s)) {
		t.Fatalf("pages %v, want %v", got, storedNames(t, s))
	}
	if tab.Len() != 40 {
		t.Fatalf("%d names filed once the list is loaded, want 40", tab.Len())
	}
	// Deletes release the list's reference (and the label index's).
	for i := 0; i < 40; i += 3 {
		removeNamed(t, cs, s, fmt.Sprintf("c-%02d", i))
		if i%2 == 0 {
			typed--
		}
	}
	live := len(storedNames(t, s))
	if tab.Len() != live {
		t.Fatalf("%d names filed after deletes, want %d", tab.Len(), live)
	}
	// An invalidation drops the list and its references; a write while the list is
	// not loaded takes none; the next page loads it again.
	cs.forget("not-stored")
	if tab.Len() != typed {
		t.Fatalf("%d names filed after forget, want the %d the label index holds", tab.Len(), typed)
	}
	putNamed(t, cs, s, "d-new", false)
	live++
	if tab.Len() != typed {
		t.Fatalf("%d names filed after a write to an unloaded list, want %d", tab.Len(), typed)
	}
	if got := pagesOf(t, cs, s, 5); !slices.Equal(got, storedNames(t, s)) {
		t.Fatalf("pages after reload %v, want %v", got, storedNames(t, s))
	}
	if tab.Len() != live {
		t.Fatalf("%d names filed after reload, want %d", tab.Len(), live)
	}
	// Every reference is released once every credential is gone: none was taken twice.
	for _, name := range storedNames(t, s) {
		removeNamed(t, cs, s, name)
	}
	if tab.Len() != 0 {
		t.Fatalf("%d names still filed with no credential stored", tab.Len())
	}
}

// racingList is storage whose List runs hook (once) before it lists: a write or a
// load that races the listing of a load.
type racingList struct {
	logical.Storage
	once sync.Once
	hook func()
}

func (r *racingList) List(ctx context.Context, prefix string) ([]string, error) {
	r.once.Do(r.hook)
	return r.Storage.List(ctx, prefix)
}

// TestNameListLoadRaces: a load a write raced answers its own call from its listing
// and keeps nothing, and a load another one beat keeps nothing: neither leaves a
// reference behind.
func TestNameListLoadRaces(t *testing.T) {
	t.Parallel()
	for _, race := range []string{"write", "load"} {
		t.Run(race, func(t *testing.T) {
			tab := names.NewTable()
			cs := newCredentialStore(tab)
			inmem := &logical.InmemStorage{}
			for i := range 10 {
				putNamed(t, cs, inmem, fmt.Sprintf("c-%02d", i), false)
			}
			s := &racingList{Storage: inmem}
			s.hook = func() {
				if race == "write" {
					putNamed(t, cs, inmem, "c-raced", false)
					return
				}
				if _, err := cs.namesAfter(context.Background(), inmem, "", 100); err != nil {
					t.Error(err)
				}
			}
			page, err := cs.namesAfter(context.Background(), s, "c-03", 4)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"c-04", "c-05", "c-06", "c-07"}; !slices.Equal(page, want) {
				t.Fatalf("page %v, want %v", page, want)
			}
			cs.namesMu.RLock()
			loaded := cs.loaded
			cs.namesMu.RUnlock()
			want := 0 // the raced load keeps nothing: the list stays unloaded
			if race == "load" {
				want = 10 // the list the inner load kept
			}
			if loaded != (race == "load") || tab.Len() != want {
				t.Fatalf("loaded %v, %d names filed; want loaded %v, %d", loaded, tab.Len(), race == "load", want)
			}
			for _, name := range storedNames(t, inmem) {
				removeNamed(t, cs, inmem, name)
			}
			if tab.Len() != 0 {
				t.Fatalf("%d names still filed with no credential stored", tab.Len())
			}
		})
	}
}

// TestNameListPagesAfterChurn: after many random creates and deletes, with the list
// dropped now and then, paging equals the sorted storage listing, after= is exclusive
// (of a stored name and of one that is not), and the table files only live names.
func TestNameListPagesAfterChurn(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	cs := newCredentialStore(tab)
	s := &logical.InmemStorage{}
	rng := rand.New(rand.NewPCG(5, 6))
	for step := range 3000 {
		name := fmt.Sprintf("n-%03d", rng.IntN(200))
		switch op := rng.IntN(20); {
		case op < 11:
			putNamed(t, cs, s, name, rng.IntN(2) == 0)
		case op < 19:
			removeNamed(t, cs, s, name)
		default:
			cs.forget(name)
		}
		if step%250 == 0 {
			if got := pagesOf(t, cs, s, 1+rng.IntN(20)); !slices.Equal(got, storedNames(t, s)) {
				t.Fatalf("step %d: pages %v, want %v", step, got, storedNames(t, s))
			}
		}
	}
	stored := storedNames(t, s)
	if got := pagesOf(t, cs, s, 9); !slices.Equal(got, stored) {
		t.Fatalf("pages %v, want %v", got, stored)
	}
	if tab.Len() != len(stored) {
		t.Fatalf("%d names filed, %d stored", tab.Len(), len(stored))
	}
	for _, after := range []string{stored[len(stored)/2], stored[len(stored)/2] + "~"} {
		page, err := cs.namesAfter(context.Background(), s, after, 5)
		if err != nil {
			t.Fatal(err)
		}
		i, _ := slices.BinarySearch(stored, after+"\x00")
		if want := stored[i:min(i+5, len(stored))]; !slices.Equal(page, want) {
			t.Fatalf("after %q: %v, want %v", after, page, want)
		}
	}
}

// TestNameListConcurrent runs puts, removes, pages and invalidations at once (under
// -race); each page is sorted and unique, and at the end the pages equal storage and
// every reference is released once the credentials are gone.
func TestNameListConcurrent(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	cs := newCredentialStore(tab)
	s := &logical.InmemStorage{}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7)) //nolint:gosec // G115: w is a small worker number
			for range 300 {
				name := fmt.Sprintf("c-%02d", rng.IntN(50))
				switch op := rng.IntN(10); {
				case op < 5:
					putNamed(t, cs, s, name, rng.IntN(2) == 0)
				case op < 8:
					removeNamed(t, cs, s, name)
				case op < 9:
					cs.forget(name)
				default:
					page, err := cs.namesAfter(ctx, s, name, 10)
					if err != nil {
						t.Error(err)
						return
					}
					if !slices.IsSorted(page) || len(slices.Compact(slices.Clone(page))) != len(page) || (len(page) > 0 && page[0] <= name) {
						t.Errorf("page after %s: %v", name, page)
					}
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				page, err := cs.namesAfter(ctx, s, "", 100)
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.IsSorted(page) || len(slices.Compact(slices.Clone(page))) != len(page) {
					t.Errorf("page not sorted and unique: %v", page)
				}
			}
		}()
	}
	wg.Wait()
	stored := storedNames(t, s)
	if got := pagesOf(t, cs, s, 8); !slices.Equal(got, stored) {
		t.Fatalf("pages %v, want %v", got, stored)
	}
	for _, name := range stored {
		removeNamed(t, cs, s, name)
	}
	if tab.Len() != 0 {
		t.Fatalf("%d names still filed with no credential stored", tab.Len())
	}
}

// wireList is storage that only lists: n names under credentials/, each listing a
// fresh copy of every name, as Vault's storage hands them over (decoded from the
// wire, one allocation a name).
type wireList struct {
	logical.Storage
	names []string
}

func (w *wireList) List(context.Context, string) ([]string, error) {
	out := make([]string, len(w.names))
	for i, n := range w.names {
		out[i] = strings.Clone(n)
	}
	return out, nil
}

// BenchmarkNameListMemory reports the live heap the loaded name list of list pages
// adds per credential (list-B/credential), the names already filed in the names table
// as the mount's other structures hold them:
//
//	INTEGRATIONS_SCALE=100000 go test -run '^$' -bench NameListMemory -benchtime 1x ./backend/
func BenchmarkNameListMemory(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				s := &wireList{names: make([]string, n)}
				tab := names.NewTable()
				for i := range s.names {
					s.names[i] = fmt.Sprintf("svc-%07d", i)
					tab.Acquire(s.names[i])
				}
				cs := newCredentialStore(tab)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				if page, err := cs.namesAfter(context.Background(), s, "", 10); err != nil || len(page) != 10 {
					b.Fatalf("page %v: %v", page, err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(n), "list-B/credential")
				runtime.KeepAlive(cs)
				runtime.KeepAlive(s)
			}
		})
	}
}
