package credtype

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

// Caps on the key-derivation work an encrypted private key may ask for. The KDF runs on
// the write path, once per write; the caps are checked on the parameters read from the
// key before anything derives, so a key built to pin a core or exhaust memory is
// refused in microseconds instead of running until Vault's request timeout.
const (
	// maxPBKDF2Iterations: OpenSSL writes 2048 (1.1) or 10000/600000 (3.x) iterations
	// by default; a million HMAC-SHA256 rounds cost about half a second.
	maxPBKDF2Iterations = 1_000_000
	// maxScryptMemory bounds scrypt's working memory, 128·N·r bytes: 128 MiB is eight
	// times OpenSSL's default (N=2^14, r=8 is 16 MiB).
	maxScryptMemory = 128 << 20
	// maxScryptWork bounds 128·N·r·p, which scrypt's CPU time is proportional to (its
	// p lanes run one after another in the same memory): twice the largest memory.
	maxScryptWork = 2 * maxScryptMemory
)

// ruleKDF is the part of the private_key rule that states the caps (types/ shows it).
var ruleKDF = fmt.Sprintf("an encrypted PKCS#8 key must use PBES2 with PBKDF2 (HMAC-SHA1 or HMAC-SHA256, at most %d iterations) or scrypt (128·N·r at most %d MiB of memory, 128·N·r·p at most %d MiB) and AES-128/192/256-CBC or DES-EDE3-CBC; legacy PEM encryption uses a fixed one-round MD5 KDF",
	maxPBKDF2Iterations, maxScryptMemory>>20, maxScryptWork>>20)

var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt         = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
)

// pbes2Ciphers are the encryption schemes accepted, with their key and block sizes.
// github.com/youmark/pkcs8 also registers AES-GCM OIDs but decrypts them as CBC, so
// they are not accepted.
var pbes2Ciphers = []struct {
	oid                asn1.ObjectIdentifier
	keySize, blockSize int
}{
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}, 16, 16},  // aes128-CBC
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}, 24, 16}, // aes192-CBC
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, 32, 16}, // aes256-CBC
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}, 24, 8},          // des-ede3-cbc
}

// RFC 5958 / RFC 8018 structures, read with encoding/asn1 before any derivation.
type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int64
	KeyLength      int64                    `asn1:"optional"`
	PRF            pkix.AlgorithmIdentifier `asn1:"optional"`
}

type scryptParams struct {
	Salt                     []byte
	CostParameter            int64
	BlockSize                int64
	ParallelizationParameter int64
	KeyLength                int64 `asn1:"optional"`
}

var (
	errPKCS8Structure = ruleError("must be a well-formed encrypted PKCS#8 key (EncryptedPrivateKeyInfo with PBES2 parameters)")
	errPKCS8Scheme    = ruleError("must be encrypted with PBES2 (PKCS#5 v2): other PKCS#8 encryption schemes are not supported; " + "re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`")
	errPKCS8KDF       = ruleError("must use PBKDF2 or scrypt as its PBES2 key-derivation function")
	errPKCS8PRF       = ruleError("must use HMAC-SHA1 or HMAC-SHA256 as its PBKDF2 pseudo-random function")
	errPKCS8Cipher    = ruleError("must be encrypted with AES-128-CBC, AES-192-CBC, AES-256-CBC or DES-EDE3-CBC, with an IV of the cipher's block size")
	errPBKDF2Cost     = rulef("must be encrypted with at most %d PBKDF2 iterations", maxPBKDF2Iterations)
	errScryptCost     = rulef("must be encrypted with scrypt parameters within 128·N·r ≤ %d MiB of memory and 128·N·r·p ≤ %d MiB (N a power of two, r and p at least 1)", maxScryptMemory>>20, maxScryptWork>>20)
)

// unmarshalDER decodes exactly one DER value into v: trailing bytes are refused too.
func unmarshalDER(der []byte, v any) bool {
	rest, err := asn1.Unmarshal(der, v)
	return err == nil && len(rest) == 0
}

// checkPKCS8Params reads the KDF and cipher of an encrypted PKCS#8 key and refuses any
// it does not support or whose cost exceeds the caps. It derives nothing; it returns
// the memory the derivation needs (128·N·r bytes for scrypt).
func checkPKCS8Params(der []byte) (memory int64, err error) {
	var info encryptedPrivateKeyInfo
	if !unmarshalDER(der, &info) {
		return 0, errPKCS8Structure
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return 0, errPKCS8Scheme
	}
	var params pbes2Params
	if !unmarshalDER(info.Algorithm.Parameters.FullBytes, &params) {
		return 0, errPKCS8Structure
	}
	keySize, blockSize := 0, 0
	for _, c := range pbes2Ciphers {
		if params.EncryptionScheme.Algorithm.Equal(c.oid) {
			keySize, blockSize = c.keySize, c.blockSize
		}
	}
	var iv []byte
	if keySize == 0 || !unmarshalDER(params.EncryptionScheme.Parameters.FullBytes, &iv) || len(iv) != blockSize {
		return 0, errPKCS8Cipher
	}
	if n := len(info.EncryptedData); n == 0 || n%blockSize != 0 {
		return 0, errPKCS8Structure
	}
	kdf := params.KeyDerivationFunc
	switch {
	case kdf.Algorithm.Equal(oidPBKDF2):
		var p pbkdf2Params
		if !unmarshalDER(kdf.Parameters.FullBytes, &p) {
			return 0, errPKCS8Structure
		}
		if p.IterationCount < 1 || p.IterationCount > maxPBKDF2Iterations {
			return 0, errPBKDF2Cost
		}
		if p.KeyLength != 0 && p.KeyLength != int64(keySize) {
			return 0, errPKCS8Structure
		}
		switch prf := p.PRF.Algorithm; {
		case len(prf) == 0, prf.Equal(oidHMACWithSHA1), prf.Equal(oidHMACWithSHA256):
		default:
			return 0, errPKCS8PRF
		}
		return smallKDFMemory, nil
	case kdf.Algorithm.Equal(oidScrypt):
		var p scryptParams
		if !unmarshalDER(kdf.Parameters.FullBytes, &p) {
			return 0, errPKCS8Structure
		}
		if !scryptWithinCaps(p.CostParameter, p.BlockSize, p.ParallelizationParameter) {
			return 0, errScryptCost
		}
		if p.KeyLength != 0 && p.KeyLength != int64(keySize) {
			return 0, errPKCS8Structure
		}
		return 128 * p.CostParameter * p.BlockSize, nil // within the caps: at most 128 MiB
	default:
		return 0, errPKCS8KDF
	}
}

// scryptWithinCaps checks N, r and p against the caps without overflowing: each factor
// is bounded before the products are formed.
func scryptWithinCaps(n, r, p int64) bool {
	if n < 2 || n&(n-1) != 0 || r < 1 || p < 1 {
		return false
	}
	if n > maxScryptMemory || r > maxScryptMemory || p > maxScryptWork {
		return false
	}
	mem := 128 * n * r // at most 128·2^27·2^27 = 2^61: no overflow
	if mem > maxScryptMemory {
		return false
	}
	return mem*p <= maxScryptWork // mem ≤ 2^27 and p ≤ 2^28
}

// smallKDFMemory is the memory cost the key-work gate is told for a derivation whose
// state is a few KiB whatever its parameters: PBKDF2, bcrypt, the legacy PEM MD5 KDF.
// They are bounded by the gate's count, not its memory budget.
const smallKDFMemory = 16 << 10

// KeyWorkLimits bound the key work of the whole plugin process, every mount together
// (the plugin is multiplexed: one process serves them all). A derivation beyond them
// waits its turn, at most MaxWait and never closer than Reserve to its request's
// deadline (the longest derivation the per-key caps allow: bcrypt's 256 rounds take
// about 2 s), then is refused with *keywork.Busy, which the backend answers with 503
// and retry_after.
var KeyWorkLimits = keywork.Limits{
	Concurrent: 2,
	Memory:     2 * maxScryptMemory, // two of the largest scrypt derivations
	MaxWait:    10 * time.Second,
	// Two turns a second at best: more than 32 waiting could not all be served in 10 s.
	MaxWaiting: 32,
	Reserve:    5 * time.Second,
}

// KeyWorkLimitsView is what types/ states of KeyWorkLimits: the numbers, and what
// happens to a request beyond them.
func KeyWorkLimitsView() map[string]any {
	l := keyWork.Limits()
	return map[string]any{
		"scope":                    "the whole plugin process: every mount it serves together",
		"applies_to":               "the key derivations of encrypted private keys (PBKDF2, scrypt, bcrypt, legacy PEM): on every write of a certificate or sftp_ssh_key credential whose key is encrypted, and once for a credential stored before its decrypted key was kept; and the generation of the engine's own keys (generate_client_key, rotate-client-key, the issuer's signing keys)",
		"concurrent_derivations":   l.Concurrent,
		"kdf_memory_mib":           l.Memory >> 20,
		"weight":                   "each derivation counts the memory its parameters need: scrypt 128·N·r bytes, the others a few KiB",
		"max_wait_seconds":         int(l.MaxWait / time.Second),
		"max_waiting":              l.MaxWaiting,
		"deadline_reserve_seconds": int(l.Reserve / time.Second),
		"when_busy": fmt.Sprintf("a request beyond the limits waits for its turn, first come first served, at most %d s and never closer than %d s to its deadline (refused at once when %d are already waiting), then is answered 503 with retry_after (seconds) in the body and a Retry-After header (Vault passes it on where the mount has allowed_response_headers=Retry-After); nothing is changed, never a 500",
			int(l.MaxWait/time.Second), int(l.Reserve/time.Second), l.MaxWaiting),
	}
}

// keyWork is the process-wide gate every key derivation goes through (derive).
var keyWork = keywork.New(KeyWorkLimits)

// KeyWork returns the process-wide gate of key work, for its counters.
func KeyWork() *keywork.Gate { return keyWork }

// generationMemory is what the key-work gate is told a key generation needs: an RSA
// generation's working set is a few KiB; it is bounded by the gate's count.
const generationMemory = 16 << 10

// Generate runs one key generation (the engine's own client and issuer keys) once the
// process-wide key-work gate gives it a turn: an RSA-3072 generation takes a CPU for
// up to seconds, and a burst of writes must not take every core of the process.
// Without a turn by the time ctx allows, it returns the gate's *keywork.Busy.
func Generate(ctx context.Context, run func() error) error {
	release, err := keyWork.Acquire(ctx, generationMemory)
	if err != nil {
		return err
	}
	defer release()
	return run()
}

// kdfRuns counts the key derivations run on encrypted private keys (PKCS#8, legacy PEM
// and OpenSSH bcrypt), so tests can prove where they run and where they do not.
var kdfRuns atomic.Uint64

// kdfObserver, when set (by tests), is called around each derivation, inside the
// gate: with +1 as it starts and -1 as it ends.
var kdfObserver atomic.Pointer[func(delta int)]

// KDFRuns returns how many times a private key's KDF has run in this process. It
// exists for tests (the KDF must run when a key is written, never when it is read) and
// for diagnostics.
func KDFRuns() uint64 { return kdfRuns.Load() }

// derive runs one key derivation needing memory bytes once the process-wide gate gives
// it a turn; without a turn by the time ctx allows, it returns the gate's
// *keywork.Busy and derives nothing.
func derive(ctx context.Context, memory int64, run func() error) error {
	release, err := keyWork.Acquire(ctx, memory)
	if err != nil {
		return err
	}
	defer release()
	if memory >= collectAfter {
		// Collected, and given back to the OS, before the turn is handed on: with GOGC's
		// default pacing the heap may otherwise grow to twice the derivations' live
		// memory before the garbage of finished ones is reclaimed, and freed pages stay
		// resident until the background scavenger returns them, while small allocations
		// in the hole left behind make the next derivation take fresh pages. The budget
		// would then bound only what is live, not the process's resident memory.
		defer debug.FreeOSMemory()
	}
	if obs := kdfObserver.Load(); obs != nil {
		(*obs)(+1)
		defer (*obs)(-1)
	}
	kdfRuns.Add(1)
	return run()
}

// collectAfter is the memory of a derivation after which its garbage is collected and
// returned at once: OpenSSL's default scrypt (16 MiB) and above. That costs
// milliseconds beside the derivation's hundreds.
const collectAfter = 16 << 20

// failure turns what a finish check's derivation returned into its result: a
// *FieldError is the field's failure; anything else (the gate's *keywork.Busy) is kept
// for ValidateContext to return as it is, with no field to blame.
func (v *Validated) failure(err error) FieldErrors {
	var fe *FieldError
	if errors.As(err, &fe) {
		return FieldErrors{fe}
	}
	v.err = err
	return nil
}

// reused returns the secret derived under the name secret from the previous values,
// when the write leaves every field the derivation read (inputs) as it was; "" when
// there is none or an input changed, and the derivation must run.
func (v *Validated) reused(secret string, inputs ...string) string {
	if v.prev == nil || v.prev.Values == nil || v.prev.Secrets[secret] == "" {
		return ""
	}
	for _, f := range inputs {
		if str(v.Values, f) != v.prev.Values.Str(f) {
			return ""
		}
	}
	return v.prev.Secrets[secret]
}
