package backend

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// refusingStorage refuses every Put and Delete of the keys under a prefix while one
// is set.
type refusingStorage struct {
	logical.Storage
	refuse atomic.Value // string
}

func (r *refusingStorage) refused(key string) bool {
	prefix, _ := r.refuse.Load().(string)
	return prefix != "" && strings.HasPrefix(key, prefix)
}

func (r *refusingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if r.refused(e.Key) {
		return errors.New("storage unavailable")
	}
	return r.Storage.Put(ctx, e)
}

func (r *refusingStorage) Delete(ctx context.Context, key string) error {
	if r.refused(key) {
		return errors.New("storage unavailable")
	}
	return r.Storage.Delete(ctx, key)
}

// TestSweepStoresBeforeItNotifies: each lifecycle change the sweep makes (a warning, a
// suspension, a purge warning, a purge) is announced only once it is stored. While
// storage refuses the credential's write (or, for the purge, its delete), the sweep
// fails and sends nothing; once storage takes it, the next sweep stores the change and
// announces it, once.
func TestSweepStoresBeforeItNotifies(t *testing.T) {
	t.Parallel()
	events := logical.NewMockEventSender()
	st := &refusingStorage{Storage: logical.NewStorageView(&logical.InmemStorage{}, "")}
	b, s, clock := newBackendWith(t, backendOptions{events: events, storage: st})
	lcCreateBasic(t, b, s, "svc", nil)
	sent := func() []string { return lcEventTypes(events) }
	steps := []struct {
		advance   time.Duration
		eventType string
	}{
		{90 * day, "integrations/credential-suspension-warning"},
		{90 * day, "integrations/credential-suspended"},
		{95 * day, "integrations/credential-purge-warning"},
		{90 * day, "integrations/credential-purged"},
	}
	for i, step := range steps {
		clock.Advance(step.advance)
		st.refuse.Store(credentialPrefix)
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err == nil {
			t.Fatalf("step %d: the sweep succeeded while storage refused the credential", i)
		}
		if got := sent(); len(got) != i {
			t.Fatalf("step %d: notified %v while the change was not stored", i, got)
		}
		st.refuse.Store("")
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := sent(); len(got) != i+1 || got[i] != step.eventType {
			t.Fatalf("step %d: notified %v, want %s once more", i, got, step.eventType)
		}
	}
	if e, err := s.Get(context.Background(), credentialPrefix+"svc"); err != nil || e != nil {
		t.Fatalf("the credential outlived its announced purge: %v %v", e, err)
	}
}
