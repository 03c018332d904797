package ownedkeys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func mustGenerate(t *testing.T, alg string, now time.Time) Key {
	t.Helper()
	k, err := Generate(context.Background(), alg, now)
	if err != nil {
		t.Fatalf("Generate(%s): %v", alg, err)
	}
	return k
}

// privateMarkers are what would show if a private key were printed or encoded: a PEM
// private block, or a JWK's private parameter.
func privateLeak(s string) bool {
	return strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, `"d":`) || strings.Contains(s, `"p":`)
}

func TestGenerateEveryAlgorithm(t *testing.T) {
	wantJWS := map[string]string{ECP256: "ES256", ECP384: "ES384", RSA2048: "RS256", RSA3072: "RS256", Ed25519: "EdDSA"}
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			k := mustGenerate(t, alg, t0)
			if k.Algorithm != alg || !k.Created.Equal(t0) || !k.Activates.Equal(t0) || !k.Retires.IsZero() {
				t.Fatalf("key facts = %v", k)
			}
			if got, err := k.JWSAlgorithm(""); err != nil || got != wantJWS[alg] {
				t.Fatalf("JWSAlgorithm = %q, %v; want %s", got, err, wantJWS[alg])
			}
			// The kid is the RFC 7638 thumbprint of the published JWK.
			jwk := k.JWK("", wantJWS[alg])
			tp, err := jwk.Thumbprint(cryptoSHA256)
			if err != nil || k.ID != b64(tp) || jwk.KeyID != k.ID || jwk.Use != "sig" || !jwk.IsPublic() {
				t.Fatalf("JWK = %+v (thumbprint %v)", jwk, err)
			}
			b, _ := json.Marshal(jwk)
			if privateLeak(string(b)) {
				t.Fatalf("the JWK carries private material: %s", b)
			}
			blk, _ := pem.Decode([]byte(k.PublicPEM()))
			if blk == nil || blk.Type != "PUBLIC KEY" {
				t.Fatalf("PublicPEM = %q", k.PublicPEM())
			}
			if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := Generate(context.Background(), "dsa-1024", t0); err != ErrAlgorithm {
		t.Fatalf("an unknown algorithm: %v", err)
	}
}

// TestThumbprintRFC7638 checks Thumbprint against the example of RFC 7638 §3.1.
func TestThumbprintRFC7638(t *testing.T) {
	const example = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	var jwk jose.JSONWebKey
	if err := json.Unmarshal([]byte(example), &jwk); err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(jwk.Key)
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("Thumbprint = %q, %v", got, err)
	}
}

// TestKeyNeverPrintsOrMarshalsItsPrivateHalf: no fmt verb and no JSON encoding of a
// Key, a Set, or a struct or map holding them shows the private key; only Encode does.
func TestKeyNeverPrintsOrMarshalsItsPrivateHalf(t *testing.T) {
	for _, alg := range Algorithms {
		k := mustGenerate(t, alg, t0)
		var s Set
		s.Add(k)
		holder := struct {
			K Key
			S Set
			M map[string]any
		}{k, s, map[string]any{"key": k, "keys": s.Keys()}}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			for _, v := range []any{k, &k, s, holder, s.Keys()} {
				if out := fmt.Sprintf(verb, v); privateLeak(out) || containsPrivate(t, k, out) {
					t.Fatalf("%s of %T shows private material: %s", verb, v, out)
				}
			}
		}
		for _, v := range []any{k, s, holder, s.Keys(), s.Published(t0)} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if privateLeak(string(b)) {
				t.Fatalf("json of %T shows private material: %s", v, b)
			}
		}
		enc, err := s.Encode()
		if err != nil || !strings.Contains(string(enc), "PRIVATE KEY") {
			t.Fatalf("Encode must hold the private key (the storage form): %v", err)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	var s Set
	s.Add(mustGenerate(t, ECP256, t0))
	s.Rotate(mustGenerate(t, Ed25519, t0.Add(time.Hour)), t0.Add(time.Hour), t0.Add(2*time.Hour), time.Hour)
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != 2 {
		t.Fatalf("decoded %d keys", got.Len())
	}
	for i, k := range got.Keys() {
		w := s.Keys()[i]
		if k.ID != w.ID || k.Algorithm != w.Algorithm || !k.Activates.Equal(w.Activates) || !k.Retires.Equal(w.Retires) || !k.Created.Equal(w.Created) {
			t.Fatalf("key %d: %v, want %v", i, k, w)
		}
		if !k.Signer().Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(w.Public()) {
			t.Fatalf("key %d: a different private key came back", i)
		}
	}
	if e, err := Decode(nil); err != nil || e.Len() != 0 {
		t.Fatalf("Decode(nil) = %v, %v", e, err)
	}
}

func TestDecodeRefusesBadEntries(t *testing.T) {
	var s Set
	s.Add(mustGenerate(t, ECP256, t0))
	good, _ := s.Encode()
	var raw []map[string]any
	_ = json.Unmarshal(good, &raw)
	mutate := func(f func(m map[string]any)) []byte {
		var c []map[string]any
		_ = json.Unmarshal(good, &c)
		f(c[0])
		b, _ := json.Marshal(c)
		return b
	}
	other := mustGenerate(t, ECP256, t0)
	var os Set
	os.Add(other)
	otherEnc, _ := os.Encode()
	var otherRaw []map[string]any
	_ = json.Unmarshal(otherEnc, &otherRaw)
	many := make([]map[string]any, MaxKeys+1)
	for i := range many {
		many[i] = raw[0]
	}
	manyB, _ := json.Marshal(many)
	for name, b := range map[string][]byte{
		"not json":       []byte("{"),
		"no private key": mutate(func(m map[string]any) { delete(m, "private") }),
		"not pem":        mutate(func(m map[string]any) { m["private"] = "abc" }),
		"kid of another": mutate(func(m map[string]any) { m["private"] = otherRaw[0]["private"] }),
		"too many keys":  manyB,
		"wrong pem block": mutate(func(m map[string]any) {
			m["private"] = strings.ReplaceAll(m["private"].(string), "PRIVATE KEY", "PUBLIC KEY")
		}),
	} {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		} else if privateLeak(err.Error()) {
			t.Errorf("%s: the error shows key material: %v", name, err)
		}
	}
}

// TestRotationSchedule walks a rotation through its overlap with a clock: the new key
// is published at once, signs from its activation, and the old one stays published
// for keep after that, then is pruned.
func TestRotationSchedule(t *testing.T) {
	var s Set
	old := mustGenerate(t, ECP256, t0)
	s.Add(old)
	overlap := 24 * time.Hour
	now := t0.Add(30 * 24 * time.Hour)
	next := mustGenerate(t, ECP256, now)
	s.Rotate(next, now, now.Add(overlap), overlap)

	check := func(at time.Time, signing string, published ...string) {
		t.Helper()
		k, ok := s.Signing(at)
		if !ok || k.ID != signing {
			t.Fatalf("at %s: signing %v (%v), want %s", at.Sub(now), k, ok, signing)
		}
		var ids []string
		for _, p := range s.Published(at) {
			ids = append(ids, p.ID)
		}
		if strings.Join(ids, ",") != strings.Join(published, ",") {
			t.Fatalf("at %s: published %v, want %v", at.Sub(now), ids, published)
		}
	}
	check(now, old.ID, old.ID, next.ID)
	check(now.Add(overlap-time.Second), old.ID, old.ID, next.ID)
	check(now.Add(overlap), next.ID, old.ID, next.ID)
	check(now.Add(2*overlap-time.Second), next.ID, old.ID, next.ID)
	check(now.Add(2*overlap), next.ID, next.ID)

	if e := s.NextEvent(now); !e.Equal(now.Add(overlap)) {
		t.Fatalf("NextEvent(now) = %s", e)
	}
	if e := s.NextEvent(now.Add(overlap)); !e.Equal(now.Add(2 * overlap)) {
		t.Fatalf("NextEvent(activation) = %s", e)
	}
	if s.Prune(now.Add(2*overlap - time.Second)) {
		t.Fatal("pruned before the retirement")
	}
	if !s.Prune(now.Add(2*overlap)) || s.Len() != 1 {
		t.Fatalf("prune at the retirement left %d keys", s.Len())
	}
	if e := s.NextEvent(now.Add(2 * overlap)); !e.IsZero() {
		t.Fatalf("NextEvent with nothing scheduled = %s", e)
	}
}

// TestRotateActivateNowAndAgain: an immediate rotation signs with the new key at
// once; a second rotation while one waits drops the waiting key (it never signed)
// and keeps the earlier retirement of keys already retiring.
func TestRotateActivateNowAndAgain(t *testing.T) {
	var s Set
	a := mustGenerate(t, ECP256, t0)
	s.Add(a)
	b := mustGenerate(t, ECP256, t0)
	s.Rotate(b, t0, t0, time.Hour)
	if k, _ := s.Signing(t0); k.ID != b.ID {
		t.Fatalf("activate now: signing %v", k)
	}
	if len(s.Published(t0)) != 2 {
		t.Fatal("the replaced key must stay published for the overlap")
	}
	now := t0.Add(10 * time.Minute)
	c := mustGenerate(t, ECP256, now)
	s.Rotate(c, now, now.Add(time.Hour), time.Hour)
	d := mustGenerate(t, ECP256, now)
	s.Rotate(d, now, now.Add(time.Hour), time.Hour)
	var ids []string
	for _, k := range s.Keys() {
		ids = append(ids, k.ID)
	}
	if strings.Join(ids, ",") != strings.Join([]string{a.ID, b.ID, d.ID}, ",") {
		t.Fatalf("keys %v: the waiting key c must be dropped", ids)
	}
	if ka := s.Keys()[0]; !ka.Retires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a's retirement moved to %s", ka.Retires)
	}
	if kb := s.Keys()[1]; !kb.Retires.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("b retires at %s", kb.Retires)
	}
	// An activation in the past is an activation now.
	e := mustGenerate(t, ECP256, now)
	s.Rotate(e, now, now.Add(-time.Hour), time.Hour)
	if k, _ := s.Signing(now); k.ID != e.ID {
		t.Fatalf("signing %v", k)
	}
}

func TestCertificate(t *testing.T) {
	for _, alg := range Algorithms {
		k := mustGenerate(t, alg, t0)
		certPEM, err := k.Certificate("my-app", t0, 365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode([]byte(certPEM))
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != "my-app" || !cert.NotAfter.Equal(t0.Add(365*24*time.Hour)) || cert.NotBefore.After(t0) {
			t.Fatalf("%s: certificate %s %s–%s", alg, cert.Subject, cert.NotBefore, cert.NotAfter)
		}
		if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Fatalf("%s: the certificate is not of the key", alg)
		}
		if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
			t.Fatalf("%s: not self-signed: %v", alg, err)
		}
		if cert.SerialNumber.Cmp(big.NewInt(0)) <= 0 {
			t.Fatalf("%s: serial %s", alg, cert.SerialNumber)
		}
	}
}

// TestGenerateWaitsForKeyWork: key generation takes a turn of the process-wide
// key-work gate; with every turn taken and no time left, it is refused with Busy and
// generates nothing.
func TestGenerateWaitsForKeyWork(t *testing.T) {
	g := credtype.KeyWork()
	var releases []func()
	for range credtype.KeyWorkLimits.Concurrent {
		r, err := g.Acquire(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), credtype.KeyWorkLimits.Reserve/2)
	defer cancel()
	_, err := Generate(ctx, RSA2048, t0)
	if keywork.AsBusy(err) == nil {
		t.Fatalf("Generate with the gate full: %v, want Busy", err)
	}
}

const cryptoSHA256 = crypto.SHA256

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// containsPrivate reports whether out shows k's private key as fmt would render its
// bytes (the raw Ed25519 key or the PKCS#8 DER, in decimal or hex) or its big
// numbers (an RSA or EC private exponent in decimal).
func containsPrivate(t *testing.T, k Key, out string) bool {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	var secret *big.Int
	switch p := k.Signer().(type) {
	case ed25519.PrivateKey:
		raw = p.Seed()
	case *ecdsa.PrivateKey:
		secret = p.D //nolint:staticcheck // SA1019: the exponent as fmt would print it, looked for in out
	case *rsa.PrivateKey:
		secret = p.D
	}
	for _, b := range [][]byte{raw, der[len(der)-16:]} {
		if len(b) == 0 {
			continue
		}
		dec := strings.Trim(fmt.Sprint(b[:8]), "[]") //nolint:staticcheck // QF1010: fmt's rendering of the bytes is what is looked for
		if strings.Contains(out, dec) || strings.Contains(out, fmt.Sprintf("%x", b[:8])) {
			return true
		}
	}
	return secret != nil && strings.Contains(out, secret.String()[:12])
}

// TestSigningPEM: the PEM the oauth package signs with is the key (it parses under
// client_key's rules, to the same public key), for every algorithm.
func TestSigningPEM(t *testing.T) {
	t.Parallel()
	for _, alg := range Algorithms {
		k, err := Generate(context.Background(), alg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.SigningPEM()
		if err != nil {
			t.Fatal(err)
		}
		signer, err := credtype.ClientKey(p)
		if err != nil {
			t.Fatalf("%s: the signing PEM does not parse as a client_key: %v", alg, err)
		}
		if id, _ := Thumbprint(signer.Public()); id != k.ID {
			t.Errorf("%s: signing PEM is another key (%s, want %s)", alg, id, k.ID)
		}
	}
	if !slices.Equal(Algorithms, credtype.KeyAlgorithms) {
		t.Errorf("credtype.KeyAlgorithms = %v, want ownedkeys.Algorithms %v", credtype.KeyAlgorithms, Algorithms)
	}
}

// TestEntries: the schedule read without the private keys is the set's.
func TestEntries(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var s Set
	for i, alg := range []string{ECP256, Ed25519} {
		k, err := Generate(context.Background(), alg, now.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			s.Add(k)
		} else {
			s.Rotate(k, now.Add(time.Hour), now.Add(2*time.Hour), time.Hour)
		}
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	es, err := Entries(b)
	if err != nil || len(es) != 2 {
		t.Fatalf("Entries = %v, %v", es, err)
	}
	for i, k := range s.Keys() {
		e := es[i]
		if e.ID != k.ID || e.Algorithm != k.Algorithm || !e.Created.Equal(k.Created) || !e.Activates.Equal(k.Activates) || !e.Retires.Equal(k.Retires) {
			t.Errorf("entry %d = %+v, want %v", i, e, k)
		}
	}
	if es[0].Retires.IsZero() || !es[1].Retires.IsZero() {
		t.Errorf("retirements = %v, %v: want the old key's only", es[0].Retires, es[1].Retires)
	}
}
