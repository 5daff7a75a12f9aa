# A regional, private GKE cluster: nodes have no public IPs, the API server's public
# endpoint is off by default, Workload Identity replaces node credentials, Dataplane
# V2 enforces NetworkPolicies, nodes are shielded, upgrades follow a release channel.

resource "google_container_cluster" "main" {
  # checkov:skip=CKV_GCP_69: the metadata server is set per node pool; this cluster's default pool is removed at creation, and the managed pool (nodepool.tf) runs GKE_METADATA, which the same check passes there.
  # checkov:skip=CKV_GCP_65: Google Groups for RBAC needs a Google Workspace or Cloud Identity domain with a gke-security-groups group; set cluster.rbac_security_group where one exists.
  project             = var.project_id
  name                = "${var.prefix}-gke"
  location            = var.region
  network             = var.network.network
  subnetwork          = var.network.subnet
  deletion_protection = var.cluster.deletion_protection
  resource_labels     = var.labels

  # The default pool is replaced by the managed pool in nodepool.tf.
  remove_default_node_pool = true
  initial_node_count       = 1

  networking_mode   = "VPC_NATIVE"
  datapath_provider = "ADVANCED_DATAPATH"
  # Dataplane V2 enforces NetworkPolicies itself; the older Calico add-on must stay off.
  network_policy {
    enabled = false
  }
  ip_allocation_policy {
    cluster_secondary_range_name  = var.network.pods_range
    services_secondary_range_name = var.network.services_range
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = var.cluster.enable_private_endpoint
    master_ipv4_cidr_block  = var.cluster.master_ipv4_cidr_block
    master_global_access_config {
      enabled = true
    }
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.cluster.master_authorized_ranges
      content {
        display_name = cidr_blocks.key
        cidr_block   = cidr_blocks.value
      }
    }
  }

  dynamic "authenticator_groups_config" {
    for_each = var.cluster.rbac_security_group == null ? [] : [var.cluster.rbac_security_group]
    content {
      security_group = authenticator_groups_config.value
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  release_channel {
    channel = var.cluster.release_channel
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true

  # Admission follows the project's Binary Authorization policy. The caller enables
  # binaryauthorization.googleapis.com first (envs/dev services.tf); until a policy is
  # written the project's default one admits every image, so this turns enforcement
  # on without blocking the first deploy.
  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  addons_config {
    http_load_balancing {
      disabled = false
    }
    horizontal_pod_autoscaling {
      disabled = false
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    # HPA, DEPLOYMENT and POD: GKE's kube state metrics, for the drop dashboard's
    # pods-against-the-HPA panel (deploy/monitoring/panels.json).
    enable_components = ["SYSTEM_COMPONENTS", "HPA", "DEPLOYMENT", "POD"]
    managed_prometheus {
      enabled = true
    }
  }

  security_posture_config {
    mode               = "BASIC"
    vulnerability_mode = "VULNERABILITY_BASIC"
  }

  maintenance_policy {
    daily_maintenance_window {
      start_time = "03:00"
    }
  }
}
