# Outputs of the iam module, as maps keyed like var.service_accounts.

output "emails" {
  description = "Service account emails, by workload key."
  value       = { for k, sa in google_service_account.workload : k => sa.email }
}

output "ids" {
  description = "Service account resource ids (projects/.../serviceAccounts/...), by workload key; Workload Identity bindings attach to these."
  value       = { for k, sa in google_service_account.workload : k => sa.name }
}

output "members" {
  description = "IAM members (`serviceAccount:<email>`), by workload key."
  value       = { for k, sa in google_service_account.workload : k => sa.member }
}

output "repository" {
  description = "The image repository: `id`, and `url`, the Docker prefix to tag and push images with."
  value = {
    id  = google_artifact_registry_repository.images.id
    url = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  }
}
