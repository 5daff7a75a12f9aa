# What `gcloud builds submit --config deploy/cloudbuild.yaml` needs besides the image
# repository (modules/iam): a bucket the source archive is uploaded to, readable by the
# build's own service account. Builds run as that service account (user-specified,
# least privilege), which must be able to read the uploaded source; this bucket grants
# exactly that, where the default staging bucket would need a grant made outside
# Terraform.

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62: the bucket holds only source archives that are reproducible from git; Cloud Audit Logs record who writes them, and a second bucket for usage logs would add nothing.
  # checkov:skip=CKV_GCP_78: each archive is written once per build and deleted after source_retention_days; object versions would keep copies of reproducible archives.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.prefix}-build-source"
  location                    = var.region
  labels                      = var.labels
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only build inputs live here; destroying the environment may take them along.
  force_destroy = true

  lifecycle_rule {
    condition {
      age = var.source_retention_days
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_iam_member" "builder" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = var.builder_member
}
