// Package tlsclient gives a credential's HTTP calls the TLS it asks for: extra trust
// anchors (ca_certificate, added to the system's roots) and a client certificate
// (RFC 8705 mutual TLS). Each distinct set of material needs its own transport; a
// Cache keeps a bounded number of them, keyed by a fingerprint of the material, so
// connections are reused across calls. Building a transport parses PEM and touches
// no network, and no lock is held while a transport is used. The package imports no
// Vault package.
package tlsclient

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Material is the TLS material of one credential's connections. The zero value is
// the base transport's own TLS.
type Material struct {
	// CACertificates is a PEM bundle of extra trust anchors.
	CACertificates string
	// ClientCertificate (PEM, leaf first) and ClientKey (PEM) are presented when the
	// server asks for a client certificate; both or neither.
	ClientCertificate string
	ClientKey         string
}

// Empty reports whether m asks for nothing beyond the base transport.
func (m Material) Empty() bool { return m == Material{} }

// fingerprint identifies m without keeping it: a SHA-256 over its length-prefixed
// parts.
func (m Material) fingerprint() [sha256.Size]byte {
	h := sha256.New()
	for _, p := range []string{m.CACertificates, m.ClientCertificate, m.ClientKey} {
		_, _ = fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// ErrMaterial is the error of material that does not make a TLS configuration; its
// message never quotes the material.
var ErrMaterial = errors.New("the TLS material does not parse")

// Config builds the TLS client configuration of m on top of base (nil: Go's
// defaults): the system roots plus m's anchors, and m's client certificate.
func (m Material) Config(base *tls.Config) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if m.CACertificates != "" {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM([]byte(m.CACertificates)) {
			return nil, fmt.Errorf("%w: ca_certificate holds no certificate", ErrMaterial)
		}
		cfg.RootCAs = roots
	}
	if m.ClientCertificate != "" || m.ClientKey != "" {
		pair, err := tls.X509KeyPair([]byte(m.ClientCertificate), []byte(m.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("%w: client_certificate and client_key are not a key pair", ErrMaterial)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// DefaultSize is how many transports a Cache keeps when NewCache is given 0.
const DefaultSize = 64

// Cache hands out one transport per distinct Material, the least recently used
// dropped (its idle connections closed) beyond its size. It is safe for concurrent
// use.
type Cache struct {
	base *http.Transport
	// other is a base that is not an *http.Transport (a test's): used as it is for
	// empty material; per-credential TLS cannot be layered on it.
	other http.RoundTripper

	mu      sync.Mutex
	entries *simplelru.LRU[[sha256.Size]byte, *http.Transport]
	evicted []*http.Transport // dropped under mu, their idle connections closed after it
}

// NewCache returns a cache of at most size transports (0: DefaultSize) cloned from
// base (nil: http.DefaultTransport), keeping every bound it has (timeouts, proxy,
// connection limits).
func NewCache(base http.RoundTripper, size int) *Cache {
	if size <= 0 {
		size = DefaultSize
	}
	c := &Cache{}
	c.entries, _ = simplelru.NewLRU(size, func(_ [sha256.Size]byte, rt *http.Transport) { c.evicted = append(c.evicted, rt) })
	switch b := base.(type) {
	case nil:
		c.base = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		c.base = b
	default:
		c.other = b
	}
	return c
}

// Base is the transport for material that asks for nothing.
func (c *Cache) Base() http.RoundTripper {
	if c.other != nil {
		return c.other
	}
	return c.base
}

// For returns the transport of m: the base for empty material, else a cached clone of
// the base with m's TLS configuration. Errors wrap ErrMaterial.
func (c *Cache) For(m Material) (http.RoundTripper, error) {
	if m.Empty() {
		return c.Base(), nil
	}
	if c.other != nil {
		return nil, fmt.Errorf("%w: the base transport cannot carry per-credential TLS", ErrMaterial)
	}
	fp := m.fingerprint()
	if rt := c.lookup(fp); rt != nil {
		return rt, nil
	}
	// Cloning the base writes its lazily set defaults: one at a time.
	c.mu.Lock()
	rt := c.base.Clone()
	c.mu.Unlock()
	// Built outside the lock: parsing PEM is the expensive part.
	cfg, err := m.Config(rt.TLSClientConfig)
	if err != nil {
		return nil, err
	}
	rt.TLSClientConfig = cfg
	return c.insert(fp, rt), nil
}

func (c *Cache) lookup(fp [sha256.Size]byte) *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, _ := c.entries.Get(fp)
	return rt
}

// insert adds rt under fp unless another caller won the race, and returns the one
// kept.
func (c *Cache) insert(fp [sha256.Size]byte, rt *http.Transport) *http.Transport {
	c.mu.Lock()
	if kept, ok := c.entries.Get(fp); ok {
		c.mu.Unlock()
		return kept
	}
	c.entries.Add(fp, rt)
	evicted := c.evicted
	c.evicted = nil
	c.mu.Unlock()
	for _, t := range evicted {
		t.CloseIdleConnections() // requests in flight finish on their connections
	}
	return rt
}

// Len is how many transports the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries.Len()
}
