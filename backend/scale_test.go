package backend

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// The scale benchmarks run at the sizes in INTEGRATIONS_SCALE (comma-separated credential
// counts; default 1000,10000), e.g.
//
//	INTEGRATIONS_SCALE=1000,10000,100000 go test -run '^$' -bench 'Scale' -benchtime 3x ./backend/
//
// They only run under -bench, so `go test ./...` does not pay for them.
func scaleSizes(b *testing.B) []int {
	b.Helper()
	spec := os.Getenv("INTEGRATIONS_SCALE")
	if spec == "" {
		spec = "1000,10000"
	}
	var out []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("INTEGRATIONS_SCALE: bad size %q", f)
		}
		out = append(out, n)
	}
	return out
}

// scaleMix is the mix of issue 15: 40% bearer/api_key, 20% basic, 20% OAuth client
// credentials, 10% certificate (RSA 2048, ~3 KB of PEM), 10% SFTP. Every 100th
// credential carries the tag "rare", every 10th the tag "tenth".
var scaleMix = []struct {
	typ    string
	weight int
}{{"bearer", 20}, {"api_key", 20}, {"basic", 20}, {"oauth2_client_credentials", 20}, {"certificate", 10}, {"sftp_password", 10}}

func scaleType(i int) string {
	slot := i % 100
	for _, m := range scaleMix {
		if slot < m.weight {
			return m.typ
		}
		slot -= m.weight
	}
	panic("weights do not add up to 100")
}

func scaleName(i int) string { return fmt.Sprintf("cred-%06d", i) }

// rsaCertValues is a certificate credential with a 2048-bit RSA key: ~3 KB of PEM.
func rsaCertValues(t testing.TB) map[string]any {
	t.Helper()
	cert, key := fixtures.RSACertificate("scale.example.com", time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC))
	return map[string]any{"certificate": cert, "private_key": key}
}

// scaleRequest is the create request of credential i of the mix.
func scaleRequest(t testing.TB, i int, cert map[string]any) map[string]any {
	typ := scaleType(i)
	var v map[string]any
	if typ == "certificate" {
		v = credWithType(typ, cert)
	} else {
		v = credWithType(typ, exampleValues(t, typ, "SCALEMIX"+string(rune('A'+i%10))))
	}
	switch {
	case i%100 == 7:
		v["tags"] = "rare,tenth"
	case i%10 == 7:
		v["tags"] = "tenth"
	}
	return v
}

var (
	scaleSeedMu sync.Mutex
	scaleSeeds  = map[int]*logical.InmemStorage{}
)

// scaleStorage returns an InmemStorage holding n credentials of the mix, written as
// storage entries directly (from one template per type and tag, made through the
// backend), for the benchmarks about startup and reads. Built once per size.
func scaleStorage(b *testing.B, n int) *logical.InmemStorage {
	b.Helper()
	scaleSeedMu.Lock()
	defer scaleSeedMu.Unlock()
	if s, ok := scaleSeeds[n]; ok {
		return s
	}
	scratch := &logical.InmemStorage{}
	// The templates are made at the real time, the clock startBackend runs on.
	be, _, _ := newBackendWith(b, backendOptions{storage: scratch, clock: &testClock{now: time.Now()}, initialize: true})
	cert := rsaCertValues(b)
	templates := map[string][]byte{} // key: type + tags
	s := &logical.InmemStorage{}
	ctx := context.Background()
	for i := range n {
		req := scaleRequest(b, i, cert)
		key := fmt.Sprint(req["type"], req["tags"])
		tmpl, ok := templates[key]
		if !ok {
			mustOK(b, be, scratch, logical.CreateOperation, "credentials/tmpl", req)
			e, err := scratch.Get(ctx, credentialPrefix+"tmpl")
			if err != nil || e == nil {
				b.Fatalf("template %s: %v", key, err)
			}
			tmpl = e.Value
			templates[key] = tmpl
			mustOK(b, be, scratch, logical.DeleteOperation, "credentials/tmpl", nil)
		}
		name := scaleName(i)
		v := bytes.Replace(tmpl, []byte(`"name":"tmpl"`), []byte(`"name":"`+name+`"`), 1)
		if err := s.Put(ctx, &logical.StorageEntry{Key: credentialPrefix + name, Value: v}); err != nil {
			b.Fatal(err)
		}
	}
	scaleSeeds[n] = s
	return s
}

// startBackend is what Vault does on a plugin reload, a restart or a leader change:
// Factory (Setup) and Initialize over the mount's storage, with the real clock.
func startBackend(b *testing.B, s logical.Storage) *integrationsBackend {
	b.Helper()
	be := newBackend(time.Now)
	conf := &logical.BackendConfig{
		Logger: hclog.NewNullLogger(), StorageView: s,
		System: &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour},
	}
	if err := be.Setup(context.Background(), conf); err != nil {
		b.Fatal(err)
	}
	be.storage = s
	if err := be.Initialize(context.Background(), &logical.InitializationRequest{Storage: s}); err != nil {
		b.Fatal(err)
	}
	return be
}

// BenchmarkScaleStartup measures a plugin start over a mount of n credentials: how long
// Initialize takes, and from its start to the first served access/ (of the last
// credential, so nothing before it was read on its behalf).
func BenchmarkScaleStartup(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := scaleStorage(b, n)
			last := "access/" + scaleName(n-1)
			var initTotal, firstTotal, readyTotal time.Duration
			for b.Loop() {
				start := time.Now()
				be := startBackend(b, s)
				initTotal += time.Since(start)
				resp, err := be.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: last, Storage: s})
				if err != nil || resp == nil || resp.IsError() {
					b.Fatalf("first access: %s", outcome(resp, err))
				}
				firstTotal += time.Since(start)
				waitIndexBuilt(b, be)
				readyTotal += time.Since(start)
				be.Cleanup(context.Background())
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(ms(initTotal), "init-ms")
			b.ReportMetric(ms(firstTotal), "first-access-ms")
			b.ReportMetric(ms(readyTotal), "indexed-ms")
		})
	}
}

// BenchmarkScaleAlerts measures reading alerts on a mount of n credentials of which
// none has anything to show, after the index is built.
func BenchmarkScaleAlerts(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchScaleAlerts(b, n, nil, 0) })
	}
}

// benchScaleAlerts reads alerts on the mix of n credentials after the index is built
// and add (if any) has written more, each read expecting want alerts.
func benchScaleAlerts(b *testing.B, n int, add func(*integrationsBackend, logical.Storage), want int) {
	s := scaleStorage(b, n)
	be := startBackend(b, s)
	defer be.Cleanup(context.Background())
	waitIndexBuilt(b, be)
	if add != nil {
		add(be, s)
	}
	mustOK(b, be, s, logical.ReadOperation, "alerts", nil) // warm
	b.ReportAllocs()
	for b.Loop() {
		resp := mustOK(b, be, s, logical.ReadOperation, "alerts", nil)
		if got := len(resp.Data["alerts"].([]map[string]any)); got != want {
			b.Fatalf("%d alerts, want %d", got, want)
		}
	}
}

// BenchmarkScaleList measures one page (limit=100) at the start and at the end of the
// mount, without a filter, with a type filter (10% match), a tag filter (1%) and a tag
// nothing has (the worst case: every name after the start is examined).
func BenchmarkScaleList(b *testing.B) {
	for _, n := range scaleSizes(b) {
		s := scaleStorage(b, n)
		be := startBackend(b, s)
		waitIndexBuilt(b, be)
		for _, f := range []struct {
			name    string
			filters map[string]any
		}{{"all", nil}, {"type", map[string]any{"type": "certificate"}}, {"tag", map[string]any{"tag": "rare"}}, {"nomatch", map[string]any{"tag": "absent"}}} {
			for _, page := range []string{"first", "last"} {
				b.Run(fmt.Sprintf("%d/%s/%s", n, f.name, page), func(b *testing.B) {
					q := map[string]any{"limit": 100}
					for k, v := range f.filters {
						q[k] = v
					}
					switch {
					case page == "last" && f.filters == nil:
						q["after"] = scaleName(n - 101) // the last 100 names
					case page == "last":
						q["after"] = scaleName(n - n/10 - 1) // the last 10% of names
					}
					mustOK(b, be, s, logical.ListOperation, "credentials/", q) // warm
					b.ReportAllocs()
					for b.Loop() {
						resp := mustOK(b, be, s, logical.ListOperation, "credentials/", q)
						if keys, _ := resp.Data["keys"].([]string); (len(keys) == 0) != (f.name == "nomatch") {
							b.Fatalf("%d names on the page", len(keys))
						}
					}
				})
			}
		}
		be.Cleanup(context.Background())
	}
}

// BenchmarkScaleHeap creates n credentials of the mix through the backend, reads each
// once through access/ (the OAuth ones are not read: there is no provider, so no
// tokens are in the figure), lists them all, and reports the live heap after a GC:
// all of it, the part the in-process InmemStorage holds (which in a real Vault lives in
// the server, not the plugin: measured after the backend is dropped), and the
// backend's own part, the plugin's share.
func BenchmarkScaleHeap(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				cert := rsaCertValues(b)
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				s := &logical.InmemStorage{}
				be := startBackend(b, s)
				for i := range n {
					mustOK(b, be, s, logical.CreateOperation, "credentials/"+scaleName(i), scaleRequest(b, i, cert))
				}
				for i := range n {
					if scaleType(i) != "oauth2_client_credentials" {
						mustOK(b, be, s, logical.ReadOperation, "access/"+scaleName(i), nil)
					}
				}
				listAllCredentials(b, be, s, nil, 1000)
				if err := be.flushUsage(context.Background(), s); err != nil {
					b.Fatal(err)
				}
				all := backendHeap(b, &be, s, base, n)
				b.ReportMetric(toMB(all.HeapAlloc-base.HeapAlloc), "heap-MB")
			}
		})
	}
}

// BenchmarkScaleScan measures one full index scan (buildIndex) over n stored
// credentials, the background work a start pays: run with -cpuprofile to see what
// dominates.
func BenchmarkScaleScan(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := scaleStorage(b, n)
			be := newBackend(time.Now)
			conf := &logical.BackendConfig{Logger: hclog.NewNullLogger(), StorageView: s, System: &logical.StaticSystemView{}}
			if err := be.Setup(context.Background(), conf); err != nil {
				b.Fatal(err)
			}
			be.storage = s
			b.ReportAllocs()
			for b.Loop() {
				dropAllCached(be.credentials.cache)
				if err := be.buildIndex(context.Background(), s); err != nil {
					b.Fatal(err)
				}
			}
			if got := len(be.activity.index.Due(never, 0)); got != n {
				b.Fatalf("indexed %d of %d", got, n)
			}
		})
	}
}

// BenchmarkScaleHeapAfterRestart reports the live heap of a backend started over n
// stored credentials once its index scan has ended, before any is read: what a
// plugin reload costs in memory.
func BenchmarkScaleHeapAfterRestart(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := scaleStorage(b, n)
			for b.Loop() {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				be := startBackend(b, s)
				waitIndexBuilt(b, be)
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-base.HeapAlloc)/(1<<20), "backend-MB")
				be.Cleanup(context.Background())
			}
		})
	}
}

// dropAllCached forgets every cached value, as a fresh backend would start (a
// benchmark's reset between iterations; the engine itself never needs it).
func dropAllCached[V any](c *genCache[V]) {
	c.mu.Lock()
	c.m.Purge()
	for i := range c.gens {
		c.gens[i]++
	}
	c.mu.Unlock()
}

// snapshotReady brings s to what a Clean after a long run leaves: the backend started
// over it has scanned, its snapshot job has written every chunk, and its Clean has
// written the marker.
func snapshotReady(b *testing.B, s logical.Storage) {
	b.Helper()
	if e, err := s.Get(context.Background(), snapshotMarkerKey); err == nil && e != nil {
		return
	}
	be := startBackend(b, s)
	waitIndexBuilt(b, be)
	for {
		if c, _ := be.snapshot.dirtyNames(); c == 0 {
			break
		}
		if err := be.snapshotStep(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
	be.Cleanup(context.Background())
	if e, err := s.Get(context.Background(), snapshotMarkerKey); err != nil || e == nil {
		b.Fatalf("no marker after the Clean: %v", err)
	}
}

// BenchmarkScaleSnapshotStartup measures a start over n stored credentials with the
// index snapshot a Clean left: to the index complete (loaded), to the end of the
// verifying scan, and the Clean after it (nothing dirty); with the snapshot's size per
// credential. BenchmarkScaleStartup's indexed-ms is the same start without a snapshot.
func BenchmarkScaleSnapshotStartup(b *testing.B) {
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := scaleStorage(b, n)
			snapshotReady(b, s)
			var loadTotal, verifiedTotal, cleanTotal time.Duration
			for b.Loop() {
				start := time.Now()
				be := newBackend(time.Now)
				conf := &logical.BackendConfig{Logger: hclog.NewNullLogger(), StorageView: s,
					System: &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
				if err := be.Setup(context.Background(), conf); err != nil {
					b.Fatal(err)
				}
				be.storage = s
				loaded := make(chan time.Duration, 1)
				be.snapshot.loadedHook = func() { loaded <- time.Since(start) }
				if err := be.Initialize(context.Background(), &logical.InitializationRequest{Storage: s}); err != nil {
					b.Fatal(err)
				}
				waitIndexBuilt(b, be)
				select {
				case d := <-loaded:
					loadTotal += d
				default:
					b.Fatal("the start did not load the snapshot")
				}
				verifiedTotal += time.Since(start)
				cs := time.Now()
				be.Cleanup(context.Background())
				cleanTotal += time.Since(cs)
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(ms(loadTotal), "complete-ms")
			b.ReportMetric(ms(verifiedTotal), "verified-ms")
			b.ReportMetric(ms(cleanTotal), "clean-ms")
			keys, err := s.List(context.Background(), snapshotChunkPrefix)
			if err != nil {
				b.Fatal(err)
			}
			var bytes int
			for _, k := range keys {
				e, _ := s.Get(context.Background(), snapshotChunkPrefix+k)
				bytes += len(e.Value)
			}
			b.ReportMetric(float64(bytes)/float64(n), "snapshot-B/cred")
			b.ReportMetric(float64(bytes)/float64(max(len(keys), 1))/1024, "chunk-KiB")
		})
	}
}

// BenchmarkScaleSnapshotClean measures Clean's snapshot work with dirty credentials
// (INTEGRATIONS_SCALE sizes the mount; every dirty name a credential not cached, so
// each is a storage read), at its bound snapshotCleanReads and at a normal few.
func BenchmarkScaleSnapshotClean(b *testing.B) {
	for _, n := range scaleSizes(b) {
		for _, dirty := range []int{100, min(n, snapshotCleanReads)} {
			b.Run(fmt.Sprintf("%d/dirty=%d", n, dirty), func(b *testing.B) {
				s := scaleStorage(b, n)
				snapshotReady(b, s)
				var total time.Duration
				for b.Loop() {
					be := startBackend(b, s)
					waitIndexBuilt(b, be)
					for i := range dirty {
						be.snapshot.markDirty(scaleName(i * (n / dirty)))
					}
					start := time.Now()
					be.Cleanup(context.Background())
					total += time.Since(start)
					if e, err := s.Get(context.Background(), snapshotMarkerKey); err != nil || e == nil {
						b.Fatal("no marker")
					}
				}
				b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "clean-ms")
			})
		}
	}
}
