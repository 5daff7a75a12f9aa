# Memorystore for Redis, reachable only through Private Service Access, with AUTH and
# in-transit TLS on.
#
# Persistence is RDB snapshots, the only mode Memorystore for Redis offers (the
# in-cluster StatefulSet uses AOF instead). Draw outcomes are recorded in PostgreSQL
# and admissions in Kafka, so a snapshot's age bounds only how much of the waiting
# line and of the mirrored results a loss of the whole instance could take back.
# STANDARD_HA adds an asynchronous replica in another zone with automatic failover,
# which covers zone and node failures without falling back to a snapshot.

resource "google_redis_instance" "queue" {
  project            = var.project_id
  name               = "${var.prefix}-redis"
  display_name       = "${var.prefix} dropgate queue state"
  region             = var.region
  tier               = var.config.tier
  memory_size_gb     = var.config.memory_size_gb
  redis_version      = var.config.redis_version
  authorized_network = var.network.id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  reserved_ip_range  = var.network.psa_range
  labels             = var.labels

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = var.config.rdb_snapshot_period
  }

  redis_configs = {
    # Queue state must never be evicted to make room: a full instance must refuse
    # writes (queue-api answers 503) rather than silently drop waiting users.
    "maxmemory-policy" = "noeviction"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "TUESDAY"
      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }

  # Referencing the peering in a precondition orders this instance after it: the
  # reserved range exists before the peering does, so the range alone is not enough.
  lifecycle {
    precondition {
      condition     = var.network.psa_connection != ""
      error_message = "The Private Service Access connection must exist before the instance."
    }
  }
}
