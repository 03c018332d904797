output "mount_path" {
  value = vault_mount.integrations.path
}

output "integration_policy" {
  value = vault_policy.integration.name
}

output "admin_policy" {
  value = vault_policy.admin.name
}

output "ticketing_authorization" {
  description = "The ready Authorization header value the integration gets."
  value       = data.vault_generic_secret.ticketing_access.data["authorization"]
  sensitive   = true
}
