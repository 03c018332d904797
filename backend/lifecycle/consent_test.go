package lifecycle

import (
	"testing"
	"time"
)

func TestConsentRefused(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct {
		from       State
		status     Status
		reason     Reason
		reauthAt   time.Time
		awaitingAt time.Time
	}{
		{State{Status: StatusActive}, StatusNeedsReauth, "access_denied", at, time.Time{}},
		{State{Status: StatusAwaitingConsent, AwaitingConsentAt: at.Add(-time.Hour)}, StatusNeedsReauth, "access_denied", at, time.Time{}},
		{State{Status: StatusNeedsReauth, Reason: "invalid_grant", NeedsReauthAt: at.Add(-time.Hour)}, StatusNeedsReauth, "access_denied", at.Add(-time.Hour), time.Time{}},
		// Suspension is the stronger statement: it stays.
		{State{Status: StatusSuspended, Reason: ReasonManual}, StatusSuspended, ReasonManual, time.Time{}, time.Time{}},
	} {
		got := ConsentRefused(tc.from, "access_denied", at)
		if got.Status != tc.status || got.Reason != tc.reason || !got.NeedsReauthAt.Equal(tc.reauthAt) || !got.AwaitingConsentAt.Equal(tc.awaitingAt) {
			t.Errorf("ConsentRefused(%s/%s) = %s/%s reauth %s awaiting %s, want %s/%s reauth %s",
				tc.from.Status, tc.from.Reason, got.Status, got.Reason, got.NeedsReauthAt, got.AwaitingConsentAt, tc.status, tc.reason, tc.reauthAt)
		}
	}
}
