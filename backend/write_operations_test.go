package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// TestEveryWriteIsForwarded: an operation that writes storage, received by a
// performance standby or secondary, must be forwarded to the node that may write;
// otherwise it fails there (read-only storage) or, worse, is served from stale memory.
// The callback (a read that spends an authorization) writes too.
func TestEveryWriteIsForwarded(t *testing.T) {
	b := newBackend(nil)
	writes := map[logical.Operation]bool{
		logical.CreateOperation: true, logical.UpdateOperation: true,
		logical.PatchOperation: true, logical.DeleteOperation: true,
	}
	checked := 0
	for _, p := range b.Paths {
		for op, h := range p.Operations {
			po, ok := h.(*framework.PathOperation)
			if !ok {
				t.Fatalf("%s %s: handler %T", op, p.Pattern, h)
			}
			if !writes[op] && p.Pattern != callbackPath+"$" {
				continue
			}
			checked++
			if !po.ForwardPerformanceStandby || !po.ForwardPerformanceSecondary {
				t.Errorf("%s %s is not forwarded to the node that may write", op, p.Pattern)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d writing operations found: the test no longer sees the paths", checked)
	}
}
