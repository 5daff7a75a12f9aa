# Egress to the internet for private workloads (nothing in the VPC has an external
# IP): one Cloud Router and Cloud NAT for the private subnet only.

resource "google_compute_router" "nat" {
  project = var.project_id
  name    = "${var.prefix}-nat"
  region  = var.region
  network = google_compute_network.vpc.id
}

resource "google_compute_router_nat" "nat" {
  project                            = var.project_id
  name                               = "${var.prefix}-nat"
  region                             = var.region
  router                             = google_compute_router.nat.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"
  subnetwork {
    name                    = google_compute_subnetwork.private.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }
  log_config {
    enable = true
    filter = var.nat_logging
  }
}
