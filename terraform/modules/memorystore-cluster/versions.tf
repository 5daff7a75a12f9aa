# Terraform and provider versions this module needs (google >= 6.40: the cluster's
# server CA, `managed_server_ca`, is exported from there on; the other modules need
# 6.30).

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.40.0, < 8.0.0"
    }
  }
}
