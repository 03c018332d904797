package backend

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestFlatCell(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   any
		want any
	}{
		{nil, ""},
		{"one\nline\r\nand\ttab", "one line and tab"},
		{true, true},
		{3, 3},
		{[]string{"a", "b"}, "a, b"},
		{[]any{"x", map[string]any{"k": "v"}}, "x, k: v"},
		{map[string]any{"values": []string{"private_key_jwt", "tls_client_auth"}, "field": "auth_style"}, "field: auth_style; values: private_key_jwt, tls_client_auth"},
		{[]string{}, ""},
	} {
		if got := flatCell(c.in); got != c.want {
			t.Errorf("flatCell(%#v) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

// cliTableCells renders a list answer's key_info the way `vault list -detailed` does
// (after the JSON round trip the CLI makes): a row per key, keys sorted as the CLI
// sorts them, each cell with %v. It fails t when a cell is not a one-line scalar.
func cliTableCells(t *testing.T, resp *logical.Response) (keys []string, rows []map[string]string) {
	t.Helper()
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Keys    []string                  `json:"keys"`
		KeyInfo map[string]map[string]any `json:"key_info"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	slices.Sort(data.Keys) // as the CLI's table does
	for _, k := range data.Keys {
		row := map[string]string{}
		for col, v := range data.KeyInfo[k] {
			switch v.(type) {
			case string, bool, float64:
			default:
				t.Errorf("row %s column %s is %T (%v): the table prints it as a Go dump", k, col, v, v)
			}
			cell := fmt.Sprintf("%v", v)
			if strings.ContainsAny(cell, "\r\n") || strings.Contains(cell, "map[") {
				t.Errorf("row %s column %s = %q: not one line", k, col, cell)
			}
			row[col] = cell
		}
		rows = append(rows, row)
	}
	return data.Keys, rows
}

// TestRecordListsAreTables: alerts, logs and types/<type> answer a list with a flat row
// per record, in the read's order, and the read's structured answer beside the rows.
func TestRecordListsAreTables(t *testing.T) {
	t.Parallel()
	b, s, clock := newBackendWith(t, backendOptions{})
	now := clock.Now()
	lcCreateBasic(t, b, s, "held", nil)
	mustOK(t, b, s, logical.UpdateOperation, "credentials/held/suspend", nil)
	lcCreateBasic(t, b, s, "expiring", map[string]any{"expires_at": now.Add(10 * day).Format(time.RFC3339)})
	lcCreateBasic(t, b, s, "busy", map[string]any{"description": "two\nlines"})
	for range 11 { // 12 events with the creation: the row numbers take two digits
		lcAccess(t, b, s, "busy")
	}

	for _, c := range []struct {
		path, records string
		n             int
	}{
		{"alerts", "alerts", 2},
		{"credentials/busy/logs", "events", 12},
	} {
		read := mustOK(t, b, s, logical.ReadOperation, c.path, nil)
		list := mustOK(t, b, s, logical.ListOperation, c.path+"/", nil)
		want := read.Data[c.records].([]map[string]any)
		if len(want) != c.n {
			t.Fatalf("%s: %d records, want %d: %v", c.path, len(want), c.n, want)
		}
		if !reflect.DeepEqual(list.Data[c.records], want) {
			t.Errorf("%s: the list's %s differ from the read's:\n%v\n%v", c.path, c.records, list.Data[c.records], want)
		}
		if k := list.Data["keys"].([]string); !slices.IsSorted(k) {
			t.Errorf("%s: keys %q: the CLI sorts them, so the table would not keep the read's order", c.path, k)
		}
		keys, rows := cliTableCells(t, list)
		if len(rows) != len(want) {
			t.Fatalf("%s: %d rows (keys %q), want %d", c.path, len(rows), keys, len(want))
		}
		for i, rec := range want {
			for col, v := range rec {
				if rows[i][col] != fmt.Sprint(flatCell(v)) {
					t.Errorf("%s row %s (%d) column %s = %q, want the read's %q", c.path, keys[i], i, col, rows[i][col], v)
				}
			}
		}
		if c.n >= 10 && keys[0] != "01" {
			t.Errorf("%s: first key %q, want zero-padded 01", c.path, keys[0])
		}
	}

	// The credential list's description is one line; the read keeps it whole.
	info := mustOK(t, b, s, logical.ListOperation, "credentials/", nil).Data["key_info"].(map[string]any)
	if d := info["busy"].(map[string]any)["description"]; d != "two lines" {
		t.Errorf("credentials key_info description = %q, want one line", d)
	}
	if d := mustOK(t, b, s, logical.ReadOperation, "credentials/busy", nil).Data["description"]; d != "two\nlines" {
		t.Errorf("credentials/busy description = %q, want it as written", d)
	}

	for _, typ := range []string{"sftp_ssh_key", "oauth2_authorization_code", "oauth2_client_credentials"} {
		read := mustOK(t, b, s, logical.ReadOperation, "types/"+typ, nil)
		list := mustOK(t, b, s, logical.ListOperation, "types/"+typ+"/", nil)
		for k, v := range read.Data {
			if !reflect.DeepEqual(list.Data[k], v) {
				t.Errorf("types/%s: the list's %s differs from the read's", typ, k)
			}
		}
		keys, rows := cliTableCells(t, list)
		fields := read.Data["fields"].(map[string]map[string]any)
		if len(keys) != len(fields) {
			t.Fatalf("types/%s: %d rows, want a row per field (%d)", typ, len(keys), len(fields))
		}
		for i, name := range keys {
			f := fields[name]
			if f == nil {
				t.Fatalf("types/%s: row %q is no field", typ, name)
			}
			for attr, col := range typeFieldColumns {
				if rows[i][col] != fmt.Sprint(flatCell(f[attr])) {
					t.Errorf("types/%s row %s column %s = %q, want %q", typ, name, col, rows[i][col], f[attr])
				}
			}
		}
	}
}
