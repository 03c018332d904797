variable "plugin_sha256" {
  description = "SHA-256 of the plugin binary in the server's plugin directory."
  type        = string
}

variable "plugin_version" {
  description = "Version the plugin reports (the VERSION file, with a leading v)."
  type        = string
  default     = "v0.1.0"
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
