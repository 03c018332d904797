//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/fositetest"
)

// TestRotatedRefreshTokenSurvivesEditsFosite (issue 21): against ory/fosite with
// refresh-token rotation and reuse detection on (a retired refresh token presented
// again revokes the whole grant), each refresh path is held at the provider while a
// routine edit lands through the vault CLI, then released. Afterwards access/ succeeds
// without a new consent, and the provider never received a retired refresh token.
//
// The paths run here: an access/ read of a token that is due, a read in the refresh
// window (refresh ahead, the refresh running behind the answered read),
// credentials/<name>/verify, and the code exchange of a consent. Keep-alive and the
// verify schedule store their answer through the same code (tokenStore.put, reached
// through mintToken as verify is) and are covered in-process with the injected clock
// (backend/rotation_kept_test.go): on a real server they would wait for Vault's
// periodic tick and an interval of at least an hour.
func TestRotatedRefreshTokenSurvivesEditsFosite(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/config", "callback_base_url="+shared.addr)
	// Access tokens of 3 s by default: the access path refreshes only a token that is
	// due, and for a token shorter than expiry_buffer that is half its lifetime after
	// issue (each path's wait).
	const accessTTL = 3 * time.Second
	p := fositetest.New(t, fositetest.Options{AccessTTL: accessTTL})
	client := fositetest.SecretClient{ID: "vault-integrations", Secret: "fosite-client-secret-e2e",
		RedirectURI: shared.addr + "/v1/" + mount + "/oauth/callback"}
	p.RegisterSecretClient(t, client)

	edits := []struct {
		name       string
		args       []string // a CLI command
		undo       []string // run before the next read, when the edit refuses reads
		configEdit bool
	}{
		{name: "description", args: []string{"patch", "CRED", "description=edited while refreshing"}},
		{name: "tags", args: []string{"patch", "CRED", "tags=prod,crm"}},
		{name: "scopes", args: []string{"patch", "CRED", "scopes=offline_access,read,write"}},
		{name: "verify_interval", args: []string{"patch", "CRED", "verify_interval=24h"}},
		{name: "used_by", args: []string{"patch", "CRED", "used_by=billing-sync"}},
		{name: "suspend", args: []string{"write", "-force", "CRED/suspend"}, undo: []string{"write", "-force", "CRED/unsuspend"}},
		{name: "default_token_lifetime", args: []string{"write", mount + "/config", "default_token_lifetime=600"}, configEdit: true},
	}
	substitute := func(args []string, cred string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = strings.ReplaceAll(a, "CRED", cred)
		}
		return out
	}
	create := func(t *testing.T, name string) string {
		cred := mount + "/credentials/" + name
		shared.mustCLI(t, "write", cred, "type=oauth2_authorization_code", "auth_url="+p.AuthURL(),
			"token_url="+p.TokenURL(), "client_id="+client.ID, "client_secret="+client.Secret,
			"scopes=offline_access,read", "ca_certificate="+p.CACertificatePEM())
		return cred
	}
	// consent runs authorize and lets a browser approve at fosite and follow its
	// redirect to Vault's callback; it returns the callback page's status and body.
	consent := func(t *testing.T, cred string) (int, string) {
		start := decode(t, shared.mustCLI(t, "write", "-force", "-format=json", cred+"/authorize")).Data
		browser := p.HTTPClient()
		resp, err := browser.Get(start["auth_url"].(string))
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	paths := []struct {
		name string
		hold string // the grant type held at the provider
		// ttl is the lifetime of the access tokens issued; wait is how long after a
		// token's issue the path refreshes it: the access path once it is due (half of
		// a lifetime shorter than expiry_buffer), refresh ahead once its refresh window
		// opens (a quarter of 20 s: refreshLead) and before it is due.
		ttl, wait time.Duration
		// background: the path's request returns at once; the refresh runs behind it.
		background bool
		run        func(t *testing.T, cred, name string)
	}{
		{name: "refresh_ahead", hold: "refresh_token", ttl: 20 * time.Second, wait: 5*time.Second + 200*time.Millisecond, background: true,
			run: func(_ *testing.T, _, name string) {
				_, _ = shared.cli("read", mount+"/access/"+name)
			}},
		{name: "access", hold: "refresh_token", ttl: accessTTL, wait: accessTTL/2 + 100*time.Millisecond, run: func(_ *testing.T, _, name string) {
			_, _ = shared.cli("read", mount+"/access/"+name)
		}},
		{name: "verify", hold: "refresh_token", run: func(_ *testing.T, cred, _ string) {
			_, _ = shared.cli("write", "-force", cred+"/verify")
		}},
		{name: "exchange", hold: "authorization_code", run: func(t *testing.T, cred, _ string) {
			if status, page := consent(t, cred); status != http.StatusOK || !strings.Contains(page, "Authorization complete") {
				t.Errorf("the consent did not complete across the edit: %d %s", status, page)
			}
		}},
	}
	// One credential per path and edit: each makes a handful of token requests, well
	// within the engine's per-credential request bucket.
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			p.SetAccessTTL(accessTTL)
			if path.ttl != 0 {
				p.SetAccessTTL(path.ttl)
			}
			shared.mustCLI(t, "write", mount+"/config", fmt.Sprintf("refresh_ahead=%v", path.background))
			for _, edit := range edits {
				name := "rot-" + path.name + "-" + strings.ReplaceAll(edit.name, "_", "-")
				cred := create(t, name)
				if path.hold != "authorization_code" {
					if status, page := consent(t, cred); status != http.StatusOK {
						t.Fatalf("%s: consent: %d %s", edit.name, status, page)
					}
				}
				issued := time.Now() // no token of cred was issued later than this
				if path.wait != 0 {
					// The condition the path refreshes on is the age of the cached token:
					// wait until it has it. This waits for no other actor.
					time.Sleep(time.Until(issued.Add(path.wait)))
				}
				before := len(p.RefreshTokens())
				arrived, release := p.Hold(t, path.hold)
				done := make(chan struct{})
				go func() {
					defer close(done)
					path.run(t, cred, name)
				}()
				if path.background {
					// The read is answered while its refresh is held at the provider (the
					// bound only detects a read that waits for it).
					select {
					case <-done:
					case <-time.After(30 * time.Second):
						t.Fatalf("%s: the read waited for the held provider: not refreshed ahead", edit.name)
					}
					select {
					case <-arrived:
					case <-time.After(30 * time.Second):
						t.Fatalf("%s: the read in the refresh window started no refresh", edit.name)
					}
				} else {
					select {
					case <-arrived:
					case <-done:
						t.Fatalf("%s: the %s ended without reaching the provider", edit.name, path.name)
					}
				}
				shared.mustCLI(t, substitute(edit.args, cred)...)
				release()
				<-done
				for path.background && len(p.RefreshTokens()) == before {
					// The held refresh is answered once released; fosite records its answer
					// before sending it. Bounded by the test's timeout.
					time.Sleep(20 * time.Millisecond)
				}
				if edit.undo != nil {
					shared.mustCLI(t, substitute(edit.undo, cred)...)
				}
				if edit.configEdit {
					shared.mustCLI(t, "write", mount+"/config", "default_token_lifetime=3600")
				}
				if got := len(p.RefreshTokens()); got < before+1 {
					t.Fatalf("%s: the provider issued no refresh token during the held %s", edit.name, path.name)
				}
				// A read, and a verification, which always mints: both work without a new
				// consent only with the refresh token the held answer brought (with a
				// retired one fosite refuses and revokes the grant).
				if got := readAccess(t, shared, mount, name); !isNonEmptyString(got["access_token"]) {
					t.Fatalf("%s: access after the edit has no access_token (%s)", edit.name, fieldNames(got))
				}
				if out := decode(t, shared.mustCLI(t, "write", "-force", "-format=json", cred+"/verify")).Data; out["result"] != "ok" {
					t.Fatalf("%s: verify after the edit: %v", edit.name, out)
				}
				if st := decode(t, shared.mustCLI(t, "read", "-format=json", cred)).Data["status"]; st != "active" {
					t.Fatalf("%s: status %v after the edit, want active without a new consent", edit.name, st)
				}
			}
			assertNoRetiredRefreshToken(t, p)
		})
	}
}

// assertNoRetiredRefreshToken fails when a refresh request to p presented any refresh
// token but the newest one issued before it of its grant: the requests are replayed in
// the order fosite answered them.
func assertNoRetiredRefreshToken(t *testing.T, p *fositetest.Provider) {
	t.Helper()
	newest := map[string]bool{} // refresh tokens not yet retired
	for i, r := range p.Received() {
		if r.Form.Get("grant_type") == "refresh_token" {
			sent := r.Form.Get("refresh_token")
			if !newest[sent] {
				t.Fatalf("request %d presented a retired or unknown refresh token (answered %d %s)", i, r.Status, r.Error)
			}
			if r.RefreshToken != "" {
				delete(newest, sent)
			}
		}
		if r.RefreshToken != "" {
			newest[r.RefreshToken] = true
		}
	}
	if len(newest) == 0 {
		t.Fatal("the provider issued no refresh token")
	}
}
