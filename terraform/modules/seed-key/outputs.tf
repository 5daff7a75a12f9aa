# Outputs of the seed-key module.

output "secret_id" {
  description = "Secret Manager secret id of the seed key (64 lowercase hex digits; the file DROPGATE_SEED_KEY_FILE names). Available only once the secret has its version and its accessors, so a workload that mounts it never starts before it can read it."
  value       = google_secret_manager_secret.seed_key.secret_id
  depends_on = [
    google_secret_manager_secret_iam_member.seed_key,
    google_secret_manager_secret_version.seed_key,
  ]
}
