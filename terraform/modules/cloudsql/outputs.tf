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
  description = "Secret Manager secret ids, by role: `database-url` (DATABASE_URL) and `db-password`."
  value       = { for k, s in google_secret_manager_secret.database : k => s.secret_id }
}
