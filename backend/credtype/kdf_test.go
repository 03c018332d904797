package credtype

import (
	"context"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/youmark/pkcs8"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

// Hand-built encrypted PKCS#8 keys: the KDF and cipher parameters are whatever the
// test says, the ciphertext is filler. Refusals must come from the parameters alone.

var (
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
)

func mustDER(t testing.TB, v any) []byte {
	t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func algID(t testing.TB, oid asn1.ObjectIdentifier, params any) pkix.AlgorithmIdentifier {
	t.Helper()
	return pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{FullBytes: mustDER(t, params)}}
}

// craftedPKCS8 assembles EncryptedPrivateKeyInfo{PBES2{kdf, cipher}, data} as PEM.
func craftedPKCS8(t testing.TB, kdf, cipher pkix.AlgorithmIdentifier, data []byte) string {
	t.Helper()
	scheme := algID(t, oidPBES2, pbes2Params{KeyDerivationFunc: kdf, EncryptionScheme: cipher})
	return pemString(pkcs8Encrypted, mustDER(t, encryptedPrivateKeyInfo{Algorithm: scheme, EncryptedData: data}))
}

func aes256CBC(t testing.TB) pkix.AlgorithmIdentifier {
	return algID(t, oidAES256CBC, make([]byte, 16))
}

type craftedPBKDF2 struct {
	Salt           []byte
	IterationCount int64
	PRF            pkix.AlgorithmIdentifier `asn1:"optional"`
}

type craftedScrypt struct {
	Salt    []byte
	N, R, P int64
}

func pbkdf2Key(t testing.TB, iterations int64, prf asn1.ObjectIdentifier) string {
	t.Helper()
	kdf := algID(t, oidPBKDF2, craftedPBKDF2{Salt: make([]byte, 8), IterationCount: iterations,
		PRF: pkix.AlgorithmIdentifier{Algorithm: prf, Parameters: asn1.NullRawValue}})
	return craftedPKCS8(t, kdf, aes256CBC(t), make([]byte, 64))
}

func scryptKey(t testing.TB, n, r, p int64) string {
	t.Helper()
	kdf := algID(t, oidScrypt, craftedScrypt{Salt: make([]byte, 16), N: n, R: r, P: p})
	return craftedPKCS8(t, kdf, aes256CBC(t), make([]byte, 64))
}

func pemDER(t testing.TB, s string) []byte {
	t.Helper()
	b, err := keyBlock(s)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes
}

// hostileKeys are keys whose KDF would take minutes or gigabytes, or that name
// schemes the engine does not support, with the rule each refusal must state.
func hostileKeys(t testing.TB) []struct{ name, key, want string } {
	sha512 := asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	return []struct{ name, key, want string }{
		{"scrypt 16 GiB (N=2^24, r=8)", scryptKey(t, 1<<24, 8, 1), "128·N·r ≤ 128 MiB"},
		{"scrypt N=2^17 r=8 p=3", scryptKey(t, 1<<17, 8, 3), "128·N·r·p ≤ 256 MiB"},
		{"scrypt huge p", scryptKey(t, 1<<10, 8, 1<<40), "128·N·r·p ≤ 256 MiB"},
		{"scrypt huge r", scryptKey(t, 2, 1<<62, 1), "128·N·r ≤ 128 MiB"},
		{"scrypt N not a power of two", scryptKey(t, 1000, 8, 1), "N a power of two"},
		{"scrypt N=0", scryptKey(t, 0, 8, 1), "N a power of two"},
		{"scrypt negative r", scryptKey(t, 1024, -8, 1), "r and p at least 1"},
		{"PBKDF2 2^31 iterations", pbkdf2Key(t, 1<<31, oidHMACWithSHA256), "at most 1000000 PBKDF2 iterations"},
		{"PBKDF2 1000001 iterations", pbkdf2Key(t, maxPBKDF2Iterations+1, oidHMACWithSHA1), "at most 1000000 PBKDF2 iterations"},
		{"PBKDF2 0 iterations", pbkdf2Key(t, 0, oidHMACWithSHA1), "at most 1000000 PBKDF2 iterations"},
		{"PBKDF2 with HMAC-SHA512", pbkdf2Key(t, 2048, sha512), "HMAC-SHA1 or HMAC-SHA256"},
		{"unknown KDF", craftedPKCS8(t, algID(t, asn1.ObjectIdentifier{1, 2, 3, 4}, craftedScrypt{Salt: []byte{1}, N: 2, R: 1, P: 1}), aes256CBC(t), make([]byte, 32)), "PBKDF2 or scrypt"},
		{"AES-GCM (decrypted as CBC by the library)", craftedPKCS8(t, algID(t, oidPBKDF2, craftedPBKDF2{Salt: []byte{1}, IterationCount: 1}), algID(t, oidAES256GCM, make([]byte, 16)), make([]byte, 32)), "AES-128-CBC, AES-192-CBC, AES-256-CBC or DES-EDE3-CBC"},
		{"short IV", craftedPKCS8(t, algID(t, oidPBKDF2, craftedPBKDF2{Salt: []byte{1}, IterationCount: 1}), algID(t, oidAES256CBC, make([]byte, 3)), make([]byte, 32)), "IV of the cipher's block size"},
		{"ciphertext not whole blocks", craftedPKCS8(t, algID(t, oidPBKDF2, craftedPBKDF2{Salt: []byte{1}, IterationCount: 1}), aes256CBC(t), make([]byte, 33)), "well-formed encrypted PKCS#8"},
		{"PBES1 scheme", pemString(pkcs8Encrypted, mustDER(t, encryptedPrivateKeyInfo{
			Algorithm: algID(t, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}, []byte{1}), EncryptedData: make([]byte, 32)})), "PBES2"},
		{"not DER", pemString(pkcs8Encrypted, []byte("hello")), "well-formed encrypted PKCS#8"},
	}
}

// TestHostileEncryptedKeyRefused: a key asking for more KDF work than the caps is a
// 400 on private_key stating the cap, and no KDF runs. Not parallel: it reads the
// process-wide KDF counter.
func TestHostileEncryptedKeyRefused(t *testing.T) {
	p := pki()
	typ := mustType(t, "certificate")
	for _, tc := range hostileKeys(t) {
		t.Run(tc.name, func(t *testing.T) {
			before := KDFRuns()
			_, err := typ.Validate(map[string]any{"certificate": p.ecCert, "private_key": tc.key, "private_key_password": testKeyPassword})
			wantFieldError(t, err, "private_key", tc.want)
			// A key stored before the caps existed is refused on the way to the KDF too.
			_, err = decryptX509Key(context.Background(), tc.key, testKeyPassword)
			if ferr, ok := err.(*FieldError); !ok || ferr.Field != "private_key" || !strings.Contains(ferr.Rule, tc.want) {
				t.Errorf("decryptX509Key: %v, want a private_key error containing %q", err, tc.want)
			}
			if n := KDFRuns() - before; n != 0 {
				t.Errorf("KDF ran %d times on a refused key", n)
			}
		})
	}
}

// TestKDFCapsAcceptTheLargest: the caps are inclusive, checked on the parameters alone
// (deriving a 128 MiB scrypt key belongs in the benchmarks, not in every test run).
func TestKDFCapsAcceptTheLargest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		key    string
		memory int64 // what the key-work gate is told the derivation needs
	}{
		{"PBKDF2 1000000 iterations", pbkdf2Key(t, maxPBKDF2Iterations, oidHMACWithSHA256), smallKDFMemory},
		{"scrypt N=2^17 r=8 p=2 (128 MiB, work 256 MiB)", scryptKey(t, 1<<17, 8, 2), 128 << 20},
		{"scrypt N=2^20 r=1 p=2", scryptKey(t, 1<<20, 1, 2), 128 << 20},
		{"OpenSSL default scrypt N=2^14 r=8 p=1", scryptKey(t, 1<<14, 8, 1), 16 << 20},
	} {
		memory, err := checkPKCS8Params(pemDER(t, tc.key))
		if err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if memory != tc.memory {
			t.Errorf("%s: weighed %d bytes, want %d", tc.name, memory, tc.memory)
		}
	}
	for _, key := range []string{pki().rsaPKCS8Encrypted, pki().ecPKCS8Encrypted} {
		if _, err := checkPKCS8Params(pemDER(t, key)); err != nil {
			t.Errorf("library-written key refused: %v", err)
		}
	}
}

// TestPrivateKeyRuleStatesKDFCaps: types/ shows the caps that are enforced.
func TestPrivateKeyRuleStatesKDFCaps(t *testing.T) {
	t.Parallel()
	f, _ := mustType(t, "certificate").Field("private_key")
	for _, want := range []string{"at most 1000000 iterations", "128·N·r at most 128 MiB", "128·N·r·p at most 256 MiB", "AES-128/192/256-CBC or DES-EDE3-CBC"} {
		if !strings.Contains(f.Rule, want) {
			t.Errorf("certificate private_key rule lacks %q: %s", want, f.Rule)
		}
	}
	f, _ = mustType(t, "sftp_ssh_key").Field("private_key")
	if !strings.Contains(f.Rule, "at most 256 bcrypt KDF rounds") {
		t.Errorf("sftp_ssh_key private_key rule does not state the bcrypt cap: %s", f.Rule)
	}
}

// TestSSHRoundsCheckedBeforeDeriving: an OpenSSH key with 2^31 bcrypt rounds (days of
// CPU) is refused on private_key without the KDF running.
func TestSSHRoundsCheckedBeforeDeriving(t *testing.T) {
	in := goodValues(t, "sftp_ssh_key")
	in["private_key"] = withKDFRounds(t, pki().sshEd25519Encrypted, 1<<31)
	in["passphrase"] = testKeyPassword
	before := KDFRuns()
	_, err := mustType(t, "sftp_ssh_key").Validate(in)
	wantFieldError(t, err, "private_key", "at most 256 bcrypt KDF rounds")
	if n := KDFRuns() - before; n != 0 {
		t.Errorf("bcrypt KDF ran %d times on a refused key", n)
	}
}

// BenchmarkRefuseHostileKey is the time to refuse a key whose scrypt parameters ask for
// 16 GiB (N=2^24, r=8), through the whole Validate of a certificate credential.
func BenchmarkRefuseHostileKey(b *testing.B) {
	p := pki()
	typ := mustType(b, "certificate")
	for _, tc := range []struct{ name, key string }{
		{"scrypt_N2^24_r8", scryptKey(b, 1<<24, 8, 1)},
		{"pbkdf2_2^31", pbkdf2Key(b, 1<<31, oidHMACWithSHA256)},
	} {
		in := map[string]any{"certificate": p.ecCert, "private_key": tc.key, "private_key_password": testKeyPassword}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := typ.Validate(in); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

// BenchmarkLargestAcceptedKDF is the write-time cost of the most expensive keys the caps
// accept: PBKDF2 with a million iterations, scrypt at 128 MiB with p=2.
func BenchmarkLargestAcceptedKDF(b *testing.B) {
	p := pki()
	typ := mustType(b, "certificate")
	for _, tc := range []struct {
		name string
		opts pkcs8.KDFOpts
	}{
		{"pbkdf2_sha256_1e6", pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: maxPBKDF2Iterations, HMACHash: crypto.SHA256}},
		{"pbkdf2_sha1_1e6", pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: maxPBKDF2Iterations, HMACHash: crypto.SHA1}},
		{"scrypt_N2^17_r8_p2", pkcs8.ScryptOpts{SaltSize: 16, CostParameter: 1 << 17, BlockSize: 8, ParallelizationParameter: 2}},
	} {
		der, err := pkcs8.MarshalPrivateKey(p.ecKey, []byte(testKeyPassword), &pkcs8.Opts{Cipher: pkcs8.AES256CBC, KDFOpts: tc.opts})
		if err != nil {
			b.Fatal(err)
		}
		in := map[string]any{"certificate": p.ecCert, "private_key": pemString(pkcs8Encrypted, der), "private_key_password": testKeyPassword}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := typ.Validate(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestKDFRunsOnceAtWrite: Validate derives the decrypted key (one KDF run) into
// Secrets; Access hands it out without deriving, however often it is read; without
// Secrets, Access refuses an encrypted key rather than derive it; DeriveSecrets (for
// credentials stored before Secrets existed) yields the same material. Not parallel:
// it reads the process-wide KDF counter.
func TestKDFRunsOnceAtWrite(t *testing.T) {
	p := pki()
	typ := mustType(t, "certificate")
	for _, tc := range []struct{ name, cert, key string }{
		{"PKCS#8 PBKDF2", p.rsaCert, p.rsaPKCS8Encrypted},
		{"PKCS#8 scrypt", p.ecCert, p.ecPKCS8Encrypted},
		{"legacy PEM", p.ecCert, p.ecLegacyEncrypted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := KDFRuns()
			v, err := typ.Validate(map[string]any{"certificate": tc.cert, "private_key": tc.key, "private_key_password": testKeyPassword})
			if err != nil {
				t.Fatal(err)
			}
			if n := KDFRuns() - before; n != 1 {
				t.Fatalf("Validate ran the KDF %d times, want 1", n)
			}
			key, err := decryptX509Key(context.Background(), tc.key, testKeyPassword)
			if err != nil {
				t.Fatal(err)
			}
			want := pkcs8String(key)
			if v.Secrets["private_key"] != want {
				t.Fatalf("Secrets[private_key] is not the decrypted key as PKCS#8")
			}
			before = KDFRuns()
			for range 10 {
				out, err := typ.Access(FieldMap(v.Values), v.Secrets, rfcTime)
				if err != nil {
					t.Fatal(err)
				}
				if out["private_key"] != want {
					t.Fatal("Access did not hand out the decrypted key")
				}
			}
			if n := KDFRuns() - before; n != 0 {
				t.Fatalf("10 Access calls ran the KDF %d times, want 0", n)
			}
			if _, err := typ.Access(FieldMap(v.Values), nil, rfcTime); err == nil || !strings.Contains(err.Error(), "decrypted form was not supplied") {
				t.Fatalf("Access without Secrets = %v, want a refusal", err)
			}
			if n := KDFRuns() - before; n != 0 {
				t.Fatalf("Access without Secrets ran the KDF %d times", n)
			}
			got, err := typ.DeriveSecrets(context.Background(), FieldMap(v.Values))
			if err != nil || got["private_key"] != want {
				t.Fatalf("DeriveSecrets = %v, %v; want the decrypted key", got != nil, err)
			}
		})
	}
	// Nothing to derive for an unencrypted key, nor for other types.
	v, err := typ.Validate(goodValues(t, "certificate"))
	if err != nil || v.Secrets != nil {
		t.Fatalf("unencrypted key: Secrets = %v, %v", v, err)
	}
	if s, err := mustType(t, "basic").DeriveSecrets(context.Background(), FieldMap(goodValues(t, "basic"))); s != nil || err != nil {
		t.Fatalf("basic DeriveSecrets = %v, %v", s, err)
	}
}

// TestKeyDerivationsBoundedProcessWide: however many validations run at once, at most
// KeyWorkLimits.Concurrent key derivations do (the derivations count themselves,
// through kdfObserver); the others wait their turn and then succeed. A caller whose
// context ends before its turn gets *keywork.Busy, not a field error, and derives
// nothing. Not parallel: it uses the process-wide gate.
func TestKeyDerivationsBoundedProcessWide(t *testing.T) {
	p := pki()
	typ := mustType(t, "certificate")
	values := map[string]any{"certificate": p.ecCert, "private_key": p.ecPKCS8Encrypted, "private_key_password": testKeyPassword}
	const callers = 6
	var inFlight, peak atomic.Int64
	hold := make(chan struct{})
	obs := func(delta int) {
		if delta < 0 {
			inFlight.Add(-1)
			return
		}
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() { //nolint:revive // empty-block: a compare-and-swap loop; the loop header is the work
		}
		<-hold // the derivation runs until the test lets it finish
	}
	kdfObserver.Store(&obs)
	defer kdfObserver.Store(nil)

	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := typ.Validate(values)
			errs <- err
		}()
	}
	// Every caller is either deriving or queued; nothing else moves until hold closes.
	for int(inFlight.Load())+keyWork.Stats().Waiting < callers {
		runtime.Gosched()
	}
	if n := inFlight.Load(); n != int64(KeyWorkLimits.Concurrent) {
		close(hold)
		t.Fatalf("%d derivations run at once, want %d", n, KeyWorkLimits.Concurrent)
	}

	runs := KDFRuns()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := typ.ValidateContext(ctx, values, time.Time{}, nil)
	if keywork.AsBusy(err) == nil {
		t.Errorf("a caller whose context ended before its turn: %v, want *keywork.Busy", err)
	}
	if n := KDFRuns() - runs; n != 0 {
		t.Errorf("a refused caller derived %d times", n)
	}

	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a caller that waited its turn: %v", err)
		}
	}
	if got := peak.Load(); got != int64(KeyWorkLimits.Concurrent) {
		t.Errorf("peak %d derivations at once, want %d", got, KeyWorkLimits.Concurrent)
	}
}
