package credtype

import (
	"encoding/base32"
	"testing"
	"time"
)

// TestTOTPCodeRFC6238 checks the SHA1 vectors of RFC 6238 appendix B. The RFC prints
// 8-digit codes; a 6-digit code is the same value modulo 10^6, its last six digits.
func TestTOTPCodeRFC6238(t *testing.T) {
	t.Parallel()
	secret := base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))
	tests := []struct {
		unix  int64
		eight string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	}
	for _, tc := range tests {
		got, err := TOTPCode(secret, time.Unix(tc.unix, 0))
		if err != nil {
			t.Fatalf("TOTPCode at %d: %v", tc.unix, err)
		}
		if want := tc.eight[2:]; got != want {
			t.Errorf("TOTPCode at %d = %s, want %s", tc.unix, got, want)
		}
	}
}

func TestTOTPCodeAcceptsEverySpelling(t *testing.T) {
	t.Parallel()
	at := time.Unix(1111111109, 0)
	for _, s := range []string{
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
		"gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
		"GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ======",
	} {
		got, err := TOTPCode(s, at)
		if err != nil || got != "081804" {
			t.Errorf("TOTPCode(%q) = %q, %v; want 081804", s, got, err)
		}
	}
	// The code changes every 30 seconds, at multiples of 30 since the epoch.
	a, _ := TOTPCode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", time.Unix(60, 0))
	b, _ := TOTPCode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", time.Unix(89, 0))
	c, _ := TOTPCode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", time.Unix(90, 0))
	if a != b || b == c {
		t.Errorf("codes at 60, 89, 90 = %s %s %s: want one step", a, b, c)
	}
}

func TestTOTPCodeRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		secret string
		at     time.Time
	}{
		{"not base32!", time.Unix(59, 0)},
		{"JBSWY3DP", time.Unix(59, 0)}, // 40 bits
		{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", time.Unix(-1, 0)},
	} {
		if code, err := TOTPCode(tc.secret, tc.at); err == nil {
			t.Errorf("TOTPCode(%q, %v) = %q, want an error", tc.secret, tc.at, code)
		}
	}
}
