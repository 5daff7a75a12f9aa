# What the GKE Ingress in deploy/k8s refers to by name: a reserved global address
# (so DNS never has to follow a new IP) and a modern TLS policy. Both are named
# <prefix>-ingress; the overlays put those names in their annotations.

resource "google_compute_global_address" "ingress" {
  project = var.project_id
  name    = "${var.prefix}-ingress"
}

resource "google_compute_ssl_policy" "ingress" {
  project         = var.project_id
  name            = "${var.prefix}-ingress"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}
