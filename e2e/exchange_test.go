//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/zitadeltest"
)

const exchangeGrant = zitadeltest.GrantTokenExchange

// TestTokenExchange: exchange/<name> against a real RFC 8693 server (zitadel/oidc's op
// package): an allowed audience exchanged and the token accepted by the server's
// introspection for that audience only; an audience outside exchange_audiences refused
// by the engine without a request; one the server refuses a 400 naming the parameter,
// the credential still active; 100 concurrent readers of one exchange making one
// provider request; the README's two policies (exchange without access, and the
// reverse).
func TestTokenExchange(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	p := zitadeltest.New(t, zitadeltest.Options{Audiences: []string{"api-a", "api-b"}})
	shared.mustCLI(t, "write", mount+"/credentials/crm-api", "type=oauth2_client_credentials",
		"token_url="+p.TokenURL(), "client_id="+zitadeltest.ClientID, "client_secret="+zitadeltest.ClientSecret,
		"exchange_audiences=api-a,api-b,api-c")

	// Allowed: exchanged, and the server's introspection accepts it for api-a.
	got := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/exchange/crm-api", "audience=api-a")).Data
	token, _ := got["access_token"].(string)
	if token == "" || got["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" || got["token_type"] != "Bearer" {
		t.Fatalf("exchange answered %v", answerKeys(got))
	}
	for _, k := range []string{"expires_at", "ttl", "rotation_period", "last_vault_rotation"} {
		if _, ok := got[k]; !ok {
			t.Errorf("the answer has no %s", k)
		}
	}
	subject := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/access/crm-api")).Data["access_token"]
	if subject == token {
		t.Fatal("exchange/ answered the credential's own access token")
	}
	if n := p.Requests("client_credentials"); n != 1 {
		t.Fatalf("%d client_credentials requests, want 1 (the subject token, then served to access/ from the cache)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := p.Introspect(ctx, "api-a", token)
	if err != nil {
		t.Fatal(err)
	}
	// The server answers active only to a client in the token's audience.
	if in["active"] != true {
		t.Fatalf("the server's introspection for api-a: active %v", in["active"])
	}
	if other, err := p.Introspect(ctx, "api-b", token); err != nil || other["active"] == true {
		t.Fatalf("the token for api-a is active for api-b: %v %v", other["active"], err)
	}
	// A write with the same parameters (Vault Agent, VSO) is the same cached exchange.
	again := decode(t, shared.mustCLI(t, "write", "-format=json", mount+"/exchange/crm-api", "audience=api-a")).Data
	if again["access_token"] != token || p.Requests(exchangeGrant) != 1 {
		t.Fatalf("the cached exchange was asked again: %d exchanges", p.Requests(exchangeGrant))
	}

	// Outside exchange_audiences: refused by the engine, nothing sent.
	_, err = shared.client.Logical().ReadWithDataWithContext(ctx, mount+"/exchange/crm-api", map[string][]string{"audience": {"api-x"}})
	if statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("audience outside the allow-list: %v", err)
	}
	// Allowed by the engine, refused by the server (invalid_target): 400 naming the
	// parameter; the credential is still active and access/ still works.
	_, err = shared.client.Logical().ReadWithDataWithContext(ctx, mount+"/exchange/crm-api", map[string][]string{"audience": {"api-c"}})
	if statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "audience") || !strings.Contains(err.Error(), "invalid_target") {
		t.Fatalf("audience the server refuses: %v", err)
	}
	if n := p.Requests(exchangeGrant); n != 2 {
		t.Fatalf("%d exchanges reached the server, want 2 (the engine's refusal sends none)", n)
	}
	view := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/credentials/crm-api")).Data
	if view["status"] != "active" {
		t.Fatalf("a refused exchange changed the credential's status to %v", view["status"])
	}
	readAccess(t, shared, mount, "crm-api")

	// 100 concurrent readers of one exchange not yet cached: one provider request. The
	// exchange is held at the server until every reader has sent its request.
	const readers = 100
	arrived := p.Hold()
	before := p.Requests(exchangeGrant)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: readers, MaxIdleConnsPerHost: readers}, Timeout: 2 * time.Minute}
	defer client.CloseIdleConnections()
	tokens, errs := make([]string, readers), make([]error, readers)
	var sent, wg sync.WaitGroup
	sent.Add(readers)
	start := time.Now()
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens[i], errs[i] = exchangeOverHTTP(client, &sent, mount+"/exchange/crm-api?audience=api-b")
		}()
	}
	sent.Wait() // every reader's request is at Vault
	<-arrived   // and the one exchange at the server
	p.Release()
	wg.Wait()
	wave := time.Since(start)
	for i := range readers {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("reader %d: %v (same token as the first: %v)", i, errs[i], tokens[i] == tokens[0])
		}
	}
	exchanges := p.Requests(exchangeGrant) - before
	if exchanges != 1 {
		t.Fatalf("%d provider requests for %d concurrent readers of one exchange, want 1", exchanges, readers)
	}
	t.Logf("%d concurrent readers of one exchange: %d provider request, %s", readers, exchanges, wave.Round(time.Millisecond))
	if in, err := p.Introspect(ctx, "api-b", tokens[0]); err != nil || in["active"] != true {
		t.Fatalf("the server's introspection of the token for api-b: %v %v", in["active"], err)
	}

	// The README's two policies: exchange without access, access without exchange.
	exchangeOnly := exchangeClient(t, mount, "exchange", fmt.Sprintf("path %q { capabilities = [\"read\", \"update\"] }", mount+"/exchange/crm-api"))
	accessOnly := exchangeClient(t, mount, "access", fmt.Sprintf("path %q { capabilities = [\"read\"] }", mount+"/access/crm-api"))
	if s, err := exchangeOnly.Logical().ReadWithDataWithContext(ctx, mount+"/exchange/crm-api", map[string][]string{"audience": {"api-a"}}); err != nil || s.Data["access_token"] != token {
		t.Fatalf("the exchange-only token cannot exchange: %v", err)
	}
	if _, err := exchangeOnly.Logical().ReadWithContext(ctx, mount+"/access/crm-api"); statusCode(err) != http.StatusForbidden {
		t.Fatalf("the exchange-only token reads access/: %v", err)
	}
	if _, err := accessOnly.Logical().ReadWithContext(ctx, mount+"/access/crm-api"); err != nil {
		t.Fatalf("the access-only token cannot read access/: %v", err)
	}
	if _, err := accessOnly.Logical().ReadWithDataWithContext(ctx, mount+"/exchange/crm-api", map[string][]string{"audience": {"api-a"}}); statusCode(err) != http.StatusForbidden {
		t.Fatalf("the access-only token exchanges: %v", err)
	}

	// A repoint drops the exchanges: the next read exchanges again.
	before = p.Requests(exchangeGrant)
	repointed := strings.Replace(p.TokenURL(), "127.0.0.1", "localhost", 1)
	shared.mustCLI(t, "patch", mount+"/credentials/crm-api", "client_secret="+zitadeltest.ClientSecret, "token_url="+repointed)
	if fresh := decode(t, shared.mustCLI(t, "read", "-format=json", mount+"/exchange/crm-api", "audience=api-a")).Data["access_token"]; fresh == token || p.Requests(exchangeGrant) != before+1 {
		t.Fatalf("an exchange from before the repoint was served (%d exchanges since)", p.Requests(exchangeGrant)-before)
	}
	assertNothingShows(t, shared, mount, "crm-api", token, tokens[0], zitadeltest.ClientSecret)
}

// exchangeClient is an API client whose token has only the policy rules.
func exchangeClient(t *testing.T, mount, what, rules string) *api.Client {
	t.Helper()
	policy := what + "-only-" + mount
	if err := shared.client.Sys().PutPolicy(policy, rules); err != nil {
		t.Fatal(err)
	}
	secret, err := shared.client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := shared.client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(secret.Auth.ClientToken)
	return c
}

// exchangeOverHTTP reads one exchanged token over plain HTTP; sent is marked done once
// the request is written.
func exchangeOverHTTP(client *http.Client, sent *sync.WaitGroup, path string) (string, error) {
	var once sync.Once
	done := func() { once.Do(sent.Done) }
	defer done()
	req, err := http.NewRequest(http.MethodGet, shared.addr+"/v1/"+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Vault-Token", shared.token)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { done() }}))
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var out struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	return out.Data.AccessToken, json.Unmarshal(body, &out)
}

func answerKeys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}
