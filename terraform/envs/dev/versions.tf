# Terraform, providers and state for the dev environment.

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    # 6.40: modules/memorystore-cluster reads the cluster's server CA, exported from
    # there on (Terraform applies a module's constraint whether or not it is counted in).
    google = {
      source  = "hashicorp/google"
      version = ">= 6.40.0, < 8.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0.0, < 5.0.0"
    }
  }

  # Remote state in a GCS bucket, configured at init (a partial configuration): state
  # holds secrets (the Redis AUTH string, the database password, the in-cluster Redis
  # CA key, the seed key), so it never stays on a laptop. docs/deploy.md creates the
  # bucket, then:
  #   terraform init -backend-config=bucket=<project>-tfstate
  # The prefix keeps environments apart in one bucket.
  backend "gcs" {
    prefix = "dropgate/dev"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
