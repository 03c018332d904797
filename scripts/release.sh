#!/usr/bin/env bash
# make release [VERSION=x.y.z]: the plugin for every release platform, built so that the
# same commit and Go version give the same bytes anywhere, into dist/:
#   vault-plugin-secrets-integrations_<ver>_<os>_<arch>            the plugin binary
#   vault-plugin-secrets-integrations_<ver>_<os>_<arch>.cdx.json   its CycloneDX SBOM
#   SHA256SUMS                                                   sha256sum of each file above
# Bare binaries, not zips: the sha256 in SHA256SUMS is the one `vault plugin register
# -sha256` takes, with nothing to unpack, and no archive timestamps to pin.
#   scripts/release.sh [x.y.z]   the version (a leading v is allowed); default: VERSION
# Environment: DIST (default dist/, which must hold nothing but an earlier release),
# PLATFORMS (default below: os/arch, space-separated), SBOM=0 (no SBOMs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PLUGIN=vault-plugin-secrets-integrations
ver="${1:-$(tr -d ' \n' < VERSION)}"
ver="${ver#v}"
if ! [[ "$ver" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  log "version \"$ver\": must be x.y.z (semantic versioning, e.g. 0.2.0)"
  exit 2
fi
dist="${DIST:-$ROOT/dist}"
platforms="${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64}"
module="$(GOWORK=off go list -m)"

# dist/ holds one release: what an earlier one left is removed, anything else stops us.
mkdir -p "$dist"
for f in "$dist"/* "$dist"/.[!.]*; do
  [ -e "$f" ] || continue
  case "$(basename "$f")" in
    "${PLUGIN}"_*|SHA256SUMS) rm -f "$f" ;;
    *) log "$dist holds $(basename "$f"), which is not a release file: use an empty DIST"; exit 1 ;;
  esac
done

# The fixed flags. Nothing of the checkout or the machine goes in: -trimpath drops file
# system paths, -buildvcs=false the VCS stamp (a dirty tree or another clone would
# differ), -buildid= the build ID (a hash of the inputs, paths among them), -s -w the
# symbol table and DWARF. The environment's GOFLAGS are replaced, and the per-arch
# levels pinned, so a developer's settings do not leak into a release; GOWORK=off builds
# from the plugin's go.mod alone, even beside a developer's go.work.
ldflags="-s -w -buildid= -X $module/backend.Version=v$ver"
flags=(-trimpath -buildvcs=false -mod=readonly -ldflags "$ldflags")

sbom=""
if [ "${SBOM:-1}" != 0 ]; then sbom="$(cyclonedx_gomod_bin)"; fi

for p in $platforms; do
  os="${p%/*}" arch="${p#*/}"
  out="$dist/${PLUGIN}_${ver}_${os}_${arch}"
  log "building $(basename "$out")"
  CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" GOFLAGS= GOWORK=off GOAMD64=v1 GOARM64=v8.0 GOEXPERIMENT= \
    go build "${flags[@]}" -o "$out" "./cmd/$PLUGIN"
  if [ -n "$sbom" ]; then
    # bin: the modules the binary really links, read from its build info; no serial
    # number and no timestamp, so an SBOM is as reproducible as its binary.
    "$sbom" bin -json -noserial -notimestamp -output "$out.cdx.json" -version "v$ver" "$out" >&2
  fi
done

(cd "$dist" && find . -maxdepth 1 -type f -name "${PLUGIN}_${ver}_*" -printf '%f\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
log "release v$ver in $dist:"
(cd "$dist" && ls -l >&2)
