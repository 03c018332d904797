package backend

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// BenchmarkLabelFile measures what a put costs the label index on a mount of n
// credentials of one type: filing a name as it is filed already (a flush renewing a
// window, a state change: most writes) and filing it under a new tag (a retag, which
// moves the lists it leaves and joins). One op is one filing.
func BenchmarkLabelFile(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		x := newLabelIndex(names.NewTable())
		t := catalogType(b, "basic")
		for i := range n {
			x.file(fmt.Sprintf("cred-%06d", i), t, []string{"team"})
		}
		mid := fmt.Sprintf("cred-%06d", n/2)
		b.Run(strconv.Itoa(n)+"/unchanged", func(b *testing.B) {
			for b.Loop() {
				x.file(mid, t, []string{"team"})
			}
		})
		b.Run(strconv.Itoa(n)+"/retag", func(b *testing.B) {
			tags := [2][]string{{"team", "other"}, {"team"}}
			i := 0
			for b.Loop() {
				x.file(mid, t, tags[i%2])
				i++
			}
		})
	}
}

// BenchmarkLabelIndexMemory measures the label index's live heap per credential on a
// mount of 100,000 credentials of one type, each carrying one of 20 tags (the shape of
// the heap profile that showed tagsOf), filed from fresh name strings as requests
// bring them. The names table is filled beforehand, as the mount's other structures
// hold every name already: what is reported is the index's own share.
func BenchmarkLabelIndexMemory(b *testing.B) {
	const n = 100000
	typ := catalogType(b, "basic")
	tags := make([][]string, 20)
	for i := range tags {
		tags[i] = []string{fmt.Sprintf("team-%02d", i)}
	}
	tab := names.NewTable()
	for i := range n {
		tab.Acquire(fmt.Sprintf("cred-%06d", i))
	}
	var perName float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		x := newLabelIndex(tab)
		for i := range n {
			x.file(fmt.Sprintf("cred-%06d", i), typ, tags[i%len(tags)])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perName = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(x)
		for i := range n {
			x.unfile(fmt.Sprintf("cred-%06d", i))
		}
	}
	b.ReportMetric(perName, "B/credential")
}
