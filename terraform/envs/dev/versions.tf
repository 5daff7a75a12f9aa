# Terraform, providers and state for the dev environment.

terraform {
  required_version = ">= 1.9.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.30.0, < 8.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }

  # Remote state. Without this block state stays in a local terraform.tfstate file,
  # which holds secrets (the Redis AUTH string, the database password): fine for a
  # first try, not for a team. To switch, create a versioned bucket once:
  #   gcloud storage buckets create gs://<project>-tfstate --location=<region> \
  #     --uniform-bucket-level-access --public-access-prevention
  #   gcloud storage buckets update gs://<project>-tfstate --versioning
  # then uncomment the block, set the bucket, and run `terraform init -migrate-state`.
  #
  # backend "gcs" {
  #   bucket = "<project>-tfstate"
  #   prefix = "dropgate/dev"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
