//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// vault read <mount>/metrics works with the real CLI: JSON by default (it was the
// Prometheus text, which the CLI cannot parse: "invalid character '#'"), a table row
// per series, and -format=json a number per series.
func TestCLIReadsMetrics(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/credentials/db", "type=basic", "username=svc", "password=s3cret-mx")
	shared.mustCLI(t, "read", "-field=username", mount+"/access/db")

	table, err := shared.cli("read", mount+"/metrics")
	if err != nil || strings.Contains(table, "invalid character") {
		t.Fatalf("vault read %s/metrics: %v\n%s", mount, err, table)
	}
	t.Logf("vault read %s/metrics (first lines):\n%s", mount, firstLines(table, 8))
	if !regexp.MustCompile(`(?m)^integrations_access_reads_total\{kind="static",result="ok"\}\s+1$`).MatchString(table) {
		t.Errorf("no row for the access read:\n%s", table)
	}
	js := shared.mustCLI(t, "read", "-format=json", mount+"/metrics")
	var secret struct{ Data map[string]any }
	if err := json.Unmarshal([]byte(js), &secret); err != nil {
		t.Fatalf("-format=json: %v\n%s", err, js)
	}
	if v := secret.Data[`integrations_credentials{status="active"}`]; v != float64(1) {
		t.Errorf("active credentials %v in %s", v, js)
	}
}

// Non-400 errors reach the CLI as one clean line with the status, as Vault's own
// engines' do: no "1 error occurred" wrapping.
func TestCLIErrorsAreOneLineWithTheStatus(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/credentials/db", "type=basic", "username=svc", "password=s3cret-e")
	shared.mustCLI(t, "write", "-f", mount+"/credentials/db/suspend")

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"read", mount + "/access/db"}, "Code: 403. Errors:\n\n* credential \"db\" cannot be used: "},
		{[]string{"write", "-f", mount + "/credentials/missing/suspend"}, "Code: 404. Errors:\n\n* credential \"missing\" does not exist"},
	} {
		out, err := shared.cli(c.args...)
		if err == nil {
			t.Fatalf("vault %v succeeded:\n%s", c.args, out)
		}
		msg := err.Error()
		t.Logf("vault %s:\n%s", strings.Join(c.args, " "), msg)
		if !strings.Contains(msg, c.want) || strings.Contains(msg, "error occurred") || strings.Count(msg, "* ") != 1 {
			t.Errorf("vault %v: want one line %q, got:\n%s", c.args, c.want, msg)
		}
	}
	// A read's 404 carries its sentence in the HTTP answer (the CLI prints its own
	// "No value found" for any 404 read).
	_, err := shared.client.Logical().ReadRaw(mount + "/types/no_such_type")
	if err == nil || !strings.Contains(err.Error(), `credential type \"no_such_type\" does not exist`) && !strings.Contains(err.Error(), `credential type "no_such_type" does not exist`) {
		t.Errorf("types/no_such_type: %v", err)
	}
}

// vault read <mount>/types works (it was 405): a row per type, one line each.
func TestCLIReadsTypes(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	table := shared.mustCLI(t, "read", mount+"/types")
	t.Logf("vault read %s/types (first lines):\n%s", mount, firstLines(table, 6))
	if !regexp.MustCompile(`(?m)^basic\s+static — Username and password`).MatchString(table) {
		t.Errorf("no row for basic:\n%s", table)
	}
}

// path-help's filtered list runs as printed: vault read … list=true with filters.
func TestCLIFilteredListByRead(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/credentials/a", "type=basic", "username=svc", "password=s3cret-a")
	shared.mustCLI(t, "write", mount+"/credentials/b", "type=bearer", "token=s3cret-b")
	shared.mustCLI(t, "write", "-f", mount+"/credentials/a/suspend")
	if out, err := shared.cli("list", mount+"/credentials", "type=basic"); err == nil || !strings.Contains(err.Error(), "Too many arguments") {
		t.Fatalf("vault list with a filter: %v\n%s", err, out)
	}
	js := shared.mustCLI(t, "read", "-format=json", mount+"/credentials", "list=true", "type=basic", "status=suspended", "limit=50")
	var secret struct {
		Data struct{ Keys []string }
	}
	if err := json.Unmarshal([]byte(js), &secret); err != nil || len(secret.Data.Keys) != 1 || secret.Data.Keys[0] != "a" {
		t.Fatalf("vault read list=true type=basic status=suspended: %v %s", err, js)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// The README's walkthrough passages this issue rewrote run as printed with the real CLI:
// patch changes the tags and keeps used_by; the update of tags alone is refused with
// the sentence the README quotes; the mTLS example (an unencrypted key, no
// private_key_password) is accepted, and a file name without @ says to use @.
func TestCLIReadmeUpdateAndCertificatePassages(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	shared.mustCLI(t, "write", mount+"/credentials/ticketing", "type=basic", "username=svc-ticketing", "password=s3cret!", "tags=prod,itsm", "used_by=alert-forwarder")
	shared.mustCLI(t, "patch", mount+"/credentials/ticketing", "tags=prod")
	shared.mustCLI(t, "patch", mount+"/credentials/ticketing", "description=ITSM service account")
	js := shared.mustCLI(t, "read", "-format=json", mount+"/credentials/ticketing")
	var secret struct {
		Data struct {
			Tags []string `json:"tags"`
		}
	}
	if err := json.Unmarshal([]byte(js), &secret); err != nil || len(secret.Data.Tags) != 1 || secret.Data.Tags[0] != "prod" {
		t.Fatalf("after patch tags=prod: %v %s", err, js)
	}
	if !strings.Contains(js, `"alert-forwarder"`) || !strings.Contains(js, `"ITSM service account"`) {
		t.Fatalf("patch lost used_by or description: %s", js)
	}
	out, err := shared.cli("write", mount+"/credentials/ticketing", "tags=prod")
	want := "send username again, or use vault patch " + mount + "/credentials/ticketing tags=… to change only tags"
	if err == nil || !strings.Contains(err.Error(), `field "username": is required`) || !strings.Contains(err.Error(), want) {
		t.Fatalf("vault write tags=prod: %v\n%s", err, out)
	}

	cert, _, key := encryptedCertificate(t, "unused-pw")
	dir := t.TempDir()
	crt, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(crt, []byte(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	shared.mustCLI(t, "write", mount+"/credentials/mtls", "type=certificate", "certificate=@"+crt, "private_key=@"+keyFile)
	if out, err := shared.cli("write", mount+"/credentials/mtls2", "type=certificate", "certificate=@"+crt, "private_key=@"+keyFile, "private_key_password=x"); err == nil {
		t.Fatalf("private_key_password with an unencrypted key was accepted:\n%s", out)
	}
	out, err = shared.cli("write", mount+"/credentials/mtls3", "type=certificate", "certificate=client.crt", "private_key=@"+keyFile)
	if err == nil || !strings.Contains(err.Error(), "looks like a file name: use certificate=@client.crt") {
		t.Fatalf("certificate=client.crt: %v\n%s", err, out)
	}
}
