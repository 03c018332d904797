package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Storage of pending authorizations: the latest one per credential, and the state
// value pointing back at its credential for the callback.
const (
	authorizationPrefix = "authorizations/"
	oauthStatePrefix    = "oauth-states/"
)

// authorizationTTL is how long a consent URL's state stays usable.
const authorizationTTL = 10 * time.Minute

// pendingAuthorization is an authorization-code flow started by authorize.
type pendingAuthorization struct {
	State       string    `json:"state"`
	Verifier    string    `json:"verifier"`
	RedirectURL string    `json:"redirect_url"`
	ExpiresAt   time.Time `json:"expires_at"`
	// FromCallbackBase says RedirectURL was built from the engine's
	// callback_base_url: a change of that setting drops the authorization.
	FromCallbackBase bool `json:"from_callback_base,omitempty"`
	// The device authorization grant's attempt (device_flow.go): State is then the
	// attempt's own random id, with no oauth-states/ entry (nothing comes back
	// through the callback); DeviceCode is a secret, stored here seal-wrapped so that a
	// new active node resumes polling, and never shown or logged; the user code and
	// URIs are what the person is shown; Interval is the polling interval in force
	// (each slow_down adds five seconds).
	DeviceCode              string        `json:"device_code,omitempty"`
	UserCode                string        `json:"user_code,omitempty"`
	VerificationURI         string        `json:"verification_uri,omitempty"`
	VerificationURIComplete string        `json:"verification_uri_complete,omitempty"`
	Interval                time.Duration `json:"interval,omitempty"`
	// Record is the version of the stored format (records.go), stamped when stored.
	Record int `json:"record_version,omitempty"`
}

// device reports whether p is a device authorization attempt.
func (p *pendingAuthorization) device() bool { return p.DeviceCode != "" }

// authorizationStore is the one owner of the authorizations/ and oauth-states/
// entries. It has no locks of its own and caches nothing: a pending authorization is
// changed under its credential's name lock, so that spending it, replacing it and
// deleting the credential are ordered against each other, and it is read once per
// consent.
type authorizationStore struct {
	credentials *credentialStore // whose name locks guard the entries
}

// load returns the credential's pending authorization, nil when there is none.
func (as *authorizationStore) load(ctx context.Context, s logical.Storage, name string) (*pendingAuthorization, error) {
	entry, err := s.Get(ctx, authorizationPrefix+name)
	if err != nil || entry == nil {
		return nil, err
	}
	p := new(pendingAuthorization)
	if err := entry.DecodeJSON(p); err != nil {
		return nil, err
	}
	upgradeAuthorization(p)
	return p, nil
}

// credentialOf returns the name of the credential whose pending authorization issued
// state, "" when none did (spent, expired or replaced). The caller then checks the
// state again under that credential's lock.
func (as *authorizationStore) credentialOf(ctx context.Context, s logical.Storage, state string) (string, error) {
	entry, err := s.Get(ctx, oauthStatePrefix+state)
	if err != nil || entry == nil {
		return "", err
	}
	return string(entry.Value), nil
}

// put replaces the pending authorization of the credential whose lock h is; an older
// state stops working.
func (as *authorizationStore) put(ctx context.Context, s logical.Storage, h credentialHeld, p pendingAuthorization) error {
	name := h.name
	if err := as.drop(ctx, s, h); err != nil {
		return err
	}
	entry, err := recordEntry(authorizationPrefix+name, &p)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing pending authorization: %w", err)
	}
	if p.device() {
		return nil // polled by the engine, never completed through the callback
	}
	return s.Put(ctx, &logical.StorageEntry{Key: oauthStatePrefix + p.State, Value: []byte(name)})
}

// keep rewrites the pending device authorization p of the credential whose lock h is
// (a slower interval), in place.
func (as *authorizationStore) keep(ctx context.Context, s logical.Storage, h credentialHeld, p pendingAuthorization) error {
	entry, err := recordEntry(authorizationPrefix+h.name, &p)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing pending authorization: %w", err)
	}
	return nil
}

// drop removes the pending authorization, if any, of the credential whose lock h is,
// and so spends its state.
func (as *authorizationStore) drop(ctx context.Context, s logical.Storage, h credentialHeld) error {
	name := h.name
	p, err := as.load(ctx, s, name)
	if err != nil || p == nil {
		return err
	}
	if !p.device() { // a device authorization has no oauth-states/ entry
		if err := s.Delete(ctx, oauthStatePrefix+p.State); err != nil {
			return fmt.Errorf("deleting the pending authorization of %q: %w", name, err)
		}
	}
	if err := s.Delete(ctx, authorizationPrefix+name); err != nil {
		return fmt.Errorf("deleting the pending authorization of %q: %w", name, err)
	}
	return nil
}

// dropWhere drops every pending authorization for which gone says so, each judged and
// dropped under its credential's lock.
func (as *authorizationStore) dropWhere(ctx context.Context, s logical.Storage, gone func(*pendingAuthorization) bool) error {
	names, err := s.List(ctx, authorizationPrefix)
	if err != nil {
		return fmt.Errorf("listing pending authorizations: %w", err)
	}
	for _, name := range names {
		if err := as.dropIf(ctx, s, name, gone); err != nil {
			return err
		}
	}
	return nil
}

// dropIf drops name's pending authorization if gone says so, under the credential's
// lock, released by defer: a panic recovered by the job runner must not leave it held.
func (as *authorizationStore) dropIf(ctx context.Context, s logical.Storage, name string, gone func(*pendingAuthorization) bool) error {
	held, unlock := as.credentials.lock(name)
	defer unlock()
	p, err := as.load(ctx, s, name)
	if err == nil && p != nil && gone(p) {
		err = as.drop(ctx, s, held)
	}
	return err
}

// cleanAuthorizations removes pending authorizations whose ten minutes are up.
func (b *integrationsBackend) cleanAuthorizations(ctx context.Context, s logical.Storage) error {
	now := b.now()
	return b.authorizations.dropWhere(ctx, s, func(p *pendingAuthorization) bool { return !now.Before(p.ExpiresAt) })
}
