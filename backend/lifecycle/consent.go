package lifecycle

import "time"

// ConsentRefused records that a person (or the provider for them) refused a consent
// the engine was waiting for, such as a device authorization answered access_denied
// (reason is the provider's code): an active credential or one awaiting consent needs
// re-authorization; a suspended one stays suspended, as with NeedsReauth.
func ConsentRefused(s State, reason Reason, at time.Time) State {
	switch s.Status {
	case StatusActive, StatusAwaitingConsent:
		s.Status, s.Reason, s.NeedsReauthAt, s.AwaitingConsentAt = StatusNeedsReauth, reason, at, time.Time{}
	case StatusNeedsReauth:
		s.Reason = reason
	}
	return s
}
