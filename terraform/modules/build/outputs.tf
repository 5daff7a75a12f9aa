# Outputs of the build module.

output "source_bucket" {
  description = "The source staging bucket: `name`, and `staging_dir`, the value for `gcloud builds submit --gcs-source-staging-dir`."
  value = {
    name        = google_storage_bucket.source.name
    staging_dir = "${google_storage_bucket.source.url}/source"
  }
  # A build submitted before the grant would fail to fetch its source.
  depends_on = [google_storage_bucket_iam_member.builder]
}
