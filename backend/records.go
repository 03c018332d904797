// Record versions: each stored record kind carries the version of the format it was
// written in, and one upgrade per kind, applied once when an entry is decoded, holds
// every "stored before X" rule of that kind. Code past the decode reads the record as
// the current version writes it.

package backend

import (
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/lifecycle"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/usage"
)

// The current version of each record kind, written by every store of it. An entry
// without one (record_version absent, decoded as 0) was written before versions were
// kept: by every release up to 0.1.0, or by such a release after a downgrade, which
// drops the field it does not know. A change of a kind's stored format raises its
// version and adds the rule that reads the older one to its upgrade below.
//
// A field added so that its absence reads as what older entries meant needs no new
// version and no upgrade rule: a credential's previous_client and its state's
// secret_overlap (client_secret_overlap, secret_overlap.go) are absent in every entry
// written before them, which kept no previous client secret, and a release that does
// not know them drops them on its next write, which only forgets the previous secret
// early (the new one is then used alone, as before). So are a credential's
// client_keys and client_certificates (generated keys, client_keys.go): absent, the
// credential has no generated key, as every older entry; but a release that does not
// know them drops them on its next write of the credential, which destroys its
// generated keys (it then signs with nothing and is refused until written again with
// generate_client_key or a pasted client_key): a downgrade below 0.2.0 loses them.
//
// Kinds without a format of their own carry no version: oauth-states/<state> and
// device-index/<hash> hold a credential's name as raw bytes (a new format would need
// new keys, or a previous release reading them would misread them). The notification
// outbox's entries are left to the outbox, which owns them.
const (
	credentialRecordVersion    = 1
	tokenRecordVersion         = 1
	configRecordVersion        = 1
	usageRecordVersion         = 1
	authorizationRecordVersion = 1
	usageHandoffRecordVersion  = 1
)

// record is a stored record kind: stamp sets its version to the current one, just
// before it is encoded.
type record interface {
	stamp()
}

// recordEntry encodes r, stamped with its kind's current version, as the entry at key.
func recordEntry(key string, r record) (*logical.StorageEntry, error) {
	r.stamp()
	return logical.StorageEntryJSON(key, r)
}

func (c *credential) stamp()           { c.Record = credentialRecordVersion }
func (st *storedToken) stamp()         { st.Record = tokenRecordVersion }
func (c *engineConfig) stamp()         { c.Record = configRecordVersion }
func (u *storedUsage) stamp()          { u.Record = usageRecordVersion }
func (p *pendingAuthorization) stamp() { p.Record = authorizationRecordVersion }

// upgradeCredential brings a decoded credential (its values bound to its type:
// compact) to the current version.
//
// Version 0:
//   - a certificate stored before upstream expiries were kept in the lifecycle state
//     gets its certificate's expiry (upgradeState), so its warnings and alerts
//     follow the same rules as a certificate written since;
//   - a static type's field stored before it had a default (bearer's header_prefix,
//     api_key's header_name) takes the default, as a write gives it today
//     (credtype.Type.WithDefaults);
//   - a credential stored before versions of its settings were kept (no version)
//     is version 1, as if created then: cas=1 applies to it, and its next write
//     makes it 2.
//
// Not an upgrade: a certificate's or SSH key's decrypted key, which entries stored
// before the engine kept it lack, costs a key derivation under the process-wide
// key-work gate, which a decode must not wait for; it is derived on first use and kept
// by the next write that leaves the key as it is (credential.derivedSecrets,
// keepDerivedFrom). That derivation checks the KDF's parameters against today's caps
// again (credtype's decryptPKCS8), since a key stored before them was never checked.
func upgradeCredential(c *credential) {
	if c.Record < 1 {
		c.State = upgradeState(c.Record, c.State, c.NotAfter)
		if t := c.Values.Type(); t != nil {
			c.Values = t.WithDefaults(c.Values)
		}
		c.Version = max(c.Version, 1)
	}
	c.Record = credentialRecordVersion
}

// upgradeIndexed is upgradeCredential for the part of a credential the indexes read
// (indexedCredential), which has no values.
func upgradeIndexed(ic *indexedCredential) {
	ic.State = upgradeState(ic.Record, ic.State, ic.NotAfter)
	ic.Record = credentialRecordVersion
}

// upgradeState is the lifecycle state of a credential stored in version v with the
// certificate expiry notAfter. Version 0: a state stored before upstream expiries were
// kept (every write sets them since) gets the certificate's expiry.
func upgradeState(v int, st lifecycle.State, notAfter time.Time) lifecycle.State {
	if v >= 1 || st.Upstream != nil || notAfter.IsZero() {
		return st
	}
	return lifecycle.WithUpstream(st, []lifecycle.Upstream{{Field: lifecycle.UpstreamCertificate, At: notAfter}})
}

// upgradeToken brings a decoded token state to the current version.
//
// Version 0: a token stored before the destination fingerprint was recorded (no
// destination), or before the client's (no client), counts as learnt under whatever
// destination or client the credential has now, as such tokens always have
// (storedToken.learntFor). Since version 1 every stored token carries
// both: "" is then a client fingerprint only for a type without a client (grantOwner),
// and matches only that.
//
// Not an upgrade: destination leaves an unset ca_certificate out of the fingerprint,
// so the fingerprints of tokens stored before the field existed stay what they were.
func upgradeToken(st *storedToken) {
	if st.Record < 1 {
		st.anyDestination = st.Destination == ""
		st.anyClient = st.Client == ""
	}
	st.Record = tokenRecordVersion
}

// learntFor reports whether st was learnt under the destination and client
// fingerprints given (a credential's now), or stored before it recorded them.
func (st *storedToken) learntFor(dest, client string) bool {
	return (st.anyDestination || st.Destination == dest) && (st.anyClient || st.Client == client)
}

// upgradeConfig brings a decoded config to the current version. A config is decoded
// onto the defaults (defaultConfig), so a field it lacks reads as its default: in
// version 0, the fields added after the first stored configs (refresh_ahead, true;
// keepalive_interval, 7 days; denied_networks and allowed_networks, netpolicy's
// defaults), and in any later version a field added after it.
//
// Version 0: a log_size stored before its cap existed is held to the cap (maxLogSize).
func upgradeConfig(c *engineConfig) {
	if c.Record < 1 {
		c.LogSize = min(c.LogSize, maxLogSize)
	}
	c.Record = configRecordVersion
}

// storedUsage is the stored form of usage/<name>: the usage package's Usage with its
// record version.
type storedUsage struct {
	usage.Usage
	Record int `json:"record_version,omitempty"`
}

// upgradeUsage brings a decoded usage entry to the current version.
//
// Version 0: a log stored before events were bounded is bounded (usage.Bound), so the
// stored entry's size has a ceiling (usage.MaxEncodedEvent) once written back. Events
// taken since are bounded by the recorder as it takes them.
func upgradeUsage(u *storedUsage) {
	if u.Record < 1 {
		for i := range u.Events {
			u.Events[i] = usage.Bound(u.Events[i])
		}
	}
	u.Record = usageRecordVersion
}

// upgradeAuthorization brings a decoded pending authorization to the current version.
// Version 0 reads as version 1: from_callback_base absent is false, a redirect URL not
// built from callback_base_url, which a change of that setting leaves alone.
func upgradeAuthorization(p *pendingAuthorization) {
	p.Record = authorizationRecordVersion
}
