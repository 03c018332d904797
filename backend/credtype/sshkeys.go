package credtype

// SSH private keys (sftp_ssh_key): the structure check, the bcrypt-rounds bound read
// before any KDF runs, the passphrase check with the public half it derives, and the
// decrypted copy kept for verify. The PEM and X.509 handling they share is in keys.go.

import (
	"bytes"
	"context"
	"crypto/dsa" //nolint:staticcheck // SA1019: imported only to recognise, and refuse, DSA keys
	"encoding/pem"
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/keywork"
)

// maxKDFRounds bounds the bcrypt rounds of an encrypted OpenSSH key. Each round costs
// about 8 ms of CPU on the write path; ssh-keygen uses 16 by default and 100 is a
// common hardened choice, so 256 (about 2 s) only stops a key built to pin a core.
const maxKDFRounds = 256

var (
	errSSHKey     = ruleError("must be an SSH private key that parses: OpenSSH format, or PEM PKCS#1 RSA, PKCS#8 or SEC1 EC")
	errSigningKey = ruleError("must be an RSA, ECDSA (P-256, P-384 or P-521) or Ed25519 signing key")
)

// checkSSHPrivateKey checks the structure of an SSH key. An encrypted key is accepted
// here and checked against its passphrase by finishSSHKey.
func checkSSHPrivateKey(s string) (string, error) {
	b, err := keyBlock(s)
	if err != nil {
		return "", err
	}
	switch b.Type {
	case "OPENSSH PRIVATE KEY":
		if rounds, ok := openSSHKDFRounds(b.Bytes); ok && rounds > maxKDFRounds {
			return "", rulef("must be encrypted with at most %d bcrypt KDF rounds (ssh-keygen -a)", maxKDFRounds)
		}
	case "RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY":
	case "DSA PRIVATE KEY":
		return "", ruleError("must not be a DSA key: current SSH servers refuse ssh-dss")
	case pkcs8Encrypted:
		return "", ruleError("must not be an encrypted PKCS#8 key here: convert it to OpenSSH format with a passphrase (ssh-keygen -p -f KEY)")
	default:
		return "", errSSHKey
	}
	canonical := pem.EncodeToMemory(b)
	key, err := ssh.ParseRawPrivateKey(canonical)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return string(canonical), nil
	case err != nil:
		return "", errSSHKey
	}
	if _, err := sshSigner(key); err != nil {
		return "", err
	}
	return string(canonical), nil
}

func sshSigner(key any) (ssh.Signer, error) {
	if _, ok := key.(*dsa.PrivateKey); ok {
		return nil, ruleError("must not be a DSA key: current SSH servers refuse ssh-dss")
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, errSigningKey
	}
	return s, nil
}

// openSSHKDFRounds reads the bcrypt rounds from an openssh-key-v1 header, so they can
// be bounded before anything runs the KDF.
func openSSHKDFRounds(der []byte) (uint32, bool) {
	rest, ok := bytes.CutPrefix(der, []byte("openssh-key-v1\x00"))
	if !ok {
		return 0, false
	}
	var hdr struct {
		CipherName string
		KdfName    string
		KdfOpts    string
		Rest       []byte `ssh:"rest"`
	}
	if ssh.Unmarshal(rest, &hdr) != nil || hdr.KdfName != "bcrypt" {
		return 0, false
	}
	var opts struct {
		Salt   string
		Rounds uint32
	}
	if ssh.Unmarshal([]byte(hdr.KdfOpts), &opts) != nil {
		return 0, false
	}
	return opts.Rounds, true
}

// finishSSHKey checks the passphrase against the key and records the public half,
// which the operator installs in the server's authorized_keys. An encrypted key is
// decrypted here, once per write, as a certificate's is: its decrypted copy goes into
// Secrets["private_key"] (stored seal-wrapped with the values), which verify signs
// with, so verify never runs bcrypt. access/ still hands out private_key and
// passphrase as written.
func finishSSHKey(v *Validated) FieldErrors {
	var key any
	var encrypted bool
	// A key and passphrase the credential already held were checked, and decrypted,
	// when they were written: an edit of anything else does not run bcrypt again.
	if plain := v.reused("private_key", "private_key", "passphrase"); plain != "" {
		if k, err := ssh.ParseRawPrivateKey([]byte(plain)); err == nil {
			key, encrypted = k, true
		}
	}
	if key == nil {
		var err error
		if key, encrypted, err = openSSHKey(v.ctx, str(v.Values, "private_key"), str(v.Values, "passphrase")); err != nil {
			return v.failure(err)
		}
	}
	signer, err := sshSigner(key)
	if err != nil {
		return FieldErrors{fieldError("private_key", err)}
	}
	if encrypted {
		plain, err := sshKeyPEM(key)
		if err != nil {
			return FieldErrors{fieldError("private_key", err)}
		}
		v.Secrets = map[string]string{"private_key": plain}
	}
	pub := signer.PublicKey()
	v.Derived["key_algorithm"] = pub.Type()
	v.Derived["public_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	v.Derived["public_key_fingerprint"] = ssh.FingerprintSHA256(pub)
	return nil
}

// openSSHKey parses an SSH key, decrypting it with pass when it is encrypted (one
// bcrypt or legacy PEM derivation, under the key-work gate); encrypted says it was.
// Failures name the field to fix (*FieldError), or are the gate's *keywork.Busy.
func openSSHKey(ctx context.Context, keyPEM, pass string) (key any, encrypted bool, err error) {
	key, err = ssh.ParseRawPrivateKey([]byte(keyPEM))
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		if pass == "" {
			return nil, true, &FieldError{Field: "passphrase", Rule: "is required: private_key is encrypted"}
		}
		// checkSSHPrivateKey bounded the bcrypt rounds before this derives.
		err = derive(ctx, smallKDFMemory, func() (err error) {
			key, err = ssh.ParseRawPrivateKeyWithPassphrase([]byte(keyPEM), []byte(pass))
			return err
		})
		if busy := keywork.AsBusy(err); busy != nil {
			return nil, true, busy
		}
		if err != nil {
			return nil, true, &FieldError{Field: "passphrase", Rule: "does not decrypt private_key"}
		}
		return key, true, nil
	case err != nil:
		return nil, false, &FieldError{Field: "private_key", Rule: string(errSSHKey)}
	case pass != "":
		return nil, false, &FieldError{Field: "passphrase", Rule: "must be empty: private_key is not encrypted"}
	}
	return key, false, nil
}

// sshKeyPEM is the unencrypted OpenSSH form of a decrypted key: the copy verify signs
// with.
func sshKeyPEM(key any) (string, error) {
	b, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return "", errSigningKey
	}
	return string(pem.EncodeToMemory(b)), nil
}

// sshKeySecrets decrypts a stored encrypted SSH key, for a credential stored before
// its decrypted copy was kept: what finishSSHKey puts in Secrets. Nil for a key stored
// unencrypted, which verify parses as it is.
func sshKeySecrets(ctx context.Context, values Fields) (map[string]string, error) {
	key, encrypted, err := openSSHKey(ctx, values.Str("private_key"), values.Str("passphrase"))
	if err != nil || !encrypted {
		return nil, err
	}
	plain, err := sshKeyPEM(key)
	if err != nil {
		return nil, fieldError("private_key", err)
	}
	return map[string]string{"private_key": plain}, nil
}

// sshVerifySigner is the signer verify uses: from the decrypted copy in secrets for an
// encrypted key, else from the stored key, which is then unencrypted. It never derives.
func sshVerifySigner(keyPEM string, secrets map[string]string) (ssh.Signer, error) {
	if plain := secrets["private_key"]; plain != "" {
		keyPEM = plain
	}
	key, err := ssh.ParseRawPrivateKey([]byte(keyPEM))
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, errKeyNotDerived
	case err != nil:
		return nil, errors.New("the stored private_key does not parse")
	}
	return sshSigner(key)
}
