# Terraform and provider versions this module needs (google >= 6.30, as every module
# here).

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.30.0, < 8.0.0"
    }
  }
}
