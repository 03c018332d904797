package lifecycle

import (
	"encoding/binary"
	"hash/fnv"
	"time"
)

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

// NextKeepAlive is when the held refresh token of the credential called name is next
// exercised: interval after it was last used (exercised: the issue time of the token
// it came with, which every refresh renews). Zero when never: no interval (off), no
// refresh token held (exercised zero), or a credential not active — a suspended one is
// not in use, and asking a provider again for a grant it refused for good
// (needs_reauth) can lock the account.
//
// One already overdue when the schedule started (since: the node took up the work, or
// keepalive_interval changed) — after an upgrade, with keep-alive turned back on, after
// an outage — is not due at once with every other idle credential (100,000 refreshes in
// one burst, which providers throttle): it gets a slot of its own within
// KeepAliveSpread of since, by a hash of its name (as NextVerify's slots). Like
// NextVerify, it depends on the state and since alone, not on when it is asked, so
// re-filing never postpones it.
func NextKeepAlive(name string, s State, exercised time.Time, interval time.Duration, since time.Time) time.Time {
	if interval <= 0 || exercised.IsZero() || s.Status != StatusActive {
		return time.Time{}
	}
	due := exercised.Add(interval - keepAliveJitter(name, exercised, interval))
	if !due.Before(since) {
		return due
	}
	return slot(name, KeepAliveSpread(interval), since)
}

// keepAliveJitter is how much earlier than interval after exercised the credential
// called name is kept alive: its own point, by a hash of its name and exercised, within
// a hundredth of the interval, at most an hour (at the default week, an hour). Refresh
// tokens used in the same instant (a restore, a batch of refreshes) are not all
// exercised again in one burst; the interval is still never exceeded.
func keepAliveJitter(name string, exercised time.Time, interval time.Duration) time.Duration {
	window := min(interval/100, time.Hour)
	if window <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(exercised.UnixNano())) //nolint:gosec // G115: the bits of a time, hashed
	_, _ = h.Write(b[:])
	return time.Duration(h.Sum64() % uint64(window)) //nolint:gosec // G115: window is a positive duration
}

// KeepAliveSpread is how far NextKeepAlive spreads the keep-alives overdue at since:
// a seventh of the interval, at most a day (at the default week, 100,000 overdue
// credentials come to about 70 a minute).
func KeepAliveSpread(interval time.Duration) time.Duration {
	return min(interval/7, Day)
}
