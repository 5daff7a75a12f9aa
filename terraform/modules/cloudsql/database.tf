# The application database, its two built-in users (passwords generated here, kept in
# Secret Manager): the migration user, which owns the schema, and the functions' user,
# which the migration job grants dropgate_runtime (rows only); and one IAM user per
# service account in var.iam_users.

resource "random_password" "app" {
  length  = 32
  special = false
}

resource "google_sql_database" "app" {
  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  name     = var.database.name
}

resource "google_sql_user" "app" {
  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  name     = var.database.user
  password = random_password.app.result
}

resource "random_password" "migrate" {
  length  = 32
  special = false
}

# Only the migration job logs in as this user: it creates and owns every table, so the
# functions' user cannot alter or drop one, nor rewrite the record of migrations.
resource "google_sql_user" "migrate" {
  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  name     = var.database.migrate_user
  password = random_password.migrate.result
}

resource "google_sql_user" "iam" {
  for_each = var.iam_users
  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  # Cloud SQL names a service account's database user by its email without the suffix.
  name = trimsuffix(each.value, ".gserviceaccount.com")
  type = "CLOUD_IAM_SERVICE_ACCOUNT"
}
