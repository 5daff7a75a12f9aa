# The application database, its built-in user (password generated here, kept in
# Secret Manager) and one IAM user per service account in var.iam_users.

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

resource "google_sql_user" "iam" {
  for_each = var.iam_users
  project  = var.project_id
  instance = google_sql_database_instance.primary.name
  # Cloud SQL names a service account's database user by its email without the suffix.
  name = trimsuffix(each.value, ".gserviceaccount.com")
  type = "CLOUD_IAM_SERVICE_ACCOUNT"
}
