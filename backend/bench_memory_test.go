package backend

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
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
func loadMemoryMix(b *testing.B, be *integrationsBackend, s logical.Storage, n int) {
	b.Helper()
	ctx := context.Background()
	cert := rsaCertValues(b)
	for i := range n {
		mustOK(b, be, s, logical.CreateOperation, "credentials/"+scaleName(i), memoryRequest(b, i, cert))
	}
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
	for i := range n {
		mustOK(b, be, s, logical.ReadOperation, "access/"+scaleName(i), nil)
	}
	listAllCredentials(b, be, s, nil, 1000)
	if err := be.flushUsage(ctx, s); err != nil {
		b.Fatal(err)
	}
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
				loadMemoryMix(b, be, s, n)
				runtime.GC()
				var all runtime.MemStats
				runtime.ReadMemStats(&all)
				if f := os.Getenv("INTEGRATIONS_HEAPPROFILE"); f != "" {
					out, err := os.Create(f)
					if err != nil {
						b.Fatal(err)
					}
					if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
						b.Fatal(err)
					}
					out.Close()
				}
				be.Cleanup(context.Background())
				be = nil
				runtime.GC()
				var storageOnly runtime.MemStats
				runtime.ReadMemStats(&storageOnly)
				runtime.KeepAlive(s)
				mb := func(v uint64) float64 { return float64(v) / (1 << 20) }
				b.ReportMetric(mb(all.HeapAlloc-storageOnly.HeapAlloc), "backend-MB")
				b.ReportMetric(mb(storageOnly.HeapAlloc-base.HeapAlloc), "storage-MB")
				b.ReportMetric(mb(all.Sys), "sys-MB")
				b.ReportMetric(float64(all.HeapAlloc-storageOnly.HeapAlloc)/float64(n), "backend-B/credential")
			}
		})
	}
}
