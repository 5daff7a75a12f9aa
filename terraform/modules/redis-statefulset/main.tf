# What the in-cluster Redis (deploy/k8s/redis, redis_mode = statefulset) needs to
# serve TLS only and require AUTH, generated here because nothing in the cluster
# issues certificates: a private CA, a server certificate for the StatefulSet's stable
# DNS names, and the AUTH password. The functions trust that CA alone for Redis
# (DROPGATE_REDIS_CA_FILE) and verify the host name, which the certificate carries.
#
# The CA key never leaves Terraform state (which already holds every other secret of
# the environment); the server key and certificate go to Secret Manager (secrets.tf),
# from where the deploy copies them into the dropgate-redis Kubernetes Secret.

locals {
  # <pod>.<service>.<namespace>.svc.cluster.local first: DROPGATE_REDIS_URL uses it.
  dns_names = [
    "${var.kubernetes.statefulset}-0.${var.kubernetes.service}.${var.kubernetes.namespace}.svc.cluster.local",
    "${var.kubernetes.service}.${var.kubernetes.namespace}.svc.cluster.local",
  ]
}

resource "random_password" "auth" {
  length  = 48
  special = false
}

resource "tls_private_key" "ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  private_key_pem       = tls_private_key.ca.private_key_pem
  is_ca_certificate     = true
  validity_period_hours = var.tls.ca_validity_hours
  allowed_uses          = ["cert_signing", "crl_signing"]
  subject {
    common_name  = "${var.prefix} dropgate redis CA"
    organization = "dropgate"
  }
}

resource "tls_private_key" "server" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "server" {
  private_key_pem = tls_private_key.server.private_key_pem
  dns_names       = local.dns_names
  subject {
    common_name  = local.dns_names[0]
    organization = "dropgate"
  }
}

# Renewed by the first apply within early_renewal_hours of expiry; the new
# certificate reaches Redis when the dropgate-redis Secret is re-created from Secret
# Manager and the pod restarts (docs/deploy.md).
resource "tls_locally_signed_cert" "server" {
  cert_request_pem      = tls_cert_request.server.cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = var.tls.server_validity_hours
  early_renewal_hours   = var.tls.early_renewal_hours
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth"]
}
