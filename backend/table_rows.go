package backend

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

// The vault CLI prints a read's answer as a table of data keys, each value with Go's
// %v: a list of records prints as "[map[detail:… due:…] …]", and nothing in the request
// says whether the caller asked for -format=json, so a read that keeps its records
// structured for JSON cannot hide them from the table. `vault list -detailed` is the
// one CLI command whose table and JSON differ: the table has a row per key and a column
// per key_info attribute, and -format=json prints the whole answer. So every answer
// made of records (alerts, logs, a type's fields) is also served as a list whose
// key_info rows are flat (one-line scalars only), with the read's structured data
// alongside for -format=json. See docs/API.md, "Reading answers in the CLI".

// recordsList answers a list operation with one row per record, in the order given:
// the keys are the row numbers, zero-padded so the CLI's sorted table keeps that order
// ("01" … "12"), and each key_info row is the record with every value made one line
// (namedList). extra is added to the answer's data as it is (the structured records),
// so `vault list -detailed -format=json` shows it; the table shows only the rows.
func recordsList(records []map[string]any, extra map[string]any) *logical.Response {
	width := len(strconv.Itoa(len(records)))
	keys := make([]string, 0, len(records))
	info := make(map[string]any, len(records))
	for i, r := range records {
		key := fmt.Sprintf("%0*d", width, i+1)
		keys = append(keys, key)
		info[key] = r
	}
	return namedList(keys, info, extra)
}

// namedList is logical.ListResponseWithInfo with every key_info row flattened (flatRow)
// and extra added to the data.
func namedList(keys []string, info map[string]any, extra map[string]any) *logical.Response {
	flat := make(map[string]any, len(info))
	for k, row := range info {
		if m, ok := row.(map[string]any); ok {
			row = flatRow(m)
		}
		flat[k] = row
	}
	resp := logical.ListResponseWithInfo(keys, flat)
	for k, v := range extra {
		resp.Data[k] = v
	}
	return resp
}

// flatRow is a copy of r whose values all print on one line in the CLI's table.
func flatRow(r map[string]any) map[string]any {
	out := make(map[string]any, len(r))
	for k, v := range r {
		out[k] = flatCell(v)
	}
	return out
}

// flatCell is v as one table cell: strings, numbers and booleans as they are; a list as
// its items joined by ", "; a nested record as "key: value" pairs joined by "; " in key
// order; nil as "". Line breaks become spaces, so a cell never spans lines.
func flatCell(v any) any {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return tableCell(v)
	case bool, int, int64, float64:
		return v
	case []string:
		return tableCell(strings.Join(v, ", "))
	case []any:
		parts := make([]string, 0, len(v))
		for _, item := range v {
			parts = append(parts, fmt.Sprint(flatCell(item)))
		}
		return tableCell(strings.Join(parts, ", "))
	case map[string]any:
		parts := make([]string, 0, len(v))
		for k, item := range v {
			parts = append(parts, k+": "+fmt.Sprint(flatCell(item)))
		}
		slices.Sort(parts)
		return tableCell(strings.Join(parts, "; "))
	default:
		return tableCell(fmt.Sprint(v))
	}
}

// tableCell replaces line breaks and tabs with spaces.
func tableCell(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}
