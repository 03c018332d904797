package backend

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// Factory sets the process's soft memory limit (the one place the plugin sets any GC
// setting), and leaves one the operator set alone. Not parallel: the limit is the
// process's; the test puts back what it found.
func TestFactorySetsTheMemoryLimitUnlessOneIsSet(t *testing.T) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		t.Skip("GOMEMLIMIT is set in the environment: the operator's limit wins")
	}
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetMemoryLimit(prev)
		memoryPolicyOnce = sync.Once{}
	})
	start := func() {
		t.Helper()
		memoryPolicyOnce = sync.Once{}
		be, err := Factory(context.Background(), &logical.BackendConfig{
			Logger: hclog.NewNullLogger(), StorageView: &logical.InmemStorage{}, System: &logical.StaticSystemView{},
		})
		if err != nil {
			t.Fatal(err)
		}
		be.Cleanup(context.Background())
	}

	debug.SetMemoryLimit(math.MaxInt64) // none set
	start()
	if got := debug.SetMemoryLimit(-1); got != pluginMemoryLimit {
		t.Errorf("limit after Factory = %d, want %d", got, pluginMemoryLimit)
	}

	const operators = 1 << 30 // set otherwise, e.g. by the runtime from GOMEMLIMIT
	debug.SetMemoryLimit(operators)
	start()
	if got := debug.SetMemoryLimit(-1); got != operators {
		t.Errorf("limit after Factory = %d, want the one already set (%d)", got, operators)
	}
}
