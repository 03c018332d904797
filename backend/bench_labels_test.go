package backend

import (
	"fmt"
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
