# Beside `make dev`: its Vault already has the plugin version registered and mounted at
# integrations/. This configuration mounts its own copy at integrations-tf/ and leaves
# the plugin catalog alone, so `terraform destroy` removes only what it created.
#
#   terraform apply -var-file=dev.tfvars
register_plugin = false
mount_path      = "integrations-tf"
