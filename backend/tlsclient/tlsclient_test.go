package tlsclient

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// TestCacheReusesAndBounds: the same material gets the same transport (its
// connections are reused); distinct material gets its own, at most size of them, the
// least recently used dropped; empty material gets the base.
func TestCacheReusesAndBounds(t *testing.T) {
	t.Parallel()
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ResponseHeaderTimeout = 7 * time.Second
	c := NewCache(base, 2)
	if rt, err := c.For(Material{}); err != nil || rt != base {
		t.Fatalf("empty material: %v, %v; want the base", rt, err)
	}
	cas := []string{fixtures.NewCA("a").PEM, fixtures.NewCA("b").PEM, fixtures.NewCA("c").PEM}
	first, _ := c.For(Material{CACertificates: cas[0]})
	again, _ := c.For(Material{CACertificates: cas[0]})
	if first != again || first == base {
		t.Error("the same material got another transport")
	}
	if tr := first.(*http.Transport); tr.ResponseHeaderTimeout != base.ResponseHeaderTimeout || tr.TLSClientConfig.RootCAs == nil {
		t.Error("the transport lost the base's bounds or has no roots")
	}
	_, _ = c.For(Material{CACertificates: cas[1]})
	_, _ = c.For(Material{CACertificates: cas[2]}) // evicts cas[0], the least recently used
	if c.Len() != 2 {
		t.Errorf("%d transports held, want 2", c.Len())
	}
	if rebuilt, _ := c.For(Material{CACertificates: cas[0]}); rebuilt == first {
		t.Error("an evicted transport was handed out again")
	}
}

func TestMaterialErrors(t *testing.T) {
	t.Parallel()
	c := NewCache(nil, 0)
	key := fixtures.NewKey("p256")
	cert := fixtures.SelfSigned(fixtures.NewKey("p256"), "x", time.Now().AddDate(0, 1, 0))
	for name, m := range map[string]Material{
		"no certificate in the bundle": {CACertificates: "nothing"},
		"key of another certificate":   {ClientCertificate: cert, ClientKey: fixtures.KeyPEM(key)},
	} {
		_, err := c.For(m)
		if !errors.Is(err, ErrMaterial) {
			t.Errorf("%s: %v, want ErrMaterial", name, err)
		}
	}
	if _, err := NewCache(roundTripper(nil), 0).For(Material{CACertificates: "x"}); !errors.Is(err, ErrMaterial) {
		t.Errorf("a base that is not an *http.Transport: %v", err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCacheConcurrent: concurrent lookups of the same material end with one
// transport (run under -race).
func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	c := NewCache(nil, 4)
	ca := fixtures.NewCA("x").PEM
	var wg sync.WaitGroup
	got := make([]any, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt, err := c.For(Material{CACertificates: ca})
			if err != nil {
				panic(fmt.Sprint(err))
			}
			got[i] = rt
		}()
	}
	wg.Wait()
	want, _ := c.For(Material{CACertificates: ca})
	for i, rt := range got {
		if rt != want {
			t.Errorf("goroutine %d got another transport", i)
		}
	}
}
