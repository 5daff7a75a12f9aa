# Outputs of the cloud-armor module.

output "policy" {
  description = "The edge security policy: `id` (for a backend service's security_policy) and `name` (for a GKE BackendConfig's securityPolicy)."
  value = {
    id   = google_compute_security_policy.edge.id
    name = google_compute_security_policy.edge.name
  }
}
