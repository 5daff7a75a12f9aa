# The client side (redis-url, redis-ca: the same names and meaning as the memorystore
# module's) and the server side (AUTH line, certificate, key, CA) in Secret Manager.
# No workload reads them there: on GKE the deploy copies them into the dropgate-runtime
# and dropgate-redis Kubernetes Secrets, so no accessor is granted.

locals {
  redis_url = format(
    "rediss://:%s@%s:%d/0",
    random_password.auth.result,
    local.dns_names[0],
    var.kubernetes.port,
  )
  # for_each runs over these static names, never over the (sensitive) values.
  secret_names = ["redis-auth-conf", "redis-ca", "redis-tls-cert", "redis-tls-key", "redis-url"]
  secret_values = {
    # The line redis.conf includes (deploy/k8s/redis); the password is alphanumeric,
    # so it needs no quoting there.
    redis-auth-conf = "requirepass ${random_password.auth.result}\n"
    redis-ca        = tls_self_signed_cert.ca.cert_pem
    redis-tls-cert  = tls_locally_signed_cert.server.cert_pem
    redis-tls-key   = tls_private_key.server.private_key_pem
    redis-url       = local.redis_url
  }
}

resource "google_secret_manager_secret" "redis" {
  for_each  = toset(local.secret_names)
  project   = var.project_id
  secret_id = "${var.prefix}-${each.key}"
  labels    = var.labels
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_version" "redis" {
  for_each    = toset(local.secret_names)
  secret      = google_secret_manager_secret.redis[each.key].id
  secret_data = local.secret_values[each.key]
}
