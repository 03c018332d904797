package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
)

// The outbox keeps every notification for config.notify_credential until it is
// delivered: in storage (seal-wrapped), so that neither a receiver that is down, nor a
// burst the receiver cannot take, nor a restart loses a warning sent before a purge.
// Queuing is a storage write, never a network call, so it holds up neither a request
// nor the sweep; the outbox delivery job posts, one attempt per notification per pass,
// and backs off (capped at MaxBackoff) while the receiver fails. Alerts show what
// is not delivered.
const (
	// Prefix and DroppedKey are the outbox's storage keys, seal-wrapped where the
	// server supports it (backend.go, SealWrapStorage).
	Prefix     = "notify-outbox/"
	DroppedKey = "notify-dropped"

	// MaxOutbox caps the notifications waiting; see Enqueue for what a full outbox does.
	MaxOutbox = 1000
	// MaxPerCredential is one credential's share of the outbox: a credential
	// whose state flaps (a loop of writes and refusals) coalesces into one entry per
	// event kind, and holds at most this many entries of the MaxOutbox whatever it does.
	MaxPerCredential = 8
	// StaleAfter is how long a notification may wait, even untried, before alerts
	// call it undelivered.
	StaleAfter = 15 * time.Minute
	// PollInterval is the longest the delivery job waits between passes.
	PollInterval = 30 * time.Second
	// droppedAlertFor is how long alerts keep showing that notifications were dropped.
	droppedAlertFor = 30 * lifecycle.Day
)

// Alert reasons of the outbox.
const (
	AlertUndelivered = "notification_undelivered"
	AlertDropped     = "notifications_dropped"
)

// Entry is one notification waiting for delivery, as stored under Prefix.
type Entry struct {
	ID           string       `json:"id"`
	Notification Notification `json:"notification"`
	QueuedAt     time.Time    `json:"queued_at"`
	Attempts     int          `json:"attempts"`
	NextAttempt  time.Time    `json:"next_attempt"`
	// LastFailure names the last failed attempt by kind only (http_503, timeout,
	// slack_channel_not_found, no_target): never a URL or a receiver's text.
	LastFailure string `json:"last_failure,omitempty"`

	stored    bool // the entry is in storage as it is now
	delivered bool // posted; only its removal from storage is left
	posting   bool // copied out for a post in flight: nothing more is coalesced into it
}

// pending reports whether e still waits for a post that has not started: the entry a
// new notification of its credential and kind is coalesced into.
func (e *Entry) pending() bool { return !e.delivered && !e.posting }

// dropped records notifications a full outbox could not keep.
type droppedRecord struct {
	Count      int64     `json:"count"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
	Credential string    `json:"credential"`
	Event      string    `json:"event"`
}

// Outbox is the notifications waiting for delivery, and their delivery.
type Outbox struct {
	d Deps

	mu      sync.Mutex // guards the fields below and orders the outbox's storage writes
	loaded  bool
	entries map[string]*Entry
	dropped *droppedRecord
	// pausedUntil holds every attempt back after the receiver itself failed.
	pausedUntil time.Time

	passMu sync.Mutex // one delivery pass at a time
	kick   chan struct{}
}

// New returns an empty outbox; it reads storage at Load or on first use.
func New(d Deps) *Outbox {
	if d.Backoff == nil {
		d.Backoff = Backoff
	}
	return &Outbox{d: d, entries: make(map[string]*Entry), kick: make(chan struct{}, 1)}
}

// Wake asks for a delivery pass without waiting for it.
func (o *Outbox) Wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// Load reads the outbox from storage (once) and says how many notifications wait.
func (o *Outbox) Load(ctx context.Context, s logical.Storage) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.loadLocked(ctx, s)
	return len(o.entries), err
}

// loadLocked reads the outbox from storage once. The caller holds o.mu.
func (o *Outbox) loadLocked(ctx context.Context, s logical.Storage) error {
	if o.loaded {
		return nil
	}
	entries, dropped, err := read(ctx, s)
	if err != nil {
		return err
	}
	foldStored(ctx, s, entries)
	for id, e := range entries {
		if _, ok := o.entries[id]; !ok {
			o.entries[id] = e
		}
	}
	if o.dropped == nil {
		o.dropped = dropped
	}
	o.loaded = true
	return nil
}

// upgrade is every rule for an entry stored by an older version, applied as it is
// decoded: one stored before coalescing (v0.1.0: no count, first_time, last_time)
// counts once, at its own time. Such an outbox may also hold one credential's
// duplicates of a kind: foldStored, at load, is the other half of the upgrade.
func upgrade(e *Entry) {
	e.Notification = e.Notification.tally()
}

// foldStored folds stored entries of one credential and event kind into the oldest of
// them, as Enqueue would have: an outbox an older version filled with one credential's
// notifications (a thousand needs_reauth) loads as one entry per kind, delivered once
// with their count, and leaves room for the others. A duplicate whose removal storage
// refuses stays as it is, to be delivered on its own.
func foldStored(ctx context.Context, s logical.Storage, entries map[string]*Entry) {
	ids := slices.Sorted(maps.Keys(entries))
	type kind struct{ credential, event string }
	oldest := make(map[kind]*Entry)
	folded := make(map[*Entry]bool)
	for _, id := range ids {
		e := entries[id]
		k := kind{e.Notification.Credential, e.Notification.Event}
		first := oldest[k]
		if first == nil {
			oldest[k] = e
			continue
		}
		if err := s.Delete(ctx, Prefix+id); err != nil {
			continue
		}
		first.Notification = first.Notification.coalesce(e.Notification)
		delete(entries, id)
		folded[first] = true
	}
	for e := range folded {
		// If storage refuses, the entry stays stored as it was (e.stored holds, so its
		// delivery removes it): only the folded count is lost with a restart.
		if entry, err := logical.StorageEntryJSON(Prefix+e.ID, e); err == nil {
			_ = s.Put(ctx, entry)
		}
	}
}

// read reads every stored outbox entry and the drop record.
func read(ctx context.Context, s logical.Storage) (map[string]*Entry, *droppedRecord, error) {
	ids, err := s.List(ctx, Prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the notification outbox: %w", err)
	}
	entries := make(map[string]*Entry, len(ids))
	for _, id := range ids {
		raw, err := s.Get(ctx, Prefix+id)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the notification outbox: %w", err)
		}
		if raw == nil {
			continue
		}
		e := new(Entry)
		if err := raw.DecodeJSON(e); err != nil || e.ID != id {
			continue // not ours to deliver; it is left alone
		}
		upgrade(e)
		e.stored = true
		entries[id] = e
	}
	var dropped *droppedRecord
	if raw, err := s.Get(ctx, DroppedKey); err != nil {
		return nil, nil, fmt.Errorf("reading the notification outbox: %w", err)
	} else if raw != nil {
		dropped = new(droppedRecord)
		if err := raw.DecodeJSON(dropped); err != nil {
			dropped = nil
		}
	}
	return entries, dropped, nil
}

// seq orders notifications queued at the same clock reading.
var seq atomic.Uint64

// newID names a notification so that names sort in queuing order: the time, a
// sequence number, and a random part so that two nodes never pick the same name.
func newID(at time.Time) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%020d-%020d-%s", at.UnixNano(), seq.Add(1), hex.EncodeToString(r[:]))
}

// putLocked stores e; the caller holds o.mu. A failure leaves e in memory, unstored,
// for the next pass to store again.
func (o *Outbox) putLocked(ctx context.Context, s logical.Storage, e *Entry) error {
	entry, err := logical.StorageEntryJSON(Prefix+e.ID, e)
	if err == nil {
		err = s.Put(ctx, entry)
	}
	e.stored = err == nil
	return err
}

// Enqueue keeps n in the outbox for delivery. It never blocks on the receiver.
//
// A notification is coalesced with the one of the same credential and event kind
// still waiting (not yet being posted): that entry keeps its place and its attempts,
// takes n's message, due date and time, and counts one more occurrence (count,
// first_time, last_time in the body). So at most one entry per credential and kind
// waits, and a credential holds at most MaxPerCredential entries: beyond that
// share, n takes the place of the credential's own oldest entry that is not about a
// purge (or is refused, when every one is).
//
// The outbox holds at most MaxOutbox notifications. When it is full, a purge warning or
// purge report takes the place of the oldest notification of another kind; only when
// every waiting one is itself about a purge is the new one refused. Either way the drop
// is logged and recorded, and alerts show it (notifications_dropped) for
// droppedAlertFor: nothing is dropped silently.
func (o *Outbox) Enqueue(ctx context.Context, n Notification) {
	if !o.d.WriteSafe() {
		// Only the active node keeps the outbox; the log line and Vault event stand.
		o.d.Logger().Debug("notification not queued on a node that cannot write", "credential", n.Credential, "event", n.Event)
		return
	}
	s := o.d.Storage()
	set, err := o.d.Settings(ctx, s)
	if err != nil || set.Credential == "" {
		return // nowhere to post to
	}
	now := o.d.Now().UTC()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadLocked(ctx, s); err != nil {
		o.d.Logger().Error("reading the notification outbox failed", "error", err)
	}
	n.Count, n.FirstTime, n.LastTime = 1, n.Time, n.Time
	if e := o.pendingLocked(n.Credential, n.Event); e != nil {
		e.Notification = e.Notification.coalesce(n)
		if err := o.putLocked(ctx, s, e); err != nil {
			o.d.Logger().Error("storing a coalesced notification failed; it is kept in memory and stored again on the next attempt",
				"credential", n.Credential, "event", n.Event, "error", err)
		}
		return
	}
	if own := o.countLocked(n.Credential); own >= MaxPerCredential {
		// The credential's share is taken: n replaces its oldest entry not about a purge.
		if !o.makeRoomLocked(ctx, s, n, now, func(e *Entry) bool {
			return e.Notification.Credential == n.Credential && e.pending() && !PurgeRelated(e.Notification.Event)
		}) {
			return
		}
	} else if len(o.entries) >= MaxOutbox {
		if !o.makeRoomLocked(ctx, s, n, now, func(e *Entry) bool {
			return PurgeRelated(n.Event) && !PurgeRelated(e.Notification.Event)
		}) {
			return
		}
	}
	e := &Entry{ID: newID(now), Notification: n, QueuedAt: now, NextAttempt: now}
	o.entries[e.ID] = e
	if err := o.putLocked(ctx, s, e); err != nil {
		o.d.Logger().Error("storing a notification in the outbox failed; it is kept in memory and stored again on the next attempt",
			"credential", n.Credential, "event", n.Event, "error", err)
	}
	o.Wake()
}

// pendingLocked returns the entry of credential and event still waiting to be
// posted, nil when there is none: at most one waits (Enqueue coalesces, and loading
// folds an older version's duplicates), beside at most one being posted. The caller
// holds o.mu.
func (o *Outbox) pendingLocked(credential, event string) *Entry {
	for _, e := range o.entries {
		if e.Notification.Credential == credential && e.Notification.Event == event && e.pending() {
			return e
		}
	}
	return nil
}

// countLocked counts the entries of credential not yet delivered. The caller holds o.mu.
func (o *Outbox) countLocked(credential string) int {
	n := 0
	for _, e := range o.entries {
		if e.Notification.Credential == credential && !e.delivered {
			n++
		}
	}
	return n
}

// makeRoomLocked drops the oldest entry evictable says may go, to make room for n,
// and records the drop; without such an entry it records n as dropped and reports
// false. The caller holds o.mu.
func (o *Outbox) makeRoomLocked(ctx context.Context, s logical.Storage, n Notification, now time.Time, evictable func(*Entry) bool) bool {
	var victim *Entry
	for _, e := range o.entries {
		if evictable(e) && (victim == nil || e.ID < victim.ID) {
			victim = e
		}
	}
	if victim == nil {
		o.recordDropLocked(ctx, s, n, now)
		return false
	}
	delete(o.entries, victim.ID)
	if err := s.Delete(ctx, Prefix+victim.ID); err != nil {
		o.d.Logger().Error("removing a notification from the outbox failed", "error", err)
	}
	o.recordDropLocked(ctx, s, victim.Notification, now)
	return true
}

// recordDropLocked counts a notification the full outbox could not keep.
func (o *Outbox) recordDropLocked(ctx context.Context, s logical.Storage, n Notification, now time.Time) {
	o.d.Logger().Error("notification outbox full; notification dropped",
		"credential", n.Credential, "event", n.Event, "outbox_size", MaxOutbox, "per_credential", MaxPerCredential)
	o.d.Dropped()
	d := o.dropped
	if d == nil || now.Sub(d.Last) > droppedAlertFor {
		d = &droppedRecord{First: now}
	}
	d.Count++
	d.Last, d.Credential, d.Event = now, n.Credential, n.Event
	o.dropped = d
	entry, err := logical.StorageEntryJSON(DroppedKey, d)
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		o.d.Logger().Error("recording a dropped notification failed", "error", err)
	}
}

// removeLocked takes a notification out of the outbox. If storage refuses, it stays
// marked delivered and the next pass removes it without posting it again.
func (o *Outbox) removeLocked(ctx context.Context, s logical.Storage, e *Entry) {
	if e.stored {
		if err := s.Delete(ctx, Prefix+e.ID); err != nil {
			o.d.Logger().Warn("removing a delivered notification from the outbox failed; will retry", "error", err)
			return
		}
	}
	delete(o.entries, e.ID)
}

// Alerts lists what the outbox has not delivered: each notification that failed
// at least once, waits while the receiver is failing, or has waited StaleAfter;
// and recent drops of a full outbox. A
// warning or report about a purge is red: someone may lose a credential unwarned.
func (o *Outbox) Alerts(ctx context.Context, s logical.Storage, now time.Time) ([]lifecycle.Alert, error) {
	var entries []Entry
	var dropped *droppedRecord
	o.mu.Lock()
	// While the receiver is failing, everything waiting is undelivered, tried or not.
	paused := now.Before(o.pausedUntil)
	if o.loaded {
		for _, e := range o.entries {
			entries = append(entries, *e)
		}
		if o.dropped != nil {
			d := *o.dropped
			dropped = &d
		}
		o.mu.Unlock()
	} else {
		o.mu.Unlock()
		stored, d, err := read(ctx, s)
		if err != nil {
			return nil, err
		}
		for _, e := range stored {
			entries = append(entries, *e)
		}
		dropped = d
	}
	var out []lifecycle.Alert
	for _, e := range entries {
		if e.delivered || (e.Attempts == 0 && !paused && now.Sub(e.QueuedAt) < StaleAfter) {
			continue
		}
		sev := lifecycle.HealthYellow
		if PurgeRelated(e.Notification.Event) {
			sev = lifecycle.HealthRed
		}
		detail := fmt.Sprintf("not delivered to notify_credential after %d attempts", e.Attempts)
		if e.LastFailure != "" {
			detail += " (last: " + e.LastFailure + ")"
		}
		if n := e.Notification; n.Count > 1 {
			detail += fmt.Sprintf("; %d occurrences since %s", n.Count, n.FirstTime)
		}
		out = append(out, lifecycle.Alert{
			Name: e.Notification.Credential, Reason: AlertUndelivered, Due: e.QueuedAt, Severity: sev, Detail: detail,
			Event: e.Notification.Event, Attempts: e.Attempts, QueuedAt: e.QueuedAt,
		})
	}
	if dropped != nil && now.Sub(dropped.Last) <= droppedAlertFor {
		out = append(out, lifecycle.Alert{
			Name: dropped.Credential, Reason: AlertDropped, Due: dropped.First, Severity: lifecycle.HealthRed,
			Detail: fmt.Sprintf("%d notifications dropped since %s: the outbox holds at most %d, %d per credential; the last was %s",
				dropped.Count, RFC3339(dropped.First), MaxOutbox, MaxPerCredential, dropped.Event),
			Event: dropped.Event, Attempts: 0, QueuedAt: dropped.Last,
		})
	}
	return out, nil
}

// Unstored counts the notifications waiting that storage refused so far.
func (o *Outbox) Unstored() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, e := range o.entries {
		if !e.stored && !e.delivered {
			n++
		}
	}
	return n
}
