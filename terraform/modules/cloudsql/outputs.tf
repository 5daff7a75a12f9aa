# Outputs of the cloudsql module.

output "iam_users" {
  description = "Database user names of the IAM-authenticated service accounts, by workload key."
  value       = { for k, u in google_sql_user.iam : k => u.name }
}

output "instance" {
  description = "The instance: `name`, `connection_name` (project:region:name) and `private_ip`."
  value = {
    name            = google_sql_database_instance.primary.name
    connection_name = google_sql_database_instance.primary.connection_name
    private_ip      = google_sql_database_instance.primary.private_ip_address
  }
}

output "secret_ids" {
  description = "Secret Manager secret ids, by role: `database-url` (the functions' DATABASE_URL), `database-migrate-url` (the migration job's DATABASE_URL), `database-ca` (the server CA in PEM, for DROPGATE_DATABASE_CA_FILE) and `db-password`. Available only once every secret has its version and its accessors, so a workload that refers to one never starts before it can read it."
  value       = { for k, s in google_secret_manager_secret.database : k => s.secret_id }
  depends_on = [
    google_secret_manager_secret_iam_member.database,
    google_secret_manager_secret_version.database,
  ]
}

output "users" {
  description = "The built-in users: `runtime` (goods-worker, the admitter and the operator CLI; the migration job grants it dropgate_runtime, for DROPGATE_DATABASE_RUNTIME_USERS) and `migrate` (the migration job, owner of the schema)."
  value = {
    runtime = google_sql_user.app.name
    migrate = google_sql_user.migrate.name
  }
}
