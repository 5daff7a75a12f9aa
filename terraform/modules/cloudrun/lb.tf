# The public entry: a global external Application Load Balancer (HTTPS only, modern
# TLS policy, Google-managed certificate, optional Cloud Armor) with a serverless NEG
# pointing at the one service whose ingress admits load balancer traffic.

locals {
  lb_count = var.load_balancer == null ? 0 : 1
}

resource "google_compute_region_network_endpoint_group" "public" {
  count                 = local.lb_count
  project               = var.project_id
  name                  = "${var.prefix}-public"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = google_cloud_run_v2_service.function[var.load_balancer.service].name
  }
}

resource "google_compute_backend_service" "public" {
  count                 = local.lb_count
  project               = var.project_id
  name                  = "${var.prefix}-public"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = var.load_balancer.security_policy
  backend {
    group = google_compute_region_network_endpoint_group.public[0].id
  }
  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "public" {
  count           = local.lb_count
  project         = var.project_id
  name            = "${var.prefix}-public"
  default_service = google_compute_backend_service.public[0].id
}

resource "google_compute_managed_ssl_certificate" "public" {
  count   = local.lb_count
  project = var.project_id
  name    = "${var.prefix}-public"
  managed {
    domains = var.load_balancer.domains
  }
}

resource "google_compute_ssl_policy" "public" {
  count           = local.lb_count
  project         = var.project_id
  name            = "${var.prefix}-public"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "public" {
  count            = local.lb_count
  project          = var.project_id
  name             = "${var.prefix}-public"
  url_map          = google_compute_url_map.public[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.public[0].id]
  ssl_policy       = google_compute_ssl_policy.public[0].id
}

resource "google_compute_global_address" "public" {
  count   = local.lb_count
  project = var.project_id
  name    = "${var.prefix}-public"
}

resource "google_compute_global_forwarding_rule" "https" {
  count                 = local.lb_count
  project               = var.project_id
  name                  = "${var.prefix}-https"
  target                = google_compute_target_https_proxy.public[0].id
  ip_address            = google_compute_global_address.public[0].address
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}

# Anyone may invoke the public service, but only through the load balancer (its
# ingress setting); queue-api authenticates every request itself (JWT).
resource "google_cloud_run_v2_service_iam_member" "public" {
  count    = local.lb_count
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.function[var.load_balancer.service].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
