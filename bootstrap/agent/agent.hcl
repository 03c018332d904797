# Vault Agent for the README's quick start: it authenticates with the token in
# .cache/agent/token and renders the dev-api credential's access token into
# .cache/agent/dev-api-token, rendering again whenever the engine hands out a new one
# (the access/ answer's ttl). Paths are relative to the repository's root, where the
# quick start runs `vault agent -config=bootstrap/agent/agent.hcl`; the Vault address is
# VAULT_ADDR's.

auto_auth {
  method "token_file" {
    config = {
      token_file_path = ".cache/agent/token"
    }
  }
}

template {
  source      = "bootstrap/agent/dev-api.ctmpl"
  destination = ".cache/agent/dev-api-token"
  perms       = "0600"
}
