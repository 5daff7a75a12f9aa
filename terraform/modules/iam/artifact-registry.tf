# The Docker repository for dropgate's two images (services and admin). Tags are
# immutable, so a tag always means the same build; old untagged versions are cleaned up.

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: images hold no secrets (config and credentials come from Secret Manager at run time), so Google-managed encryption suffices; a customer-managed key would add a KMS key ring and its rotation duties to every environment.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry.repository_id
  description   = "dropgate container images"
  format        = "DOCKER"
  labels        = var.labels
  docker_config {
    immutable_tags = true
  }
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state = "UNTAGGED"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.artifact_registry.keep_recent
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "readers" {
  for_each   = toset(var.artifact_registry.readers)
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.workload[each.key].member
}

# Writers push new tags (Cloud Build); immutable tags keep them from moving old ones.
resource "google_artifact_registry_repository_iam_member" "writers" {
  for_each   = toset(var.artifact_registry.writers)
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.workload[each.key].member
}
