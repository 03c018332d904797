package lifecycle

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

func TestIndexOrderUpdateRemove(t *testing.T) {
	t.Parallel()
	x := NewIndex()
	if _, _, ok := x.next(); ok || x.len() != 0 || x.Due(at(day(1000)), 0) != nil {
		t.Fatal("a new index is not empty")
	}
	x.Set("c", at(day(3)))
	x.Set("a", at(day(1)))
	x.Set("b", at(day(2)))
	x.Set("d", at(day(2))) // ties are ordered by name
	x.Set("e", at(day(9)))

	steps := []struct {
		name    string
		do      func()
		now     time.Duration
		max     int
		wantDue []string
		wantLen int
	}{
		{"earliest first", func() {}, day(3), 0, []string{"a", "b", "d", "c"}, 5},
		{"inclusive of now", func() {}, day(2), 0, []string{"a", "b", "d"}, 5},
		{"at most max", func() {}, day(9), 2, []string{"a", "b"}, 5},
		{"not yet", func() {}, day(1) - 1, 0, nil, 5},
		{"Due does not remove", func() {}, day(1), 0, []string{"a"}, 5},
		{"move later", func() { x.Set("a", at(day(10))) }, day(9), 0, []string{"b", "d", "c", "e"}, 5},
		{"move earlier", func() { x.Set("e", at(day(0))) }, day(2), 0, []string{"e", "b", "d"}, 5},
		{"remove", func() { x.Remove("b") }, day(2), 0, []string{"e", "d"}, 4},
		{"remove absent", func() { x.Remove("zzz") }, day(2), 0, []string{"e", "d"}, 4},
		{"zero removes", func() { x.Set("e", time.Time{}) }, day(2), 0, []string{"d"}, 3},
		{"zero on absent is no-op", func() { x.Set("new", time.Time{}) }, day(2), 0, []string{"d"}, 3},
		{"re-add", func() { x.Set("b", at(day(1))) }, day(2), 0, []string{"b", "d"}, 4},
		{"remove last one standing", func() { x.Remove("a"); x.Remove("b"); x.Remove("c"); x.Remove("d") }, day(100), 0, nil, 0},
	}
	for _, st := range steps {
		st.do()
		if got := x.Due(at(st.now), st.max); !slices.Equal(got, st.wantDue) {
			t.Errorf("%s: Due = %q, want %q", st.name, got, st.wantDue)
		}
		if got := x.len(); got != st.wantLen {
			t.Errorf("%s: Len = %d, want %d", st.name, got, st.wantLen)
		}
		if len(st.wantDue) > 0 {
			if name, _, _ := x.next(); name != st.wantDue[0] {
				t.Errorf("%s: Next = %q, want %q", st.name, name, st.wantDue[0])
			}
		}
	}
}

// TestIndexMatchesReference applies random operations to the index and to a plain
// map and compares every answer.
func TestIndexMatchesReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	x := NewIndex()
	ref := map[string]time.Time{}
	for i := range 20000 {
		name := fmt.Sprintf("c%03d", rng.IntN(300))
		switch rng.IntN(4) {
		case 0:
			x.Remove(name)
			delete(ref, name)
		default:
			due := at(time.Duration(rng.IntN(500)) * time.Hour)
			x.Set(name, due)
			ref[name] = due
		}
		if got, ok := x.get(name); ok != !ref[name].IsZero() || !got.Equal(ref[name]) {
			t.Fatalf("op %d: Get(%s) = %v %v, want %v", i, name, got, ok, ref[name])
		}
		if i%97 != 0 {
			continue
		}
		now := at(time.Duration(rng.IntN(500)) * time.Hour)
		limit := rng.IntN(20)
		var want []string
		for n, due := range ref {
			if !due.After(now) {
				want = append(want, n)
			}
		}
		slices.SortFunc(want, func(a, b string) int {
			if c := ref[a].Compare(ref[b]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		if limit > 0 && len(want) > limit {
			want = want[:limit]
		}
		if got := x.Due(now, limit); !slices.Equal(got, want) {
			t.Fatalf("op %d: Due(%v, %d) = %q, want %q", i, now, limit, got, want)
		}
		if x.len() != len(ref) {
			t.Fatalf("op %d: Len %d, want %d", i, x.len(), len(ref))
		}
	}
}

// TestIndexDueCostIndependentOfSize: with 100,000 credentials of which five are due,
// Due examines those five and nothing else.
func TestIndexDueCostIndependentOfSize(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1000, 100000} {
		x := fillIndex(size, 5)
		names, visited := x.due(at(0), 0)
		if len(names) != 5 || visited != 5 {
			t.Errorf("size %d: Due returned %d names after visiting %d nodes, want 5 and 5", size, len(names), visited)
		}
		names, visited = x.due(at(0), 2)
		if len(names) != 2 || visited > 2*2+1 {
			t.Errorf("size %d, max 2: %d names, %d nodes visited", size, len(names), visited)
		}
	}
}

// fillIndex files size credentials, due of them at t0 and the rest over the next
// year, in random order.
func fillIndex(size, due int) *Index {
	rng := rand.New(rand.NewPCG(5, 6))
	x := NewIndex()
	for _, i := range rng.Perm(size) {
		when := at(time.Hour + time.Duration(rng.Int64N(int64(day(365)))))
		if i < due {
			when = at(0)
		}
		x.Set(fmt.Sprintf("credential-%06d", i), when)
	}
	return x
}

func TestIndexConcurrent(t *testing.T) {
	t.Parallel()
	x := NewIndex()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				name := fmt.Sprintf("c%d", (g*31+i)%100)
				switch i % 5 {
				case 0:
					x.Remove(name)
				case 1:
					x.Due(at(day(50)), 10)
				case 2:
					x.next()
				default:
					x.Set(name, at(day(i%100)))
				}
			}
		})
	}
	wg.Wait()
	// The heap is still consistent: everything comes out in order.
	all := x.Due(at(day(1000)), 0)
	if len(all) != x.len() {
		t.Fatalf("Due returned %d of %d", len(all), x.len())
	}
	prev := time.Time{}
	for _, n := range all {
		due, _ := x.get(n)
		if due.Before(prev) {
			t.Fatalf("out of order at %s", n)
		}
		prev = due
	}
}

func BenchmarkIndexDue(b *testing.B) {
	const due = 8
	for _, size := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("entries=%d", size), func(b *testing.B) {
			x := fillIndex(size, due)
			var visited int
			for b.Loop() {
				var names []string
				names, visited = x.due(at(0), 0)
				if len(names) != due {
					b.Fatalf("%d due", len(names))
				}
			}
			b.ReportMetric(float64(visited), "nodes/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*due), "ns/due-name")
		})
	}
}

func BenchmarkIndexSet(b *testing.B) {
	x := fillIndex(100000, 0)
	names := make([]string, 1024)
	for i := range names {
		names[i] = fmt.Sprintf("credential-%06d", i*97)
	}
	i := 0
	for b.Loop() {
		x.Set(names[i%len(names)], at(time.Duration(i%8760)*time.Hour))
		i++
	}
}

// next is the earliest filed name and its time; ok is false when the index is empty.
func (x *Index) next() (name string, due time.Time, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.heap) == 0 {
		return "", time.Time{}, false
	}
	return x.names.Name(x.heap[0].id), filedTime(x.heap[0].due), true
}

// len is the number of filed names.
func (x *Index) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.heap)
}

// filedTime is the time an entry's seconds stand for.
func filedTime(due uint32) time.Time { return time.Unix(dueEpoch+int64(due), 0) }

// get is the time name is filed under.
func (x *Index) get(name string) (time.Time, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, ok := x.lookup(name); ok {
		return filedTime(x.heap[i].due), true
	}
	return time.Time{}, false
}

// BenchmarkIndexMemory reports the live heap one Index keeps per filed name, the names
// table excluded (filed before, as the mount's other structures share it): what the
// index itself costs a mount of that many credentials.
func BenchmarkIndexMemory(b *testing.B) {
	for _, size := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("entries=%d", size), func(b *testing.B) {
			credNames := make([]string, size)
			for i := range credNames {
				credNames[i] = fmt.Sprintf("credential-%06d", i)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			var perName float64
			tab := names.NewTable()
			for _, n := range credNames {
				tab.Acquire(n)
			}
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				x := NewIndexOn(tab)
				for _, i := range rng.Perm(size) {
					x.Set(credNames[i], at(time.Hour+time.Duration(rng.Int64N(int64(day(365))))))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perName = float64(after.HeapAlloc-before.HeapAlloc) / float64(size)
				runtime.KeepAlive(x)
			}
			b.ReportMetric(perName, "B/credential")
		})
	}
}

// TestIndexAfterMostNamesLeave: once most names are removed the index shrinks its heap
// and releases the names, and answers as before; times beyond the range of its
// seconds (year 2136) still order after every time within it.
func TestIndexAfterMostNamesLeave(t *testing.T) {
	t.Parallel()
	x := fillIndex(10000, 0)
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	x.Set("credential-far", far)
	for i := range 9500 {
		x.Remove(fmt.Sprintf("credential-%06d", i))
	}
	if x.len() != 501 {
		t.Fatalf("len %d, want 501", x.len())
	}
	x.mu.Lock()
	capacity, ids := cap(x.heap), x.names.Len()
	x.mu.Unlock()
	if capacity >= 10000 || ids != 501 {
		t.Fatalf("not shrunk after most names left: capacity %d, %d names in the table", capacity, ids)
	}
	all := x.Due(far, 0)
	if len(all) != 501 || all[len(all)-1] != "credential-far" {
		t.Fatalf("Due(far): %d names, last %q", len(all), all[len(all)-1])
	}
	if slices.Contains(x.Due(time.Date(2130, 1, 1, 0, 0, 0, 0, time.UTC), 0), "credential-far") {
		t.Fatal("a time beyond 2136 is due before it")
	}
	for i := 9500; i < 10000; i++ {
		name := fmt.Sprintf("credential-%06d", i)
		if _, ok := x.get(name); !ok {
			t.Fatalf("%s lost in the rebuild", name)
		}
	}
	if !slices.IsSortedFunc(all[:500], func(a, b string) int {
		da, _ := x.get(a)
		db, _ := x.get(b)
		return da.Compare(db)
	}) {
		t.Fatal("Due out of order after the rebuild")
	}
}

// TestIndexPositionsForms: an index filing few of a shared table's many names keeps its
// positions in a map; one filing most keeps a slice by id; one that shrinks back to
// few returns to the map. Every form answers the same.
func TestIndexPositionsForms(t *testing.T) {
	t.Parallel()
	tab := names.NewTable()
	const n = 20000
	for i := range n {
		tab.Acquire(fmt.Sprintf("credential-%06d", i))
	}
	few, many := NewIndexOn(tab), NewIndexOn(tab)
	for i := range n {
		name := fmt.Sprintf("credential-%06d", i)
		many.Set(name, at(day(1+i%50)))
		if i%100 == 0 {
			few.Set(name, at(day(1+i%50)))
		}
	}
	form := func(x *Index) string {
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.sparse != nil {
			return "sparse"
		}
		return "dense"
	}
	if form(few) != "sparse" || form(many) != "dense" {
		t.Fatalf("forms: few %s, many %s", form(few), form(many))
	}
	for i := range n {
		if i%400 == 0 {
			continue
		}
		many.Remove(fmt.Sprintf("credential-%06d", i))
	}
	if form(many) != "sparse" {
		t.Fatalf("an index down to %d of %d names kept its slice", many.len(), n)
	}
	for _, x := range []*Index{few, many} {
		for i := range n {
			name := fmt.Sprintf("credential-%06d", i)
			d, ok := x.get(name)
			want := (x == few && i%100 == 0) || (x == many && i%400 == 0)
			if ok != want || (ok && !d.Equal(at(day(1+i%50)))) {
				t.Fatalf("%s: filed %v at %v, want filed %v", name, ok, d, want)
			}
		}
		due := x.Due(at(day(60)), 0)
		if len(due) != x.len() || !slices.IsSortedFunc(due, func(a, b string) int {
			da, _ := x.get(a)
			db, _ := x.get(b)
			return cmp.Or(da.Compare(db), cmp.Compare(a, b))
		}) {
			t.Fatalf("Due: %d names of %d, or out of order", len(due), x.len())
		}
	}
}

// TestIndexDueToTheSecond pins the index's resolution: a name is never due before its
// exact time, and due from the end of a partial second it is filed in; times outside
// the seconds' range order at its ends.
func TestIndexDueToTheSecond(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	x := NewIndex()
	x.Set("a", base.Add(1500*time.Millisecond))
	x.Set("b", base.Add(2*time.Second))
	x.Set("old", time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))
	x.Set("far", time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		now  time.Duration
		want []string
	}{
		{time.Second, []string{"old"}},
		{1499 * time.Millisecond, []string{"old"}},
		{1500 * time.Millisecond, []string{"old"}}, // a's exact time, within its second: late, never early
		{2*time.Second - time.Nanosecond, []string{"old"}},
		{2 * time.Second, []string{"old", "a", "b"}},
	} {
		if got := x.Due(base.Add(tc.now), 0); !slices.Equal(got, tc.want) {
			t.Errorf("Due(base+%s) = %q, want %q", tc.now, got, tc.want)
		}
	}
	if got := x.Due(time.Date(2136, 1, 1, 0, 0, 0, 0, time.UTC), 0); slices.Contains(got, "far") {
		t.Errorf("Due(2136-01-01) = %q: a time after the range is due within it", got)
	}
	if got := x.Due(time.Date(2600, 1, 1, 0, 0, 0, 0, time.UTC), 0); !slices.Equal(got, []string{"old", "a", "b", "far"}) {
		t.Errorf("Due(2600) = %q, want every name", got)
	}
}
