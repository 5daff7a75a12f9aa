# Terraform and provider versions this module needs (google >= 6.41: Managed Kafka
# ACLs, google_managed_kafka_acl, are there).

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.41.0, < 8.0.0"
    }
  }
}
