package lifecycle

import (
	"errors"
	"fmt"
	"hash/fnv"
	"time"
)

// Verification results: the values of Verification.Result.
const (
	VerifyOK          = "ok"
	VerifyFailed      = "failed"
	VerifyUnsupported = "unsupported"
)

// AlertVerifyFailed is the alert of a credential whose last verification failed.
const AlertVerifyFailed = "verify_failed"

// Verification is the outcome of one check of a credential against the system it is
// for (credentials/<name>/verify, or the schedule). Detail never holds a secret or a
// provider's text.
type Verification struct {
	Result    string    `json:"result"`
	Detail    string    `json:"detail,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
	LatencyMS int64     `json:"latency_ms"`
}

// Verified records a verification in the state. It is not an access: the inactivity
// window and the warnings stay as they are. A verification that succeeded proves the
// credential works (for an OAuth type, a token was minted): one refused for
// re-authorization (or awaiting consent) is usable again.
func Verified(s State, v Verification) State {
	s.Verified = &v
	if v.Result == VerifyOK {
		s = granted(s)
	}
	return s
}

// Minted records that an OAuth credential obtained a token from its provider at the
// given time, which proves the credential works as much as a verification does: a
// failed verification is superseded. It reports whether the state changed, so the
// caller writes only then.
func Minted(s State, at time.Time) (State, bool) {
	if !s.VerifyFailed() || !at.After(s.Verified.CheckedAt) {
		return s, false
	}
	return Verified(s, Verification{Result: VerifyOK, Detail: "a token was minted", CheckedAt: at}), true
}

// VerifyFailed reports whether the last verification failed; the credential is red,
// with AlertVerifyFailed, until a later one succeeds.
func (s State) VerifyFailed() bool {
	return s.Verified != nil && s.Verified.Result == VerifyFailed
}

// Bounds of verify_interval, the engine's and a credential's own.
const (
	MinVerifyInterval = time.Hour
	MaxVerifyInterval = 365 * Day
)

// VerifyIntervalRule states the bounds, for the catalog's rule, the config's and
// their refusals alike.
var VerifyIntervalRule = fmt.Sprintf("between one hour (%d seconds) and 365 days", int64(MinVerifyInterval/time.Second))

// CheckVerifyInterval reports whether d may be a verify_interval (zero is off, and is
// the caller's to allow).
func CheckVerifyInterval(d time.Duration) error {
	if d < MinVerifyInterval || d > MaxVerifyInterval {
		return errors.New("must be a duration " + VerifyIntervalRule)
	}
	return nil
}

// NextVerify is when the schedule next verifies the credential called name, every
// interval (zero: never, and NextVerify is zero). Only an active credential is
// verified on a schedule: a suspended one is not in use, and asking a provider again
// for a grant it refused for good (needs_reauth) can lock the account.
//
// Each credential has its own slots, interval apart and offset from the epoch by a
// hash of its name, so credentials spread evenly over the interval instead of falling
// due together (100,000 at a daily interval: about 70 a minute). The next
// verification is the first slot at least half an interval after the latest of the
// last verification, the credential's creation and since (when the schedule was
// turned on or changed): one verified by hand just before its slot is not verified
// again at once, and turning the schedule on for many credentials spreads them over
// the interval too. The answer depends on the state alone, not on when it is asked,
// so re-filing a credential (every write and flush does) never postpones it.
func NextVerify(name string, s State, interval time.Duration, since time.Time) time.Time {
	if interval <= 0 || s.Status != StatusActive {
		return time.Time{}
	}
	from := s.CreatedAt
	if since.After(from) {
		from = since
	}
	if v := s.Verified; v != nil && v.CheckedAt.After(from) {
		from = v.CheckedAt
	}
	return slot(name, interval, from.Add(interval/2))
}

// slot is the first of name's slots not before from: period apart, offset from the
// epoch by a hash of name, so that many names falling due together spread evenly over
// period instead. The schedules that must not burst (NextVerify, NextKeepAlive) share
// it.
func slot(name string, period time.Duration, from time.Time) time.Time {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	offset := time.Duration(h.Sum64() % uint64(period)) //nolint:gosec // G115: period is a positive duration (a zero one would divide by zero first)
	// The first slot (epoch + offset + k·period) not before from.
	elapsed := from.Sub(time.Unix(0, 0).Add(offset))
	k := elapsed / period
	if elapsed%period != 0 && elapsed > 0 {
		k++
	}
	return time.Unix(0, 0).Add(offset + k*period).UTC()
}
