package credtype

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/youmark/pkcs8"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

var (
	errMalformedPEM = ruleError("must be well-formed PEM")
	errLegacyCipher = ruleError("must use a supported legacy PEM encryption: DEK-Info DES-EDE3-CBC, DES-CBC or AES-128/192/256-CBC with its IV")
	errX509Key      = ruleError("must be a PEM private key that parses: PKCS#1 RSA, PKCS#8 or SEC1 EC")
)

// pemBlocks decodes every PEM block in s. pem.Decode skips what it cannot decode, so a
// malformed block would silently vanish; counting the BEGIN lines catches it.
func pemBlocks(s string) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := []byte(s)
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
		rest = r
	}
	if strings.Count(s, "-----BEGIN") != len(blocks) {
		return nil, errMalformedPEM
	}
	return blocks, nil
}

// checkCertificatePEM accepts only CERTIFICATE blocks: certificate is not a sensitive
// field, so a private key pasted into it along with the certificate would be shown on
// every read. The stored form keeps the blocks and nothing else.
func checkCertificatePEM(s string) (string, error) {
	blocks, err := pemBlocks(s)
	if err != nil {
		return "", err
	}
	if len(blocks) == 0 {
		return "", ruleError("must contain a PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	var out []byte
	for i, b := range blocks {
		switch {
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return "", ruleError("must not contain a private key (it belongs in private_key)")
		case b.Type != "CERTIFICATE":
			return "", ruleError("must contain only CERTIFICATE PEM blocks")
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return "", rulef("must hold X.509 certificates that parse (certificate %d does not)", i+1)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes})...)
	}
	return string(out), nil
}

// keyBlock finds the one private key block in s, skipping the EC PARAMETERS block
// `openssl ecparam -genkey` prints first, and returns it in canonical form: only the
// encryption headers kept, and those checked, so decrypting can only fail on the
// password.
func keyBlock(s string) (*pem.Block, error) {
	blocks, err := pemBlocks(s)
	if err != nil {
		return nil, err
	}
	var key *pem.Block
	for _, b := range blocks {
		switch {
		case b.Type == "EC PARAMETERS":
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			if key != nil {
				return nil, ruleError("must hold exactly one private key")
			}
			key = b
		default:
			return nil, ruleError("must hold only the private key PEM block")
		}
	}
	switch {
	case key == nil:
		return nil, ruleError("must contain a PEM private key (-----BEGIN … PRIVATE KEY-----)")
	case key.Type == pkcs8Encrypted:
		return &pem.Block{Type: key.Type, Bytes: key.Bytes}, nil
	case !legacyEncrypted(key):
		return &pem.Block{Type: key.Type, Bytes: key.Bytes}, nil
	}
	if err := checkDEKInfo(key); err != nil {
		return nil, err
	}
	return &pem.Block{Type: key.Type, Bytes: key.Bytes, Headers: map[string]string{
		"Proc-Type": key.Headers["Proc-Type"],
		"DEK-Info":  key.Headers["DEK-Info"],
	}}, nil
}

// pkcs8Encrypted is the PEM type of an encrypted PKCS#8 key (RFC 5958), what OpenSSL
// writes by default when asked to encrypt a key.
const pkcs8Encrypted = "ENCRYPTED PRIVATE KEY"

// encrypted reports whether a key block needs a password: PKCS#8 or legacy PEM.
func encrypted(b *pem.Block) bool { return b.Type == pkcs8Encrypted || legacyEncrypted(b) }

// legacyEncrypted reports RFC 1421 style encryption, as OpenSSL's -traditional output
// and ssh-keygen -m PEM write it.
func legacyEncrypted(b *pem.Block) bool {
	return strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
}

func checkDEKInfo(b *pem.Block) error {
	mode, ivHex, _ := strings.Cut(b.Headers["DEK-Info"], ",")
	var blockSize int
	switch mode {
	case "DES-CBC", "DES-EDE3-CBC":
		blockSize = 8
	case "AES-128-CBC", "AES-192-CBC", "AES-256-CBC":
		blockSize = 16
	default:
		return errLegacyCipher
	}
	iv, err := hex.DecodeString(ivHex)
	if err != nil || len(iv) != blockSize || len(b.Bytes) == 0 || len(b.Bytes)%blockSize != 0 {
		return errLegacyCipher
	}
	return nil
}

// checkX509PrivateKey stores an unencrypted key as PKCS#8, the form access hands out,
// so serving it needs no parsing. An encrypted key is kept as given; finishCertificate
// checks it against private_key_password.
func checkX509PrivateKey(s string) (string, error) {
	b, err := keyBlock(s)
	if err != nil {
		return "", err
	}
	switch b.Type {
	case "RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", pkcs8Encrypted:
	case "OPENSSH PRIVATE KEY":
		return "", ruleError("must be a PEM private key (PKCS#1, PKCS#8 or SEC1): OpenSSH-format keys are for sftp_ssh_key")
	default:
		return "", errX509Key
	}
	if b.Type == pkcs8Encrypted {
		// Bounded before anything derives: finishCertificate runs the KDF.
		if _, err := checkPKCS8Params(b.Bytes); err != nil {
			return "", err
		}
	}
	if encrypted(b) {
		return string(pem.EncodeToMemory(b)), nil
	}
	key, err := parsePrivateKeyDER(b.Type, b.Bytes)
	if err != nil {
		return "", err
	}
	return pkcs8PEM(key)
}

// parsePrivateKeyDER tries the encoding the PEM type names first, then the others, as
// crypto/tls does: some tools label PKCS#8 keys "RSA PRIVATE KEY".
func parsePrivateKeyDER(blockType string, der []byte) (crypto.Signer, error) {
	parsers := []func([]byte) (any, error){
		x509.ParsePKCS8PrivateKey,
		func(d []byte) (any, error) { return x509.ParsePKCS1PrivateKey(d) },
		func(d []byte) (any, error) { return x509.ParseECPrivateKey(d) },
	}
	switch blockType {
	case "RSA PRIVATE KEY":
		parsers[0], parsers[1] = parsers[1], parsers[0]
	case "EC PRIVATE KEY":
		parsers[0], parsers[2] = parsers[2], parsers[0]
	}
	for _, parse := range parsers {
		key, err := parse(der)
		if err != nil {
			continue
		}
		// X25519 keys parse from PKCS#8 too, but cannot sign a TLS handshake.
		if s, ok := key.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errSigningKey
	}
	return nil, errX509Key
}

func pkcs8PEM(key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", errSigningKey
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// decryptX509Key returns the usable key of a certificate credential. Its failures name
// the field to fix (a *FieldError): the key itself, or its password; a derivation the
// key-work gate gave no turn is its *keywork.Busy.
func decryptX509Key(ctx context.Context, keyPEM, password string) (crypto.Signer, error) {
	b, err := keyBlock(keyPEM)
	if err != nil {
		return nil, fieldError("private_key", err)
	}
	if !encrypted(b) {
		if password != "" {
			return nil, &FieldError{Field: "private_key_password", Rule: "must be empty: private_key is not encrypted"}
		}
		key, err := parsePrivateKeyDER(b.Type, b.Bytes)
		if err != nil {
			return nil, fieldError("private_key", err)
		}
		return key, nil
	}
	if password == "" {
		return nil, &FieldError{Field: "private_key_password", Rule: "is required: private_key is encrypted"}
	}
	if b.Type == pkcs8Encrypted {
		return decryptPKCS8(ctx, b.Bytes, password)
	}
	// Legacy PEM encryption is deprecated because it is weak and cannot always detect
	// a wrong password, but it is what many tools still write; a key that does not
	// parse after decryption is treated as a wrong password too.
	var der []byte
	if err := derive(ctx, smallKDFMemory, func() (err error) {
		der, err = x509.DecryptPEMBlock(b, []byte(password)) //nolint:staticcheck // SA1019: reading legacy-encrypted keys operators hold, see above
		return err
	}); err != nil {
		if busy := keywork.AsBusy(err); busy != nil {
			return nil, busy
		}
		return nil, &FieldError{Field: "private_key_password", Rule: "does not decrypt private_key"}
	}
	key, err := parsePrivateKeyDER(b.Type, der)
	if errors.Is(err, errSigningKey) {
		return nil, fieldError("private_key", err)
	}
	if err != nil {
		return nil, &FieldError{Field: "private_key_password", Rule: "does not decrypt private_key"}
	}
	return key, nil
}

// finishCertificate checks that the key decrypts and belongs to the leaf certificate,
// and records the certificate's facts.
func finishCertificate(v *Validated) FieldErrors {
	leaf, err := leafCertificate(str(v.Values, "certificate"))
	if err != nil {
		return FieldErrors{fieldError("certificate", err)}
	}
	// The key and password the credential already held were checked, and decrypted,
	// when they were written: an edit of anything else does not derive again.
	key := reusedX509Key(v.reused("private_key", "private_key", "private_key_password"))
	if key == nil {
		if key, err = decryptX509Key(v.ctx, str(v.Values, "private_key"), str(v.Values, "private_key_password")); err != nil {
			return v.failure(err)
		}
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return FieldErrors{{Field: "private_key", Rule: "must match the public key of the certificate (the first, leaf, certificate)"}}
	}
	if encrypted, err := keyIsEncrypted(str(v.Values, "private_key")); err == nil && encrypted {
		// Access hands out this form; deriving it is what the KDF was run for.
		plain, err := pkcs8PEM(key)
		if err != nil {
			return FieldErrors{fieldError("private_key", err)}
		}
		v.Secrets = map[string]string{"private_key": plain}
	}
	v.NotAfter = leaf.NotAfter
	v.Derived["not_after"] = leaf.NotAfter
	v.Derived["not_before"] = leaf.NotBefore
	v.Derived["subject"] = leaf.Subject.String()
	v.Derived["issuer"] = leaf.Issuer.String()
	v.Derived["serial"] = colonHex(leaf.SerialNumber.Bytes())
	v.Derived["key_algorithm"] = keyAlgorithm(leaf.PublicKey)
	return nil
}

// reusedX509Key parses a decrypted key kept from an earlier write (PKCS#8 PEM); nil
// when there is none or it does not parse, and the key must be decrypted again.
func reusedX509Key(plain string) crypto.Signer {
	if plain == "" {
		return nil
	}
	b, err := keyBlock(plain)
	if err != nil || b.Type != "PRIVATE KEY" {
		return nil
	}
	key, err := parsePrivateKeyDER(b.Type, b.Bytes)
	if err != nil {
		return nil
	}
	return key
}

func leafCertificate(certPEM string) (*x509.Certificate, error) {
	blocks, err := pemBlocks(certPEM)
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 || blocks[0].Type != "CERTIFICATE" {
		return nil, ruleError("must contain a PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	leaf, err := x509.ParseCertificate(blocks[0].Bytes)
	if err != nil {
		return nil, ruleError("must hold X.509 certificates that parse (certificate 1 does not)")
	}
	return leaf, nil
}

// colonHex formats a serial number the way Vault's PKI engine and OpenSSL show it.
func colonHex(b []byte) string {
	if len(b) == 0 {
		return "00"
	}
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = hex.EncodeToString([]byte{c})
	}
	return strings.Join(parts, ":")
}

func keyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// keyIsEncrypted reports whether a stored key PEM needs its password.
func keyIsEncrypted(keyPEM string) (bool, error) {
	b, err := keyBlock(keyPEM)
	if err != nil {
		return false, err
	}
	return encrypted(b), nil
}

// errKeyNotDerived is what Access answers for an encrypted key whose decrypted form
// was not handed in: Access never runs a KDF (see DeriveSecrets).
var errKeyNotDerived = errors.New("private_key is encrypted and its decrypted form was not supplied (see DeriveSecrets)")

// accessPrivateKey returns the PKCS#8 PEM of a stored certificate key that is not
// encrypted. Keys stored unencrypted are PKCS#8 already (checkX509PrivateKey
// normalized them), so the common case costs no parsing; an encrypted key's decrypted
// form comes from the secrets derived when it was written.
func accessPrivateKey(keyPEM string) (string, error) {
	b, err := keyBlock(keyPEM)
	if err != nil {
		return "", fieldError("private_key", err)
	}
	if encrypted(b) {
		return "", errKeyNotDerived
	}
	if b.Type == "PRIVATE KEY" {
		return string(pem.EncodeToMemory(b)), nil
	}
	key, err := parsePrivateKeyDER(b.Type, b.Bytes)
	if err != nil {
		return "", fieldError("private_key", err)
	}
	return pkcs8PEM(key)
}

// decryptPKCS8 opens an encrypted PKCS#8 key (PBES2 with PBKDF2 or scrypt, as OpenSSL
// writes it) with github.com/youmark/pkcs8, then applies the same key rules as to an
// unencrypted key by parsing the decrypted PKCS#8 again.
func decryptPKCS8(ctx context.Context, der []byte, password string) (crypto.Signer, error) {
	// Checked again here, not only by checkX509PrivateKey: a key stored before the caps
	// existed must not run an unbounded KDF either.
	memory, err := checkPKCS8Params(der)
	if err != nil {
		return nil, fieldError("private_key", err)
	}
	var key any
	if err := derive(ctx, memory, func() (err error) {
		key, err = pkcs8.ParsePKCS8PrivateKey(der, []byte(password))
		return err
	}); err != nil {
		if busy := keywork.AsBusy(err); busy != nil {
			return nil, busy
		}
		return nil, &FieldError{Field: "private_key_password", Rule: "does not decrypt private_key"}
	}
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fieldError("private_key", errX509Key)
	}
	signer, err := parsePrivateKeyDER("PRIVATE KEY", plain)
	if err != nil {
		return nil, fieldError("private_key", err)
	}
	return signer, nil
}
