//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// goDump matches a Go map or slice-of-maps dump, what the CLI's table prints for a
// nested value.
var goDump = regexp.MustCompile(`map\[|\[map`)

// TestCLITablesReadWell runs, with the real vault CLI in its default table format, the
// commands an operator reads records with: logs, alerts, the credential and type lists
// and a type's fields. No line of their output is a Go map dump, each shows the rows
// it is about, and -format=json still carries the structured records (the reads'
// answers are unchanged, and the lists carry them beside the rows).
func TestCLITablesReadWell(t *testing.T) {
	t.Parallel()
	v := shared
	mount := v.mount(t)
	// A one-day inactivity window is warned about one second after the last activity.
	v.mustCLI(t, "write", mount+"/config", "warn_before=90d,60d,30d,7d,86399")
	v.mustCLI(t, "write", mount+"/credentials/ticketing", "type=basic", "username=svc-itsm", "password=s3cret", "tags=prod,itsm", "description=ITSM\nservice account")
	for i := range 2 {
		v.mustCLI(t, "read", mount+"/access/ticketing", fmt.Sprintf("integration=forwarder-%d", i))
	}
	v.mustCLI(t, "write", mount+"/credentials/idle", "type=basic", "username=svc-idle", "password=s3cret", "suspend_after=1d", "purge_after=2d")
	soon := time.Now().Add(5 * 24 * time.Hour).UTC().Format(time.RFC3339)
	v.mustCLI(t, "write", mount+"/credentials/expiring", "type=bearer", "token=t0ken", "expires_at="+soon)
	// A token endpoint nothing listens on: every read fails.
	v.mustCLI(t, "write", mount+"/credentials/failing", "type=oauth2_client_credentials", "token_url=http://"+closedPort(t)+"/token", "client_id=app", "client_secret=sec")
	for range 3 {
		if _, err := v.cli("read", mount+"/access/failing"); err == nil {
			t.Fatal("access/failing succeeded against a closed port")
		}
	}
	// created_at shows seconds: the idle warning is open two seconds after it. A wait
	// for the clock, not for the server.
	created := timeField(t, decode(t, v.mustCLI(t, "read", "-format=json", mount+"/credentials/idle")).Data, "created_at")
	time.Sleep(time.Until(created.Add(2 * time.Second)))

	table := func(args ...string) string {
		t.Helper()
		out := v.mustCLI(t, args...)
		t.Logf("$ vault %s\n%s", strings.Join(args, " "), out)
		for _, line := range strings.Split(out, "\n") {
			if goDump.MatchString(line) {
				t.Errorf("vault %s prints a Go map dump:\n%s", strings.Join(args, " "), line)
			}
		}
		return out
	}
	row := func(out, what string, cells ...string) {
		t.Helper()
		re := `(?m)^` + strings.Join(cells, `\s+`) + `\s*$`
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("%s has no row %q:\n%s", what, re, out)
		}
	}

	logs := table("list", "-detailed", mount+"/credentials/ticketing/logs")
	row(logs, "logs", `Keys`, `detail`, `event`, `integration`, `status`, `time`)
	row(logs, "logs", `1`, `n/a`, `access`, `forwarder-1`, `success`, `\S+Z`)
	row(logs, "logs", `3`, `n/a`, `created`, `token`, `success`, `\S+Z`)

	alerts := table("list", "-detailed", mount+"/alerts")
	row(alerts, "alerts", `Keys`, `detail`, `due`, `name`, `reason`, `severity`)
	row(alerts, "alerts", `1`, `\d+ failures in a row`, `n/a`, `failing`, `failing`, `red`)
	row(alerts, "alerts", `2`, `inactivity`, `\S+Z`, `idle`, `suspension_pending`, `yellow`)
	row(alerts, "alerts", `3`, `expires_at`, regexp.QuoteMeta(soon), `expiring`, `expiring`, `yellow`)

	creds := table("list", "-detailed", mount+"/credentials")
	row(creds, "credentials", `ticketing`, `ITSM service account`, `green`, `\S+Z`, `active`, `\[itsm prod\]`, `basic`, `n/a`, `n/a`)
	table("list", "-detailed", mount+"/types")
	sftp := table("list", "-detailed", mount+"/types/sftp_ssh_key")
	row(sftp, "types/sftp_ssh_key", `Keys`, `default`, `destination`, `required`, `sensitive`, `type`, `validation`)
	row(sftp, "types/sftp_ssh_key", `private_key`, `n/a`, `false`, `true`, `true`, `string`, `SSH private key: .*`)
	code := table("list", "-detailed", mount+"/types/oauth2_authorization_code")
	row(code, "types/oauth2_authorization_code", `response_mode`, `query`, `false`, `false`, `false`, `string`, `"query" .*`)

	// -format=json: the reads answer the records as before, and the lists carry them too.
	for _, args := range [][]string{{"read", "-format=json", mount + "/alerts"}, {"list", "-detailed", "-format=json", mount + "/alerts"}} {
		got, _ := decode(t, v.mustCLI(t, args...)).Data["alerts"].([]any)
		var reasons []string
		for _, a := range got {
			m, _ := a.(map[string]any)
			reasons = append(reasons, fmt.Sprintf("%v/%v/%v", m["name"], m["reason"], m["severity"]))
		}
		if strings.Join(reasons, " ") != "failing/failing/red idle/suspension_pending/yellow expiring/expiring/yellow" {
			t.Errorf("vault %s: alerts %v", strings.Join(args, " "), got)
		}
	}
	for _, args := range [][]string{{"read", "-format=json", mount + "/credentials/ticketing/logs"}, {"list", "-detailed", "-format=json", mount + "/credentials/ticketing/logs"}} {
		data := decode(t, v.mustCLI(t, args...)).Data
		events, _ := data["events"].([]any)
		first, _ := events[0].(map[string]any)
		if len(events) != 3 || first["event"] != "access" || first["integration"] != "forwarder-1" || fmt.Sprint(data["access_count"]) != "2" {
			t.Errorf("vault %s: %v", strings.Join(args, " "), data)
		}
	}
	for _, args := range [][]string{{"read", "-format=json", mount + "/types/sftp_ssh_key"}, {"list", "-detailed", "-format=json", mount + "/types/sftp_ssh_key"}} {
		data := decode(t, v.mustCLI(t, args...)).Data
		fields, _ := data["fields"].(map[string]any)
		pk, _ := fields["private_key"].(map[string]any)
		limits, _ := data["limits"].(map[string]any)
		if pk["sensitive"] != true || !strings.Contains(fmt.Sprint(pk["rule"]), "SSH private key") || limits["key_derivation"] == nil {
			t.Errorf("vault %s: fields.private_key %v, limits %v", strings.Join(args, " "), pk, limits)
		}
	}
}
