package credtype

import (
	"encoding/base32"
	"errors"
	"strings"
	"time"
	"unicode"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// minTOTPSecretBytes is the smallest secret accepted: 80 bits. RFC 4226 requires at
// least 128 bits and recommends 160, but many services still issue 80-bit secrets
// (16 base32 characters), and refusing them would leave those accounts unusable.
const minTOTPSecretBytes = 10

var rawBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// decodeTOTPSecret accepts a secret the way authenticator apps do: any case, grouped
// with spaces, with or without '=' padding.
func decodeTOTPSecret(s string) ([]byte, error) {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "otpauth:") {
		return nil, ruleError("must be the base32 secret itself, not an otpauth:// URI (use its secret= parameter)")
	}
	s = strings.ToUpper(strings.TrimRight(strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s), "="))
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '2' || r > '7') {
			return nil, ruleError("must be base32: letters A-Z and digits 2-7 (case, spaces and '=' padding ignored)")
		}
	}
	// Go's unpadded decoder silently drops a final group base32 cannot produce (1, 3
	// or 6 characters), which would turn a truncated secret into a different one.
	b, err := rawBase32.DecodeString(s)
	if n := len(s) % 8; err != nil || n == 1 || n == 3 || n == 6 {
		return nil, ruleError("must be base32 of a whole number of bytes (its length is not one base32 can produce)")
	}
	if len(b) < minTOTPSecretBytes {
		return nil, ruleError("must be at least 80 bits (16 base32 characters)")
	}
	return b, nil
}

// checkTOTPSecret stores the canonical spelling (upper case, unpadded, no spaces), so
// two spellings of one secret are stored alike.
func checkTOTPSecret(s string) (string, error) {
	b, err := decodeTOTPSecret(s)
	if err != nil {
		return "", err
	}
	return rawBase32.EncodeToString(b), nil
}

// TOTPCode returns the RFC 6238 code for secret (base32, as checkTOTPSecret accepts
// it) at time at: HMAC-SHA1, 6 digits, 30-second steps — the parameters every
// authenticator app defaults to and the only ones an otpauth-less secret implies.
func TOTPCode(secret string, at time.Time) (string, error) {
	if at.Unix() < 0 {
		return "", errors.New("totp: time before the Unix epoch")
	}
	b, err := decodeTOTPSecret(secret)
	if err != nil {
		return "", errors.New("totp: invalid secret: " + err.Error())
	}
	return totp.GenerateCodeCustom(rawBase32.EncodeToString(b), at, totp.ValidateOpts{
		Period:    30,
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
}
