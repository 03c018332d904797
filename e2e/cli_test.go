//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// The vault CLI reads well: types/<type> as a table of field-name lists, an update
// that omits a required field points at vault patch, path-help shows an example.
func TestCLIReadsWell(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)

	table := shared.mustCLI(t, "read", mount+"/types/basic")
	t.Logf("vault read %s/types/basic:\n%s", mount, table)
	for _, row := range []string{`(?m)^required\s+\[username password\]$`, `(?m)^sensitive\s+\[password totp_secret\]$`, `(?m)^optional\s+\[`} {
		if !regexp.MustCompile(row).MatchString(table) {
			t.Errorf("vault read %s/types/basic has no row %s:\n%s", mount, row, table)
		}
	}
	if regexp.MustCompile(`(?m)^fields\s+\[map`).MatchString(table) {
		t.Errorf("the table still prints the fields as a list of maps:\n%s", table)
	}
	if js := shared.mustCLI(t, "read", "-format=json", "-field=fields", mount+"/types/basic"); !strings.Contains(js, `"rule"`) || !strings.Contains(js, `"username"`) {
		t.Errorf("-format=json lost the per-field details:\n%s", js)
	}

	shared.mustCLI(t, "write", mount+"/credentials/db", "type=basic", "username=svc", "password=s3cret-c")
	out, err := shared.cli("write", mount+"/credentials/db", "password=n3w-secret")
	if err == nil || !strings.Contains(err.Error(), `"username"`) || !strings.Contains(err.Error(), "vault patch "+mount+"/credentials/db") {
		t.Fatalf("vault write omitting username: %v\n%s", err, out)
	}
	shared.mustCLI(t, "patch", mount+"/credentials/db", "password=n3w-secret")

	for _, path := range []string{"access/db", "credentials/db", "types/basic", "metrics", "config"} {
		if help := shared.mustCLI(t, "path-help", mount+"/"+path); !strings.Contains(help, "    $ vault ") && !strings.Contains(help, "    $ curl ") {
			t.Errorf("path-help %s shows no example:\n%s", path, help)
		}
	}
}
