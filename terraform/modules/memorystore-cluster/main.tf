# Memorystore for Redis Cluster: the queue state sharded over several primaries, each
# with replicas in other zones, reachable only through Private Service Connect
# endpoints in the dropgate VPC, with in-transit TLS on.
#
# One Memorystore instance has one primary, which carries every event's line: several
# large drops at once, or one drop past what a single primary serves, need more. The
# functions keep all of an event's keys in one hash slot, so each script and
# transaction runs on one shard, and different events spread over the shards.
#
# No AUTH (AUTH_MODE_DISABLED). Memorystore Cluster offers IAM authentication or none,
# and IAM authentication takes a short-lived OAuth access token as the password of
# every new connection, while the functions can only send the static password of
# DROPGATE_REDIS_URL. Until they can, the network is the lock: the endpoints have
# private addresses in the dropgate VPC only (Private Service Connect, no public
# address), so only what runs there reaches them, and every connection is TLS checked
# against the cluster's own CA. The next step is AUTH_MODE_IAM_AUTH, once the functions
# fetch an access token for their service account and refresh it as the password of
# each new connection.
#
# Persistence is AOF (fsync every second by default), as in the in-cluster
# StatefulSet. A primary that fails over to its replica (another zone) loses only what
# had not reached the replica yet; a shard lost with all its nodes comes back from its
# append-only file, so at most the last fsync interval of the waiting line and of the
# mirrored results (draw outcomes live in PostgreSQL, admissions in Kafka).

# Memorystore creates the cluster's PSC endpoints itself, in the subnet this policy
# names. There is one policy per VPC, region and service class: another Memorystore
# Cluster in this VPC and region would use this one.
resource "google_network_connectivity_service_connection_policy" "redis" {
  project       = var.project_id
  name          = "${var.prefix}-redis-cluster"
  location      = var.region
  service_class = "gcp-memorystore-redis"
  description   = "Private Service Connect endpoints of the ${var.prefix} Memorystore for Redis Cluster in the private subnet."
  network       = var.network.id
  labels        = var.labels
  psc_config {
    subnetworks = [var.network.subnet]
  }
}

resource "google_redis_cluster" "queue" {
  project       = var.project_id
  name          = "${var.prefix}-redis-cluster"
  region        = var.region
  shard_count   = var.config.shard_count
  replica_count = var.config.replica_count
  node_type     = var.config.node_type

  # See the top of this file: IAM authentication needs a token refresh the functions
  # do not do yet; PSC and TLS keep the cluster private meanwhile.
  authorization_mode          = "AUTH_MODE_DISABLED"
  transit_encryption_mode     = "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"
  deletion_protection_enabled = var.config.deletion_protection

  psc_configs {
    network = var.network.id
  }

  # Each shard's replicas sit in zones other than its primary's, so a zone outage
  # fails shards over instead of taking them down.
  zone_distribution_config {
    mode = "MULTI_ZONE"
  }

  persistence_config {
    mode = "AOF"
    aof_config {
      append_fsync = var.config.aof_append_fsync
    }
  }

  redis_configs = {
    # Queue state must never be evicted to make room: a full shard must refuse writes
    # (queue-api answers 503) rather than silently drop waiting users.
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

  # Without the policy Memorystore has nowhere to put the endpoints and the creation
  # fails; on destroy the policy must outlive the cluster's endpoints.
  depends_on = [google_network_connectivity_service_connection_policy.redis]
}
