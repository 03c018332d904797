//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/fositetest"
)

// TestGeneratedKeyRotationFosite (issue 27): a credential whose key the engine
// generated mints against ory/fosite, which knows the client only by its jwks_uri —
// the engine's unauthenticated jwks/<name> over HTTP — and fetches, caches and
// refetches the key set itself. Across rotate-client-key (the next key published at
// once, signing after client_key_overlap, the previous one published for another
// overlap) the test mints throughout (a forced mint per verify) while readers read
// access/ without pause: no mint and no read fails. Once the previous key is retired,
// an assertion it signed (captured from the engine's own request, replayed with a
// provider that keeps no jti) is refused: the key is gone from the set fosite fetches.
// A replayed assertion of the current key is accepted (the control: the refusal is the
// key's). RSA (RS256), RSA-PSS (PS256) and EC (ES256), each on a fosite of its own,
// side by side.
func TestGeneratedKeyRotationFosite(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	vc := noRetryClient(t, shared)
	var wg sync.WaitGroup
	for _, tc := range []struct {
		name, gen, alg string
		extra          map[string]any
	}{
		{"rsa", "rsa-2048", fositetest.RS256, nil},
		{"rsa-pss", "rsa-3072", fositetest.PS256, map[string]any{"client_assertion_algorithm": "PS256"}},
		{"ec", "ec-p256", fositetest.ES256, nil},
	} {
		// Side by side, outside the -parallel limit: each waits out two overlaps.
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(tc.name, func(t *testing.T) {
				runGeneratedKeyRotation(t, vc, mount, tc.name, tc.gen, tc.alg, tc.extra)
			})
		}()
	}
	wg.Wait()
}

// keyOverlap is the client_key_overlap of the test (the minimum), and jwksTTL fosite's
// cache lifetime of the key set.
const (
	keyOverlap = time.Minute
	jwksTTL    = 15 * time.Second
)

func runGeneratedKeyRotation(t *testing.T, vc *api.Client, mount, name, gen, alg string, extra map[string]any) {
	began := time.Now()
	p := fositetest.New(t, fositetest.Options{JWKSCacheTTL: jwksTTL, ForgetJTI: true})
	cred, clientID := "gen-"+name, "client-gen-"+name
	jwksURI := shared.addr + "/v1/" + mount + "/jwks/" + cred
	p.Register(t, fositetest.Client{ID: clientID, Algorithm: alg, JWKSURI: jwksURI})
	fields := maps(map[string]any{
		"type": "oauth2_client_credentials", "token_url": p.TokenURL(), "client_id": clientID,
		"auth_style": "private_key_jwt", "generate_client_key": gen, "publish_jwks": true,
		"client_key_overlap": "1m", "ca_certificate": p.CACertificatePEM(),
	}, extra)
	if _, err := vc.Logical().Write(mount+"/credentials/"+cred, fields); err != nil {
		t.Fatalf("creating %s: %v", cred, err)
	}
	read := func() map[string]any {
		t.Helper()
		s, err := vc.Logical().Read(mount + "/credentials/" + cred)
		if err != nil {
			t.Fatalf("reading %s: %v", cred, err)
		}
		return s.Data
	}
	oldKid := read()["client_jwk"].(map[string]any)["kid"].(string)

	// The key set as an unauthenticated caller sees it.
	anon := &http.Client{Timeout: 10 * time.Second}
	res, err := anon.Get(jwksURI)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &set) != nil || len(set.Keys) != 1 || set.Keys[0]["kid"] != oldKid ||
		set.Keys[0]["use"] != "sig" || set.Keys[0]["alg"] != alg || set.Keys[0]["d"] != nil {
		t.Fatalf("jwks/%s: %d %s", cred, res.StatusCode, body)
	}

	// Readers read access/ throughout; a mint is forced (verify) every 4 seconds, under the credential's request bucket (20 a minute).
	var reads, readFailures atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if s, err := vc.Logical().Read(mount + "/access/" + cred); err != nil || s == nil || s.Data["access_token"] == "" {
					readFailures.Add(1)
					t.Errorf("access/%s failed during the rotation: %v", cred, err)
				}
				reads.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	mints, mintFailures := 0, 0
	byKid := map[string]int{}
	mint := func() fositetest.Request {
		t.Helper()
		mints++
		s, err := vc.Logical().Write(mount+"/credentials/"+cred+"/verify", nil)
		last := p.LastRequest(t)
		if err != nil || s.Data["result"] != "ok" || last.AccessToken == "" || last.Assertion == nil {
			mintFailures++
			t.Errorf("mint %d failed: %v %v (fosite answered %d %q)", mints, err, s, last.Status, last.Error)
			return last
		}
		kid, _ := last.Assertion.Header["kid"].(string)
		byKid[kid]++
		return last
	}
	first := mint()
	oldAssertion := first.Form.Get("client_assertion")

	rotated, err := vc.Logical().Write(mount+"/credentials/"+cred+"/rotate-client-key", nil)
	if err != nil {
		t.Fatalf("rotate-client-key: %v", err)
	}
	var newKid string
	var oldRetires time.Time
	for _, k := range rotated.Data["client_keys"].([]any) {
		km := k.(map[string]any)
		if km["kid"] != oldKid {
			newKid = km["kid"].(string)
		} else {
			oldRetires = mustTime(t, km["retires"].(string))
		}
	}
	if newKid == "" || oldRetires.IsZero() {
		t.Fatalf("rotate-client-key answered client_keys %v: want the next key and the previous one's retirement", rotated.Data["client_keys"])
	}
	// Through the overlap (the previous key signs), past activation (the next one
	// signs: a kid fosite's cached set may lack, which makes it fetch the set again),
	// past the previous key's retirement and fosite's cache lifetime.
	until := oldRetires.Add(jwksTTL + 2*time.Second)
	for time.Now().Before(until) {
		mint()
		time.Sleep(4 * time.Second)
	}
	last := mint()
	if kid, _ := last.Assertion.Header["kid"].(string); kid != newKid {
		t.Fatalf("after the overlap the assertion's kid is %s, want the next key %s", kid, newKid)
	}
	if byKid[oldKid] == 0 || byKid[newKid] == 0 {
		t.Errorf("mints by kid %v: want both keys to have signed across the rotation", byKid)
	}
	stop()
	wg.Wait()

	replay := func(assertion string) (int, string) {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
		resp, err := p.HTTPClient().Post(p.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := replay(last.Form.Get("client_assertion")); status != http.StatusOK {
		t.Fatalf("control: a replayed assertion of the current key is refused (%d %s); the provider must keep no jti", status, body)
	}
	// fosite refuses a kid the set it fetched again lacks: invalid_request, naming the
	// kid as not found.
	if status, body := replay(oldAssertion); status != http.StatusBadRequest ||
		!strings.Contains(body, "kid '"+oldKid+"', which could not be found") {
		t.Errorf("an assertion of the retired key was answered %d %s, want a refusal for its key", status, body)
	}
	if got := read()["client_keys"].([]any); len(got) != 1 {
		t.Errorf("client_keys after the retirement: %v, want the next key alone", got)
	}
	t.Logf("%s: %d mints (%d failed; by kid %v), %d access reads (%d failed) across the rotation; %s wall",
		name, mints, mintFailures, byKid, reads.Load(), readFailures.Load(), time.Since(began).Round(time.Second))
	if mintFailures != 0 || readFailures.Load() != 0 {
		t.Errorf("failures across the rotation: %d mints, %d reads (target 0)", mintFailures, readFailures.Load())
	}
	assertNothingShows(t, shared, mount, cred, "PRIVATE KEY")
}
