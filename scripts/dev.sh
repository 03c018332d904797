#!/usr/bin/env bash
# make dev: a real Vault dev server on loopback with the plugin registered (sha256 and
# version) and mounted at integrations/, and beside it the local OAuth provider
# (bootstrap/devprovider) on 127.0.0.1:8300. Stays in the foreground; Ctrl-C stops both.
# VAULT_DEV_PORT (8200) and DEV_PROVIDER_PORT (8300) move them; DEV_PLUGIN_DIR (bin/)
# is the plugin directory (the README test upgrades the plugin in a copy of its own).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

VAULT="$(vault_bin)"
PLUGIN=vault-plugin-secrets-integrations
VERSION="$(plugin_version)"
PORT="${VAULT_DEV_PORT:-8200}"
TOKEN="${VAULT_DEV_ROOT_TOKEN:-root}"
PLUGINS="${DEV_PLUGIN_DIR:-$ROOT/bin}"
export VAULT_ADDR="http://127.0.0.1:$PORT" VAULT_TOKEN="$TOKEN"
DEVPROVIDER="$(devprovider_bin)"
DP_PORT="${DEV_PROVIDER_PORT:-8300}"
DP="http://127.0.0.1:$DP_PORT"

DATA="$(mktemp -d)"
DEV_PROVIDER_PORT="$DP_PORT" "$DEVPROVIDER" >"$DATA/devprovider.log" 2>&1 &
DP_PID=$!
"$VAULT" server -dev -dev-root-token-id="$TOKEN" -dev-listen-address="127.0.0.1:$PORT" \
  -dev-plugin-dir="$PLUGINS" >"$DATA/vault.log" 2>&1 &
VAULT_PID=$!
stop() {
  trap - INT TERM EXIT
  log "stopping Vault and the local OAuth provider"
  kill -INT "$VAULT_PID" 2>/dev/null || true
  kill -TERM "$DP_PID" 2>/dev/null || true
  wait "$VAULT_PID" 2>/dev/null || true
  wait "$DP_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap stop EXIT
trap 'exit 0' INT TERM   # Ctrl-C is the normal way out; EXIT then stops Vault

# The provider logs "listening on" once its port is bound (a port another program holds
# makes it exit instead).
for _ in $(seq 1 100); do
  grep -q 'listening on' "$DATA/devprovider.log" && break
  kill -0 "$DP_PID" 2>/dev/null || { cat "$DATA/devprovider.log" >&2; exit 1; }
  sleep 0.1
done
grep -q 'listening on' "$DATA/devprovider.log" || { log "the local OAuth provider did not start on $DP"; exit 1; }

for _ in $(seq 1 300); do
  "$VAULT" status >/dev/null 2>&1 && break
  kill -0 "$VAULT_PID" 2>/dev/null || { cat "$DATA/vault.log" >&2; exit 1; }
  sleep 0.1
done
"$VAULT" status >/dev/null

SHA="$(sha256sum "$PLUGINS/$PLUGIN" | cut -d' ' -f1)"
"$VAULT" plugin register -sha256="$SHA" -version="$VERSION" secret "$PLUGIN" >&2
"$VAULT" secrets enable -path=integrations -plugin-version="$VERSION" -allowed-response-headers=Retry-After -allowed-response-headers=Cache-Control "$PLUGIN" >&2
# The authorization-code flow sends the browser back to this Vault's oauth/callback.
"$VAULT" write integrations/config callback_base_url="$VAULT_ADDR" >/dev/null

cat <<MSG

Vault $("$VAULT" version | awk '{print $2}' | tr -d ,) is running with $PLUGIN $VERSION mounted at integrations/
(config callback_base_url=$VAULT_ADDR), and a local OAuth provider at $DP
(client dev-client / dev-client-secret). In another shell:

    export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN
    export PATH="$CACHE_DIR/bin:\$PATH"   # the vault CLI this project built, unless you have one

    vault read integrations/config
    vault write integrations/credentials/demo type=basic username=svc password=s3cret
    vault read integrations/access/demo

    # OAuth 2.0 client credentials against the local provider:
    vault write integrations/credentials/dev-api type=oauth2_client_credentials \\
        token_url=$DP/oauth2/token client_id=dev-client client_secret=dev-client-secret
    vault read integrations/access/dev-api

    # Authorization code: authorize, then open auth_url in a browser (or curl it: the
    # provider consents at once and redirects to Vault's callback), then read.
    vault write integrations/credentials/dev-crm type=oauth2_authorization_code \\
        auth_url=$DP/oauth2/auth token_url=$DP/oauth2/token \\
        client_id=dev-client client_secret=dev-client-secret scopes=offline_access,read
    curl -sL -o /dev/null "\$(vault write -f -field=auth_url integrations/credentials/dev-crm/authorize)"
    vault read integrations/access/dev-crm

Logs: $DATA/vault.log and $DATA/devprovider.log. Press Ctrl-C to stop both.
MSG
wait "$VAULT_PID"
