# The functions' password and DATABASE_URL, the migration user's URL and the
# instance's server CA in Secret Manager: the functions' secrets readable only by the
# members in var.secret_accessors, the migration URL only by those in
# var.migrate_secret_accessors.
#
# The URL asks for sslmode=verify-ca: the client checks that the server certificate
# chains to the instance's CA (the database-ca secret, mounted as the file
# DROPGATE_DATABASE_CA_FILE names), but not the host name, because Cloud SQL's
# per-instance server certificate names the instance, not the private IP the URL
# connects to; verify-full would reject it. Only this instance holds a certificate
# from this CA, so verify-ca still proves the peer is this instance.

locals {
  database_url = format(
    "postgres://%s:%s@%s:5432/%s?sslmode=verify-ca",
    var.database.user,
    random_password.app.result,
    google_sql_database_instance.primary.private_ip_address,
    var.database.name,
  )
  migrate_url = format(
    "postgres://%s:%s@%s:5432/%s?sslmode=verify-ca",
    var.database.migrate_user,
    random_password.migrate.result,
    google_sql_database_instance.primary.private_ip_address,
    var.database.name,
  )
  # for_each runs over these static names, never over the (sensitive) values.
  secret_names = ["database-ca", "database-url", "db-password", "database-migrate-url"]
  secret_values = {
    database-ca          = google_sql_database_instance.primary.server_ca_cert[0].cert
    database-url         = local.database_url
    db-password          = random_password.app.result
    database-migrate-url = local.migrate_url
  }
  # Who reads which secret: the functions' secrets for var.secret_accessors; the
  # migration URL for var.migrate_secret_accessors alone; the CA for both.
  secret_readers = {
    database-ca          = merge(var.secret_accessors, { for k, m in var.migrate_secret_accessors : "migrate ${k}" => m })
    database-url         = var.secret_accessors
    db-password          = var.secret_accessors
    database-migrate-url = var.migrate_secret_accessors
  }
  secret_access = merge([
    for name in local.secret_names : {
      for key, member in local.secret_readers[name] : "${name} ${key}" => { name = name, member = member }
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
