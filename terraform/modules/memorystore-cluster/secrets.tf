# The connection string the functions read as DROPGATE_REDIS_URL (rediss://, the
# discovery endpoint; the cluster client learns every node from it) and the cluster's
# server CA (the file DROPGATE_REDIS_CA_FILE names), both in Secret Manager, readable
# only by the members in var.secret_accessors. transit_encryption_mode =
# TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION (main.tf) makes every node serve TLS
# only, with a certificate from that CA.

locals {
  # No password: the cluster has no AUTH (main.tf says why). No database number
  # either: a cluster has database 0 only.
  redis_url = format(
    "rediss://%s:%d",
    google_redis_cluster.queue.discovery_endpoints[0].address,
    google_redis_cluster.queue.discovery_endpoints[0].port,
  )
  # for_each runs over these static names, never over the values.
  secret_names = ["redis-ca", "redis-url"]
  secret_values = {
    redis-url = local.redis_url
    # Each entry of ca_certs is one chain; during a CA rotation Memorystore lists the
    # old and the new one, and this bundle trusts whichever the nodes present.
    redis-ca = join("\n", flatten([for chain in google_redis_cluster.queue.managed_server_ca[0].ca_certs : chain.certificates]))
  }
  secret_access = merge([
    for name in local.secret_names : {
      for key, member in var.secret_accessors : "${name} ${key}" => { name = name, member = member }
    }
  ]...)
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

resource "google_secret_manager_secret_iam_member" "redis" {
  for_each  = local.secret_access
  project   = var.project_id
  secret_id = google_secret_manager_secret.redis[each.value.name].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
