# Inputs of the cloudsql module, alphabetical.

variable "config" {
  description = "Instance shape and protection: `tier` (a custom or predefined Enterprise tier), `high_availability` (REGIONAL: a standby in another zone), `disk_size_gb` (autoresized from there), `backup_retention` (daily backups kept), `log_retention_days` (write-ahead log kept for point-in-time recovery, 1 to 7), `deletion_protection`."
  type = object({
    tier                = optional(string, "db-custom-2-7680")
    high_availability   = optional(bool, true)
    disk_size_gb        = optional(number, 20)
    backup_retention    = optional(number, 14)
    log_retention_days  = optional(number, 7)
    deletion_protection = optional(bool, true)
  })
  nullable = false
  default  = {}
  validation {
    condition     = can(regex("^db-", var.config.tier))
    error_message = "tier must be a Cloud SQL tier such as db-custom-2-7680."
  }
  validation {
    condition     = var.config.disk_size_gb >= 10
    error_message = "disk_size_gb must be at least 10."
  }
  validation {
    condition     = var.config.backup_retention >= 1 && var.config.backup_retention <= 365
    error_message = "backup_retention must be between 1 and 365 backups."
  }
  validation {
    condition     = var.config.log_retention_days >= 1 && var.config.log_retention_days <= 7
    error_message = "log_retention_days must be between 1 and 7 (Enterprise edition limit)."
  }
}

variable "database" {
  description = "Name of the application database, of the built-in (password) `user` goods-worker, the admitter and the operator CLI log in as (rows only: the migration job grants it dropgate_runtime), and of the `migrate_user` the migration job alone logs in as, which owns the schema."
  type = object({
    name         = optional(string, "dropgate")
    user         = optional(string, "dropgate")
    migrate_user = optional(string, "dropgate_migrate")
  })
  nullable = false
  default  = {}
  validation {
    condition     = alltrue([for name in [var.database.name, var.database.user, var.database.migrate_user] : can(regex("^[a-z][a-z0-9_]{0,62}$", name))]) && var.database.user != var.database.migrate_user
    error_message = "Database and user names must be lowercase letters, digits and underscores, starting with a letter, and the migration user must not be the functions' user."
  }
}

variable "iam_users" {
  description = "Service account emails that log in with IAM database authentication (cloudsql.iam_authentication) instead of the password, keyed by a name known at plan time (the workload)."
  type        = map(string)
  nullable    = false
  default     = {}
  validation {
    condition     = alltrue([for k, e in var.iam_users : endswith(e, ".gserviceaccount.com")])
    error_message = "iam_users must be service account emails."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "migrate_secret_accessors" {
  description = "IAM members (`serviceAccount:...`) allowed to read the migration user's URL (`database-migrate-url`) and the CA: the migration job's identity alone. Keyed by a name known at plan time."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "network" {
  description = "Where the instance attaches: `id` of the VPC, `psa_range` (name of the allocated Private Service Access range) and `psa_connection` (id of the peering, for ordering)."
  type = object({
    id             = string
    psa_range      = string
    psa_connection = string
  })
  nullable = false
}

variable "prefix" {
  description = "Prefix of every resource name."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of the project that holds the instance."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the instance."
  type        = string
  nullable    = false
}

variable "secret_accessors" {
  description = "IAM members (`serviceAccount:...`) allowed to read the functions' database URL, password and CA secrets: the functions that use PostgreSQL (goods-worker and the admitter) and the operator CLI. Keyed by a name known at plan time (the workload), since the members themselves may not be."
  type        = map(string)
  nullable    = false
  default     = {}
}
