//go:build e2e

package e2e

// Kept results. The long sections of the benchmark (scale, startup, providers) take
// longer together than one session has: a million credentials on Raft alone runs
// about 80 minutes. So each of their results is written when its section finishes,
// one JSON file a result in the benchmarks/ directory beside BENCH_REPORT, and every
// kept file is loaded before the report is rendered: rows this run did not measure
// come from the files, marked in the report with the run that measured them. A
// result measured again overwrites its file; deleting a file drops its row.
//
// Keys (the file names without .json): scale-<storage>-<n> (scale-dev-100000,
// scale-raft-1000000), startup-<n>, providers.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// keptRun is the run that measured a kept result.
type keptRun struct {
	Commit string    `json:"commit"` // git describe --always --dirty
	Date   time.Time `json:"date"`   // when the run started, UTC
	Vault  string    `json:"vault"`  // vault version
	Cores  string    `json:"cores"`  // nproc
	Memory string    `json:"memory"`
	// Settings are the knobs that shaped the result, as environment variables of
	// `make bench` with the values in effect (defaults included).
	Settings map[string]string `json:"settings"`
}

// same reports whether k and o describe the same run.
func (k *keptRun) same(o *keptRun) bool { return k.Commit == o.Commit && k.Date.Equal(o.Date) }

// describe is what the report says of an earlier run.
func (k *keptRun) describe() string {
	parts := []string{"commit " + orUnknown(k.Commit), k.Date.UTC().Format("2006-01-02 15:04") + " UTC"}
	if k.Vault != "" {
		parts = append(parts, firstLine(k.Vault))
	}
	if k.Cores != "" || k.Memory != "" {
		parts = append(parts, fmt.Sprintf("%s cores, %s", orUnknown(k.Cores), orUnknown(k.Memory)))
	}
	if len(k.Settings) > 0 {
		keys := make([]string, 0, len(k.Settings))
		for key := range k.Settings {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		var env []string
		for _, key := range keys {
			env = append(env, key+"="+k.Settings[key])
		}
		parts = append(parts, "`"+strings.Join(env, " ")+"`")
	}
	return strings.Join(parts, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// keptFile is one kept result: exactly one of Scale, Startup and Providers is set.
type keptFile struct {
	Run       keptRun          `json:"run"`
	Scale     *scaleResult     `json:"scale,omitempty"`
	Startup   *startupResult   `json:"startup,omitempty"`
	Providers *providersResult `json:"providers,omitempty"`
}

func scaleKey(sr *scaleResult) string     { return fmt.Sprintf("scale-%s-%d", sr.Storage, sr.N) }
func startupKey(sr *startupResult) string { return fmt.Sprintf("startup-%d", sr.N) }

const providersKey = "providers"

// keptStore is the directory of kept results and the run writing to it.
type keptStore struct {
	dir string
	run keptRun
}

// keptDir is the directory of kept results for the report at report: BENCH_KEPT when
// set (scripts/bench.sh sets it for a run of some sections only, whose report goes
// elsewhere than BENCHMARKS.md), else benchmarks/ beside the report.
func keptDir(report string) string {
	if d := os.Getenv("BENCH_KEPT"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(report), "benchmarks")
}

// newKeptStore is the store beside the report at report, for the run of r.
func newKeptStore(report string, r *benchReport) *keptStore {
	cores, mem, vv, commit := machine()
	return &keptStore{dir: keptDir(report), run: keptRun{Commit: commit, Date: r.started.UTC().Truncate(time.Second),
		Vault: vv, Cores: cores, Memory: mem}}
}

// runWith is the store's run with settings.
func (k *keptStore) runWith(settings map[string]string) keptRun {
	run := k.run
	run.Settings = settings
	return run
}

// sizesEnv is sizes as BENCH_SCALE takes them.
func sizesEnv(sizes []int) string {
	var out []string
	for _, n := range sizes {
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, ",")
}

// scaleSettings are the knobs behind a scale result: the same for every size of a run.
func scaleSettings(s benchSettings, sr *scaleResult) map[string]string {
	return map[string]string{"BENCH_ONLY": "scale", "BENCH_SCALE": sizesEnv(s.sizes), "BENCH_SCALE_STORAGE": sr.Storage,
		"BENCH_SCALE_CREATE": sr.Create, "BENCH_SWEEP_WAIT": s.sweepWait.String()}
}

// startupSettings are the knobs behind a startup result.
func startupSettings(s benchSettings) map[string]string {
	return map[string]string{"BENCH_ONLY": "startup", "BENCH_SCALE": sizesEnv(s.sizes)}
}

// providersSettings are the knobs behind the providers result.
func providersSettings(r *providersResult) map[string]string {
	return map[string]string{"BENCH_ONLY": "providers", "BENCH_PROVIDER_CREDENTIALS": fmt.Sprint(r.Creds),
		"BENCH_PROVIDER_LIMIT": fmt.Sprint(r.Limit), "BENCH_PROVIDER_TTL": r.TTL.String(),
		"BENCH_PROVIDER_RATE": fmt.Sprint(r.Rate), "BENCH_PROVIDER_STEADY": r.Steady.String()}
}

func (k *keptStore) saveScale(s benchSettings, sr *scaleResult) error {
	return k.save(scaleKey(sr), keptFile{Run: k.runWith(scaleSettings(s, sr)), Scale: sr})
}

func (k *keptStore) saveStartup(s benchSettings, sr *startupResult) error {
	return k.save(startupKey(sr), keptFile{Run: k.runWith(startupSettings(s)), Startup: sr})
}

func (k *keptStore) saveProviders(r *providersResult) error {
	return k.save(providersKey, keptFile{Run: k.runWith(providersSettings(r)), Providers: r})
}

// save writes f as <dir>/<key>.json: indented, with a trailing newline, through a
// temporary file renamed over the old one, so a run stopped midway leaves either the
// old file or the new one.
func (k *keptStore) save(key string, f keptFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("kept %s: %w", key, err)
	}
	b = append(b, '\n')
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(k.dir, "."+key+"-*.tmp")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after the rename there is nothing by that name
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(k.dir, key+".json"))
}

// loadKept reads every kept result in dir, by key; none when dir does not exist.
func loadKept(dir string) (map[string]*keptFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	out := map[string]*keptFile{}
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f := &keptFile{}
		if err := json.Unmarshal(b, f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		key := strings.TrimSuffix(filepath.Base(p), ".json")
		switch {
		case f.Scale != nil && key == scaleKey(f.Scale),
			f.Startup != nil && key == startupKey(f.Startup),
			f.Providers != nil && key == providersKey:
			out[key] = f
		default:
			errs = append(errs, fmt.Errorf("%s: no result of the key %s in it", p, key))
		}
	}
	return out, errors.Join(errs...)
}

// addKept adds to r the kept results of keys r did not measure itself, each marked
// with the run that measured it, and sorts the scale rows by storage (dev first) and
// size, the startup rows by size.
func (r *benchReport) addKept(kept map[string]*keptFile) {
	own := map[string]bool{}
	for _, sr := range r.scale {
		own[scaleKey(sr)] = true
	}
	for _, sr := range r.startup {
		own[startupKey(sr)] = true
	}
	if r.providers != nil {
		own[providersKey] = true
	}
	keys := make([]string, 0, len(kept))
	for key := range kept {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if own[key] {
			continue
		}
		f := kept[key]
		run := f.Run
		switch {
		case f.Scale != nil:
			f.Scale.from = &run
			r.scale = append(r.scale, f.Scale)
		case f.Startup != nil:
			f.Startup.from = &run
			r.startup = append(r.startup, f.Startup)
		case f.Providers != nil:
			f.Providers.from = &run
			r.providers = f.Providers
		}
	}
	sort.SliceStable(r.scale, func(i, j int) bool {
		a, b := r.scale[i], r.scale[j]
		if a.Storage != b.Storage {
			return storageOrder(a.Storage) < storageOrder(b.Storage)
		}
		return a.N < b.N
	})
	sort.SliceStable(r.startup, func(i, j int) bool { return r.startup[i].N < r.startup[j].N })
}

// storageOrder puts dev before raft, and anything else after both.
func storageOrder(s string) string {
	switch s {
	case "dev":
		return "0"
	case "raft":
		return "1"
	}
	return "2" + s
}

// earlierRuns numbers the earlier runs a report cites: †1, †2 … in order of first
// citation, one number per distinct run.
type earlierRuns struct{ runs []*keptRun }

// mark is the footnote mark of run, "" for this run's own results (nil).
func (e *earlierRuns) mark(run *keptRun) string {
	if run == nil {
		return ""
	}
	for i, k := range e.runs {
		if k.same(run) {
			return fmt.Sprintf("†%d", i+1)
		}
	}
	e.runs = append(e.runs, run)
	return fmt.Sprintf("†%d", len(e.runs))
}

// footnotes are the lines naming the earlier runs among runs (nil is this run), one
// a distinct run, in the order of their marks.
func (e *earlierRuns) footnotes(runs []*keptRun) string {
	var b strings.Builder
	seen := map[string]bool{}
	type line struct {
		mark string
		text string
	}
	var lines []line
	for _, run := range runs {
		m := e.mark(run)
		if m == "" || seen[m] {
			continue
		}
		seen[m] = true
		lines = append(lines, line{m, fmt.Sprintf("%s measured by an earlier run: %s.", m, run.describe())})
	}
	sort.Slice(lines, func(i, j int) bool { return markNumber(lines[i].mark) < markNumber(lines[j].mark) })
	for _, l := range lines {
		b.WriteString(l.text + "\n\n") // a paragraph each
	}
	return b.String()
}

func markNumber(m string) int {
	var n int
	_, _ = fmt.Sscanf(strings.TrimPrefix(m, "†"), "%d", &n)
	return n
}
