#!/usr/bin/env bash
# make bench: every benchmark with its figures, written to BENCHMARKS.md (and
# BENCHMARKS.png beside it) at the repo root.
#   1. in-process `go test -bench -benchmem` (ns/op, allocations, storage-ops/op, ...),
#      including the sweep at each size (BenchmarkSweepScale);
#   2. the outside-in driver, e2e/benchmarks_test.go (TestBenchmarkReport): closed-loop
#      HTTP load, token rollover, herd, scale and parallel key derivations through real
#      Vault dev servers. It folds the in-process figures into the report.
# Knobs (defaults are the recorded run; the quick ones are for iterating):
#   BENCH=regexp              only the in-process benchmarks matching it (default all)
#   BENCH_COUNT=N             repeat each in-process benchmark
#   BENCH_DURATION=5s         one load round per target and concurrency (quick: 1s)
#   BENCH_ROUNDS=5            alternating load rounds
#   BENCH_ROLLOVER_LIFETIME=60s  token lifetime of the rollover run (quick: 10s)
#   BENCH_ROLLOVERS=3         rollovers to run through
#   BENCH_PROVIDER_LATENCY=350ms the OAuth token endpoint's latency
#   BENCH_REFRESH_AHEAD=on    on|off for the rollover run (when the engine has it)
#   BENCH_SCALE=1000,10000,100000  mount sizes (quick: 1000,10000)
#   BENCH_SCALE_STORAGE=dev   dev (in memory) or raft (one integrated-storage node on disk) for the scale section
#   BENCH_HEAPPROF=dir        heap profiles of the plugin after creation and after the reload (scale section);
#                             needs a -tags heapprof build: make build-heapprof, then PLUGIN_DIR=bin-heapprof
#                             (run the driver by hand as below: this script builds bin/)
#   BENCH_SWEEP_WAIT=65s      wait for Vault's periodic tick before the after-sweep RSS (0 skips)
#   BENCH_ONLY=load,rollover,herd,scale,startup,kdf,batch  sections of the driver to run
#   BENCH_BATCH_N=20000       credentials per run of the batch section (credentials-batch vs single creates)
#   BENCH_BATCH_RUNS=3        runs of each way in the batch section (the report: best and slowest)
#   BENCH_ONLY=providers      the provider section alone (never in the default run): 20,000
#                             client_credentials credentials at one provider answering 429
#                             above 100/s, tokens of 15 minutes, then 30 minutes of steady reads;
#                             knobs BENCH_PROVIDER_CREDENTIALS=20000 BENCH_PROVIDER_LIMIT=100
#                             BENCH_PROVIDER_TTL=15m BENCH_PROVIDER_RATE=66 BENCH_PROVIDER_STEADY=30m
#                             (e2e/bench_providers_test.go). Harness check: BENCH_ONLY=providers
#                             BENCH_PROVIDER_CREDENTIALS=2000 BENCH_PROVIDER_TTL=2m BENCH_PROVIDER_STEADY=3m
#   BENCH_KDF_WRITES=50       parallel writes of the largest accepted scrypt key (kdf)
#   BENCH_KDF_BASELINE_WRITES=6  the same against BENCH_BASELINE, when set (kdf)
#   BENCH_REPORT=path         where to write the report (default BENCHMARKS.md; with BENCH_ONLY,
#                             .cache/bench-partial.md, so a run of some sections never replaces
#                             the whole report)
#   BENCH_KEPT=dir            where results are kept (below; default benchmarks/ beside the
#                             report, and the repo's benchmarks/ for a BENCH_ONLY run)
#   BENCH_INPROCESS=0         skip the in-process benchmarks
#   BENCH_BASELINE=<commit>   also read an older build of this plugin in the load rounds,
#                             built from that commit into bin/ (or a binary already there)
# A quick run: BENCH_SCALE=1000,10000 BENCH_ROLLOVER_LIFETIME=10s BENCH_DURATION=1s make bench
# Kept results: the scale, startup and providers sections take longer together than one
# session (a million credentials on Raft alone runs ~80 minutes), so each of their results
# is written when its section finishes to benchmarks/<key>.json beside BENCH_REPORT (at
# the repo root by default), keys scale-<storage>-<n> (scale-dev-100000,
# scale-raft-1000000), startup-<n> and providers, with the run that measured it (commit,
# date, Vault, machine, settings). Every run renders the kept results it did not measure
# itself, each row marked † with a note naming its run; a result measured again
# overwrites its file. Delete a file to drop its row. Commit benchmarks/ with
# BENCHMARKS.md. E.g. BENCH_ONLY=scale BENCH_SCALE_STORAGE=raft BENCH_SCALE=1000000 make bench
# adds the million on Raft to benchmarks/ (its own report goes to .cache/bench-partial.md),
# and the next full `make bench` renders it into BENCHMARKS.md (e2e/benchkept_test.go).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
pattern="${BENCH:-.}"
count="${BENCH_COUNT:-1}"
# Not in bin/: a Vault dev server registers every file of its plugin directory.
mkdir -p "$ROOT/.cache"
inproc="$ROOT/.cache/bench-inprocess.txt"

if [ "${BENCH_INPROCESS:-1}" != 0 ]; then
  log "in-process benchmarks"
  go test -run '^$' -bench "$pattern" -skip 'BenchmarkSweepScale|BenchmarkCleanPending' -benchmem -count="$count" ./... | tee "$inproc"
  log "in-process sweep at each size (BENCH_SCALE=${BENCH_SCALE:-1000,10000,100000})"
  # A due sweep re-seeds a backend per iteration: a few iterations are enough.
  go test -run '^$' -bench 'BenchmarkSweepScale/n=/due=0' -benchmem -count="$count" ./backend/ | tee -a "$inproc"
  go test -run '^$' -bench 'BenchmarkSweepScale/n=/due=1' -benchtime=3x -benchmem -count="$count" ./backend/ | tee -a "$inproc"
  # The list pages at 100,000 too (the run above has 1,000 and 10,000): §6 compares the
  # filtered list at that size with its figure before the label index.
  INTEGRATIONS_SCALE=100000 go test -run '^$' -bench 'BenchmarkScaleList/' -benchmem -count="$count" ./backend/ | tee -a "$inproc"
  # The backend's heap per credential at 100,000 too: §6 compares it with its figure
  # before the compact indexes (one load of the mix, about 20 s).
  INTEGRATIONS_SCALE=100000 go test -run '^$' -bench 'BenchmarkScaleMemory/' -benchtime=1x -benchmem -count="$count" ./backend/ | tee -a "$inproc"
  # Clean with 1,000 and 100,000 credentials' usage pending, every credential written
  # directly (the build before the budget) and within the budget (issue 28): one Clean
  # each, the 100,000 direct one over a minute.
  BENCH_CLEAN_PENDING=1000,100000 go test -run '^$' -bench 'BenchmarkCleanPending/' -benchtime=1x -count="$count" ./backend/ | tee -a "$inproc"
fi

log "outside-in benchmarks through real Vault servers (e2e/benchmarks_test.go)"
make --no-print-directory build
if [ -n "${BENCH_BASELINE:-}" ] && [ ! -x "$ROOT/bin/$BENCH_BASELINE" ]; then
  sha="$(git rev-parse --short "$BENCH_BASELINE^{commit}")"
  base="vault-plugin-integrations-$sha"
  if [ ! -x "$ROOT/bin/$base" ]; then
    log "building the baseline plugin from $sha"
    src="$ROOT/.cache/baseline-$sha"
    rm -rf "$src" && mkdir -p "$src"
    git archive "$sha" | tar -x -C "$src"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ROOT/bin/$base" ./cmd/vault-plugin-secrets-integrations)
  fi
  export BENCH_BASELINE="$base"
fi
# The baseline plugin and the report are the end-to-end module's (e2e/, its own go.mod).
(cd "$ROOT/e2e" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ROOT/bin/vault-plugin-constant" ./constplugin)
export VAULT_BIN="$(vault_bin)" PLUGIN_DIR="$ROOT/bin" PLUGIN_VERSION="$(plugin_version)"
if [ -n "${BENCH_ONLY:-}" ] && [ -z "${BENCH_REPORT:-}" ]; then
  # Some sections only: their report is partial; what they measured is kept for the
  # full report (BENCHMARKS.md) to render.
  export BENCH_REPORT="$ROOT/.cache/bench-partial.md" BENCH_KEPT="${BENCH_KEPT:-$ROOT/benchmarks}"
fi
export BENCH_REPORT="${BENCH_REPORT:-$ROOT/BENCHMARKS.md}" BENCH_INPROC="$inproc"
start=$(date +%s)
(cd "$ROOT/e2e" && go test -tags e2e -count=1 -timeout 4h -run '^TestBenchmarkReport$' -v .)
log "wrote $BENCH_REPORT in $(( $(date +%s) - start )) s"
