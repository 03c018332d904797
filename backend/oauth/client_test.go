package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/oauthtest"
)

func newTestClient(clock *fakeClock) *Client {
	c := NewClient(ClientOptions{Timeout: 5 * time.Second, Now: clock.Now})
	// The host gate paces on the wall clock; here it also moves with the test's
	// clock, so a host paused by a Retry-After ends when the test advances past it.
	start := clock.Now()
	c.gate = newHostGate(gateClock{now: func() time.Time { return time.Now().Add(clock.Now().Sub(start)) }})
	return c
}

// wantError asserts err is an *Error of class and code, and leaks nothing.
func wantError(t *testing.T, err error, class Class, code string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s %s", class, code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not *Error", err, err)
	}
	if e.Class != class || e.Code != code {
		t.Fatalf("got %s %q (%v), want %s %q", e.Class, e.Code, err, class, code)
	}
	assertNoLeak(t, err.Error())
	return e
}

func TestMintClientCredentials(t *testing.T) {
	t.Parallel()
	for _, style := range []string{AuthStyleHeader, AuthStyleBody} {
		t.Run(style, func(t *testing.T) {
			t.Parallel()
			p := newProvider(t, providerOptions{clientAuth: style})
			clock := newFakeClock()
			cfg := p.config(style)
			cfg.Audience = "https://api.example"

			tok, err := newTestClient(clock).Mint(context.Background(), cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.Scope != "read write" {
				t.Errorf("token = %+v", tok)
			}
			if !tok.IssuedAt.Equal(clock.Now()) || !tok.Expiry.Equal(clock.Now().Add(2*time.Hour)) {
				t.Errorf("issued %v expiry %v, want the injected clock and +2h", tok.IssuedAt, tok.Expiry)
			}
			req := p.last(t)
			if req.AuthStyle != style {
				t.Errorf("client authenticated with %s, want %s", req.AuthStyle, style)
			}
			if got := req.Form.Get("grant_type"); got != "client_credentials" {
				t.Errorf("grant_type = %q", got)
			}
			if got := req.Form.Get("audience"); got != cfg.Audience {
				t.Errorf("audience = %q", got)
			}
			if style == AuthStyleHeader && req.Form.Has("client_secret") {
				t.Error("header style also sent the secret in the body")
			}
		})
	}
}

func TestMintWrongAuthStyleIsInvalidClient(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{clientAuth: AuthStyleHeader})
	_, err := newTestClient(newFakeClock()).Mint(context.Background(), p.config(AuthStyleBody), "")
	e := wantError(t, err, Permanent, "invalid_client")
	if e.Status != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", e.Status)
	}
	if p.requests.Load() != 1 {
		t.Errorf("%d requests, want 1 (no auth-style probing)", p.requests.Load())
	}
}

func TestMintPassword(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	c := newTestClient(newFakeClock())
	cfg := p.config(AuthStyleHeader)
	cfg.Grant, cfg.Username, cfg.Password = GrantPassword, oauthtest.Username, oauthtest.Password

	tok, err := c.Mint(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Errorf("token = %+v, want access and refresh tokens", tok)
	}
	if f := p.last(t).Form; f.Get("grant_type") != "password" || f.Get("username") != oauthtest.Username {
		t.Errorf("form = %v", f)
	}

	cfg.Password = "SECRET-password-wrong"
	_, err = c.Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, "invalid_grant")
	if strings.Contains(err.Error(), cfg.Password) {
		t.Error("error leaks the password")
	}
}

func TestAuthorizationCodeWithPKCE(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{forcePKCE: true})
	c := newTestClient(newFakeClock())
	cfg := p.config(AuthStyleBody)
	cfg.Grant = GrantAuthorizationCode

	state, err := NewState()
	if err != nil {
		t.Fatal(err)
	}
	verifier := NewVerifier()
	consent := AuthCodeURL(cfg, state, verifier)
	q := mustQuery(t, consent)
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") != state {
		t.Fatalf("consent URL lacks PKCE or state: %s", consent)
	}

	code, gotState := p.authorize(t, consent)
	if gotState != state {
		t.Fatalf("state = %q, want %q", gotState, state)
	}
	tok, err := c.Exchange(context.Background(), cfg, code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token = %+v", tok)
	}
	if got := p.last(t).Form.Get("code_verifier"); got != verifier {
		t.Errorf("code_verifier sent = %q", got)
	}

	t.Run("wrong verifier", func(t *testing.T) {
		code, _ := p.authorize(t, AuthCodeURL(cfg, state, verifier))
		_, err := c.Exchange(context.Background(), cfg, code, NewVerifier())
		wantError(t, err, Permanent, "invalid_grant")
	})
	t.Run("code reused", func(t *testing.T) {
		_, err := c.Exchange(context.Background(), cfg, code, verifier)
		wantError(t, err, Permanent, "invalid_grant")
	})
	t.Run("verifier missing", func(t *testing.T) {
		code, _ := p.authorize(t, AuthCodeURL(cfg, state, verifier))
		_, err := c.Exchange(context.Background(), cfg, code, "")
		wantError(t, err, Permanent, "invalid_request")
	})
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	for _, rotate := range []bool{true, false} {
		name := map[bool]string{true: "rotation", false: "no rotation"}[rotate]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := newProvider(t, providerOptions{rotateRefresh: rotate})
			c := newTestClient(newFakeClock())
			cfg := p.config(AuthStyleHeader)
			cfg.Grant = GrantAuthorizationCode
			verifier := NewVerifier()
			code, _ := p.authorize(t, AuthCodeURL(cfg, "s", verifier))
			first, err := c.Exchange(context.Background(), cfg, code, verifier)
			if err != nil {
				t.Fatal(err)
			}

			second, err := c.Mint(context.Background(), cfg, first.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			if f := p.last(t).Form; f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != first.RefreshToken {
				t.Errorf("refresh request form = %v", f)
			}
			if second.AccessToken == first.AccessToken {
				t.Error("refresh returned the old access token")
			}
			if rotate == (second.RefreshToken == first.RefreshToken) {
				t.Errorf("rotate=%v but refresh token %q -> %q", rotate, first.RefreshToken, second.RefreshToken)
			}
			// Without rotation the provider's answer carries no refresh token at all:
			// the one Mint returned is the old one, kept by the client.
			if answered := p.LastIssued(t).Refresh; rotate == (answered == "") {
				t.Errorf("rotate=%v but the provider's refresh answer carried refresh token %q", rotate, answered)
			}
			if !rotate && second.RefreshToken != first.RefreshToken {
				t.Errorf("an answer without a refresh token lost the old one: %q -> %q", first.RefreshToken, second.RefreshToken)
			}

			// The old refresh token works again only without rotation.
			_, err = c.Mint(context.Background(), cfg, first.RefreshToken)
			if rotate {
				wantError(t, err, Permanent, "invalid_grant")
			} else if err != nil {
				t.Fatalf("old refresh token refused without rotation: %v", err)
			}
			// The token Mint returned always refreshes.
			if _, err := c.Mint(context.Background(), cfg, second.RefreshToken); err != nil {
				t.Fatalf("refresh with the returned refresh token: %v", err)
			}
		})
	}
}

func TestMintAuthorizationCodeWithoutRefreshToken(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	cfg := p.config(AuthStyleHeader)
	cfg.Grant = GrantAuthorizationCode
	_, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, CodeNoRefreshToken)
	if n := p.requests.Load(); n != 0 {
		t.Errorf("%d provider requests, want 0", n)
	}
}

// TestZoomAccountCredentials runs the zoom preset against the test server;
// the provider's token handler checks Zoom's grant_type=account_credentials
// and account_id and then lets the server treat it as client credentials.
func TestZoomAccountCredentials(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{clientAuth: AuthStyleHeader})
	cfg, err := FromFields("zoom", map[string]any{
		"account_id":    oauthtest.AccountID,
		"client_id":     oauthtest.ClientID,
		"client_secret": oauthtest.ClientSecret,
		"token_url":     p.tokenURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(newFakeClock())
	tok, err := c.Mint(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" {
		t.Fatal("no access token")
	}
	req := p.last(t)
	if req.Form.Get("grant_type") != "account_credentials" || req.Form.Get("account_id") != oauthtest.AccountID {
		t.Errorf("form = %v", req.Form)
	}
	if req.AuthStyle != AuthStyleHeader || req.BasicUser != oauthtest.ClientID {
		t.Errorf("auth = %s user %q, want Basic", req.AuthStyle, req.BasicUser)
	}

	cfg.Params = map[string]string{"account_id": "someone-else"}
	_, err = c.Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, "invalid_request")
}

func TestPresetsAgainstLocalServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		typ       string
		fields    map[string]any
		serverFor string // client authentication the server accepts
		wantGrant string
		wantStyle string
		wantScope string
	}{
		{"m365", "m365", map[string]any{"tenant": "contoso.onmicrosoft.com"},
			AuthStyleBody, "client_credentials", AuthStyleBody, "https://graph.microsoft.com/.default"},
		{"microsoft_graph alias", "microsoft_graph", map[string]any{"tenant": "contoso.onmicrosoft.com", "scopes": []string{"a", "b"}},
			AuthStyleBody, "client_credentials", AuthStyleBody, "a b"},
		{"servicenow client credentials", "servicenow_oauth", map[string]any{"instance": "dev1234"},
			AuthStyleBody, "client_credentials", AuthStyleBody, ""},
		{"servicenow password", "servicenow_oauth", map[string]any{"instance": "dev1234", "username": oauthtest.Username, "password": oauthtest.Password},
			AuthStyleBody, "password", AuthStyleBody, ""},
		{"cisco", "cisco_client_credentials", map[string]any{"auth_url": "https://id.cisco.com/oauth2/default/v1/token"},
			AuthStyleHeader, "client_credentials", AuthStyleHeader, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProvider(t, providerOptions{clientAuth: tt.serverFor})
			tt.fields["client_id"] = oauthtest.ClientID
			tt.fields["client_secret"] = oauthtest.ClientSecret
			tt.fields["token_url"] = p.tokenURL()
			cfg, err := FromFields(tt.typ, tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			req := p.last(t)
			if req.Form.Get("grant_type") != tt.wantGrant || req.AuthStyle != tt.wantStyle || req.Form.Get("scope") != tt.wantScope {
				t.Errorf("grant %q style %s scope %q", req.Form.Get("grant_type"), req.AuthStyle, req.Form.Get("scope"))
			}
			if tok.Scope != tt.wantScope {
				t.Errorf("token scope = %q, want %q", tok.Scope, tt.wantScope)
			}
		})
	}
}

func TestTransportFailuresAreClassified(t *testing.T) {
	t.Parallel()
	retryDate := newFakeClock().Now().Add(90 * time.Second).Format(http.TimeFormat)
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		class      Class
		code       string
		status     int
		retryAfter time.Duration
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "internal "+oauthtest.Marker, http.StatusInternalServerError)
		}, Transient, "http_500", 500, 0},
		{"502 with oauth server_error", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusBadGateway, `{"error":"server_error","error_description":"`+oauthtest.Marker+`"}`)
		}, Transient, "server_error", 502, 0},
		{"503 retry-after seconds", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "120")
			http.Error(w, oauthtest.Marker, http.StatusServiceUnavailable)
		}, Transient, "http_503", 503, 2 * time.Minute},
		{"503 retry-after date", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", retryDate)
			http.Error(w, oauthtest.Marker, http.StatusServiceUnavailable)
		}, Transient, "http_503", 503, 90 * time.Second},
		{"429", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "7")
			http.Error(w, oauthtest.Marker, http.StatusTooManyRequests)
		}, Transient, CodeRateLimited, 429, 7 * time.Second},
		{"400 without code", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, oauthtest.Marker, http.StatusBadRequest)
		}, Permanent, "http_400", 400, 0},
		{"unknown code on 400", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusBadRequest, `{"error":"invalid_dpop_proof","error_description":"`+oauthtest.Marker+`"}`)
		}, Permanent, "invalid_dpop_proof", 400, 0},
		{"200 not json", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, "<html>"+oauthtest.Marker+"</html>")
		}, Transient, CodeBadResponse, 200, 0},
		{"200 without access_token", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, `{"token_type":"`+oauthtest.Marker+`"}`)
		}, Transient, CodeBadResponse, 200, 0},
		{"200 with error code", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, `{"error":"invalid_client","error_description":"`+oauthtest.Marker+`"}`)
		}, Permanent, "invalid_client", 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID, ClientSecret: oauthtest.ClientSecret}
			_, err := newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
			e := wantError(t, err, tt.class, tt.code)
			if e.Status != tt.status || e.RetryAfter != tt.retryAfter {
				t.Errorf("status %d retry-after %v, want %d %v", e.Status, e.RetryAfter, tt.status, tt.retryAfter)
			}
		})
	}
}

func TestProviderRefusalsArePermanent(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	c := newTestClient(newFakeClock())

	cfg := p.config(AuthStyleHeader)
	cfg.ClientSecret = "SECRET-client-wrong"
	_, err := c.Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, "invalid_client")
	if strings.Contains(err.Error(), cfg.ClientSecret) {
		t.Error("error leaks the wrong secret")
	}

	cfg = p.config(AuthStyleHeader)
	cfg.Grant = GrantAuthorizationCode
	_, err = c.Mint(context.Background(), cfg, "SECRET-unknown-refresh-token")
	wantError(t, err, Permanent, "invalid_grant")
	if strings.Contains(err.Error(), "SECRET-unknown-refresh-token") {
		t.Error("error leaks the refresh token")
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := Config{Grant: GrantClientCredentials, TokenURL: "http://" + addr + "/token", ClientID: oauthtest.ClientID, ClientSecret: oauthtest.ClientSecret}
	_, err = newTestClient(newFakeClock()).Mint(context.Background(), cfg, "")
	e := wantError(t, err, Transient, netpolicy.KindConnectionRefused)
	_, port, _ := net.SplitHostPort(addr)
	if e.Status != 0 || !strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), port) {
		t.Errorf("error = %v, want the kind without the address or port", err)
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select { // hang until the client gives up or the test ends
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs before srv.Close
	c := NewClient(ClientOptions{Timeout: 50 * time.Millisecond})
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID, ClientSecret: oauthtest.ClientSecret}
	_, err := c.Mint(context.Background(), cfg, "")
	wantError(t, err, Transient, CodeTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("timeout error does not match context.DeadlineExceeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Mint(ctx, cfg, "")
	wantError(t, err, Transient, CodeCanceled)
}

func TestResponseSizeCap(t *testing.T) {
	t.Parallel()
	big := `{"access_token":"` + strings.Repeat("a", 4096) + `","token_type":"bearer","pad":"` + oauthtest.Marker + `"}`
	for _, chunked := range []bool{false, true} {
		name := map[bool]string{false: "content-length", true: "chunked"}[chunked]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if chunked {
					w.(http.Flusher).Flush() // commits headers without a Content-Length
				}
				_, _ = w.Write([]byte(big))
			}))
			t.Cleanup(srv.Close)
			c := NewClient(ClientOptions{MaxResponseBytes: 1024})
			cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID, ClientSecret: oauthtest.ClientSecret}
			_, err := c.Mint(context.Background(), cfg, "")
			e := wantError(t, err, Transient, CodeResponseTooLarge)
			if e.Status != http.StatusOK {
				t.Errorf("status = %d", e.Status)
			}
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		t.Parallel()
		body := `{"access_token":"x","token_type":"bearer","expires_in":60}`
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, body)
		}))
		t.Cleanup(srv.Close)
		clock := newFakeClock()
		c := NewClient(ClientOptions{MaxResponseBytes: int64(len(body)), Now: clock.Now})
		cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID}
		tok, err := c.Mint(context.Background(), cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		if !tok.Expiry.Equal(clock.Now().Add(time.Minute)) {
			t.Errorf("expiry = %v", tok.Expiry)
		}
	})
}

func TestRedirects(t *testing.T) {
	t.Parallel()
	p := newProvider(t, providerOptions{})
	other := newProvider(t, providerOptions{}) // same loopback IP, another port: another host

	mux := http.NewServeMux()
	mux.HandleFunc("/cross", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.tokenURL(), http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/token", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/token", p.handleToken)
	front := httptest.NewServer(mux)
	t.Cleanup(front.Close)
	c := newTestClient(newFakeClock())

	cfg := p.config(AuthStyleHeader)
	cfg.TokenURL = front.URL + "/cross"
	_, err := c.Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, CodeRedirectRefused)
	if n := other.requests.Load(); n != 0 {
		t.Errorf("the other host received %d requests", n)
	}

	cfg.TokenURL = front.URL + "/loop"
	_, err = c.Mint(context.Background(), cfg, "")
	e := wantError(t, err, Permanent, CodeRedirectRefused)
	if !strings.Contains(e.Error(), "more than 3") {
		t.Errorf("error = %v", e)
	}

	// A 307 on the same host keeps method and body, so it works.
	cfg.TokenURL = front.URL + "/same"
	if _, err := c.Mint(context.Background(), cfg, ""); err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
}

func TestInsecureEndpointRefused(t *testing.T) {
	t.Parallel()
	c := newTestClient(newFakeClock())
	for _, grant := range []Grant{GrantClientCredentials, GrantAuthorizationCode} {
		cfg := Config{Grant: grant, TokenURL: "http://idp.example/token", AuthURL: "https://idp.example/authorize", ClientID: oauthtest.ClientID, ClientSecret: oauthtest.ClientSecret}
		_, err := c.Mint(context.Background(), cfg, "refresh")
		wantError(t, err, Permanent, CodeInsecureEndpoint)
		if grant == GrantAuthorizationCode {
			_, err = c.Exchange(context.Background(), cfg, "code", "verifier")
			wantError(t, err, Permanent, CodeInsecureEndpoint)
		}
	}
	cfg := Config{Grant: GrantPassword, TokenURL: "https://idp.example/token", ClientID: oauthtest.ClientID}
	_, err := c.Mint(context.Background(), cfg, "")
	wantError(t, err, Permanent, CodeInvalidConfig)
}

func TestCheckEndpoint(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"https://idp.example/token":       true,
		"https://10.0.0.1:8443/token":     true,
		"http://localhost:8080/token":     true,
		"http://LOCALHOST/token":          true,
		"http://127.0.0.1/token":          true,
		"http://127.9.8.7:1/token":        true,
		"http://[::1]:9000/token":         true,
		"http://idp.example/token":        false,
		"http://10.0.0.1/token":           false,
		"http://localhost.evil.com/token": false,
		"http://[::2]/token":              false,
		"ftp://idp.example/token":         false,
		"https://user:pw@idp.example/":    false,
		"/token":                          false,
		"":                                false,
		"https://":                        false,
		"://bad":                          false,
	}
	for raw, ok := range tests {
		if err := CheckEndpoint(raw); (err == nil) != ok {
			t.Errorf("CheckEndpoint(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestNewStateAndVerifier(t *testing.T) {
	t.Parallel()
	a, err := NewState()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewState()
	if a == b || len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Errorf("states %q %q: want distinct 43-char base64url", a, b)
	}
	if v := NewVerifier(); len(v) < 43 || v == NewVerifier() {
		t.Errorf("verifier %q", v)
	}
}

func TestTokenValidFor(t *testing.T) {
	t.Parallel()
	now := newFakeClock().Now()
	tok := &Token{AccessToken: "a", Expiry: now.Add(time.Minute)}
	var nilTok *Token
	switch {
	case !tok.ValidFor(now, time.Minute):
		t.Error("exactly d left should be valid")
	case tok.ValidFor(now, time.Minute+time.Nanosecond):
		t.Error("less than d left should be invalid")
	case (&Token{Expiry: now.Add(time.Hour)}).ValidFor(now, 0):
		t.Error("empty access token should be invalid")
	case nilTok.ValidFor(now, 0):
		t.Error("nil token should be invalid")
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestTokenLifetimeAndFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		lifetime    time.Duration // ClientOptions.DefaultLifetime
		wantExpiry  time.Duration
		wantScope   string
		wantType    string
	}{
		{"json seconds", "application/json", `{"access_token":"a","token_type":"bearer","expires_in":60,"scope":"x y"}`, 0, time.Minute, "x y", "Bearer"},
		{"json string seconds", "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":"120"}`, 0, 2 * time.Minute, "read", "Bearer"},
		{"no expires_in", "application/json", `{"access_token":"a","token_type":"bearer"}`, 0, time.Hour, "read", "Bearer"},
		{"no expires_in, custom default", "application/json", `{"access_token":"a"}`, 10 * time.Minute, 10 * time.Minute, "read", "Bearer"},
		{"form encoded", "application/x-www-form-urlencoded", `access_token=a&token_type=mac&expires_in=30&scope=p+q`, 0, 30 * time.Second, "p q", "MAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			clock := newFakeClock()
			c := NewClient(ClientOptions{DefaultLifetime: tt.lifetime, Now: clock.Now})
			cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: "id", Scopes: []string{"read"}}
			tok, err := c.Mint(context.Background(), cfg, "keep-me")
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Expiry.Sub(clock.Now()); got != tt.wantExpiry {
				t.Errorf("lifetime = %v, want %v", got, tt.wantExpiry)
			}
			if tok.Scope != tt.wantScope || tok.TokenType != tt.wantType || tok.RefreshToken != "keep-me" {
				t.Errorf("token = %+v", *tok)
			}
		})
	}
}

// An answer whose fields could not be stored in one storage entry is refused as a
// bad response, naming the field and its size, never its value; at the bound it is
// kept.
func TestTokenFieldsBounded(t *testing.T) {
	t.Parallel()
	cases := []struct {
		field string
		max   int
	}{{"access_token", MaxAccessTokenBytes}, {"refresh_token", MaxRefreshTokenBytes}, {"token_type", maxTokenTypeBytes}, {"scope", maxScopeBytes}}
	for _, tc := range cases {
		for _, n := range []int{tc.max, tc.max + 1} {
			t.Run(fmt.Sprintf("%s-%d", tc.field, n), func(t *testing.T) {
				t.Parallel()
				fields := map[string]string{"access_token": "at", "token_type": "bearer"}
				fields[tc.field] = strings.Repeat("b", n)
				body, _ := json.Marshal(fields)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					writeJSON(w, http.StatusOK, string(body))
				}))
				t.Cleanup(srv.Close)
				c := NewClient(ClientOptions{MaxResponseBytes: 1 << 20})
				cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID}
				_, err := c.Mint(context.Background(), cfg, "")
				if n == tc.max {
					if err != nil {
						t.Fatalf("at the bound: %v", err)
					}
					return
				}
				e := wantError(t, err, Transient, CodeBadResponse)
				if !strings.Contains(e.Error(), tc.field) || strings.Contains(e.Error(), "bbbb") {
					t.Fatalf("refusal %q: want the field named and no value", e.Error())
				}
			})
		}
	}
}

// TestCanceledWhileWaitingForTheHostIsTransient: a request whose context ends while it
// waits for its token host's slot fails with the same *Error as one that ends at the
// provider (it was a plain error, so a caller's verdict depended on where the request
// was: TestTimeoutIsTransient failed now and then on a loaded machine).
func TestCanceledWhileWaitingForTheHostIsTransient(t *testing.T) {
	t.Parallel()
	entered, done := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select { // hold the host's one slot until the client gives up or the test ends
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs before srv.Close
	c := NewClient(ClientOptions{Timeout: time.Minute})
	cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: oauthtest.ClientID, ClientSecret: oauthtest.ClientSecret,
		Host: HostLimits{Concurrency: 1}}
	holder, stop := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() { _, err := c.Mint(holder, cfg, ""); held <- err }()
	<-entered // the slot is taken

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Mint(ctx, cfg, "")
	wantError(t, err, Transient, CodeCanceled)

	tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer tcancel()
	_, err = c.Mint(tctx, cfg, "")
	var e *Error
	if !errors.As(err, &e) || e.Class != Transient || (e.Code != CodeTimeout && e.Code != CodeThrottled) {
		t.Fatalf("a request timing out in the host's queue: %v (%T), want a transient timeout or throttled *Error", err, err)
	}
	stop()
	if err := <-held; err == nil {
		t.Fatal("the request holding the slot succeeded after its context was canceled")
	}
}
