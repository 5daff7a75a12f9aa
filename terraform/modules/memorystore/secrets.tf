# The connection string the functions read as DROPGATE_REDIS_URL (rediss://, with the
# AUTH string, database 0) and the instance's server CA (the file
# DROPGATE_REDIS_CA_FILE names), both in Secret Manager, readable only by the members
# in var.secret_accessors. transit_encryption_mode = SERVER_AUTHENTICATION (main.tf)
# makes the instance serve TLS only, with a certificate from that CA.

locals {
  # Memorystore AUTH takes the password alone (no ACL user name), hence the empty user.
  redis_url = format(
    "rediss://:%s@%s:%d/0",
    google_redis_instance.queue.auth_string,
    google_redis_instance.queue.host,
    google_redis_instance.queue.port,
  )
  # for_each runs over these static names, never over the (sensitive) values.
  secret_names = ["redis-ca", "redis-url"]
  secret_values = {
    redis-url = local.redis_url
    # Normally one CA (server_ca_certs[0]); during a CA rotation Memorystore lists the
    # old and the new one, and this bundle trusts whichever the instance presents.
    redis-ca = join("\n", [for c in google_redis_instance.queue.server_ca_certs : c.cert])
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
