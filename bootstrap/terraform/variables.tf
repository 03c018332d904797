variable "register_plugin" {
  description = <<-EOT
    Whether this configuration registers the plugin version (vault_plugin). Default true:
    it registers it, and `terraform destroy` then DEREGISTERS that version from Vault's
    plugin catalog, so every other mount running it (make dev's integrations/, say) fails
    at its next reload with "plugin not found in the catalog". Set it to false when the
    version is already registered by someone else (make dev registers it; dev.tfvars sets
    false): Terraform then only uses the version, and destroy leaves the catalog alone.
  EOT
  type        = bool
  default     = true
}

variable "plugin_sha256" {
  description = "SHA-256 of the plugin binary in the server's plugin directory (required when register_plugin is true)."
  type        = string
  default     = ""
}

variable "plugin_version" {
  description = "Version the plugin reports (the VERSION file, with a leading v); the mount runs it."
  type        = string
  default     = "v0.2.0"
}

variable "mount_path" {
  description = "Where to mount the engine."
  type        = string
  default     = "integrations"
}

variable "integration_name" {
  description = "Name of the example integration that reads the ticketing credential."
  type        = string
  default     = "alert-forwarder"
}

variable "ticketing_password" {
  type      = string
  sensitive = true
  default   = "change-me-ticketing"
}

variable "monitoring_token" {
  type      = string
  sensitive = true
  default   = "change-me-monitoring"
}

variable "graph_client_secret" {
  type      = string
  sensitive = true
  default   = "change-me-graph"
}
