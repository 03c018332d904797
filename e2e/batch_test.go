//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// batchAnswer is the data of a credentials-batch answer.
type batchAnswer struct {
	Created      []string `json:"created"`
	CreatedCount int      `json:"created_count"`
	Failed       []struct {
		Index  int    `json:"index"`
		Name   string `json:"name"`
		Error  string `json:"error"`
		Fields []struct {
			Field string `json:"field"`
			Rule  string `json:"rule"`
		} `json:"fields"`
	} `json:"failed"`
	FailedCount int `json:"failed_count"`
}

// TestCredentialsBatch: a migration file written with the vault CLI (`vault write
// <mount>/credentials-batch @items.json`, as the README's "Migrating many
// credentials" has it) creates the items that pass; the one missing a field, the name
// that exists and an unknown field are reported by index and name with the single
// create's refusal; a full batch of 1,000 through the HTTP API; more than 1,000 and
// an empty list are 400s. No secret reaches an answer or the server log.
func TestCredentialsBatch(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	const mark = "BATCHSECRETMARK"
	shared.mustCLI(t, "write", mount+"/credentials/taken", "type=bearer", "token=old-"+mark)

	items := []map[string]any{
		{"name": "crm-api", "type": "api_key", "key": "key-" + mark, "header_name": "X-Api-Token", "url": "https://api.example.com"},
		{"name": "billing-db", "type": "basic", "username": "svc", "password": "pw-" + mark, "tags": []string{"team-a", "migrated"}},
		{"name": "no-password", "type": "basic", "username": "svc"},
		{"name": "taken", "type": "bearer", "token": "new-" + mark},
		{"name": "typo", "type": "bearer", "tokn": mark},
		{"name": "hooks", "type": "bearer", "token": "tok-" + mark, "description": "imported from the old vault"},
		// As the README's PAM Core export becomes: tags as the export's comma-separated string.
		{"name": "db01-oracle", "type": "device_account", "hostname": "db01", "ip": "10.0.4.21", "username": "oracle", "password": "pw-" + mark, "additional": "DATABASE", "tags": "db, prod"},
	}
	file := filepath.Join(t.TempDir(), "items.json")
	raw, err := json.Marshal(map[string]any{"items": items})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out := shared.mustCLI(t, "write", "-format=json", mount+"/credentials-batch", "@"+file)
	t.Logf("vault write -format=json %s/credentials-batch @items.json:\n%s", mount, out)
	var secret struct {
		Data     batchAnswer `json:"data"`
		Warnings []string    `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &secret); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ans := secret.Data
	if strings.Join(ans.Created, ",") != "crm-api,billing-db,hooks,db01-oracle" || ans.CreatedCount != 4 || ans.FailedCount != 3 || len(secret.Warnings) != 1 {
		t.Fatalf("answer %+v, warnings %v", ans, secret.Warnings)
	}
	want := map[int]string{2: "no-password", 3: "taken", 4: "typo"}
	for _, f := range ans.Failed {
		if want[f.Index] != f.Name || f.Error == "" || len(f.Fields) == 0 {
			t.Errorf("failure %+v", f)
		}
	}
	// The same refusal a single create answers.
	_, single := shared.cli("write", mount+"/credentials/no-password", "type=basic", "username=svc")
	if single == nil || !strings.Contains(single.Error(), ans.Failed[0].Error) {
		t.Errorf("batch refusal %q is not the single create's: %v", ans.Failed[0].Error, single)
	}
	if strings.Contains(out, mark) {
		t.Fatal("the answer holds a secret")
	}
	read := shared.mustCLI(t, "read", "-format=json", mount+"/credentials/billing-db")
	if !strings.Contains(read, `"migrated"`) || strings.Contains(read, mark) {
		t.Errorf("read of a batch-created credential:\n%s", read)
	}
	if got := shared.mustCLI(t, "read", "-field=password", mount+"/access/billing-db"); strings.TrimSpace(got) != "pw-"+mark {
		t.Errorf("access/billing-db password %q", got)
	}
	found := shared.mustCLI(t, "read", "-format=json", mount+"/lookup", "hostname=db01", "ip=10.0.4.21", "username=oracle")
	if !strings.Contains(found, `"db01-oracle"`) || !strings.Contains(found, `"prod"`) || strings.Contains(found, mark) {
		t.Errorf("lookup of the batch-created device account:\n%s", found)
	}
	if got := shared.mustCLI(t, "read", "-field=token", mount+"/access/taken"); strings.TrimSpace(got) != "old-"+mark {
		t.Errorf("the batch replaced an existing credential: token %q", got)
	}

	// 1,000 through the HTTP API.
	full := make([]any, 1000)
	for i := range full {
		full[i] = map[string]any{"name": fmt.Sprintf("full-%04d", i), "type": "bearer", "token": fmt.Sprintf("t-%d-%s", i, mark)}
	}
	sec, err := shared.client.Logical().Write(mount+"/credentials-batch", map[string]any{"items": full})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := sec.Data["created_count"].(json.Number).Int64(); n != 1000 {
		t.Fatalf("full batch: %v", sec.Data["created_count"])
	}
	list, err := shared.client.Logical().ReadWithData(mount+"/credentials", map[string][]string{"list": {"true"}, "limit": {"2000"}})
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := list.Data["keys"].([]any); len(keys) != 1005 {
		t.Errorf("listed %d credentials, want 1,005", len(keys))
	}

	// Refused whole: 1,001 items, an empty list.
	for name, body := range map[string][]any{"1,001 items": append(full, map[string]any{"name": "one-more", "type": "bearer", "token": "t"}), "empty": {}} {
		status, text := postJSON(t, mount+"/credentials-batch", map[string]any{"items": body})
		if status != http.StatusBadRequest || !strings.Contains(text, `field \"items\"`) || strings.Contains(text, mark) {
			t.Errorf("%s: status %d: %s", name, status, text)
		}
	}
	serverLog, err := os.ReadFile(shared.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(serverLog, []byte(mark)) {
		t.Error("the server log holds a secret of the batch")
	}
}

// TestCredentialsBatchAboveMaxRequestSize: a request body above the listener's
// max_request_size (32 MiB, Vault's default) is refused by Vault with 413 before the
// engine sees it, and so is a JSON string above max_json_string_value_length (1 MiB
// by default; this Vault answers it 500); nothing is created.
func TestCredentialsBatchAboveMaxRequestSize(t *testing.T) {
	t.Parallel()
	mount := shared.mount(t)
	items := make([]any, 1000) // 1,000 items of 34 KiB: 34 MiB
	for i := range items {
		items[i] = map[string]any{"name": fmt.Sprintf("big-%d", i), "type": "bearer", "token": "t", "description": strings.Repeat("x", 34<<10)}
	}
	status, text := postJSON(t, mount+"/credentials-batch", map[string]any{"items": items})
	t.Logf("a 34 MiB batch: status %d: %.200s", status, text)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("34 MiB: status %d, want 413: %.300s", status, text)
	}
	long := map[string]any{"name": "long", "type": "bearer", "token": "t", "description": strings.Repeat("x", 1<<20+1)}
	status, text = postJSON(t, mount+"/credentials-batch", map[string]any{"items": []any{long}})
	t.Logf("a string of 1 MiB + 1: status %d: %.200s", status, text)
	if status != http.StatusInternalServerError || !strings.Contains(text, "JSON string value exceeds allowed length") {
		t.Errorf("1 MiB + 1 string: status %d: %.300s", status, text)
	}
	for _, name := range []string{"big-0", "long"} {
		if sec, err := shared.client.Logical().Read(mount + "/credentials/" + name); err != nil || sec != nil {
			t.Errorf("%s: %v %v: a refused batch created a credential", name, sec, err)
		}
	}
}

// postJSON posts body to the API path and returns the status and the answer.
func postJSON(t *testing.T, path string, body any) (int, string) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, shared.addr+"/v1/"+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", shared.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(text)
}
