//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/e2e/internal/oauthtest"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/internal/fixtures"
)

// upgradeMount is where the upgrade test mounts the engine, as the README does.
const upgradeMount = "integrations"

// upgradeState is what the previous release stored and served, to be found again.
type upgradeState struct {
	names    []string                  // every credential, sorted
	kind     map[string]string         // credential -> its type's kind (static, oauth2)
	reads    map[string]map[string]any // credentials/<name> as last read
	access   map[string]map[string]any // access/<name> as last served (static: the material; oauth: the token)
	pending  string                    // the consent URL of the authorization left pending
	types    int                       // how many types the previous release's catalog lists
	acIssued int                       // the index in p.Issued() of ac's token from its consent
}

// TestUpgradeInPlace runs the previous release (E2E_PREVIOUS_PLUGIN, built by
// scripts/test.sh from its commit with git archive) on a persistent server, stores one
// credential of every type its catalog lists, OAuth tokens, a pending authorization,
// usage, a suspended credential and an outbox entry; upgrades the mount in place to
// this build (register, secrets tune -plugin-version, plugin reload) and finds every
// record again, served without a provider request; then runs the previous release over
// the upgraded data (the downgrade) and checks what it still reads and serves.
func TestUpgradeInPlace(t *testing.T) {
	prevBin, prevVersion := os.Getenv("E2E_PREVIOUS_PLUGIN"), os.Getenv("E2E_PREVIOUS_VERSION")
	if prevBin == "" || prevVersion == "" {
		missingPrerequisite(t, "E2E_PREVIOUS_PLUGIN and E2E_PREVIOUS_VERSION are not set: scripts/test.sh builds the previous release from its commit (needs the git history)")
	}
	curVersion := os.Getenv("PLUGIN_VERSION")
	if prevVersion == curVersion {
		t.Fatalf("the previous release reports %s, the version of this build: bump VERSION", curVersion)
	}
	// A plugin directory of the test's own, holding both builds.
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prevCommand := pluginName + "-" + prevVersion
	copyFile(t, prevBin, filepath.Join(dir, prevCommand))
	copyFile(t, filepath.Join(pluginDir(), pluginName), filepath.Join(dir, pluginName))

	v := newVault(t, serverOptions{persistent: true, unregistered: true, pluginDir: dir})
	v.mustCLI(t, "plugin", "register", "-sha256="+sha(t, filepath.Join(dir, prevCommand)), "-command="+prevCommand,
		"-version="+prevVersion, "secret", pluginName)
	v.mustCLI(t, "secrets", "enable", "-path="+upgradeMount, "-plugin-version="+prevVersion, pluginName)
	wantRunning(t, v, prevVersion)

	p := newIDP(t, oauthtest.Options{Domain: v.addr, Rotate: true})
	dead := closedPort(t)
	st := seedPrevious(t, v, p, dead)
	outbox := v.outbox(t)
	if !slices.Contains(outbox, "revoked needs_reauth") {
		t.Fatalf("the outbox holds %v, not revoked's needs_reauth (notify_credential points at a dead receiver)", outbox)
	}
	issuedBefore := len(p.Issued())
	requestsBefore := p.Requests()
	tokens := 0
	for _, n := range st.names {
		if st.kind[n] == "oauth2" && st.access[n] != nil {
			tokens++
		}
	}

	// The upgrade, as README's "Upgrading" says.
	v.mustCLI(t, append([]string{"plugin", "register", "-sha256=" + sha(t, filepath.Join(dir, pluginName)), "-command=" + pluginName,
		"-version=" + curVersion}, envFlags()...)...)
	v.mustCLI(t, "secrets", "tune", "-plugin-version="+curVersion, upgradeMount+"/")
	v.mustCLI(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	wantRunning(t, v, curVersion)

	// Every record is there as the previous release stored it; the credential reads
	// come before any access/ read, which would count.
	checkReads(t, v, st, "after the upgrade")
	if got := v.outbox(t); !reflect.DeepEqual(got, outbox) {
		t.Errorf("after the upgrade the outbox holds %v, want %v", got, outbox)
	}
	served := checkAccess(t, v, st, "after the upgrade")
	newRequests := p.Requests() - requestsBefore
	if newRequests != 0 {
		t.Errorf("after the upgrade: %d provider requests, want every stored token served", newRequests)
	}
	t.Logf("upgrade %s -> %s: %d credentials (%d types), %d OAuth tokens, %d served by access/, %d provider requests after the upgrade (%d before it)",
		prevVersion, curVersion, len(st.names), st.types, tokens, served, newRequests, requestsBefore)

	// The refresh token stored by the previous release works: a stale token (an
	// update that keeps the destination) is refreshed with it.
	refreshWith := p.Issued()[st.acIssued].Refresh
	v.mustCLI(t, "patch", upgradeMount+"/credentials/ac", "description=refreshed after the upgrade")
	before := p.Requests()
	got := readAccess(t, v, upgradeMount, "ac")
	if p.Requests() != before+1 {
		t.Fatalf("refresh after the upgrade: %d provider requests, want 1", p.Requests()-before)
	}
	if req := p.LastRequest(t); req.Form.Get("grant_type") != "refresh_token" || req.Form.Get("refresh_token") != refreshWith {
		t.Fatalf("after the upgrade the refresh sent grant_type %q and not the refresh token the previous release stored", req.Form.Get("grant_type"))
	}
	if got["access_token"] != p.LastIssued(t).Access {
		t.Fatalf("after the refresh access/ac is not the refreshed token")
	}
	// The authorization started under the previous release completes under this one.
	callback(t, v, p, st.pending)
	if req := p.LastRequest(t); req.Form.Get("grant_type") != "authorization_code" {
		t.Fatalf("the pending authorization's callback made a %q request", req.Form.Get("grant_type"))
	}
	if got := readAccess(t, v, upgradeMount, "pending"); got["access_token"] != p.LastIssued(t).Access {
		t.Fatal("the authorization pending at the upgrade: access/pending is not the token its consent got")
	}
	if len(p.Issued()) != issuedBefore+2 {
		t.Errorf("the provider issued %d tokens after the upgrade, want 2 (the refresh and the consent)", len(p.Issued())-issuedBefore)
	}
	// Keep what access/ now serves: the downgrade must serve these.
	st.access["ac"] = readAccess(t, v, upgradeMount, "ac")
	st.access["pending"] = readAccess(t, v, upgradeMount, "pending")
	for _, n := range st.names {
		st.reads[n] = credRead(t, v, n)
	}

	// A field a later version might add, stored beside the others (as this one
	// stores its records, through sys/raw before the reload): what does the previous
	// release do with it?
	rawKey := "sys/raw/logical/" + v.mountUUID(t, upgradeMount) + "/credentials/up-basic"
	rec := rawRecord(t, v, rawKey)
	rec["x_later_field"] = "later"
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.client.Logical().Write(rawKey, map[string]any{"value": string(b)}); err != nil {
		t.Fatalf("sys/raw write: %v", err)
	}

	// The downgrade: the previous release over what this one stored.
	v.mustCLI(t, "secrets", "tune", "-plugin-version="+prevVersion, upgradeMount+"/")
	v.mustCLI(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	wantRunning(t, v, prevVersion)
	requestsBefore = p.Requests()
	checkReads(t, v, st, "after the downgrade")
	checkAccess(t, v, st, "after the downgrade")
	if n := p.Requests() - requestsBefore; n != 0 {
		t.Errorf("after the downgrade: %d provider requests, want every stored token served", n)
	}
	// It reads and serves the record with the field it does not know (checkReads and
	// checkAccess above) and drops the field when it rewrites the record (README,
	// Upgrading, says so): a field a version adds must mean nothing when absent.
	v.mustCLI(t, "patch", upgradeMount+"/credentials/up-basic", "description=patched after the downgrade")
	if _, kept := rawRecord(t, v, rawKey)["x_later_field"]; kept {
		t.Errorf("a patch by %s kept a field it does not know: README's Upgrading says it drops it", prevVersion)
	}
	v.mustCLI(t, "patch", upgradeMount+"/credentials/ac", "description=refreshed after the downgrade")
	if got := readAccess(t, v, upgradeMount, "ac"); got["access_token"] != p.LastIssued(t).Access || p.LastRequest(t).Form.Get("grant_type") != "refresh_token" {
		t.Error("after the downgrade the refresh token this build stored does not refresh")
	}
	// And up again: nothing the downgrade did is lost to this build.
	v.mustCLI(t, "secrets", "tune", "-plugin-version="+curVersion, upgradeMount+"/")
	v.mustCLI(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	wantRunning(t, v, curVersion)
	if got := readAccess(t, v, upgradeMount, "ac"); got["access_token"] != p.LastIssued(t).Access {
		t.Error("upgraded again: access/ac is not the token the previous release refreshed")
	}
}

// seedPrevious stores, with the previous release, a credential of every type its
// catalog lists (static ones read three times each, OAuth ones with a token minted at
// p), an authorization-code credential consented to ("ac") and one whose
// authorization is pending ("pending"), a suspended credential ("held") and
// a credential needing re-authorization ("revoked") whose notification waits in the
// outbox for notify_credential, a webhook at dead.
func seedPrevious(t *testing.T, v *vaultServer, p *oauthtest.Provider, dead string) *upgradeState {
	t.Helper()
	m := upgradeMount
	v.mustCLI(t, "write", m+"/config", "callback_base_url="+v.addr)
	types, err := v.client.Logical().List(m + "/types")
	if err != nil || types == nil {
		t.Fatalf("listing %s/types: %s", m, outcome(types, err))
	}
	keyInfo, _ := types.Data["key_info"].(map[string]any)
	st := &upgradeState{kind: map[string]string{}, reads: map[string]map[string]any{}, access: map[string]map[string]any{}}
	for name, info := range keyInfo {
		kind := fmt.Sprint(info.(map[string]any)["kind"])
		values := fixtures.Values(name, "UpgradeSecret0123456789abcdefABCD", p.TokenURL())
		if kind == "oauth2" {
			for k, x := range map[string]string{"client_id": oauthtest.ClientID, "client_secret": oauthtest.ClientSecret,
				"username": oauthtest.Username, "password": oauthtest.Password, "account_id": oauthtest.AccountID} {
				if _, ok := values[k]; ok {
					values[k] = x
				}
			}
			if name == "oauth2_authorization_code" {
				values["auth_url"] = p.AuthURL()
			}
		}
		cred := "up-" + name
		if name == "oauth2_authorization_code" {
			cred = "ac"
		}
		args := append([]string{"write", m + "/credentials/" + cred, "type=" + name, "tags=upgrade", "description=stored by " + name}, cliArgs(t, values)...)
		v.mustCLI(t, args...)
		st.names = append(st.names, cred)
		st.kind[cred] = kind
	}
	st.types = len(st.names)
	if st.types == 0 {
		t.Fatalf("%s/types lists no types: %v", m, types.Data)
	}
	// ac: consented through a browser.
	authorizeThroughBrowser(t, v, p, m, "ac")
	st.acIssued = len(p.Issued()) - 1
	// pending: authorize started, no callback yet.
	v.mustCLI(t, "write", m+"/credentials/pending", "type=oauth2_authorization_code", "auth_url="+p.AuthURL(),
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret, "scopes=offline_access")
	st.pending = startAuthorization(t, v, m, "pending")
	st.names = append(st.names, "pending")
	st.kind["pending"] = "oauth2"
	// Notifications go to a receiver that is down; held's suspension waits for it.
	v.mustCLI(t, "write", m+"/credentials/notify", "type=webhook", "url=http://"+dead+"/hook")
	v.mustCLI(t, "write", m+"/config", "notify_credential=notify")
	v.mustCLI(t, "write", m+"/credentials/held", "type=basic", "username=held", "password=held-UpgradeSecret")
	v.mustCLI(t, "write", "-force", m+"/credentials/held/suspend")
	// revoked: its grant revoked at the provider, so its next refresh is refused and it
	// needs re-authorization; that is notified (a manual suspension is not), so the
	// notification waits in the outbox.
	v.mustCLI(t, "write", m+"/credentials/revoked", "type=oauth2_authorization_code", "auth_url="+p.AuthURL(),
		"token_url="+p.TokenURL(), "client_id="+oauthtest.ClientID, "client_secret="+oauthtest.ClientSecret, "scopes=offline_access")
	authorizeThroughBrowser(t, v, p, m, "revoked")
	if err := p.TokenStore().RemoveByRefresh(context.Background(), p.LastIssued(t).Refresh); err != nil {
		t.Fatal(err)
	}
	v.mustCLI(t, "patch", m+"/credentials/revoked", "description=revoked upstream")
	if _, err := noRetryClient(t, v).Logical().Read(m + "/access/revoked"); statusCode(err) != http.StatusForbidden {
		t.Fatalf("access/revoked after the provider revoked its grant: %v, want 403", err)
	}
	st.names = append(st.names, "notify", "held", "revoked")
	st.kind["notify"], st.kind["held"], st.kind["revoked"] = "static", "static", "oauth2"
	sort.Strings(st.names)

	// Usage: three reads of each that serves; OAuth tokens minted (and then cached).
	for _, n := range st.names {
		if n == "held" || n == "pending" || n == "revoked" {
			continue
		}
		for range 3 {
			st.access[n] = readAccess(t, v, m, n)
		}
	}
	for _, n := range st.names {
		st.reads[n] = credRead(t, v, n)
	}
	for n, a := range st.access {
		if c := fmt.Sprint(st.reads[n]["access_count"]); a != nil && c != "3" {
			t.Fatalf("credentials/%s shows access_count %s after 3 access/ reads", n, c)
		}
		if logs, _ := st.reads[n]["(logs)"].([]any); len(logs) < 3 {
			t.Fatalf("credentials/%s/logs holds %d events after 3 access/ reads", n, len(logs))
		}
	}
	if got := st.reads["held"]["status"]; got != "suspended" {
		t.Fatalf("held is %v after its suspension", got)
	}
	if got := st.reads["revoked"]["status"]; got != "needs_reauth" {
		t.Fatalf("revoked is %v after the provider refused its refresh", got)
	}
	return st
}

// credRead is credentials/<name> on the upgrade test's mount, with its usage log's
// events under "(logs)".
func credRead(t *testing.T, v *vaultServer, name string) map[string]any {
	t.Helper()
	data := decode(t, v.mustCLI(t, "read", "-format=json", upgradeMount+"/credentials/"+name)).Data
	data["(logs)"] = decode(t, v.mustCLI(t, "read", "-format=json", upgradeMount+"/credentials/"+name+"/logs")).Data["events"]
	return data
}

// windowFields are a credential read's times that follow its inactivity window: the
// engine renews the stored window at most once a minute per credential (a reload keeps
// the stored one), so they may be up to a minute earlier than the read before showed.
var windowFields = map[string]bool{"suspend_at": true, "purge_at": true}

// sameWindow says whether two window times are within the minute of each other.
func sameWindow(got, want any) bool {
	g, err1 := time.Parse(time.RFC3339, fmt.Sprint(got))
	w, err2 := time.Parse(time.RFC3339, fmt.Sprint(want))
	if err1 != nil || err2 != nil {
		return reflect.DeepEqual(got, want)
	}
	d := w.Sub(g)
	return d >= -time.Second && d <= time.Minute
}

// checkReads compares every credential's read with the one stored in st.
func checkReads(t *testing.T, v *vaultServer, st *upgradeState, when string) {
	t.Helper()
	for _, n := range st.names {
		out, err := v.cli("read", "-format=json", upgradeMount+"/credentials/"+n)
		if err != nil {
			t.Errorf("%s: credentials/%s: %v", when, n, err)
			continue
		}
		got := decode(t, out).Data
		if out, err = v.cli("read", "-format=json", upgradeMount+"/credentials/"+n+"/logs"); err != nil {
			t.Errorf("%s: credentials/%s/logs: %v", when, n, err)
		} else {
			got["(logs)"] = decode(t, out).Data["events"]
		}
		for k, want := range st.reads[n] {
			if g, ok := got[k]; !ok {
				t.Errorf("%s: credentials/%s has no %s (was %v)", when, n, k, want)
			} else if windowFields[k] && !sameWindow(g, want) || !windowFields[k] && !reflect.DeepEqual(g, want) {
				t.Errorf("%s: credentials/%s %s is %v, was %v", when, n, k, g, want)
			}
		}
		for k := range got {
			if _, ok := st.reads[n][k]; !ok {
				t.Logf("%s: credentials/%s has %s, a field the other version does not show", when, n, k)
			}
		}
	}
}

// checkAccess reads access/ of every credential that served before and wants the same
// material (static) or the same token (OAuth); held stays refused. It returns how
// many were served.
func checkAccess(t *testing.T, v *vaultServer, st *upgradeState, when string) int {
	t.Helper()
	served := 0
	c := noRetryClient(t, v)
	for _, n := range st.names {
		sec, err := c.Logical().Read(upgradeMount + "/access/" + n)
		want := st.access[n]
		switch {
		case want == nil && (n == "held" || n == "revoked"):
			if statusCode(err) != http.StatusForbidden {
				t.Errorf("%s: access/%s (%v): %s, want 403", when, n, st.reads[n]["status"], outcome(sec, err))
			}
		case want == nil:
		case err != nil || sec == nil:
			t.Errorf("%s: access/%s: %s", when, n, outcome(sec, err))
		case st.kind[n] == "oauth2":
			if sec.Data["access_token"] != want["access_token"] {
				t.Errorf("%s: access/%s is not the stored token", when, n)
			}
			served++
		default:
			if !reflect.DeepEqual(jsonRoundTrip(t, sec.Data), jsonRoundTrip(t, want)) {
				t.Errorf("%s: access/%s serves other material (fields %s, were %s)", when, n, fieldNames(sec.Data), fieldNames(want))
			}
			served++
		}
	}
	return served
}

// jsonRoundTrip makes the API client's and the CLI's decodings comparable.
func jsonRoundTrip(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantRunning fails the test unless the upgrade test's mount runs version.
func wantRunning(t *testing.T, v *vaultServer, version string) {
	t.Helper()
	var mounts map[string]struct {
		Running string `json:"running_plugin_version"`
	}
	if err := json.Unmarshal([]byte(v.mustCLI(t, "secrets", "list", "-detailed", "-format=json")), &mounts); err != nil {
		t.Fatal(err)
	}
	if got := mounts[upgradeMount+"/"].Running; got != version {
		t.Fatalf("%s/ runs %q, want %s", upgradeMount, got, version)
	}
}

// rawRecord is the JSON record stored at a sys/raw path.
func rawRecord(t *testing.T, v *vaultServer, path string) map[string]any {
	t.Helper()
	sec, err := v.client.Logical().Read(path)
	if err != nil || sec == nil {
		t.Fatalf("sys/raw read: %s", outcome(sec, err))
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(fmt.Sprint(sec.Data["value"])), &rec); err != nil {
		t.Fatalf("the record at %s is not JSON: %v", path, err)
	}
	return rec
}

// outbox lists the notifications waiting in the upgrade test's mount's outbox (its
// storage, through sys/raw) as "credential event", sorted.
func (v *vaultServer) outbox(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, key := range v.rawKeys(t, upgradeMount, "notify-outbox/") {
		sec, err := v.client.Logical().Read("sys/raw/logical/" + v.mountUUID(t, upgradeMount) + "/notify-outbox/" + key)
		if err != nil || sec == nil {
			t.Fatalf("sys/raw read of outbox entry %s: %s", key, outcome(sec, err))
		}
		var e struct {
			Notification struct {
				Credential, Event string
			}
		}
		if err := json.Unmarshal([]byte(fmt.Sprint(sec.Data["value"])), &e); err != nil {
			t.Fatalf("outbox entry %s: %v", key, err)
		}
		out = append(out, e.Notification.Credential+" "+e.Notification.Event)
	}
	sort.Strings(out)
	return out
}

func (v *vaultServer) mountUUID(t *testing.T, mount string) string {
	t.Helper()
	mounts, err := v.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mounts[mount+"/"]
	if !ok {
		t.Fatalf("mount %s not listed", mount)
	}
	return m.UUID
}

// rawKeys lists the storage keys under prefix of mount (sys/raw), sorted.
func (v *vaultServer) rawKeys(t *testing.T, mount, prefix string) []string {
	t.Helper()
	sec, err := v.client.Logical().List("sys/raw/logical/" + v.mountUUID(t, mount) + "/" + prefix)
	if err != nil {
		t.Fatalf("sys/raw list of %s: %v", prefix, err)
	}
	var keys []string
	if sec != nil {
		list, _ := sec.Data["keys"].([]any)
		for _, k := range list {
			keys = append(keys, fmt.Sprint(k))
		}
	}
	sort.Strings(keys)
	return keys
}

// envFlags are the plugin register flags for the plugin's environment (GORACE for
// the race-enabled build).
func envFlags() []string {
	var flags []string
	for _, e := range raceGORACE() {
		flags = append(flags, "-env="+e)
	}
	return append(flags, "secret", pluginName)
}

func sha(t *testing.T, path string) string {
	t.Helper()
	s, err := fileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
