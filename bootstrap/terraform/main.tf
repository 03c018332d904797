# Registers, mounts and configures the integrations secrets engine, creates a few
# credentials, reads one as an integration would, and sets up two example policies.
#
#   export VAULT_ADDR=… VAULT_TOKEN=…
#   terraform init
#   terraform apply -var plugin_sha256=$(sha256sum ../../bin/vault-plugin-secrets-integrations | cut -d' ' -f1)
#
# The plugin binary must already be in the server's plugin directory. With
# register_plugin = true (the default) this registers the plugin version and destroy
# deregisters it; beside make dev use dev.tfvars (register_plugin = false, mount
# integrations-tf/): see the README's Terraform section.

terraform {
  required_version = ">= 1.5"
  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = "~> 5.0"
    }
  }
}

# VAULT_ADDR and VAULT_TOKEN come from the environment.
provider "vault" {}

locals {
  plugin_name = "vault-plugin-secrets-integrations"
}

# Registered here only with register_plugin (see its description: destroy deregisters).
resource "vault_plugin" "integrations" {
  count   = var.register_plugin ? 1 : 0
  type    = "secret"
  name    = local.plugin_name
  command = local.plugin_name
  version = var.plugin_version
  sha256  = var.plugin_sha256
  lifecycle {
    precondition {
      condition     = can(regex("^[0-9a-f]{64}$", var.plugin_sha256))
      error_message = "plugin_sha256 must be the binary's SHA-256 (64 hex digits) when register_plugin is true."
    }
  }
}

resource "vault_mount" "integrations" {
  path           = var.mount_path
  type           = local.plugin_name
  plugin_version = var.plugin_version
  depends_on     = [vault_plugin.integrations]
  description    = "Credentials integrations use to reach other products"
  # Vault drops the response headers a mount has not allowed: a write refused while the
  # engine is busy with key derivations (503) says when to retry in Retry-After too, and
  # the unauthenticated key documents (jwks/<name>, oidc/.well-known/*) their caching.
  allowed_response_headers = ["Retry-After", "Cache-Control"]
}

# Engine-wide settings. Durations are seconds, as the engine reads them back, so the
# next plan shows no change.
resource "vault_generic_endpoint" "config" {
  path                 = "${vault_mount.integrations.path}/config"
  ignore_absent_fields = true
  data_json = jsonencode({
    suspend_after        = 90 * 86400
    purge_after          = 180 * 86400
    warn_before          = [30 * 86400, 7 * 86400]
    usage_flush_interval = 10
  })
}

# Secrets are written but never read back, so ignore_absent_fields keeps Terraform from
# seeing them vanish. Lists are written sorted, as the engine stores them.
resource "vault_generic_endpoint" "ticketing" {
  path                 = "${vault_mount.integrations.path}/credentials/ticketing"
  ignore_absent_fields = true
  data_json = jsonencode({
    type        = "basic"
    username    = "svc-ticketing"
    password    = var.ticketing_password
    description = "ITSM service account"
    tags        = ["itsm", "prod"]
    used_by     = [var.integration_name]
  })
  depends_on = [vault_generic_endpoint.config]
}

resource "vault_generic_endpoint" "monitoring" {
  path                 = "${vault_mount.integrations.path}/credentials/monitoring"
  ignore_absent_fields = true
  data_json = jsonencode({
    type          = "bearer"
    token         = var.monitoring_token
    url           = "https://monitoring.example.com/api"
    header_prefix = "Bearer"
    tags          = ["prod"]
  })
}

resource "vault_generic_endpoint" "alerts_webhook" {
  path                 = "${vault_mount.integrations.path}/credentials/alerts-webhook"
  ignore_absent_fields = true
  data_json = jsonencode({
    type = "webhook"
    url  = "https://hooks.example.com/services/alerts"
  })
}

resource "vault_generic_endpoint" "graph" {
  path                 = "${vault_mount.integrations.path}/credentials/graph"
  ignore_absent_fields = true
  data_json = jsonencode({
    type          = "m365"
    tenant        = "contoso.onmicrosoft.com"
    client_id     = "00000000-0000-0000-0000-000000000001"
    client_secret = var.graph_client_secret
    scopes        = ["https://graph.microsoft.com/.default"]
  })
}

# What the integration itself reads: working material, minted or handed out on demand.
data "vault_generic_secret" "ticketing_access" {
  path       = "${vault_mount.integrations.path}/access/ticketing"
  depends_on = [vault_generic_endpoint.ticketing]
}

# Administrators manage credentials and settings but cannot pull secrets out: access/
# is for integrations.
resource "vault_policy" "admin" {
  name   = "integrations-admin"
  policy = <<-EOT
    path "${vault_mount.integrations.path}/config" {
      capabilities = ["create", "read", "update", "delete"]
    }
    path "${vault_mount.integrations.path}/credentials/*" {
      capabilities = ["create", "read", "update", "patch", "delete", "list"]
    }
    path "${vault_mount.integrations.path}/credentials" {
      capabilities = ["list"]
    }
    path "${vault_mount.integrations.path}/device-accounts" {
      capabilities = ["update"]
    }
    path "${vault_mount.integrations.path}/lookup" {
      capabilities = ["read"]
    }
    path "${vault_mount.integrations.path}/types" {
      capabilities = ["list"]
    }
    path "${vault_mount.integrations.path}/types/*" {
      capabilities = ["read"]
    }
    path "${vault_mount.integrations.path}/alerts" {
      capabilities = ["read"]
    }
    path "${vault_mount.integrations.path}/access/*" {
      capabilities = ["deny"]
    }
  EOT
}

# An integration may read its own credential and nothing else.
resource "vault_policy" "integration" {
  name   = "integration-${var.integration_name}"
  policy = <<-EOT
    path "${vault_mount.integrations.path}/access/ticketing" {
      capabilities = ["read"]
    }
  EOT
}
