package usage

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// TestRecorderConcurrentTotals hammers the recorder from many goroutines while a
// flusher drains it, and checks that nothing is lost or counted twice.
func TestRecorderConcurrentTotals(t *testing.T) {
	t.Parallel()
	const (
		workers = 32
		perG    = 2000
		names   = 50
	)
	r := NewRecorderCap(10)
	stored := map[string]*Usage{}
	flush := func() {
		for name, p := range r.Drain() {
			u := stored[name]
			if u == nil {
				u = &Usage{}
				stored[name] = u
			}
			u.Merge(p, 10)
		}
	}

	stop := make(chan struct{})
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		for {
			select {
			case <-stop:
				return
			default:
				flush()
				// A failed flush puts its data back; do that sometimes too.
				r.Restore(r.Drain())
			}
		}
	}()

	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range perG {
				name := fmt.Sprintf("cred-%d", (g+i)%names)
				ok := i%4 != 0
				r.Access(name, at(g*perG+i), "siem", ok, "")
				if i%100 == 0 {
					r.Log(name, Event{Time: at(i), Event: EventTokenMinted, Status: StatusSuccess})
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flusherDone
	flush()

	// Expected totals, computed the same way the workers chose their names.
	want := map[string]*Usage{}
	for g := range workers {
		for i := range perG {
			name := fmt.Sprintf("cred-%d", (g+i)%names)
			u := want[name]
			if u == nil {
				u = &Usage{}
				want[name] = u
			}
			u.Count++
			if i%4 == 0 {
				u.Failures++
			} else if ts := at(g*perG + i); ts.After(u.LastAccessed) {
				u.LastAccessed = ts
			}
		}
	}
	var total int64
	for name, w := range want {
		got := stored[name]
		if got == nil {
			t.Fatalf("%s: no usage stored", name)
		}
		if got.Count != w.Count || got.Failures != w.Failures || !got.LastAccessed.Equal(w.LastAccessed) {
			t.Errorf("%s: got count=%d failures=%d last=%v, want %d %d %v",
				name, got.Count, got.Failures, got.LastAccessed, w.Count, w.Failures, w.LastAccessed)
		}
		if len(got.Events) == 0 || len(got.Events) > 10 {
			t.Errorf("%s: %d events stored, want 1..10", name, len(got.Events))
		}
		if !slices.IsSortedFunc(got.Events, compareEventTime) {
			t.Errorf("%s: stored events out of order", name)
		}
		total += got.Count
	}
	if total != workers*perG {
		t.Errorf("total count %d, want %d", total, workers*perG)
	}
	if len(stored) != names {
		t.Errorf("%d credentials stored, want %d", len(stored), names)
	}
}

func TestRecorderCapKeepsNewest(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 4, 5, 6, 12, 23} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			r := NewRecorderCap(5)
			for i := range n {
				r.Access("a", at(i), "", true, fmt.Sprint(i))
			}
			var want []string
			for i := max(0, n-5); i < n; i++ {
				want = append(want, fmt.Sprint(i))
			}
			peek := r.Peek("a")
			if got := details(peek.Events); !slices.Equal(got, want) {
				t.Errorf("Peek events %v, want %v", got, want)
			}
			drained := r.Drain()
			if got := details(drained["a"].Events); !slices.Equal(got, want) {
				t.Errorf("Drain events %v, want %v", got, want)
			}
			if got := drained["a"].Count; got != int64(n) {
				t.Errorf("count %d, want %d: the cap bounds events, not counts", got, n)
			}
			if p := r.Peek("a"); p.Count != 0 || len(p.Events) != 0 {
				t.Errorf("after Drain Peek = %+v, want empty", p)
			}
		})
	}
}

func details(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Detail)
	}
	return out
}

func TestRecorderSuccessOnlyRenewsLastAccessed(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	r.Access("a", at(10), "", true, "")
	r.Access("a", at(20), "", false, "suspended")
	r.Access("a", at(5), "", true, "") // an older timestamp arriving late
	r.Log("a", Event{Time: at(30), Event: EventWarning, Status: StatusSuccess})
	p := r.Peek("a")
	if !p.LastAccessed.Equal(at(10)) {
		t.Errorf("LastAccessed %v, want %v", p.LastAccessed, at(10))
	}
	if got := r.LastAccessed("a"); !got.Equal(at(10)) {
		t.Errorf("LastAccessed() %v, want %v", got, at(10))
	}
	if p.Count != 3 || p.Failures != 1 {
		t.Errorf("count=%d failures=%d, want 3 1 (Log is not an access)", p.Count, p.Failures)
	}
	if len(p.Events) != 4 || p.Events[1].Status != StatusFailure || p.Events[3].Event != EventWarning {
		t.Errorf("events %+v", p.Events)
	}
	if !r.LastAccessed("nobody").IsZero() {
		t.Error("LastAccessed of an unknown name is not zero")
	}
}

func TestRecorderRestore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cap         int
		before      []int // seconds of accesses before the drain
		after       []int // seconds of accesses between drain and restore
		wantDetails []string
		wantLast    int
	}{
		{"nothing new", 10, []int{1, 2}, nil, []string{"1", "2"}, 2},
		{"merged in order", 10, []int{1, 2}, []int{3, 4}, []string{"1", "2", "3", "4"}, 4},
		{"newer win the cap", 3, []int{1, 2, 3}, []int{4, 5}, []string{"3", "4", "5"}, 5},
		{"newer alone fill the cap", 2, []int{1, 2}, []int{3, 4}, []string{"3", "4"}, 4},
		{"only new", 10, nil, []int{7}, []string{"7"}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := NewRecorderCap(tc.cap)
			for _, s := range tc.before {
				r.Access("a", at(s), "", true, fmt.Sprint(s))
			}
			drained := r.Drain()
			for _, s := range tc.after {
				r.Access("a", at(s), "", true, fmt.Sprint(s))
			}
			r.Restore(drained)
			p := r.Peek("a")
			if got := details(p.Events); !slices.Equal(got, tc.wantDetails) {
				t.Errorf("events %v, want %v", got, tc.wantDetails)
			}
			if want := int64(len(tc.before) + len(tc.after)); p.Count != want {
				t.Errorf("count %d, want %d", p.Count, want)
			}
			if !p.LastAccessed.Equal(at(tc.wantLast)) {
				t.Errorf("last %v, want %v", p.LastAccessed, at(tc.wantLast))
			}
			// The ring must still work after a restore.
			r.Access("a", at(100), "", true, "100")
			if got := details(r.Peek("a").Events); got[len(got)-1] != "100" || len(got) > tc.cap {
				t.Errorf("after restore and access: %v", got)
			}
		})
	}
}

func TestRecorderForget(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	r.Access("gone", at(1), "", true, "")
	r.Access("kept", at(1), "", true, "")
	drained := r.Drain()

	r.Access("gone", at(2), "", true, "")
	r.Forget("gone")
	r.Access("gone", at(3), "", true, "recreated") // a new credential with the same name
	r.Restore(drained)

	if p := r.Peek("gone"); p.Count != 1 || details(p.Events)[0] != "recreated" {
		t.Errorf("gone = %+v, want only the recreated credential's access", p)
	}
	if p := r.Peek("kept"); p.Count != 1 {
		t.Errorf("kept count %d, want 1", p.Count)
	}
	// The tombstone lasts only until the next drain.
	next := r.Drain()
	r.Restore(next)
	if p := r.Peek("gone"); p.Count != 1 {
		t.Errorf("after a later restore gone count %d, want 1", p.Count)
	}
}

func TestRecorderPeekIsACopy(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	r.Access("a", at(1), "", true, "x")
	p := r.Peek("a")
	p.Events[0].Detail = "changed"
	if got := r.Peek("a").Events[0].Detail; got != "x" {
		t.Errorf("Peek leaked internal state: %q", got)
	}
	if p := r.Peek("none"); p.Count != 0 || p.Events != nil {
		t.Errorf("unknown Peek = %+v", p)
	}
}

// TestRecorderAccessSteadyStateAllocs pins the hot path: once a credential's ring is
// full an access allocates nothing.
func TestRecorderAccessSteadyStateAllocs(t *testing.T) {
	r := NewRecorderCap(16)
	for i := range 16 {
		r.Access("a", at(i), "siem", true, "")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		r.Access("a", at(99), "siem", true, "")
	})
	if allocs != 0 {
		t.Errorf("Access allocates %.1f times per call, want 0", allocs)
	}
}

func BenchmarkRecorderAccess(b *testing.B) {
	for _, bc := range []struct {
		shards, names int
	}{
		{1, 1}, {1, 1024}, {shardCount, 1}, {shardCount, 1024},
	} {
		b.Run(fmt.Sprintf("shards=%d/names=%d", bc.shards, bc.names), func(b *testing.B) {
			r := newRecorder(bc.shards, DefaultLogSize) // the cap the backend passes: log_size
			names := make([]string, bc.names)
			for i := range names {
				names[i] = fmt.Sprintf("credential-%04d", i)
			}
			now := t0
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var goroutines atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				// Start each goroutine elsewhere in the list, as independent integrations
				// would be; in lockstep they would all fight over the same credential.
				i := int(goroutines.Add(1)) * 7919
				for pb.Next() {
					r.Access(names[i%len(names)], now, "siem", true, "")
					i++
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "accesses/s")
		})
	}
}

func BenchmarkRecorderDrain(b *testing.B) {
	const names = 10000
	r := NewRecorder()
	list := make([]string, names)
	for i := range list {
		list[i] = fmt.Sprintf("credential-%05d", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, n := range list {
			r.Access(n, t0, "siem", true, "")
		}
		b.StartTimer()
		if got := len(r.Drain()); got != names {
			b.Fatalf("drained %d", got)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*names), "ns/credential")
}

func TestRecorderWithFailures(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.Access("ok", at, "i", true, "")
	r.Access("refused", at, "i", false, "suspended")
	r.Log("refresh", Event{Time: at, Event: EventRefreshFailed, Status: StatusFailure})
	r.Log("warned", Event{Time: at, Event: EventWarning, Status: StatusSuccess})
	got := r.WithFailures()
	slices.Sort(got)
	if want := []string{"refresh", "refused"}; !slices.Equal(got, want) {
		t.Fatalf("WithFailures = %v, want %v", got, want)
	}
	r.Drain()
	if got := r.WithFailures(); len(got) != 0 {
		t.Fatalf("after Drain: %v", got)
	}
}

// TestRecorderNamesAndWake: Names counts the credentials with pending usage through
// Access, Log, Restore, Forget and Drain, and the wake fires once at each crossing of
// the threshold, however many goroutines record at once.
func TestRecorderNamesAndWake(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	var woken atomic.Int64
	r.SetWake(100, func() { woken.Add(1) })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				name := fmt.Sprintf("c%d", (g*50+i)%150) // 150 distinct names, most recorded twice
				r.Access(name, at(i), "x", true, "")
				r.Log(name, Event{Time: at(i), Event: EventTokenMinted, Status: StatusSuccess})
			}
		})
	}
	wg.Wait()
	if n := r.Names(); n != 150 {
		t.Fatalf("Names %d, want 150", n)
	}
	if w := woken.Load(); w != 1 {
		t.Fatalf("woken %d times crossing 100, want 1", w)
	}
	r.Forget("c0")
	r.Forget("c0")
	r.Forget("never")
	if n := r.Names(); n != 149 {
		t.Fatalf("Names %d after a Forget, want 149", n)
	}
	drained := r.Drain()
	if n := r.Names(); n != 0 || len(drained) != 149 {
		t.Fatalf("Names %d after a Drain of %d, want 0 and 149", n, len(drained))
	}
	r.Access("c1", at(1), "x", true, "")
	r.Restore(drained) // c1 merges into its new entry: 149 names
	if n := r.Names(); n != 149 {
		t.Fatalf("Names %d after a Restore, want 149", n)
	}
	if w := woken.Load(); w != 2 {
		t.Fatalf("woken %d times after crossing 100 again, want 2", w)
	}
	r.SetWake(0, nil)
	r.Drain()
	for i := range 200 {
		r.Access(fmt.Sprint(i), at(i), "x", true, "")
	}
	if w := woken.Load(); w != 2 {
		t.Fatalf("woken %d times with the wake off", w)
	}
}
