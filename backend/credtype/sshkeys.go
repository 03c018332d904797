package credtype

// SSH private keys (sftp_ssh_key): the structure check, the bcrypt-rounds bound read
// before any KDF runs, and the passphrase check with the public half it derives. The
// PEM and X.509 handling they share is in keys.go.

import (
	"bytes"
	//lint:ignore SA1019 imported only to recognise, and refuse, DSA keys
	"crypto/dsa"
	"encoding/pem"
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"
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
// which the operator installs in the server's authorized_keys.
func finishSSHKey(v *Validated) FieldErrors {
	keyPEM, pass := []byte(str(v.Values, "private_key")), str(v.Values, "passphrase")
	key, err := ssh.ParseRawPrivateKey(keyPEM)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		if pass == "" {
			return FieldErrors{{Field: "passphrase", Rule: "is required: private_key is encrypted"}}
		}
		// checkSSHPrivateKey bounded the bcrypt rounds before this derives.
		kdfRuns.Add(1)
		if key, err = ssh.ParseRawPrivateKeyWithPassphrase(keyPEM, []byte(pass)); err != nil {
			return FieldErrors{{Field: "passphrase", Rule: "does not decrypt private_key"}}
		}
	case err != nil:
		return FieldErrors{{Field: "private_key", Rule: string(errSSHKey)}}
	case pass != "":
		return FieldErrors{{Field: "passphrase", Rule: "must be empty: private_key is not encrypted"}}
	}
	signer, err := sshSigner(key)
	if err != nil {
		return FieldErrors{fieldError("private_key", err)}
	}
	pub := signer.PublicKey()
	v.Derived["key_algorithm"] = pub.Type()
	v.Derived["public_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	v.Derived["public_key_fingerprint"] = ssh.FingerprintSHA256(pub)
	return nil
}
