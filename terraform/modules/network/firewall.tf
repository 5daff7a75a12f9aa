# Ingress is denied by default (an explicit, logged rule just above the implied one);
# only Google's health checkers / L7 proxies and traffic from inside the VPC get in.
# GKE adds its own rules for the control plane; egress stays open through Cloud NAT.

locals {
  internal_ranges = [
    var.ip_ranges.private, var.ip_ranges.pods, var.ip_ranges.services, var.ip_ranges.proxy_only,
  ]
}

resource "google_compute_firewall" "ingress_deny_all" {
  project   = var.project_id
  name      = "${var.prefix}-ingress-deny-all"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65534
  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "ingress_allow_health_checks" {
  project   = var.project_id
  name      = "${var.prefix}-ingress-allow-health-checks"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 1000
  allow {
    protocol = "tcp"
    ports    = ["8080", "9090"]
  }
  source_ranges = var.health_check_ranges
  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "ingress_allow_internal" {
  project   = var.project_id
  name      = "${var.prefix}-ingress-allow-internal"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 1000
  allow {
    protocol = "tcp"
  }
  allow {
    protocol = "udp"
  }
  allow {
    protocol = "icmp"
  }
  source_ranges = local.internal_ranges
  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}
