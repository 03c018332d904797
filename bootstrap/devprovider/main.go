// Command devprovider is the local OAuth 2.0 authorization server `make dev` starts
// beside Vault, so the OAuth walkthroughs (client credentials, authorization code with
// refresh tokens, Vault Agent, verify) run on a laptop with no account anywhere.
//
// It is ory/fosite — a real implementation of the standards, the one the repo's
// e2e/internal/fositetest drives in tests — on plain HTTP on loopback (the engine allows
// http to loopback), with one confidential client:
//
//	client_id      dev-client
//	client_secret  dev-client-secret
//	grants         client_credentials, authorization_code (PKCE), refresh_token (rotating)
//	token URL      http://127.0.0.1:8300/oauth2/token
//	auth URL       http://127.0.0.1:8300/oauth2/auth
//
// The authorization endpoint consents at once, for the user "dev-user", to every scope
// asked, and redirects straight back with a code: there is no login page. Every
// authorization-code grant gets a refresh token, and each refresh returns a new one and
// retires the old (fosite revokes the grant when a retired one is presented again).
// Access tokens live DEV_PROVIDER_TOKEN_TTL (a Go duration, default 1h).
//
// The client's redirect URIs are this engine's callback on loopback for the mounts
// integrations/ and integrations-tf/ (any port: RFC 8252 §7.3), plus those listed,
// comma-separated, in DEV_PROVIDER_REDIRECT_URIS. DEV_PROVIDER_PORT sets the port
// (default 8300). State is in memory: a restart forgets every token.
//
// It is for development only: it authenticates nobody and logs one line per request
// (never a token or a secret) to stderr.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"
)

const (
	clientID     = "dev-client"
	clientSecret = "dev-client-secret" //nolint:gosec // G101: the local dev provider's published test secret (make dev prints it), no real credential
	subject      = "dev-user"
)

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("devprovider: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	port := envOr("DEV_PROVIDER_PORT", "8300")
	ttl, err := time.ParseDuration(envOr("DEV_PROVIDER_TOKEN_TTL", "1h"))
	if err != nil || ttl < time.Second {
		return fmt.Errorf("DEV_PROVIDER_TOKEN_TTL=%q: want a Go duration of at least 1s", os.Getenv("DEV_PROVIDER_TOKEN_TTL"))
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return fmt.Errorf("listen (set DEV_PROVIDER_PORT for another port): %w", err)
	}
	base := "http://" + ln.Addr().String()
	p, err := newProvider(ttl, redirectURIs())
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p.routes(base), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut) //nolint:contextcheck // ctx is already done here: the shutdown needs a deadline of its own
	}()
	log.Printf("listening on %s: token URL %s/oauth2/token, auth URL %s/oauth2/auth, client %s / %s", base, base, base, clientID, clientSecret)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// redirectURIs is where the authorization endpoint may send the browser back to.
func redirectURIs() []string {
	var out []string
	for _, mount := range []string{"integrations", "integrations-tf"} {
		for _, host := range []string{"127.0.0.1", "[::1]"} {
			out = append(out, "http://"+host+"/v1/"+mount+"/oauth/callback")
		}
	}
	for _, u := range strings.Split(os.Getenv("DEV_PROVIDER_REDIRECT_URIS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

type provider struct {
	oauth fosite.OAuth2Provider
}

func newProvider(ttl time.Duration, redirects []string) (*provider, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &fosite.Config{
		GlobalSecret:         secret,
		AccessTokenLifespan:  ttl,
		RefreshTokenLifespan: 30 * 24 * time.Hour,
		// A development provider grants whatever scope and audience is asked for.
		ScopeStrategy:            func([]string, string) bool { return true },
		AudienceMatchingStrategy: func([]string, []string) error { return nil },
		// Every authorization-code grant gets a refresh token, offline_access asked or not.
		RefreshTokenScopes: []string{},
		EnforcePKCE:        true,
	}
	cfg.ClientSecretsHasher = &fosite.BCrypt{Config: cfg}
	store := storage.NewMemoryStore()
	hash, err := bcrypt.GenerateFromPassword([]byte(clientSecret), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	store.Clients[clientID] = &fosite.DefaultClient{
		ID: clientID, Secret: hash, RedirectURIs: redirects,
		GrantTypes:    fosite.Arguments{"client_credentials", "authorization_code", "refresh_token"},
		ResponseTypes: fosite.Arguments{"code"},
	}
	strategy := compose.NewOAuth2HMACStrategy(cfg)
	for _, factory := range []compose.Factory{
		compose.OAuth2ClientCredentialsGrantFactory, compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory, compose.OAuth2PKCEFactory,
	} {
		h := factory(cfg, store, strategy)
		if ah, ok := h.(fosite.AuthorizeEndpointHandler); ok {
			cfg.AuthorizeEndpointHandlers.Append(ah)
		}
		if th, ok := h.(fosite.TokenEndpointHandler); ok {
			cfg.TokenEndpointHandlers.Append(th)
		}
	}
	return &provider{oauth: fosite.NewOAuth2Provider(store, cfg)}, nil
}

func (p *provider) routes(base string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", p.token)
	mux.HandleFunc("GET /oauth2/auth", p.authorize)
	// RFC 8414 metadata, and the same at / so a curl shows what this is.
	meta := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                base,
			"token_endpoint":                        base + "/oauth2/token",
			"authorization_endpoint":                base + "/oauth2/auth",
			"grant_types_supported":                 []string{"client_credentials", "authorization_code", "refresh_token"},
			"response_types_supported":              []string{"code"},
			"code_challenge_methods_supported":      []string{"S256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		})
	}
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", meta)
	mux.HandleFunc("GET /{$}", meta)
	return http.MaxBytesHandler(mux, 64<<10)
}

// token is fosite's token endpoint: every scope asked is granted.
func (p *provider) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := p.oauth.NewAccessRequest(ctx, r, &fosite.DefaultSession{Subject: subject})
	if err == nil {
		for _, scope := range ar.GetRequestedScopes() {
			ar.GrantScope(scope)
		}
		for _, aud := range ar.GetRequestedAudience() {
			ar.GrantAudience(aud)
		}
		var resp fosite.AccessResponder
		if resp, err = p.oauth.NewAccessResponse(ctx, ar); err == nil {
			_, refreshed := resp.GetExtra("refresh_token").(string)
			log.Printf("token %q for %q: 200 (refresh token issued: %t)", r.PostForm.Get("grant_type"), ar.GetClient().GetID(), refreshed) //nolint:gosec // G706: %q escapes every control character, so a request cannot forge a log line
			p.oauth.WriteAccessResponse(ctx, w, ar, resp)
			return
		}
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	log.Printf("token %q: %d %q", r.PostForm.Get("grant_type"), rfc.StatusCode(), rfc.ErrorField) //nolint:gosec // G706: %q escapes every control character, so a request cannot forge a log line
	p.oauth.WriteAccessError(ctx, w, ar, rfc)
}

// authorize consents at once for dev-user to every scope asked and redirects back to
// the client with the code.
func (p *provider) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		log.Printf("authorize: %d %q", rfc.StatusCode(), rfc.ErrorField) //nolint:gosec // G706: %q escapes every control character, so a request cannot forge a log line
		p.oauth.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	for _, aud := range ar.GetRequestedAudience() {
		ar.GrantAudience(aud)
	}
	resp, err := p.oauth.NewAuthorizeResponse(ctx, ar, &fosite.DefaultSession{Subject: subject})
	if err != nil {
		log.Printf("authorize: %q", fosite.ErrorToRFC6749Error(err).ErrorField) //nolint:gosec // G706: %q escapes every control character, so a request cannot forge a log line
		p.oauth.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	log.Printf("authorize %q: consented for %s, redirecting to %q", ar.GetClient().GetID(), subject, ar.GetRedirectURI().Redacted()) //nolint:gosec // G706: %q escapes every control character, so a request cannot forge a log line
	p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}
