# The one node pool: autoscaled, auto-repaired and auto-upgraded, shielded COS nodes
# with the GKE metadata server (so pods see only their Workload Identity).

resource "google_container_node_pool" "default" {
  project  = var.project_id
  name     = "${var.prefix}-pool"
  cluster  = google_container_cluster.main.id
  location = var.region

  autoscaling {
    location_policy      = "BALANCED"
    total_min_node_count = var.node_pool.min_nodes
    total_max_node_count = var.node_pool.max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.node_pool.machine_type
    disk_size_gb    = var.node_pool.disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    spot            = var.node_pool.spot
    service_account = var.node_service_account
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = var.labels
    tags            = ["${var.prefix}-gke-node"]
    metadata = {
      disable-legacy-endpoints = "true"
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}
