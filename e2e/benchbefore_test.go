//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"time"
)

// before is a figure measured before the work of an issue (15, 21), with where it
// comes from; the report sets this run's figure beside it.
type before struct {
	what, was, source string
	now               func(r *benchReport) string
}

// issueV01 is the measurement quoted in issue 15: v0.1, bearer credentials created
// through the API on a dev server, measured from outside as this benchmark does.
const issueV01 = "issue 15 (v0.1, bearer credentials)"

// issue28 is the measurement quoted in issue 28: 1,000,000 bearer credentials created
// through the API on a dev server, and the 100,000 run of the benchmark's mix.
const issue28 = "issue 28"

// inprocMetric is an in-process benchmark's figure, "—" when it was not run.
func inprocMetric(name, unit string) func(*benchReport) string {
	return func(r *benchReport) string {
		if v := parseInproc(r.settings.inproc).metric(name, unit); v != "" {
			return v + " " + unit
		}
		return "—"
	}
}

// fullRunBefore is the last full `make bench` before the caches were bounded.
const fullRunBefore = "full run of commit 6c01851 (this mix)"

// scaleAt is the scale row at n: the dev server's when there is one (the figures
// before were measured on dev servers), else the first of another storage.
func scaleAt(r *benchReport, n int) *scaleResult {
	var other *scaleResult
	for _, sr := range r.scale {
		switch {
		case sr.N != n:
		case sr.Storage == "dev":
			return sr
		case other == nil:
			other = sr
		}
	}
	return other
}

func startupAt(r *benchReport, n int) *startupResult {
	for _, sr := range r.startup {
		if sr.N == n {
			return sr
		}
	}
	return nil
}

// fromScale formats a figure of the scale section at n, "—" when n was not measured.
func fromScale(n int, f func(*scaleResult) string) func(*benchReport) string {
	return func(r *benchReport) string {
		if sr := scaleAt(r, n); sr != nil {
			if sr.from != nil {
				return f(sr) + " (" + sr.Storage + ", kept from commit " + orUnknown(sr.from.Commit) + ")"
			}
			return f(sr)
		}
		return "—"
	}
}

// kdfNow is this build's storm of parallel writes of the largest scrypt key.
func kdfNow(r *benchReport) string {
	for _, k := range r.kdf {
		if k.plugin == pluginName {
			return fmt.Sprintf("%s peak for %d writes; the other mount's access/ p50 %s", mb(k.peakRSS), k.writes, ms(k.readP50))
		}
	}
	return "—"
}

// perCredential is an RSS figure (MB as pluginRSS reads it, 2^20 bytes) per credential
// of n, in bytes.
func perCredential(rss float64, n int) string {
	if rss == 0 || n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", rss*(1<<20)/float64(n))
}

func listPages(sr *scaleResult) string { return ms(sr.ListFirst) + " / " + ms(sr.ListLast) }

func rssStages(sr *scaleResult) string {
	return mb(sr.RSSCreated) + " / " + mb(sr.RSSListed) + " / " + mb(sr.RSSSwept)
}

var befores = []before{
	{"`plugin reload` → first served access/, 10,000", "12 s", issueV01, fromScale(10000, func(sr *scaleResult) string { return sr.ReloadAccess.Round(time.Millisecond).String() })},
	{"`plugin reload` → first served access/, 100,000", "1 min 46 s (the reload call timed out at 60 s)", issueV01, fromScale(100000, func(sr *scaleResult) string { return sr.ReloadAccess.Round(time.Millisecond).String() })},
	{"leader change (SIGKILL) → first access/, 10,000, 3-node Raft", "17.0 s from the kill (13.4 s with 2 credentials: Vault's failover)", issueV01, func(r *benchReport) string {
		if sr := startupAt(r, 10000); sr != nil {
			return fmt.Sprintf("%s from the kill: Vault's %s, then %s", (sr.Failover.Elected + sr.FailoverAccess).Round(time.Millisecond), sr.Failover.Elected.Round(time.Millisecond), sr.FailoverAccess.Round(time.Millisecond))
		}
		return "—"
	}},
	{"`alerts`, 100,000", "526 ms", issueV01, fromScale(100000, func(sr *scaleResult) string { return ms(sr.Alerts) })},
	{"list first / last page (limit 100), 100,000", "15 / 17 ms", issueV01, fromScale(100000, listPages)},
	{"plugin RSS, 100,000: after creation / full list / sweep", "220 MB (bearer only)", issueV01, fromScale(100000, rssStages)},
	{"plugin RSS, 100,000: after creation / full list / sweep", "407 / 462 / 418 MB", fullRunBefore, fromScale(100000, rssStages)},
	{"tag filter nothing matches, 100,000 (in-process BenchmarkScaleList)", "73.5 ms", "commit 86166c2, before the label index", func(r *benchReport) string {
		if v := parseInproc(r.settings.inproc).metric("BenchmarkScaleList/100000/nomatch/first", "ns/op"); v != "" {
			return v + " ns"
		}
		return "—"
	}},
	{"plugin memory, parallel writes of the largest accepted scrypt key (wrong password)", "768 MiB allocated in 2 s by 6 writes; a few dozen take the plugin process down", "issue 21", kdfNow},
	{"plugin peak RSS, 6 parallel writes of the largest accepted scrypt key", "808 MB; the other mount's access/ p50 197 ms (slowest 637 ms)", "section 7 against commit 7107c52, before the key-work limits", kdfNow},
	{"plugin RSS, 1,000,000 bearer credentials: after creation / after a reload", "1,506 MB / 202 MB = 1,579 / 212 B per credential (the reload's figure read while the index was still being built)", issue28, fromScale(1000000, func(sr *scaleResult) string {
		return mb(sr.RSSCreated) + " / " + mb(sr.RSSReloaded) + " = " + perCredential(sr.RSSCreated, sr.N) + " / " + perCredential(sr.RSSReloaded, sr.N) + " B per credential"
	})},
	{"reload → index complete, 100,000", "46–50 s (the first complete list)", issue28, fromScale(100000, func(sr *scaleResult) string { return sr.IndexComplete.Round(time.Millisecond).String() })},
	{"reload → index complete, 1,000,000", "~8 minutes (extrapolated from 100,000)", issue28, fromScale(1000000, func(sr *scaleResult) string { return sr.IndexComplete.Round(time.Millisecond).String() })},
	{"index scan with 200 µs storage reads (in-process BenchmarkIndexScan)", "1,298 µs/credential (reads one at a time)", "commit 693c06b", inprocMetric("BenchmarkIndexScan/workers=8", "µs/credential")},
	{"lifecycle.Index per filed name, 100,000 (in-process BenchmarkIndexMemory)", "92.5 B", "commit 693c06b", inprocMetric("BenchmarkIndexMemory/entries=100000", "B/credential")},
	{"backend heap per credential, 100,000 of the memory mix (in-process BenchmarkScaleMemory, INTEGRATIONS_SCALE=100000)", "767.6 B", "commit 693c06b", inprocMetric("BenchmarkScaleMemory/100000", "backend-B/credential")},
	{"slowest read at a token rollover (provider 350–400 ms)", "415 ms (steady p99 8.5 ms; every worker waited once)", issueV01, func(r *benchReport) string {
		rr := r.rollover
		if rr == nil {
			return "—"
		}
		var worst time.Duration
		for _, win := range rr.windows {
			worst = max(worst, win.max)
		}
		return fmt.Sprintf("%s (steady p99 %s)", ms(worst), ms(rr.steadyP99))
	}},
}

// renderBefore is the before/after table of the report.
func renderBefore(r *benchReport) string {
	var b strings.Builder
	b.WriteString("## 6. Before and after\n\nEach figure measured before the work that changed it (issues 15, 21 and 28), where it comes from, and the same figure in this run.\n\n")
	b.WriteString("| figure | before | measured in | this run |\n|---|---|---|---|\n")
	for _, x := range befores {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", x.what, x.was, x.source, x.now(r))
	}
	b.WriteString("\n")
	return b.String()
}
