package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/oauth"
)

// memoryMix is the mix of the RSS target: 40% bearer/api_key, 20% basic, 20% OAuth
// client credentials (each with a cached token), 10% certificate (RSA 2048 cert and
// key, ~3 KB of PEM), 10% SFTP, half with a password and half with an unencrypted
// Ed25519 key.
func memoryType(i int) string {
	switch slot := i % 100; {
	case slot >= 95:
		return "sftp_ssh_key"
	default:
		return scaleType(i)
	}
}

// memoryRequest is the create request of credential i of memoryMix. Every string is a
// fresh copy, as it is when Vault decodes each request from the wire: a benchmark that
// passed the same strings every time would see them shared and understate the heap.
func memoryRequest(t testing.TB, i int, cert map[string]any) map[string]any {
	var v map[string]any
	if typ := memoryType(i); typ == "sftp_ssh_key" {
		v = credWithType(typ, exampleValues(t, typ, "SCALEMIX"+string(rune('A'+i%10))))
	} else {
		v = scaleRequest(t, i, cert)
	}
	for k, x := range v {
		if s, ok := x.(string); ok {
			v[k] = strings.Clone(s)
		}
	}
	return v
}

// loadMemoryMix creates n credentials of memoryMix through HandleRequest, stores a
// token for every OAuth one (as a mint would: through the token store, ~1 KB JWT-sized
// access token), reads each once through access/ and lists them all.
func loadMemoryMix(b *testing.B, be *integrationsBackend, s logical.Storage, n int, stage func(string)) {
	b.Helper()
	ctx := context.Background()
	cert := rsaCertValues(b)
	for i := range n {
		mustOK(b, be, s, logical.CreateOperation, "credentials/"+scaleName(i), memoryRequest(b, i, cert))
	}
	stage("created")
	jwt := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 40) // ~800 bytes, a typical JWT
	for i := range n {
		if memoryType(i) != "oauth2_client_credentials" {
			continue
		}
		name := scaleName(i)
		t, c, err := be.tokens.ticket(ctx, s, name)
		if err != nil || c == nil {
			b.Fatalf("ticket %s: %v", name, err)
		}
		now := time.Now()
		tok := &oauth.Token{AccessToken: jwt[:len(jwt)-6] + fmt.Sprintf("%06d", i), TokenType: "Bearer", Expiry: now.Add(time.Hour), IssuedAt: now}
		if err := be.tokens.put(ctx, s, t, tok, false); err != nil {
			b.Fatalf("token %s: %v", name, err)
		}
	}
	stage("tokens")
	for i := range n {
		mustOK(b, be, s, logical.ReadOperation, "access/"+scaleName(i), nil)
	}
	stage("accessed")
	listAllCredentials(b, be, s, nil, 1000)
	stage("listed")
	if err := be.flushUsage(ctx, s); err != nil {
		b.Fatal(err)
	}
	stage("flushed")
}

// BenchmarkScaleMemory loads n credentials of memoryMix (see loadMemoryMix) and
// reports the backend's live heap after a GC (the InmemStorage's share, which lives in
// Vault in production, is measured after the backend is dropped and subtracted), the
// runtime's Sys, and the live heap per credential. With INTEGRATIONS_HEAPPROFILE=file
// it writes a heap profile while the backend is still alive:
//
//	INTEGRATIONS_SCALE=100000 INTEGRATIONS_HEAPPROFILE=/tmp/heap.prof \
//	  go test -run '^$' -bench 'ScaleMemory' -benchtime 1x ./backend/
//	go tool pprof -top -sample_index=inuse_space /tmp/heap.prof
func BenchmarkScaleMemory(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				s := &logical.InmemStorage{}
				be := startBackend(b, s)
				loadMemoryMix(b, be, s, n, func(string) {})
				all := backendHeap(b, &be, s, base, n)
				b.ReportMetric(toMB(all.Sys), "sys-MB")
			}
		})
	}
}

// offHeapStorage keeps credential and token entries in files under dir, and only
// their names in memory: in production those entries live in Vault, not in the
// plugin, so a measurement of the process (RSS) must not count them, while the
// backend can still read back what its bounded cache evicted. Usage entries are
// dropped and read as absent (only the flush reads them). Other entries (config) are
// kept in memory.
type offHeapStorage struct {
	logical.InmemStorage
	dir  string
	mu   sync.Mutex
	keys map[string]struct{}
}

func newOffHeapStorage(b testing.TB) *offHeapStorage {
	return &offHeapStorage{dir: b.TempDir(), keys: map[string]struct{}{}}
}

func offHeap(key string) bool {
	return strings.HasPrefix(key, credentialPrefix) || strings.HasPrefix(key, tokenPrefix) || strings.HasPrefix(key, usagePrefix)
}

// file is where key's value is kept: its path with "/" escaped.
func (s *offHeapStorage) file(key string) string {
	return filepath.Join(s.dir, url.PathEscape(key))
}

func (s *offHeapStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if !offHeap(e.Key) {
		return s.InmemStorage.Put(ctx, e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[e.Key] = struct{}{}
	if strings.HasPrefix(e.Key, usagePrefix) {
		return nil
	}
	return os.WriteFile(s.file(e.Key), e.Value, 0o600)
}

func (s *offHeapStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if !offHeap(key) {
		return s.InmemStorage.Get(ctx, key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; !ok || strings.HasPrefix(key, usagePrefix) {
		// A usage entry reads as absent: a flush then writes what it has, as for a new one.
		return nil, nil
	}
	v, err := os.ReadFile(s.file(key))
	if err != nil {
		return nil, err
	}
	return &logical.StorageEntry{Key: key, Value: v}, nil
}

func (s *offHeapStorage) Delete(ctx context.Context, key string) error {
	if !offHeap(key) {
		return s.InmemStorage.Delete(ctx, key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
	if err := os.Remove(s.file(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (s *offHeapStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if !offHeap(prefix) {
		return s.InmemStorage.List(ctx, prefix)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.keys {
		if rest, ok := strings.CutPrefix(k, prefix); ok && !strings.Contains(rest, "/") {
			out = append(out, rest)
		}
	}
	return out, nil
}

// procStatus returns a field of /proc/self/status in MB (VmRSS, VmHWM), 0 if unknown.
func procStatus(field string) float64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(rest)), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkScaleRSS loads n credentials of memoryMix over a storage that keeps no
// credential, token or usage values in memory (offHeapStorage: in production they
// live in Vault) and reports the process's resident memory after each stage as seen from
// outside, the live heap, and the time of an access/ of a cached static credential on
// the full mount. GC settings come from the environment (GOGC, GOMEMLIMIT), so their
// cost can be measured. Run one size per process, or the figures of the earlier sizes
// carry over:
//
//	INTEGRATIONS_SCALE=100000 go test -run '^$' -bench 'ScaleRSS' -benchtime 1x ./backend/
//	INTEGRATIONS_SCALE=100000 GOMEMLIMIT=256MiB go test -run '^$' -bench 'ScaleRSS' -benchtime 1x ./backend/
//
// INTEGRATIONS_STAGE_HEAP=1 also reports the live heap after each stage (forcing a
// GC there), and with INTEGRATIONS_HEAPPROFILE=file a heap profile per stage.
func BenchmarkScaleRSS(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				s := newOffHeapStorage(b)
				be := startBackend(b, s)
				loadMemoryMix(b, be, s, n, func(stage string) {
					b.ReportMetric(procStatus("VmRSS"), "rss-MB-"+stage)
					if os.Getenv("INTEGRATIONS_STAGE_HEAP") != "" {
						runtime.GC()
						var ms runtime.MemStats
						runtime.ReadMemStats(&ms)
						b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-MB-"+stage)
						if f := os.Getenv("INTEGRATIONS_HEAPPROFILE"); f != "" {
							writeHeapProfile(b, f+"."+stage)
						}
					}
				})
				b.ReportMetric(procStatus("VmHWM"), "peak-rss-MB")
				// What the GC settings cost the access path on a full mount: reads of
				// static credentials round a hot set the cache holds (ns/access), and
				// round the whole mount, where most reads miss the bounded cache and
				// decode the entry from storage (ns/access-cold).
				b.ReportMetric(accessRound(b, be, s, min(n, CacheEntries/2), 200000), "ns/access")
				b.ReportMetric(accessRound(b, be, s, n, min(n, 20000)), "ns/access-cold")
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MB")
				b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
				b.ReportMetric(float64(ms.Sys)/(1<<20), "sys-MB")
				be.Cleanup(context.Background())
				// What is left without the backend is the harness's: the storage's keys
				// and tokens' entries, which live in Vault in production.
				be = nil
				runtime.GC()
				var harness runtime.MemStats
				runtime.ReadMemStats(&harness)
				runtime.KeepAlive(s)
				b.ReportMetric(float64(harness.HeapAlloc)/(1<<20), "harness-heap-MB")
			}
		})
	}
}

// accessRound reads static credentials among the first span of the mix through
// access/, in order, until it has made reads of them, and returns the mean time of one.
func accessRound(b *testing.B, be *integrationsBackend, s logical.Storage, span, reads int) float64 {
	done := 0
	start := time.Now()
	for i := 0; done < reads; i++ {
		if memoryType(i%span) == "oauth2_client_credentials" {
			continue
		}
		mustOK(b, be, s, logical.ReadOperation, "access/"+scaleName(i%span), nil)
		done++
	}
	return float64(time.Since(start).Nanoseconds()) / float64(done)
}

func writeHeapProfile(b *testing.B, file string) {
	out, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		b.Fatal(err)
	}
}

// backendHeap measures the live heap be holds over its storage s: the heap with be
// alive, then with be cleaned up and dropped (only s left). It reports storage-MB
// (s's share above base), backend-MB and backend-B/credential, and returns the heap
// with be alive. *be is cleaned up and set to nil, so nothing keeps it alive.
func backendHeap(b *testing.B, be **integrationsBackend, s logical.Storage, base runtime.MemStats, n int) runtime.MemStats {
	runtime.GC()
	var all runtime.MemStats
	runtime.ReadMemStats(&all)
	if f := os.Getenv("INTEGRATIONS_HEAPPROFILE"); f != "" {
		writeHeapProfile(b, f)
	}
	(*be).Cleanup(context.Background())
	*be = nil
	runtime.GC()
	var storageOnly runtime.MemStats
	runtime.ReadMemStats(&storageOnly)
	runtime.KeepAlive(s)
	b.ReportMetric(toMB(storageOnly.HeapAlloc-base.HeapAlloc), "storage-MB")
	b.ReportMetric(toMB(all.HeapAlloc-storageOnly.HeapAlloc), "backend-MB")
	b.ReportMetric(float64(all.HeapAlloc-storageOnly.HeapAlloc)/float64(n), "backend-B/credential")
	return all
}

func toMB(v uint64) float64 { return float64(v) / (1 << 20) }
