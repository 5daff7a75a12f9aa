# Outputs of the cloudrun module.

output "jobs" {
  description = "Job names, by job key."
  value       = { for k, j in google_cloud_run_v2_job.job : k => j.name }
}

output "load_balancer" {
  description = "The public load balancer: `address` (point the domains' A records here) and `domains`; null without one."
  value = var.load_balancer == null ? null : {
    address = google_compute_global_address.public[0].address
    domains = var.load_balancer.domains
  }
}

output "services" {
  description = "The services, by function: `name` and `uri` (reachable only as their ingress allows)."
  value = {
    for k, s in google_cloud_run_v2_service.function : k => { name = s.name, uri = s.uri }
  }
}
