# Lets each Kubernetes service account act as its Google service account. Created
# after the cluster, since the identity pool exists only once a cluster uses it.

resource "google_service_account_iam_member" "workload_identity" {
  for_each           = var.workload_identity
  service_account_id = each.value.service_account_id
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${google_container_cluster.main.workload_identity_config[0].workload_pool}[${each.value.namespace}/${each.value.ksa}]"
}
