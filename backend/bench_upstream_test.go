package backend

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkScaleAlertsUpstream measures reading alerts on a mount of n credentials of
// the mix plus 100 OAuth credentials whose client secret expires in 3 days: the read
// visits the 100 the alerting index files, so its cost follows them, not n.
func BenchmarkScaleAlertsUpstream(b *testing.B) {
	const expiring = 100
	for _, n := range scaleSizes(b) {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := scaleStorage(b, n)
			be := startBackend(b, s)
			defer be.Cleanup(context.Background())
			waitIndexBuilt(b, be)
			end := time.Now().Add(3 * day).UTC().Format(time.RFC3339)
			for i := range expiring {
				mustOK(b, be, s, logical.CreateOperation, fmt.Sprintf("credentials/expiring-%03d", i), map[string]any{
					"type": "oauth2_client_credentials", "token_url": "https://auth.example.com/oauth2/token",
					"client_id": "app", "client_secret": "cs", "client_secret_expires_at": end,
				})
			}
			// scaleStorage is shared between benchmarks: leave it as it was.
			defer func() {
				for i := range expiring {
					mustOK(b, be, s, logical.DeleteOperation, fmt.Sprintf("credentials/expiring-%03d", i), nil)
				}
			}()
			mustOK(b, be, s, logical.ReadOperation, "alerts", nil) // warm
			b.ReportAllocs()
			for b.Loop() {
				resp := mustOK(b, be, s, logical.ReadOperation, "alerts", nil)
				if got := len(resp.Data["alerts"].([]map[string]any)); got != expiring {
					b.Fatalf("%d alerts, want %d", got, expiring)
				}
			}
		})
	}
}
