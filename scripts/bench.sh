#!/usr/bin/env bash
# make bench: every benchmark with its figures (ns/op, allocations, and the metrics the
# benchmarks report themselves: storage-ops/op, provider requests, req/s).
#   BENCH=regexp       only the benchmarks matching it
#   BENCH_COUNT=N      repeat each (for benchstat)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
pattern="${BENCH:-.}"
count="${BENCH_COUNT:-1}"

log "in-process benchmarks"
go test -run '^$' -bench "$pattern" -benchmem -count="$count" ./...

log "access throughput through a real Vault server, against a constant-answering plugin"
make --no-print-directory build
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/vault-plugin-constant ./e2e/constplugin
export VAULT_BIN="$(vault_bin)" PLUGIN_DIR="$ROOT/bin" PLUGIN_VERSION="$(plugin_version)"
go test -tags e2e -run '^$' -bench "$pattern" -benchtime="${E2E_BENCHTIME:-20000x}" -count="$count" ./e2e/
