package lifecycle

import "time"

// AlertNewSecretRefused is the alert of a credential whose provider refused its new
// client secret (or pasted client key) with invalid_client while the previous one,
// kept for client_secret_overlap, obtained the token instead. Yellow: nothing fails yet, but
// the new secret is not accepted (not yet replicated, or wrong), and when the overlap
// ends the credential needs it.
const AlertNewSecretRefused = "new_client_secret_refused" //nolint:gosec // G101: an alert reason, not a credential

// SecretOverlap is what the lifecycle knows of a previous client secret a credential
// keeps (the secret itself is in the credential, never here): until when it is kept,
// and when it last obtained a token the new one was refused.
type SecretOverlap struct {
	Until time.Time `json:"until"`
	// RefusedAt is when the new client was last refused and the previous one served;
	// zero while that has not happened.
	RefusedAt time.Time `json:"refused_at,omitzero"`
}

// Kept reports whether a previous client secret is kept at now.
func (s State) Kept(now time.Time) bool {
	return s.SecretOverlap != nil && now.Before(s.SecretOverlap.Until)
}

// SecretRefused records that the new client was refused at the given time and the
// previous one served instead. It reports whether the state changed.
func SecretRefused(s State, at time.Time) (State, bool) {
	o := s.SecretOverlap
	if o == nil || !o.RefusedAt.IsZero() {
		return s, false
	}
	s.SecretOverlap = &SecretOverlap{Until: o.Until, RefusedAt: at}
	return s, true
}

// secretRefusedAlert is the alert of a credential whose new client secret was refused,
// while its previous one is kept: yellow, dated when it was first refused.
func (s State) secretRefusedAlert(now time.Time) (time.Time, string, bool) {
	o := s.SecretOverlap
	if o == nil || o.RefusedAt.IsZero() || !now.Before(o.Until) {
		return time.Time{}, "", false
	}
	return o.RefusedAt, "the provider refused the new client secret or key; tokens come through the previous one until " +
		o.Until.UTC().Format(time.RFC3339) + ": make sure the new one is right (and, at Microsoft Entra, replicated)", true
}
