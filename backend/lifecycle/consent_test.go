package lifecycle

import (
	"testing"
	"time"
)

// TestAwaitingConsentTransitions: awaiting_consent is entered from active and
// needs_reauth (not from suspended), survives new settings and a refusal, is refused
// by Usable and alerted yellow, and ends with a consent or a verification that mints.
func TestAwaitingConsentTransitions(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Policy{SuspendAfter: 180 * Day, PurgeAfter: 365 * Day}
	s := AwaitingConsent(NewState(at), at)
	if s.Status != StatusAwaitingConsent || !s.AwaitingConsentAt.Equal(at) {
		t.Fatalf("from active: %+v", s)
	}
	if err := p.Usable(s, at); err == nil || err.Error() != "credential is awaiting consent" {
		t.Fatalf("Usable: %v", err)
	}
	alerts := p.Alerts("ac", HealthInput{State: s}, at)
	if len(alerts) != 1 || alerts[0].Reason != AlertAwaitingConsent || alerts[0].Severity != HealthYellow {
		t.Fatalf("alerts %+v, want one yellow awaiting_consent", alerts)
	}
	if h := p.Health(HealthInput{State: s}, at); h != HealthYellow {
		t.Fatalf("health %s, want yellow", h)
	}
	if !p.AlertsFrom(s).Equal(alwaysAlerting) {
		t.Fatalf("AlertsFrom %v: the index would miss it", p.AlertsFrom(s))
	}
	for what, next := range map[string]State{
		"new settings":          Reconfigured(s),
		"a refusal":             NeedsReauth(s, "invalid_grant", at),
		"a failed verification": Verified(s, Verification{Result: VerifyFailed, CheckedAt: at}),
	} {
		if next.Status != StatusAwaitingConsent {
			t.Errorf("after %s: %s, want awaiting_consent", what, next.Status)
		}
	}
	for what, next := range map[string]State{
		"a consent":                 Reauthorized(s, at.Add(time.Hour)),
		"a verification that mints": Verified(s, Verification{Result: VerifyOK, CheckedAt: at}),
	} {
		if next.Status != StatusActive || !next.AwaitingConsentAt.IsZero() {
			t.Errorf("after %s: %+v, want active", what, next)
		}
	}
	if got := AwaitingConsent(NeedsReauth(NewState(at), "no_refresh_token", at), at); got.Status != StatusAwaitingConsent || got.Reason != "" {
		t.Errorf("from needs_reauth: %+v", got)
	}
	if got := AwaitingConsent(Suspend(NewState(at), ReasonManual, at), at); got.Status != StatusSuspended {
		t.Errorf("from suspended: %s, want suspended", got.Status)
	} else if back := Unsuspend(got, at); back.Status != StatusAwaitingConsent {
		t.Errorf("suspended while awaiting consent, then unsuspended: %s, want awaiting_consent", back.Status)
	}
	// A suspension gives no consent: unsuspended, it awaits consent again.
	if got := Unsuspend(Suspend(s, ReasonManual, at), at); got.Status != StatusAwaitingConsent || !got.AwaitingConsentAt.Equal(at) {
		t.Errorf("awaiting consent, suspended, unsuspended: %+v, want awaiting_consent since %v", got, at)
	}
	// A consent while suspended is a consent.
	if got := Unsuspend(Reauthorized(Suspend(s, ReasonManual, at), at), at); got.Status != StatusActive {
		t.Errorf("consented while suspended, unsuspended: %s, want active", got.Status)
	}
}

// TestSecretsChangedDropsOnlyAFailedVerification: the result of a failed verification
// is about the old settings; a successful one stays.
func TestSecretsChangedDropsOnlyAFailedVerification(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	failed := Verified(NewState(at), Verification{Result: VerifyFailed, CheckedAt: at})
	if got := SecretsChanged(failed); got.Verified != nil || got.VerifyFailed() {
		t.Errorf("a failed verification survived: %+v", got.Verified)
	}
	ok := Verified(NewState(at), Verification{Result: VerifyOK, CheckedAt: at})
	if got := SecretsChanged(ok); got.Verified == nil {
		t.Error("a successful verification was dropped")
	}
}
