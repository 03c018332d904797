# Shared by the scripts: where big builds are cached, and how to find the Vault binary
# and the Terraform provider. Source it; it defines functions only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The repo's own cache (gitignored), plus a per-machine copy so a fresh clone on the same
# machine (CI runs in one) does not rebuild Vault from scratch.
CACHE_DIR="${CACHE_DIR:-$ROOT/.cache}"
MACHINE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-integrations"

log() { printf '==> %s\n' "$*" >&2; }

# cache_key FILE... prints a short hash of the files that pin a build.
cache_key() { cat "$@" | sha256sum | cut -c1-16; }

# cached NAME: prints the path of a cached artifact, restoring it from the machine cache
# when the repo cache lacks it; fails when neither has it.
cached() {
  local name="$1"
  if [ -x "$CACHE_DIR/$name" ]; then echo "$CACHE_DIR/$name"; return 0; fi
  if [ -x "$MACHINE_CACHE/$name" ]; then
    mkdir -p "$CACHE_DIR/$(dirname "$name")"
    cp "$MACHINE_CACHE/$name" "$CACHE_DIR/$name.tmp" && mv "$CACHE_DIR/$name.tmp" "$CACHE_DIR/$name"
    echo "$CACHE_DIR/$name"; return 0
  fi
  return 1
}

# keep NAME: copies a freshly built artifact into the machine cache.
keep() {
  local name="$1"
  mkdir -p "$MACHINE_CACHE/$(dirname "$name")" 2>/dev/null || return 0
  cp "$CACHE_DIR/$name" "$MACHINE_CACHE/$name.tmp" 2>/dev/null && mv "$MACHINE_CACHE/$name.tmp" "$MACHINE_CACHE/$name" || true
}

# go_installed NAME MODULE@PIN WHAT prints the path of a program `go install` builds from
# the Go module proxy, cached in the repo cache as NAME (dir/program) and in the machine
# cache; it is built now when neither has it, logging WHAT (and how long a cold build
# takes). It fails, saying so, when the build fails.
go_installed() {
  local name="$1" pkg="$2" what="$3" dir
  if cached "$name"; then return 0; fi
  dir="$CACHE_DIR/$(dirname "$name")"
  log "building $what from the Go module proxy ($pkg)"
  mkdir -p "$dir"
  if ! GOBIN="$dir" go install -trimpath -ldflags "-s -w" "$pkg" >&2; then
    log "building $pkg failed (output above)"
    return 1
  fi
  keep "$name"
  echo "$CACHE_DIR/$name"
}

# vault_bin prints the path of a vault binary: $VAULT_BIN when set, else the one built
# from bootstrap/vault (built now if the pin changed or nothing is cached).
vault_bin() {
  if [ -n "${VAULT_BIN:-}" ]; then
    [ -x "$VAULT_BIN" ] || { log "VAULT_BIN=$VAULT_BIN is not executable"; return 1; }
    echo "$VAULT_BIN"; return 0
  fi
  local key name
  key=$(cache_key "$ROOT/bootstrap/vault/go.mod" "$ROOT/bootstrap/vault/go.sum" "$ROOT/bootstrap/vault/main.go")
  name="vault-$key"
  local bin
  if ! bin=$(cached "$name"); then
    build_vault "$name" || return 1
    bin="$CACHE_DIR/$name"
  fi
  # A stable name, so people can put the CLI on their PATH.
  mkdir -p "$CACHE_DIR/bin" && ln -sf "$bin" "$CACHE_DIR/bin/vault"
  echo "$bin"
}


build_vault() {
  local name="$1"
  log "building the Vault server from bootstrap/vault (cold: about 15-20 minutes on 2 cores)"
  mkdir -p "$CACHE_DIR"
  (cd "$ROOT/bootstrap/vault" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$CACHE_DIR/$name.tmp" .) >&2 || return 1
  mv "$CACHE_DIR/$name.tmp" "$CACHE_DIR/$name"
  keep "$name"
}

# devprovider_bin prints the path of the local OAuth provider make dev runs beside Vault
# (bootstrap/devprovider, its own Go module), built now when its pin or source changed.
devprovider_bin() {
  local src="$ROOT/bootstrap/devprovider" key name bin
  key=$(cache_key "$src/go.mod" "$src/go.sum" "$src"/*.go)
  name="devprovider-$key"
  if ! bin=$(cached "$name"); then
    log "building the local OAuth provider from bootstrap/devprovider"
    mkdir -p "$CACHE_DIR"
    (cd "$src" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w" -o "$CACHE_DIR/$name.tmp" .) >&2 || return 1
    mv "$CACHE_DIR/$name.tmp" "$CACHE_DIR/$name"
    keep "$name"
    bin="$CACHE_DIR/$name"
  fi
  echo "$bin"
}

# The Terraform Vault provider: the registry is out of reach, so it is built from the Go
# module proxy. This pseudo-version is provider 5.9.0.
TF_PROVIDER_MODULE="github.com/hashicorp/terraform-provider-vault"
TF_PROVIDER_PIN="v1.9.1-0.20260422134934-5e9fcd457a99"
TF_PROVIDER_VERSION="5.9.0"

# Terraform itself, where the PATH has none: built from the Go module proxy like the
# provider. v1.8.5 is the newest release `go install` can build: from v1.9 on, Terraform's
# go.mod has replace directives, which `go install module@version` refuses.
TF_MODULE="github.com/hashicorp/terraform"
TF_PIN="v1.8.5"

# terraform_bin prints the path of a terraform binary: terraform on the PATH, else the one
# built from TF_MODULE@TF_PIN into the repo cache (built now when nothing is cached). It
# fails, saying why, when the module proxy cannot serve it or the build fails.
terraform_bin() {
  if command -v terraform >/dev/null 2>&1; then command -v terraform; return 0; fi
  local name="terraform-$TF_PIN/terraform"
  if cached "$name"; then return 0; fi
  if ! go list -m "$TF_MODULE@$TF_PIN" >/dev/null; then
    log "terraform is not on the PATH and the Go module proxy ($(go env GOPROXY)) does not serve $TF_MODULE@$TF_PIN: install terraform >= 1.5 on the PATH"
    return 1
  fi
  go_installed "$name" "$TF_MODULE@$TF_PIN" "terraform, which is not on the PATH (cold: several minutes)" ||
    { log "install terraform >= 1.5 on the PATH instead"; return 1; }
}

# tf_mirror prints a filesystem-mirror directory holding the provider, building it if needed.
tf_mirror() {
  local name="tfprovider-$TF_PROVIDER_PIN/terraform-provider-vault" bin mirror
  bin=$(go_installed "$name" "$TF_PROVIDER_MODULE@$TF_PROVIDER_PIN" \
    "terraform-provider-vault $TF_PROVIDER_VERSION (cold: about 5 minutes)") || return 1
  mirror="$CACHE_DIR/tfmirror"
  local dir="$mirror/registry.terraform.io/hashicorp/vault/$TF_PROVIDER_VERSION/linux_amd64"
  mkdir -p "$dir"
  ln -sf "$bin" "$dir/terraform-provider-vault_v$TF_PROVIDER_VERSION"
  echo "$mirror"
}

# golangci-lint v2, the lint gate of make test and make lint: built from the Go module
# proxy at this pin (v2.15.0 needs Go >= 1.26), once, into the repo cache and the machine
# cache like Vault; .golangci.yml is its configuration.
GOLANGCI_LINT_MODULE="github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
GOLANGCI_LINT_PIN="v2.15.0"

# golangci_lint_bin prints the path of golangci-lint at GOLANGCI_LINT_PIN, building it
# now when nothing is cached (cold: a few minutes on 2 cores).
golangci_lint_bin() {
  go_installed "golangci-lint-$GOLANGCI_LINT_PIN/golangci-lint" "$GOLANGCI_LINT_MODULE@$GOLANGCI_LINT_PIN" \
    "golangci-lint $GOLANGCI_LINT_PIN (cold: a few minutes)"
}

# plugin_version prints the version the plugin reports and is registered with.
plugin_version() { echo "v$(tr -d ' \n' < "$ROOT/VERSION")"; }

# prometheus_bin prints the path of a Prometheus server, installing Debian's `prometheus`
# package (which brings promtool) when it is missing. The metrics e2e test scrapes the
# plugin with it (scripts/test.sh exports the path as E2E_PROMETHEUS). It fails, saying
# why: with 2 when prometheus is missing and cannot be installed here (installing needs
# root and apt-get), with 1 when the install fails.
prometheus_bin() {
  if ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      log "prometheus is missing and cannot be installed here (Debian's prometheus package needs root and apt-get)"
      return 2
    fi
    log "installing Debian's prometheus package (server and promtool)"
    apt-get update -qq >&2 || { log "apt-get update failed: cannot install prometheus"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2 ||
      { log "apt-get install prometheus failed"; return 1; }
  fi
  command -v prometheus
}

# The e2e tests' SSH server: OpenSSH's sshd (Debian's openssh-server) and a local user
# it authenticates by password or key. The test starts its own sshd on a free loopback
# port with its own host key and config; this only makes the binary and the user exist.
# Installing needs root and apt-get; elsewhere the test skips (fails under CI=true).
E2E_SSH_USER="${E2E_SSH_USER:-integrations-e2e}"
E2E_SSH_PASSWORD="${E2E_SSH_PASSWORD:-e2e-sftp-Pa55word}"
prepare_sshd() {
  if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      log "sshd missing and cannot be installed here (needs root and apt-get): the SFTP verification tests will skip"
      return 0
    fi
    log "installing openssh-server for the SFTP verification tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server >&2 ||
      { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server >&2; } || return 1
  fi
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$E2E_SSH_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$E2E_SSH_USER" >&2 || return 1
  fi
  echo "$E2E_SSH_USER:$E2E_SSH_PASSWORD" | chpasswd >&2
  # sshd refuses to start without its privilege-separation directory.
  mkdir -p /run/sshd && chmod 0755 /run/sshd
  export E2E_SSH_USER E2E_SSH_PASSWORD
  export E2E_SSHD=/usr/sbin/sshd
}

# npm_installed NAME SRC prints the directory where the npm packages pinned by
# SRC/package-lock.json are installed (npm ci from the npm registry, once per lock file,
# into the repo cache .cache/node/NAME-<key>, gitignored); it fails when npm cannot be
# run or the install fails. The e2e tests' Node.js packages come from here.
npm_installed() {
  local name="$1" src="$2" key dir
  key=$(cache_key "$src/package.json" "$src/package-lock.json")
  dir="$CACHE_DIR/node/$name-$key"
  if [ ! -f "$dir/.installed" ]; then
    log "installing $name from ${src#"$ROOT"/}/package-lock.json (npm ci) into $dir"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    cp "$src/package.json" "$src/package-lock.json" "$dir.tmp/"
    (cd "$dir.tmp" && npm ci --no-audit --no-fund --ignore-scripts) >&2 || { rm -rf "$dir.tmp"; return 1; }
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.installed"
  fi
  echo "$dir"
}

# The e2e tests' OpenID provider: panva's oidc-provider (OpenID Certified), pinned by
# e2e/oidcprovider/package-lock.json. oidc_provider_dir prints the installed directory
# (its node_modules holds the server); it fails when Node.js or npm is missing: Node.js
# is a prerequisite of make test.
OIDC_PROVIDER_SRC="$ROOT/e2e/oidcprovider"
oidc_provider_dir() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "Node.js (node and npm) is missing: the oidc-provider e2e test needs it (it fails under CI=true, skips elsewhere)"
    return 1
  fi
  npm_installed oidc-provider "$OIDC_PROVIDER_SRC"
}

# github_openapi_dir prints the directory where GitHub's official OpenAPI description
# (the npm package @octokit/openapi, pinned by e2e/githubopenapi/package-lock.json) is
# installed; the github_app e2e tests check the engine's requests and the test server's
# answers against it (E2E_GITHUB_OPENAPI_DIR).
GITHUB_OPENAPI_SRC="$ROOT/e2e/githubopenapi"
github_openapi_dir() {
  if ! command -v npm >/dev/null 2>&1; then
    log "npm is missing: the github_app e2e tests need GitHub's OpenAPI description (they fail under CI=true, skip elsewhere)"
    return 1
  fi
  npm_installed github-openapi "$GITHUB_OPENAPI_SRC"
}

# GO_MODULES are the repository's Go modules that have tests, relative to ROOT: the plugin
# (.), the end-to-end module (e2e/: the suite, the OAuth test providers on fosite and
# go-oauth2, the benchmark report and its plot, kept out of the plugin's go.mod) and
# make dev's local provider (bootstrap/devprovider). scripts/test.sh vets, lints, tests,
# benchmarks and fuzzes each in its own directory. There is no go.work: each builds
# from its own go.mod, and the plugin's never names what only the tests use.
GO_MODULES=(. e2e bootstrap/devprovider)

# PREVIOUS_RELEASE is the commit of the release before this one; the upgrade e2e test
# (e2e/upgrade_test.go) mounts its build, upgrades to this one and downgrades again.
PREVIOUS_RELEASE="${PREVIOUS_RELEASE:-867d649}"

# previous_plugin prints the path of the plugin built from PREVIOUS_RELEASE (git
# archive of that commit, built as its Makefile builds, reporting the version of its
# VERSION file), built once into the cache. It needs the history: a shallow clone
# without that commit fails here.
previous_plugin() {
  local sha version name
  sha="$(git -C "$ROOT" rev-parse --short=12 "$PREVIOUS_RELEASE^{commit}")" || {
    log "commit $PREVIOUS_RELEASE (the previous release) is not in this clone's history"; return 1; }
  version="v$(git -C "$ROOT" show "$sha:VERSION" | tr -d ' \n')"
  name="previous-$sha/vault-plugin-secrets-integrations-$version"
  if ! cached "$name" >/dev/null; then
    log "building the previous release's plugin ($version) from $sha"
    local src="$CACHE_DIR/previous-$sha/src" module
    rm -rf "$src" && mkdir -p "$src"
    git -C "$ROOT" archive "$sha" | tar -x -C "$src"
    module="$(cd "$src" && go list -m)"
    (cd "$src" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w -X $module/backend.Version=$version" \
      -o "$CACHE_DIR/$name.tmp" ./cmd/vault-plugin-secrets-integrations) >&2 || return 1
    mv "$CACHE_DIR/$name.tmp" "$CACHE_DIR/$name"
    rm -rf "$src"
    keep "$name"
  fi
  cached "$name"
}

# The CycloneDX SBOM generator make release runs on each binary: cyclonedx-gomod from the
# Go module proxy, pinned, built once into the repo cache like Vault.
CYCLONEDX_MODULE="github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod"
CYCLONEDX_PIN="v1.10.0"

# cyclonedx_gomod_bin prints the path of cyclonedx-gomod $CYCLONEDX_PIN, building it from
# the Go module proxy when nothing is cached.
cyclonedx_gomod_bin() {
  go_installed "cyclonedx-gomod-$CYCLONEDX_PIN/cyclonedx-gomod" "$CYCLONEDX_MODULE@$CYCLONEDX_PIN" \
    "cyclonedx-gomod $CYCLONEDX_PIN (cold: about a minute)"
}
