# Outputs of the network module: ids and names other modules attach to.

output "ids" {
  description = "Resource ids: `network` (the VPC), `private_subnet`, `proxy_only_subnet`."
  value = {
    network           = google_compute_network.vpc.id
    private_subnet    = google_compute_subnetwork.private.id
    proxy_only_subnet = google_compute_subnetwork.proxy_only.id
  }
}

output "ip_ranges" {
  description = "The CIDR blocks in use, by role (for NetworkPolicies and firewall rules elsewhere)."
  value       = var.ip_ranges
}

output "names" {
  description = "Resource names: `network`, `private_subnet`, the GKE secondary range names `pods_range` and `services_range`, and `psa_range` (the allocated PSA range)."
  value = {
    network        = google_compute_network.vpc.name
    private_subnet = google_compute_subnetwork.private.name
    pods_range     = "pods"
    services_range = "services"
    psa_range      = google_compute_global_address.psa.name
  }
}

output "psa_connection" {
  description = "The Private Service Access peering; depend on it before creating Cloud SQL or Memorystore."
  value       = google_service_networking_connection.psa.id
}
