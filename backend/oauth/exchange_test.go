package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTokenExchangeRequest: the form an exchange sends (RFC 8693 section 2.1) and how
// its answer is read, refused and bounded.
func TestTokenExchangeRequest(t *testing.T) {
	var got *http.Request
	answer := `{"access_token":"exchanged-token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":600,"refresh_token":"never-kept"}`
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = r
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	clock := newFakeClock()
	c := newTestClient(clock)
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: "cid", ClientSecret: "csecret", Audience: "own-audience", Params: map[string]string{"account_id": "x"}}
	req := ExchangeRequest{Audiences: []string{"api-a", "api-b"}, Resources: []string{"https://r.example/"}, Scopes: []string{"read", "write"}, RequestedTokenType: TokenTypeAccessToken}

	ex, err := c.TokenExchange(context.Background(), cfg, "subject-token", req)
	if err != nil {
		t.Fatal(err)
	}
	f := got.PostForm
	if f.Get("grant_type") != GrantTokenExchange || f.Get("subject_token") != "subject-token" || f.Get("subject_token_type") != TokenTypeAccessToken ||
		!slices.Equal(f["audience"], []string{"api-a", "api-b"}) || !slices.Equal(f["resource"], []string{"https://r.example/"}) ||
		f.Get("scope") != "read write" || f.Get("requested_token_type") != TokenTypeAccessToken || f.Has("account_id") {
		t.Fatalf("form %v", f)
	}
	if u, p, ok := got.BasicAuth(); !ok || u != "cid" || p != "csecret" {
		t.Fatalf("client authentication: basic %v %q", ok, u)
	}
	if ex.Token.AccessToken != "exchanged-token" || ex.Token.RefreshToken != "" || ex.IssuedTokenType != TokenTypeAccessToken ||
		ex.Token.Scope != "read write" || ex.Token.Expiry.Sub(ex.Token.IssuedAt) != 10*time.Minute {
		t.Fatalf("answer read as %v %q", ex.Token, ex.IssuedTokenType)
	}

	// A refusal is the provider's code, never its text.
	status, answer = http.StatusBadRequest, `{"error":"invalid_target","error_description":"secret-ish text"}`
	_, err = c.TokenExchange(context.Background(), cfg, "subject-token", req)
	if e := wantError(t, err, Permanent, "invalid_target"); strings.Contains(e.Error(), "secret-ish") {
		t.Fatalf("error echoes the provider: %v", e)
	}
	// A hostile issued_token_type is a bad response.
	status, answer = http.StatusOK, `{"access_token":"t","token_type":"Bearer","issued_token_type":"a b"}`
	_, err = c.TokenExchange(context.Background(), cfg, "subject-token", req)
	wantError(t, err, Transient, CodeBadResponse)
	// No issued_token_type: what was asked.
	status, answer = http.StatusOK, `{"access_token":"t","token_type":"N_A"}`
	ex, err = c.TokenExchange(context.Background(), cfg, "subject-token", ExchangeRequest{RequestedTokenType: TokenTypeJWT})
	if err != nil || ex.IssuedTokenType != TokenTypeJWT || ex.Token.TokenType != "N_A" {
		t.Fatalf("%v %+v", err, ex)
	}
	// The exchange bucket is the credential's own: a burst beyond it sends nothing.
	b := NewBroker(c, clock.Now)
	defer b.Close()
	for i := range RequestBurst + 1 {
		_, err = b.TokenExchange(context.Background(), "cred", cfg, "subject-token", req)
		if i < RequestBurst && err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	wantError(t, err, Transient, CodeThrottled)
	if next := b.RetryAt("cred"); !next.IsZero() {
		t.Fatalf("the credential's own bucket was spent by exchanges: next request at %v", next)
	}
}
