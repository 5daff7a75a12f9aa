# The password and the full DATABASE_URL in Secret Manager, readable only by the
# members in var.secret_accessors. TLS is required by the instance (sslmode=require).

locals {
  database_url = format(
    "postgres://%s:%s@%s:5432/%s?sslmode=require",
    var.database.user,
    random_password.app.result,
    google_sql_database_instance.primary.private_ip_address,
    var.database.name,
  )
  # for_each runs over these static names, never over the (sensitive) values.
  secret_names = ["database-url", "db-password"]
  secret_values = {
    database-url = local.database_url
    db-password  = random_password.app.result
  }
  secret_access = merge([
    for name in local.secret_names : {
      for key, member in var.secret_accessors : "${name} ${key}" => { name = name, member = member }
    }
  ]...)
}

resource "google_secret_manager_secret" "database" {
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

resource "google_secret_manager_secret_version" "database" {
  for_each    = toset(local.secret_names)
  secret      = google_secret_manager_secret.database[each.key].id
  secret_data = local.secret_values[each.key]
}

resource "google_secret_manager_secret_iam_member" "database" {
  for_each  = local.secret_access
  project   = var.project_id
  secret_id = google_secret_manager_secret.database[each.value.name].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
