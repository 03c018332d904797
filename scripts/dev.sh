#!/usr/bin/env bash
# make dev: a real Vault dev server on loopback with the plugin registered (sha256 and
# version) and mounted at integrations/. Stays in the foreground; Ctrl-C stops Vault.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VAULT="$(vault_bin)"
PLUGIN=vault-plugin-secrets-integrations
VERSION="$(plugin_version)"
PORT="${VAULT_DEV_PORT:-8200}"
TOKEN="${VAULT_DEV_ROOT_TOKEN:-root}"
export VAULT_ADDR="http://127.0.0.1:$PORT" VAULT_TOKEN="$TOKEN"

DATA="$(mktemp -d)"
"$VAULT" server -dev -dev-root-token-id="$TOKEN" -dev-listen-address="127.0.0.1:$PORT" \
  -dev-plugin-dir="$ROOT/bin" >"$DATA/vault.log" 2>&1 &
VAULT_PID=$!
stop() {
  trap - INT TERM EXIT
  log "stopping Vault"
  kill -INT "$VAULT_PID" 2>/dev/null || true
  wait "$VAULT_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap stop EXIT
trap 'exit 0' INT TERM   # Ctrl-C is the normal way out; EXIT then stops Vault

for _ in $(seq 1 300); do
  "$VAULT" status >/dev/null 2>&1 && break
  kill -0 "$VAULT_PID" 2>/dev/null || { cat "$DATA/vault.log" >&2; exit 1; }
  sleep 0.1
done
"$VAULT" status >/dev/null

SHA="$(sha256sum "$ROOT/bin/$PLUGIN" | cut -d' ' -f1)"
"$VAULT" plugin register -sha256="$SHA" -version="$VERSION" secret "$PLUGIN" >&2
"$VAULT" secrets enable -path=integrations -plugin-version="$VERSION" -allowed-response-headers=Retry-After "$PLUGIN" >&2

cat <<MSG

Vault $("$VAULT" version | awk '{print $2}' | tr -d ,) is running with $PLUGIN $VERSION mounted at integrations/.
In another shell:

    export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN
    export PATH="$CACHE_DIR/bin:\$PATH"   # the vault CLI this project built, unless you have one

    vault read integrations/config
    vault write integrations/credentials/demo type=basic username=svc password=s3cret
    vault read integrations/access/demo

The server log is $DATA/vault.log. Press Ctrl-C to stop Vault.
MSG
wait "$VAULT_PID"
