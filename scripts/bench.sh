#!/usr/bin/env bash
# make bench: every benchmark with its figures (ns/op, allocations, and the metrics the
# benchmarks report themselves, such as storage-ops/op and provider requests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
go test -run '^$' -bench "${BENCH:-.}" -benchmem -count="${BENCH_COUNT:-1}" ./...
