package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestBackoffIsJitteredGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt <= 100; attempt++ {
		ceiling := MaxBackoff
		if attempt < 12 {
			ceiling = min(time.Second<<attempt, MaxBackoff)
		}
		seen := map[time.Duration]bool{}
		for range 200 {
			w := Backoff(attempt)
			if w < ceiling/2 || w > ceiling {
				t.Fatalf("attempt %d waited %v, want [%v, %v]", attempt, w, ceiling/2, ceiling)
			}
			seen[w] = true
		}
		if len(seen) < 2 {
			t.Fatalf("attempt %d: no jitter", attempt)
		}
	}
}

// TestSlackTextIsEscaped: nothing in a Slack message can mention anyone or become a
// link: &, < and > are escaped in every part of the text.
func TestSlackTextIsEscaped(t *testing.T) {
	t.Parallel()
	d := Target{Slack: true}
	n := Notification{
		Credential: "svc&co",
		Message:    "<!channel> see <https://evil.example/|the fix> & <@U0123>",
		Mount:      "team<b>/",
	}
	var msg map[string]string
	if err := json.Unmarshal(d.body(n, "C0123ABCD"), &msg); err != nil {
		t.Fatal(err)
	}
	want := "[team&lt;b&gt;] svc&amp;co: &lt;!channel&gt; see &lt;https://evil.example/|the fix&gt; &amp; &lt;@U0123&gt;"
	if msg["text"] != want {
		t.Fatalf("text %q\nwant %q", msg["text"], want)
	}
}

// TestSlackRefusalEchoesNoProviderText: of Slack's error field only a short code of
// [a-z0-9_] reaches the error; anything else is "unknown".
func TestSlackRefusalEchoesNoProviderText(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]string{
		"channel_not_found":              "channel_not_found",
		"not_authed":                     "not_authed",
		"":                               "unknown",
		"Bad Thing":                      "unknown",
		"x\ny":                           "unknown",
		"<!channel>":                     "unknown",
		strings.Repeat("a", 65):          "unknown",
		"invalid_auth; call +1 555 0100": "unknown",
	} {
		body, _ := json.Marshal(map[string]any{"ok": false, "error": code})
		err := Target{Slack: true}.check(body)
		if err == nil || err.Error() != "slack refused the message: "+want {
			t.Errorf("error %q: got %v, want the code %q", code, err, want)
		}
	}
}
