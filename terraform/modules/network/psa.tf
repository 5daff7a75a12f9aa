# Private Service Access: a reserved range peered to Google's service producer
# network, so Cloud SQL and Memorystore get private IPs inside this VPC and nothing else.

resource "google_compute_global_address" "psa" {
  project       = var.project_id
  name          = "${var.prefix}-psa"
  network       = google_compute_network.vpc.id
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  address       = split("/", var.ip_ranges.psa)[0]
  prefix_length = tonumber(split("/", var.ip_ranges.psa)[1])
}

resource "google_service_networking_connection" "psa" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.psa.name]
}
