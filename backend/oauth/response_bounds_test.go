package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

// TestDefaultCapNamesAnOversizedAnswer: with the default cap, a chunked answer far
// over it (no Content-Length to refuse it by) is named too large, not a bad response.
// x/oauth2 stops reading at 1 MiB itself, so a cap of 1 MiB would never see the
// excess.
func TestDefaultCapNamesAnOversizedAnswer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.(http.Flusher).Flush() // commits headers without a Content-Length
		_, _ = w.Write([]byte(`{"access_token":"x","pad":"`))
		chunk := []byte(strings.Repeat(oauthtest.Marker, 1000))
		for written := 0; written < 4<<20; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c := NewClient(ClientOptions{})
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID}
	_, err := c.Mint(context.Background(), cfg, "")
	wantError(t, err, Transient, CodeResponseTooLarge)
}

// TestNegativeExpiresIn: a negative lifetime is a bad response (transient), not "no
// lifetime given" — that is 0 or no expires_in, which take the default lifetime.
func TestNegativeExpiresIn(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]struct{ contentType, body string }{
		"json":   {"application/json", `{"access_token":"a","token_type":"bearer","expires_in":-60}`},
		"string": {"application/json", `{"access_token":"a","token_type":"bearer","expires_in":"-1"}`},
		"form":   {"application/x-www-form-urlencoded", `access_token=a&token_type=bearer&expires_in=-5`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", answer.contentType)
				_, _ = w.Write([]byte(answer.body))
			}))
			t.Cleanup(srv.Close)
			c := NewClient(ClientOptions{})
			cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID}
			tok, err := c.Mint(context.Background(), cfg, "")
			if err == nil {
				t.Fatalf("a negative expires_in was accepted: expiry %s", tok.Expiry)
			}
			wantError(t, err, Transient, CodeBadResponse)
		})
	}
}
