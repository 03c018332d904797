//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// agentConfig is the Vault Agent configuration README.md (Vault Agent) shows: a token
// sink and a template rendering an OAuth credential's access token into a file.
const agentConfig = `vault {
  address = %q
}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = %q
    }
  }
  sink "file" {
    config = {
      path = %q
    }
  }
}

template {
  contents    = "{{ with secret \"%s/access/crm-api\" }}{{ .Data.access_token }}{{ end }}"
  destination = %q
}
`

// The real Vault Agent (the same Vault binary) renders an OAuth credential's token
// into a file and re-renders it, without a restart, when the engine hands out a new
// one: about once per token lifetime (it reads again at the answer's ttl), before the
// old token expires, and every token rendered is one the provider accepts.
//
// Tokens live 90 s and expiry_buffer is 10 s: a token falls due 80 s after issue and
// its refresh window opens min(max(90s/5, 10s), (80s)/2) = 18 s earlier, 62 s after
// issue. Agent reads at ttl+1 s (63 s), which starts the background refresh and is
// answered ttl=1; its next read, 2 s later, gets the new token. The test waits for two
// re-renders: about 130 s, the longest e2e test here but one.
func TestVaultAgentRerendersOAuthToken(t *testing.T) {
	t.Parallel()
	const (
		lifetime  = 90 * time.Second
		rerenders = 2
	)
	p := newIDP(t, oauthtest.Options{AccessTTL: lifetime})
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/config", "expiry_buffer=10s")
	shared.mustCLI(t, "write", mount+"/credentials/crm-api", "type=oauth2_client_credentials",
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret)

	// Agent's token may read the credential's access path only.
	policy := "agent-" + mount
	if err := shared.client.Sys().PutPolicy(policy, fmt.Sprintf("path %q { capabilities = [\"read\"] }", mount+"/access/crm-api")); err != nil {
		t.Fatal(err)
	}
	secret, err := shared.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile, sink, rendered := filepath.Join(dir, "token"), filepath.Join(dir, "sink"), filepath.Join(dir, "access_token")
	if err := os.WriteFile(tokenFile, []byte(secret.Auth.ClientToken), 0o600); err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(configFile, fmt.Appendf(nil, agentConfig, shared.addr, tokenFile, sink, mount, rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var agentLog bytes.Buffer
	cmd := exec.CommandContext(ctx, os.Getenv("VAULT_BIN"), "agent", "-config="+configFile, "-log-level=debug")
	// An empty VAULT_ADDR would win over the config's address; the token is the
	// auto-auth one.
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+shared.addr, "VAULT_TOKEN=")
	cmd.Stdout, cmd.Stderr = &agentLog, &agentLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// stopAgent ends the agent; its log may be read only after (the process writes it).
	var stopOnce sync.Once
	stopAgent := func() { stopOnce.Do(func() { cancel(); _ = cmd.Wait() }) }
	defer func() {
		stopAgent()
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLog.String())
		}
	}()

	// Each render: when it appeared, and the token's issue and expiry as the provider
	// has them (its token store is what its resource servers check).
	type render struct {
		at, issued, expires time.Time
		token               string
	}
	var renders []render
	start := time.Now()
	deadline := start.Add(time.Duration(rerenders+1)*lifetime + 30*time.Second)
	for len(renders) < rerenders+1 && time.Now().Before(deadline) {
		if len(renders) == 0 && time.Since(start) > 30*time.Second {
			t.Fatal("Agent rendered nothing in 30 s")
		}
		b, err := os.ReadFile(rendered)
		tok := strings.TrimSpace(string(b))
		if err != nil || tok == "" || (len(renders) > 0 && renders[len(renders)-1].token == tok) {
			time.Sleep(200 * time.Millisecond) // polling a file another process writes
			continue
		}
		now := time.Now()
		info, err := p.TokenStore().GetByAccess(context.Background(), tok)
		if err != nil || info == nil {
			t.Fatalf("render %d: the provider does not know the rendered token (%v)", len(renders), err)
		}
		r := render{at: now, issued: info.GetAccessCreateAt(), expires: info.GetAccessCreateAt().Add(info.GetAccessExpiresIn()), token: tok}
		if !now.Before(r.expires) {
			t.Fatalf("render %d at %s: the token expired at %s", len(renders), now.Format(time.RFC3339), r.expires.Format(time.RFC3339))
		}
		if n := len(renders); n > 0 {
			prev := renders[n-1]
			if !now.Before(prev.expires) {
				t.Fatalf("render %d came at %s, after the previous token expired (%s)", n, now.Format(time.RFC3339), prev.expires.Format(time.RFC3339))
			}
			if gap := now.Sub(prev.at); gap < lifetime/2 {
				t.Fatalf("render %d came %s after the previous one: more often than about once per %s lifetime", n, gap, lifetime)
			}
			t.Logf("re-render %d: %s after the previous, %s before the previous token's expiry (token issued %s before the render)",
				n, now.Sub(prev.at).Round(time.Second), prev.expires.Sub(now).Round(time.Second), now.Sub(r.issued).Round(time.Second))
		}
		renders = append(renders, r)
	}
	if len(renders) < rerenders+1 {
		t.Fatalf("%d renders in %s, want %d re-renders after the first", len(renders), time.Duration(rerenders+1)*lifetime, rerenders)
	}
	if _, err := os.Stat(sink); err != nil {
		t.Errorf("the token sink was not written: %v", err)
	}
	stopAgent()
	if !strings.Contains(agentLog.String(), "Found rotation_period") {
		t.Errorf("Agent did not schedule the re-read by rotation_period/ttl")
	}
}
