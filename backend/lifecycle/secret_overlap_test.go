package lifecycle

import (
	"testing"
	"time"
)

func TestSecretRefusedAlertLastsWhileThePreviousIsKept(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := NewState(start)
	if _, changed := SecretRefused(s, start); changed {
		t.Fatal("a refusal recorded with no previous client kept")
	}
	s.SecretOverlap = &SecretOverlap{Until: start.Add(time.Hour)}
	if !s.Kept(start) || s.Kept(start.Add(time.Hour)) {
		t.Fatal("Kept: want true before Until, false from it")
	}
	in := HealthInput{State: s, Accessed: true}
	if got := p.Health(in, start); got != HealthGreen {
		t.Fatalf("kept, never refused: health %s, want green", got)
	}
	refusedAt := start.Add(10 * time.Minute)
	s, changed := SecretRefused(s, refusedAt)
	if !changed {
		t.Fatal("the first refusal changed nothing")
	}
	if again, changed := SecretRefused(s, refusedAt.Add(time.Minute)); changed || !again.SecretOverlap.RefusedAt.Equal(refusedAt) {
		t.Fatal("a second refusal is news again")
	}
	in.State = s
	alerts := p.Alerts("c", in, refusedAt)
	if len(alerts) != 1 || alerts[0].Reason != AlertNewSecretRefused || alerts[0].Severity != HealthYellow || !alerts[0].Due.Equal(refusedAt) {
		t.Fatalf("alerts = %+v", alerts)
	}
	if got := p.Health(in, refusedAt); got != HealthYellow {
		t.Fatalf("health %s, want yellow", got)
	}
	if from := p.AlertsFrom(s); from.After(refusedAt) || from.IsZero() {
		t.Fatalf("AlertsFrom = %v, want no later than the refusal %v", from, refusedAt)
	}
	if got := p.Alerts("c", in, start.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("alerts after the overlap: %+v", got)
	}
}
