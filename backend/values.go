// Small conversions shared by the views.

package backend

import "time"

func str(v any) string { s, _ := v.(string); return s }

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// rfc3339 renders t, or "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// rfc3339Nano renders t in UTC with its nanoseconds (log event times, a served token's
// last_vault_rotation).
func rfc3339Nano(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func seconds(d time.Duration) int64 { return int64(d / time.Second) }
