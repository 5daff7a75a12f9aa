# PostgreSQL 16 on Cloud SQL: private IP only (no public IPv4), TLS required and
# verified by the clients against the instance's own server CA (secrets.tf), daily
# backups with point-in-time recovery, optional regional HA, IAM database login.

resource "google_sql_database_instance" "primary" {
  # checkov:skip=CKV_GCP_6: TLS is required (ssl_mode ENCRYPTED_ONLY); client certificates are not, because the functions authenticate with IAM or the Secret Manager password over that TLS and connect without the Cloud SQL connector that would manage certificates.
  # checkov:skip=CKV_GCP_79: PostgreSQL 16 is the version the migrations are written and tested against; a major upgrade is a deliberate, tested change, not a default.
  # checkov:skip=CKV2_GCP_13: log_duration writes a line for every statement; at tens of thousands of draws a second that costs more than the draws. Query Insights records slow statements instead.
  project             = var.project_id
  name                = "${var.prefix}-pg"
  region              = var.region
  database_version    = "POSTGRES_16"
  deletion_protection = var.config.deletion_protection

  settings {
    tier                        = var.config.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.config.high_availability ? "REGIONAL" : "ZONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.config.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.config.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled       = false
      private_network    = var.network.id
      allocated_ip_range = var.network.psa_range
      # TLS on every connection, without client certificates (the functions log in
      # with the password from Secret Manager over that TLS).
      ssl_mode = "ENCRYPTED_ONLY"
      # The per-instance, Google-managed CA: server_ca_cert holds exactly the CA the
      # clients verify against (DROPGATE_DATABASE_CA_FILE). Pinned so a change of
      # Cloud SQL's default cannot swap the CA under running clients.
      server_ca_mode = "GOOGLE_MANAGED_INTERNAL_CA"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.config.log_retention_days
      backup_retention_settings {
        retained_backups = var.config.backup_retention
        retention_unit   = "COUNT"
      }
    }

    # Written out one block per flag (not a dynamic block over a map) so static
    # analysis sees them. IAM login for the per-function service accounts; the rest is
    # the audit logging security baselines ask for. Only DDL and role changes are
    # logged as statements: logging every draw would flood the logs at 30,000/s.
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_min_messages"
      value = "warning"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = true
      record_client_address   = false
    }

    maintenance_window {
      day          = 2
      hour         = 3
      update_track = "stable"
    }
  }

  # Referencing the peering in a precondition orders this instance after it.
  lifecycle {
    precondition {
      condition     = var.network.psa_connection != ""
      error_message = "The Private Service Access connection must exist before the instance."
    }
  }
}
