# Outputs of the gke module.

output "cluster" {
  description = "The cluster: `name`, `location`, `endpoint` (private unless enable_private_endpoint is false) and `workload_pool`."
  value = {
    name          = google_container_cluster.main.name
    location      = google_container_cluster.main.location
    endpoint      = google_container_cluster.main.endpoint
    workload_pool = google_container_cluster.main.workload_identity_config[0].workload_pool
  }
}

output "get_credentials" {
  description = "The gcloud command that writes a kubeconfig entry for the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.main.name} --region ${var.region} --project ${var.project_id}${var.cluster.enable_private_endpoint ? " --internal-ip" : ""}"
}

output "ingress" {
  description = "Names the Ingress annotations use: the reserved global `address_name` (and its `address`, for DNS) and the `ssl_policy`."
  value = {
    address_name = google_compute_global_address.ingress.name
    address      = google_compute_global_address.ingress.address
    ssl_policy   = google_compute_ssl_policy.ingress.name
  }
}
