// Package ownedkeys holds the keys the engine generates and no person ever holds: a
// credential's generated client keys (generate_client_key, rotate-client-key) and the
// mount's issuer keys (auth_style=federated). Both are a Set of keys on one schedule:
// a new key is published at once, signs from its activation, and the key it replaces
// stays published until every verifier can have seen what it signed, then is
// destroyed.
//
// The private half never leaves this package except through Key.Signer and
// Key.SigningPEM, to sign inside the engine, and through Set.Encode, the storage form. A Key and a Set print
// and marshal to JSON without it: whatever view a caller builds from them carries the
// public half only.
package ownedkeys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
)

// The algorithms a key is generated with: generate_client_key's values.
const (
	ECP256  = "ec-p256"
	ECP384  = "ec-p384"
	RSA2048 = "rsa-2048"
	RSA3072 = "rsa-3072"
	Ed25519 = "ed25519"
)

// Algorithms are the values of generate_client_key, in the order its rule names them.
var Algorithms = []string{ECP256, ECP384, RSA2048, RSA3072, Ed25519}

// ErrAlgorithm is the refusal of an algorithm not in Algorithms.
var ErrAlgorithm = errors.New("the key algorithm must be one of ec-p256, ec-p384, rsa-2048, rsa-3072, ed25519")

// Key is one generated key. Its exported fields are public facts; the private key is
// unexported, so neither fmt nor encoding/json nor a response built from the struct
// can carry it.
type Key struct {
	// ID is the key's RFC 7638 JWK thumbprint (SHA-256, base64url): the kid it is
	// published and signs under unless the owner names another.
	ID string `json:"kid"`
	// Algorithm is the generation algorithm (one of Algorithms).
	Algorithm string `json:"algorithm"`
	// Created is when the key was generated.
	Created time.Time `json:"created"`
	// Activates is when the key starts signing (published from Created on).
	Activates time.Time `json:"activates"`
	// Retires is when the key stops being published and is destroyed; zero: not
	// scheduled.
	Retires time.Time `json:"retires,omitzero"`

	signer crypto.Signer
}

// String and GoString show the key's public facts only, so that no %v or %#v of a Key
// (or of a struct holding one) prints the private key.
func (k Key) String() string {
	return fmt.Sprintf("ownedkeys.Key{kid:%s algorithm:%s activates:%s retires:%s}", k.ID, k.Algorithm,
		k.Activates.UTC().Format(time.RFC3339), k.Retires.UTC().Format(time.RFC3339))
}

// GoString is String: see there.
func (k Key) GoString() string { return k.String() }

// Format makes every verb (%v, %+v, %#v, %s, %q, %x, ...) print String, never fields.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// Signer is the key that signs inside the engine. It must never be returned,
// encoded, logged or stored anywhere but by Set.Encode.
func (k Key) Signer() crypto.Signer { return k.signer }

// SigningPEM is the private key as a PKCS#8 PEM block, for the engine's own signing
// code only: the oauth package takes a client key as PEM (it parses and signs with it
// in memory, and its Config prints it redacted). Never for storage (that is Encode),
// a response, a log or an error.
func (k Key) SigningPEM() (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// Public is the public half.
func (k Key) Public() crypto.PublicKey { return k.signer.Public() }

// JWSAlgorithm is the JWS algorithm the key signs with: asked when it fits the key (a
// credential's client_assertion_algorithm: PS256 for an RSA key), else the key's
// default (RS256, ES256, ES384, EdDSA).
func (k Key) JWSAlgorithm(asked string) (string, error) {
	return credtype.AssertionAlgorithm(k.Public(), asked)
}

// JWK is the public key as a JWK with kid (the thumbprint when kid is empty), use
// "sig" and alg.
func (k Key) JWK(kid, alg string) jose.JSONWebKey {
	if kid == "" {
		kid = k.ID
	}
	return jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
}

// PublicPEM is the public key as a PEM "PUBLIC KEY" (PKIX) block.
func (k Key) PublicPEM() string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil { // every key Generate makes marshals
		panic("ownedkeys: public key does not marshal: " + err.Error())
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Certificate is a self-signed X.509 certificate of the key, with subject CN cn, valid
// from now (less a minute, for clocks behind ours) for ttl, in PEM: what providers that
// take a certificate upload (Entra app registrations) are given.
func (k Key) Certificate(cn string, now time.Time, ttl time.Duration) (string, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Minute).UTC(),
		NotAfter:              now.Add(ttl).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.signer)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// Generate makes a new key of alg, created at now and active at once, under the
// process-wide key-work gate (credtype.Generate): without a turn in time it returns the
// gate's *keywork.Busy.
func Generate(ctx context.Context, alg string, now time.Time) (Key, error) {
	var signer crypto.Signer
	err := credtype.Generate(ctx, func() error {
		var err error
		switch alg {
		case ECP256:
			signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case ECP384:
			signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		case RSA2048:
			signer, err = rsa.GenerateKey(rand.Reader, 2048)
		case RSA3072:
			signer, err = rsa.GenerateKey(rand.Reader, 3072)
		case Ed25519:
			_, signer, err = ed25519.GenerateKey(rand.Reader)
		default:
			err = ErrAlgorithm
		}
		return err
	})
	if err != nil {
		return Key{}, err
	}
	return newKey(alg, signer, now)
}

func newKey(alg string, signer crypto.Signer, now time.Time) (Key, error) {
	id, err := Thumbprint(signer.Public())
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, Algorithm: alg, Created: now, Activates: now, signer: signer}, nil
}

// Set is the keys of one owner, oldest first. The zero Set has no key.
type Set struct {
	keys []Key
}

// String shows the keys' public facts; with GoString and Format, no fmt verb shows a
// Set's private keys (fmt reaches unexported fields by reflection, where a Key's own
// Format is not called).
func (s Set) String() string { return fmt.Sprint(s.keys) }

// GoString is String: see there.
func (s Set) GoString() string { return s.String() }

// Format makes every verb print String.
func (s Set) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// Keys returns the keys, oldest first, retired ones included until Prune drops them.
func (s Set) Keys() []Key { return slices.Clone(s.keys) }

// Len is how many keys the set holds.
func (s Set) Len() int { return len(s.keys) }

// Add appends k as the newest key (a credential's first generated key, active at once).
func (s *Set) Add(k Key) { s.keys = append(s.keys, k) }

// Signing is the key that signs at now: the newest one active by now and not retired.
func (s Set) Signing(now time.Time) (Key, bool) {
	for i := len(s.keys) - 1; i >= 0; i-- {
		k := s.keys[i]
		if !k.Activates.After(now) && !retired(k, now) {
			return k, true
		}
	}
	return Key{}, false
}

// Current is the newest key, whether or not it signs yet: the one a rotation made.
func (s Set) Current() (Key, bool) {
	if len(s.keys) == 0 {
		return Key{}, false
	}
	return s.keys[len(s.keys)-1], true
}

// Published are the keys a verifier may need at now: every key not yet retired, the
// ones waiting to sign included, so that a verifier has a new key before it sees it.
func (s Set) Published(now time.Time) []Key {
	var out []Key
	for _, k := range s.keys {
		if !retired(k, now) {
			out = append(out, k)
		}
	}
	return out
}

func retired(k Key, now time.Time) bool { return !k.Retires.IsZero() && !now.Before(k.Retires) }

// Rotate adds next, published at once, signing from activates (now or later), and
// schedules the retirement of every older key at activates+keep: what it signed until
// then stays verifiable for keep. An older key that never signed (a rotation still
// waiting to activate) is dropped at once: nothing needs it. An older key already due
// to retire earlier keeps that time.
func (s *Set) Rotate(next Key, now, activates time.Time, keep time.Duration) {
	if activates.Before(now) {
		activates = now
	}
	next.Activates = activates
	retire := activates.Add(keep)
	kept := s.keys[:0]
	for _, k := range s.keys {
		if k.Activates.After(now) {
			continue // never signed
		}
		if k.Retires.IsZero() || k.Retires.After(retire) {
			k.Retires = retire
		}
		kept = append(kept, k)
	}
	s.keys = append(kept, next)
}

// Prune destroys the keys retired by now and reports whether any was.
func (s *Set) Prune(now time.Time) bool {
	n := len(s.keys)
	s.keys = slices.DeleteFunc(s.keys, func(k Key) bool { return retired(k, now) })
	return len(s.keys) != n
}

// NextEvent is the earliest time after now at which Signing or Published changes (an
// activation or a retirement); zero when none is scheduled.
func (s Set) NextEvent(now time.Time) time.Time {
	var next time.Time
	for _, k := range s.keys {
		for _, t := range []time.Time{k.Activates, k.Retires} {
			if t.After(now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}

// JWKS is the keys published at now as a JSON Web Key Set. Each key's alg is
// algorithm(key) and its kid kid(key) (nil: the thumbprint); the set carries public
// keys only.
func (s Set) JWKS(now time.Time, kid, algorithm func(Key) string) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range s.Published(now) {
		id := ""
		if kid != nil {
			id = kid(k)
		}
		set.Keys = append(set.Keys, k.JWK(id, algorithm(k)))
	}
	return set
}

// storedKey is a Key's storage form: the only place the private key is encoded.
type storedKey struct {
	Key
	Private string `json:"private"` // PKCS#8 PEM
}

// Encode is the set's storage form, private keys included: for barrier storage (a
// seal-wrapped path where the mount's storage supports it), never for a response.
func (s Set) Encode() ([]byte, error) {
	out := make([]storedKey, len(s.keys))
	for i, k := range s.keys {
		private, err := k.SigningPEM()
		if err != nil {
			return nil, err
		}
		out[i] = storedKey{Key: k, Private: private}
	}
	return json.Marshal(out)
}

// MaxKeys bounds a stored set: a rotation adds one key and retires the others, so a
// set holds two or three; more is a corrupt or hostile entry.
const MaxKeys = 16

// Decode reads what Encode wrote. An empty input is the empty set.
func Decode(b []byte) (Set, error) {
	if len(b) == 0 {
		return Set{}, nil
	}
	var in []storedKey
	if err := json.Unmarshal(b, &in); err != nil {
		return Set{}, fmt.Errorf("ownedkeys: stored key set does not decode: %w", err)
	}
	if len(in) > MaxKeys {
		return Set{}, fmt.Errorf("ownedkeys: stored key set holds %d keys, more than %d", len(in), MaxKeys)
	}
	s := Set{keys: make([]Key, 0, len(in))}
	for i, sk := range in {
		b, _ := pem.Decode([]byte(sk.Private))
		if b == nil || b.Type != "PRIVATE KEY" {
			return Set{}, fmt.Errorf("ownedkeys: stored key %d is not a PKCS#8 PEM block", i)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return Set{}, fmt.Errorf("ownedkeys: stored key %d does not parse", i)
		}
		signer, ok := parsed.(crypto.Signer)
		if !ok {
			return Set{}, fmt.Errorf("ownedkeys: stored key %d cannot sign", i)
		}
		k := sk.Key
		if id, err := Thumbprint(signer.Public()); err != nil || id != k.ID {
			return Set{}, fmt.Errorf("ownedkeys: stored key %d does not match its kid", i)
		}
		k.signer = signer
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of a public key, base64url: a key's ID.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Entry is a stored key's public schedule: what Entries reads without parsing any
// private key (a due-time index is filed from it on every write and flush).
type Entry struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
	Activates time.Time `json:"activates"`
	Retires   time.Time `json:"retires,omitzero"`
}

// Entries reads the schedule of what Encode wrote, oldest first, without the private
// keys.
func Entries(b []byte) ([]Entry, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var in []Entry
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("ownedkeys: stored key set does not decode: %w", err)
	}
	if len(in) > MaxKeys {
		return nil, fmt.Errorf("ownedkeys: stored key set holds %d keys, more than %d", len(in), MaxKeys)
	}
	return in, nil
}
