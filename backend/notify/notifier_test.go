package notify

import (
	"context"
	"testing"
)

// TestWaitWakesAndStops: the delivery job's wait returns at once when woken, and false
// once its context ends.
func TestWaitWakesAndStops(t *testing.T) {
	t.Parallel()
	o, _ := newTestOutbox(t)
	o.Wake()
	o.Wake() // one pending wake is enough: this one does not block
	if !o.Wait(context.Background()) {
		t.Fatal("woken, Wait said stop")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o.Wait(ctx) {
		t.Fatal("stopped, Wait said go")
	}
}
