#!/usr/bin/env bash
# make test: vet, the lint gate (golangci-lint, .golangci.yml), unit tests under -race, every benchmark once, every fuzz target for a
# few seconds, then end-to-end tests against a real Vault server (built by
# bootstrap/vault), the vault CLI, the HTTP API client and Terraform.
#   scripts/test.sh          everything
#   scripts/test.sh unit     vet, lint, unit tests, benchmarks once and fuzzing
#   scripts/test.sh lint     the lint gate only (make lint)
#   scripts/test.sh fuzz     fuzzing only
#   scripts/test.sh e2e      end-to-end tests only
# The end-to-end tests run the plugin built with -race (make build-race, into bin-race/:
# a dev server registers every entry of its plugin directory, so the race build is kept
# out of bin/, where a subfolder stops `make dev` and E2E_RACE=0 runs with "is a
# directory"); E2E_RACE=0 runs the plain build instead.
# FUZZTIME (default 5s) is how long each fuzz target runs; FUZZTIME=0 skips fuzzing.
# Vet, lint, unit tests, benchmarks and fuzzing run in every Go module of GO_MODULES
# (scripts/lib.sh): the plugin, the end-to-end module (e2e/: the suite, its OAuth
# providers and the benchmark report) and make dev's provider (bootstrap/devprovider).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
what="${1:-all}"

tools_log="$CACHE_DIR/tools-build.log"
prepare_tools() {
  prepare_sshd
  vault_bin >/dev/null
  # Terraform (built from the Go module proxy when the PATH has none) and its provider.
  terraform_bin >/dev/null
  tf_mirror >/dev/null
  # The metrics e2e test scrapes with a real Prometheus (installed as root with apt-get).
  # Where it cannot be installed that test fails under CI=true, so CI stops here, saying
  # why; elsewhere it skips. A failed install fails everywhere.
  local prom_rc=0
  prometheus_bin >/dev/null || prom_rc=$?
  if [ "$prom_rc" = 2 ] && [ "${CI:-}" != true ]; then
    log "the metrics e2e test will skip (it fails under CI=true)"
  elif [ "$prom_rc" != 0 ]; then
    return 1
  fi
  # The oidc-provider e2e test's server (npm ci on first use); without Node.js that
  # test fails under CI=true and skips elsewhere.
  oidc_provider_dir >/dev/null || true
  # GitHub's OpenAPI description, for the github_app e2e tests (npm ci on first use).
  github_openapi_dir >/dev/null || true
}

if [ "$what" = all ]; then
  # The cold Vault build is mostly downloads at first: overlap it with the unit tests.
  mkdir -p "$CACHE_DIR"
  prepare_tools >"$tools_log" 2>&1 &
  tools_pid=$!
fi

# fuzz_one fuzzes one target. Go 1.26's fuzzing coordinator can report a bare "context
# deadline exceeded" when -fuzztime runs out while a worker is mid-input (a race in
# internal/fuzz, golang/go#75804, fixed in Go 1.27). That failure writes no failing input;
# every real one does ("Failing input written to testdata/fuzz/..."), so only those fail
# the run, and the race is logged.
fuzz_one() {
  local name="$1" pkg="$2" fuzztime="$3" out rc=0
  out="$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1)" || rc=$?
  printf '%s\n' "$out"
  if [ "$rc" != 0 ]; then
    if ! grep -q 'Failing input written to' <<<"$out" && grep -q '^    context deadline exceeded$' <<<"$out"; then
      log "fuzz $name: Go's fuzzing coordinator hit its fuzztime deadline race (golang/go#75804); no failing input was found"
      return 0
    fi
    return "$rc"
  fi
}

# fuzz_all runs every fuzz target of every package of every module for FUZZTIME, one go
# test per target (go test fuzzes one target per invocation). Targets are discovered
# with go test -list, so new ones are picked up; the unit tests have run their seeds.
fuzz_all() {
  local fuzztime="${FUZZTIME:-5s}" mod start count=0
  if [ "$fuzztime" = 0 ]; then log "fuzzing skipped (FUZZTIME=0)"; return 0; fi
  start=$SECONDS
  for mod in "${GO_MODULES[@]}"; do
    # go test -list and the go test per target resolve packages in the module's own
    # directory (each module is its own build list).
    pushd "$ROOT/$mod" >/dev/null
    fuzz_module "$fuzztime"
    popd >/dev/null
  done
  log "fuzzed $count targets for $fuzztime each in $((SECONDS - start))s"
}

# fuzz_module fuzzes the targets of the module in the working directory; it counts
# them in fuzz_all's count.
fuzz_module() {
  local fuzztime="$1" listing line pkg name
  listing="$(go test -list '^Fuzz' ./...)"
  local names=()
  while IFS= read -r line; do
    case "$line" in
      Fuzz*) names+=("$line") ;;
      ok*)
        pkg="$(awk '{print $2}' <<<"$line")"
        for name in ${names[@]+"${names[@]}"}; do
          log "fuzz $name in $pkg for $fuzztime"
          fuzz_one "$name" "$pkg" "$fuzztime"
          count=$((count + 1))
        done
        names=()
        ;;
    esac
  done <<<"$listing"
}

# bench_once runs every benchmark of every package once (-benchtime=1x), for the checks
# inside them (b.Fatal on a wrong result), not for figures: `make bench` measures. The
# scale benchmarks run at their default sizes (1,000 and 10,000; INTEGRATIONS_SCALE
# adds 100,000, which `make bench` covers). Not under -race: the unit tests were.
bench_once() {
  local start=$SECONDS mod
  for mod in "${GO_MODULES[@]}"; do
    (cd "$ROOT/$mod" && go test -count=1 -run '^$' -bench . -benchtime=1x ./...)
  done
  log "ran every benchmark once in $((SECONDS - start))s"
}

# lint_all runs golangci-lint (pinned and cached by scripts/lib.sh) with .golangci.yml on
# every module of GO_MODULES (the configuration sets the e2e build tag, so the
# end-to-end suite is linted too). Any finding fails.
lint_all() {
  local lint start=$SECONDS mod
  lint="$(golangci_lint_bin)"
  log "golangci-lint $GOLANGCI_LINT_PIN (.golangci.yml) in ${GO_MODULES[*]}"
  for mod in "${GO_MODULES[@]}"; do
    (cd "$ROOT/$mod" && "$lint" run --config "$ROOT/.golangci.yml" ./...)
  done
  log "lint passed in $((SECONDS - start))s"
}

if [ "$what" = lint ]; then
  lint_all
fi

if [ "$what" = all ] || [ "$what" = unit ]; then
  log "go vet (and with -tags e2e) in ${GO_MODULES[*]}"
  for mod in "${GO_MODULES[@]}"; do
    (cd "$ROOT/$mod" && go vet ./... && go vet -tags e2e ./...)
  done
  lint_all
  for mod in "${GO_MODULES[@]}"; do
    log "unit tests (-race) in module $mod"
    # -timeout: internal/release builds the plugin twice, once with an empty build cache.
    (cd "$ROOT/$mod" && go test -race -count=1 -timeout 20m ./...)
  done
  log "every benchmark once (-benchtime=1x)"
  bench_once
fi

if [ "$what" = all ] || [ "$what" = unit ] || [ "$what" = fuzz ]; then
  fuzz_all
fi

if [ "$what" = all ] || [ "$what" = e2e ]; then
  if [ "$what" = all ]; then
    log "waiting for the Vault server and Terraform provider builds"
    if ! wait "$tools_pid"; then cat "$tools_log" >&2; exit 1; fi
  else
    prepare_tools
  fi
  # Again in this shell (cheap once installed): it exports where sshd and its test user are.
  prepare_sshd
  make --no-print-directory build
  export VAULT_BIN="$(vault_bin)"
  export PLUGIN_DIR="$ROOT/bin"
  if [ "${E2E_RACE:-1}" != 0 ]; then
    # The race-enabled plugin: every server the harness starts registers it with
    # GORACE writing reports to E2E_RACE_LOG_DIR, and the run fails when any is there.
    make --no-print-directory build-race
    PLUGIN_DIR="$ROOT/bin-race"
    E2E_RACE_LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/e2e-race.XXXXXX")"
    export E2E_RACE_LOG_DIR
    log "e2e with the race-enabled plugin; race reports go to $E2E_RACE_LOG_DIR"
  fi
  export PLUGIN_VERSION="$(plugin_version)"
  # The previous release's plugin, for the upgrade/downgrade test (e2e/upgrade_test.go).
  # Without that commit (a shallow clone) the test fails under CI=true, skips elsewhere.
  if prev="$(previous_plugin)"; then
    export E2E_PREVIOUS_PLUGIN="$prev" E2E_PREVIOUS_VERSION="${prev##*-}"
  else
    log "the upgrade e2e test will skip (it fails under CI=true): no previous release to build"
  fi
  E2E_TERRAFORM="$(terraform_bin)"
  TF_MIRROR="$(tf_mirror)"
  export E2E_TERRAFORM TF_MIRROR
  if prom="$(prometheus_bin 2>/dev/null)"; then
    export E2E_PROMETHEUS="$prom"
  fi
  if oidc_dir="$(oidc_provider_dir)"; then
    export E2E_OIDC_PROVIDER_DIR="$oidc_dir"
  fi
  if github_openapi="$(github_openapi_dir)"; then
    export E2E_GITHUB_OPENAPI_DIR="$github_openapi"
  fi
  log "end-to-end tests against $("$VAULT_BIN" version)"
  # E2E_ARGS, e.g. "-run TestConfig -v", narrows the run. The suite is the e2e module's
  # package at its root (e2e/), run from there.
  # shellcheck disable=SC2086
  (cd "$ROOT/e2e" && go test -race -count=1 -tags e2e -timeout 40m . ${E2E_ARGS:-})
fi
