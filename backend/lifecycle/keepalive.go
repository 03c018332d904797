package lifecycle

import "time"

// Keep-alive: a refresh token held for an idle credential is exercised (one refresh)
// at least every keepalive_interval, so providers that expire unused refresh tokens
// (Microsoft after 90 days, Google after 6 months) do not. It is not an access: the
// inactivity window, the access count and last_accessed stay as they are.

// DefaultKeepaliveInterval is the engine's keepalive_interval unless config says
// otherwise.
const DefaultKeepaliveInterval = 7 * Day

// keepalive_interval has verify_interval's bounds (zero, off, aside): at most hourly,
// at least yearly.

// KeepaliveIntervalRule states the bounds, for the config's description and refusals.
var KeepaliveIntervalRule = VerifyIntervalRule

// CheckKeepaliveInterval reports whether d may be a keepalive_interval (zero is off,
// and is the caller's to allow).
func CheckKeepaliveInterval(d time.Duration) error { return CheckVerifyInterval(d) }

// NextKeepAlive is when a credential's held refresh token is next exercised: interval
// after it was last used (exercised: the issue time of the token it came with, which
// every refresh renews). Zero when never: no interval (off), no refresh token held
// (exercised zero), or a credential not active — a suspended one is not in use, and
// asking a provider again for a grant it refused for good (needs_reauth) can lock the
// account. Like NextVerify, it depends on the state alone, so re-filing never
// postpones it.
func NextKeepAlive(s State, exercised time.Time, interval time.Duration) time.Time {
	if interval <= 0 || exercised.IsZero() || s.Status != StatusActive {
		return time.Time{}
	}
	return exercised.Add(interval)
}
