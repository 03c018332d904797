package backend

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// traceStorage records, for each Get, whether it found an entry: the work a request
// did, as a timing observer would see it.
type traceStorage struct {
	logical.Storage
	mu    sync.Mutex
	trace []bool
}

func (t *traceStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := t.Storage.Get(ctx, key)
	t.mu.Lock()
	t.trace = append(t.trace, e != nil)
	t.mu.Unlock()
	return e, err
}

func (t *traceStorage) take() []bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.trace
	t.trace = nil
	return out
}

// TestJWKSMissesDoUniformWork: an unauthenticated jwks/<name> of a name that publishes
// nothing does the same storage work whether a credential of that name exists or not,
// the first time and every time after (before the fix, an existing credential was read
// from storage and cached: its second miss cost nothing, a missing name's a storage
// read, so timing told the names apart; and unauthenticated callers filled the
// credential cache, evicting the credentials being accessed). It never caches the
// credential it refuses, and a published set still answers, before and after its
// credential stops publishing.
func TestJWKSMissesDoUniformWork(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/hidden", map[string]any{
		"type": "oauth2_client_credentials", "token_url": "https://idp.example.com/t", "client_id": "c",
		"auth_style": "private_key_jwt", "generate_client_key": "ec-p256",
	})
	mustOK(t, b, s, logical.CreateOperation, "credentials/published", generatedCredential("https://idp.example.com", "ec-p256"))
	b.credentials.forget("hidden") // as after an eviction or a restart
	ts := &traceStorage{Storage: s}
	served := &codedErrorAnswers{b}
	work := func(name string) ([]bool, bool) {
		resp, err := served.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks/" + name, Storage: ts, Unauthenticated: true})
		return ts.take(), err == nil && resp != nil && resp.Data[logical.HTTPStatusCode] == 200
	}
	missing, ok := work("nobody")
	if ok {
		t.Fatal("jwks/nobody answered")
	}
	for i := range 3 {
		for _, name := range []string{"nobody", "hidden"} {
			got, ok := work(name)
			if ok || len(got) != len(missing) || (len(got) > 0 && got[0] != missing[0]) {
				t.Errorf("round %d: jwks/%s did storage work %v (answered: %v), want a missing name's %v", i, name, got, ok, missing)
			}
		}
	}
	if _, cached, _ := b.credentials.cache.glance("hidden"); cached {
		t.Error("an unauthenticated jwks/ request cached a credential it refused")
	}
	if _, ok := work("published"); !ok {
		t.Fatal("jwks/published did not answer")
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/published", map[string]any{"publish_jwks": false})
	if _, ok := work("published"); ok {
		t.Error("jwks/published still answers after publish_jwks=false")
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/published", map[string]any{"publish_jwks": true})
	b.credentials.forget("published")
	mustOK(t, b, s, logical.PatchOperation, "credentials/published", map[string]any{"publish_jwks": false})
	if _, ok := work("published"); ok {
		t.Error("jwks/published still answers after publish_jwks=false written while it was not cached")
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/published", map[string]any{"publish_jwks": true})
	if _, ok := work("published"); !ok {
		t.Error("jwks/published does not answer after publish_jwks=true again")
	}
	mustOK(t, b, s, logical.DeleteOperation, "credentials/published", nil)
	if got, ok := work("published"); ok || len(got) != len(missing) {
		t.Errorf("jwks/ of a deleted credential: answered %v, work %v, want a missing name's %v", ok, got, missing)
	}
}

// TestJWKSEntryRestoredByAWrite: a publishing credential whose jwks-published entry is
// missing (stored by a build before the entry existed) publishes again after its next
// write, even while its publishing copy is cached.
func TestJWKSEntryRestoredByAWrite(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	mustOK(t, b, s, logical.CreateOperation, "credentials/published", generatedCredential("https://idp.example.com", "ec-p256"))
	if err := s.Delete(context.Background(), jwksPublishedPrefix+"published"); err != nil {
		t.Fatal(err)
	}
	mustOK(t, b, s, logical.PatchOperation, "credentials/published", map[string]any{"description": "any write"})
	if _, err := readJWKS(b, s, "published"); err != nil {
		t.Errorf("jwks/published after a write: %v", err)
	}
}

// keyTraceStorage records the keys each Get asked for.
type keyTraceStorage struct {
	logical.Storage
	mu   sync.Mutex
	keys []string
}

func (t *keyTraceStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	t.mu.Lock()
	t.keys = append(t.keys, key)
	t.mu.Unlock()
	return t.Storage.Get(ctx, key)
}

// TestCreateReadsNoJWKSEntry: a create (single or batch item) of a credential that
// publishes nothing does not read its jwks-published entry: the writer knows there was
// no previous copy (before, every create paid a storage read for it). A later write
// that stops publishing still removes the entry.
func TestCreateReadsNoJWKSEntry(t *testing.T) {
	t.Parallel()
	b, s, _ := newTestBackend(t)
	ts := &keyTraceStorage{Storage: s}
	mustOK(t, b, ts, logical.CreateOperation, "credentials/plain", map[string]any{"type": "bearer", "token": "t"})
	mustOK(t, b, ts, logical.CreateOperation, "credentials-batch", map[string]any{"items": []any{map[string]any{"name": "plain2", "type": "bearer", "token": "t"}}})
	for _, k := range ts.keys {
		if strings.HasPrefix(k, jwksPublishedPrefix) {
			t.Fatalf("a create read %s", k)
		}
	}
	mustOK(t, b, s, logical.CreateOperation, "credentials/pub", generatedCredential("https://idp.example.com", "ec-p256"))
	if e, _ := s.Get(context.Background(), jwksPublishedPrefix+"pub"); e == nil {
		t.Fatal("a publishing credential has no jwks-published entry")
	}
	b.credentials.forget("pub") // the writer reads the stored copy, not the cache
	mustOK(t, b, s, logical.PatchOperation, "credentials/pub", map[string]any{"publish_jwks": false})
	if e, _ := s.Get(context.Background(), jwksPublishedPrefix+"pub"); e != nil {
		t.Fatal("the entry outlived publish_jwks=false")
	}
}
