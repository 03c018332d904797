//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/netpolicy"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
)

// TestNetworkPolicy through a real Vault: the defaults reach a provider on loopback;
// with loopback denied (the README's production policy) a literal loopback token_url
// is refused at write with a 400 naming it, and a credential written before is refused
// at connect time as denied_network, without the provider being asked, in access/ and
// verify alike; a reset reaches it again.
func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	c := noRetryClient(t, shared).Logical()
	p := newIDP(t, oauthtest.Options{})
	cfg, err := c.Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.Data["denied_networks"]); got != fmt.Sprint(netpolicy.DefaultDenied) {
		t.Errorf("default denied_networks %s, want %v", got, netpolicy.DefaultDenied)
	}
	cred := func(_ string) map[string]any {
		return map[string]any{"type": "oauth2_client_credentials", "token_url": p.TokenURL(), "client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret}
	}
	for _, name := range []string{"first", "second"} {
		if _, err := c.Write(mount+"/credentials/"+name, cred(name)); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := c.Read(mount + "/access/first"); err != nil || s.Data["access_token"] == nil {
		t.Fatalf("access under the defaults: %v %v", s, err)
	}

	denied := strings.Join(append(netpolicy.DefaultDenied, "127.0.0.0/8", "::1/128"), ",")
	if _, err := c.Write(mount+"/config", map[string]any{"denied_networks": denied}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Write(mount+"/credentials/third", cred("third"))
	if statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "token_url") || !strings.Contains(err.Error(), "denied_networks") {
		t.Errorf("a loopback token_url with loopback denied: %v, want 400 naming token_url", err)
	}
	requests := p.Requests()
	_, err = c.Read(mount + "/access/second")
	if statusCode(err) != http.StatusBadGateway || !strings.Contains(err.Error(), netpolicy.KindDenied) {
		t.Errorf("access with loopback denied: %v, want 502 denied_network", err)
	}
	v, err := c.Write(mount+"/credentials/first/verify", nil)
	if err != nil || v.Data["result"] != "failed" || !strings.Contains(fmt.Sprint(v.Data["detail"]), netpolicy.KindDenied) {
		t.Errorf("verify with loopback denied: %v %v, want failed, denied_network", v, err)
	}
	if n := p.Requests(); n != requests {
		t.Errorf("the provider was asked %d times with loopback denied", n-requests)
	}

	if _, err := c.Delete(mount + "/config"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(mount+"/credentials/fourth", cred("fourth")); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Read(mount + "/access/fourth"); err != nil || s.Data["access_token"] == nil {
		t.Fatalf("access after the reset: %v %v", s, err)
	}
}
