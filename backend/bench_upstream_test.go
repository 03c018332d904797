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
			var added []string
			var storage logical.Storage
			defer func() { // scaleStorage is shared between benchmarks: leave it as it was
				for _, name := range added {
					if err := storage.Delete(context.Background(), credentialPrefix+name); err != nil {
						b.Fatal(err)
					}
				}
			}()
			end := time.Now().Add(3 * day).UTC().Format(time.RFC3339)
			benchScaleAlerts(b, n, func(be *integrationsBackend, s logical.Storage) {
				storage = s
				for i := range expiring {
					name := fmt.Sprintf("expiring-%03d", i)
					mustOK(b, be, s, logical.CreateOperation, "credentials/"+name, map[string]any{
						"type": "oauth2_client_credentials", "token_url": "https://auth.example.com/oauth2/token",
						"client_id": "app", "client_secret": "cs", "client_secret_expires_at": end,
					})
					added = append(added, name)
				}
			}, expiring)
		})
	}
}
