# Inputs of the dev environment, alphabetical. terraform.tfvars.example shows a set.

variable "auth" {
  description = "How queue-api checks tokens and browsers: `jwks_url` (the identity provider's JSON Web Key Set), `issuer` and `audience` (required `iss` and `aud` claims), `algorithms` (comma-separated: RS256, ES256, EdDSA) and `cors_origins` (browser origins allowed to call the API; empty: no CORS). Used by the Cloud Run services; on GKE the same values go into the queue-api-config ConfigMap of the overlay."
  type = object({
    jwks_url     = string
    issuer       = string
    audience     = string
    algorithms   = optional(string, "RS256")
    cors_origins = optional(list(string), [])
  })
  nullable = false
  validation {
    condition     = startswith(var.auth.jwks_url, "https://")
    error_message = "auth.jwks_url must be an https:// URL: keys fetched over plain HTTP could be swapped in transit."
  }
  validation {
    condition     = length(var.auth.issuer) > 0 && length(var.auth.audience) > 0
    error_message = "auth.issuer and auth.audience must be set: tokens are checked against both."
  }
  validation {
    condition     = alltrue([for a in split(",", var.auth.algorithms) : contains(["RS256", "ES256", "EdDSA"], trimspace(a))])
    error_message = "auth.algorithms must list RS256, ES256 or EdDSA, comma-separated."
  }
  validation {
    condition     = alltrue([for o in var.auth.cors_origins : can(regex("^https?://[^/]+$", o))])
    error_message = "Every CORS origin is a scheme and host (and optional port) without a path, for example https://shop.example.com."
  }
}

variable "cloudsql" {
  description = "Cloud SQL shape and protection, passed to modules/cloudsql (see its `config`)."
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
}

variable "deployment_target" {
  description = "Where the functions run: `gke` (the private cluster and deploy/k8s), `cloudrun` (one Cloud Run service per function) or `both`. Valid combinations with redis_mode and transport: gke with memorystore, memorystore_cluster or statefulset, and kafka; cloudrun with memorystore or memorystore_cluster, and kafka or pubsub; both with memorystore or memorystore_cluster, and kafka."
  type        = string
  nullable    = false
  default     = "gke"
  validation {
    condition     = contains(["gke", "cloudrun", "both"], var.deployment_target)
    error_message = "deployment_target must be gke, cloudrun or both."
  }
}

variable "gke" {
  description = "GKE settings: `enable_private_endpoint` (no public API server address), `master_authorized_ranges` (name => CIDR), `master_ipv4_cidr_block` (a /28 for the control plane), `rbac_security_group` (optional Google Groups RBAC group), `release_channel`, node pool `machine_type`, `min_nodes`, `max_nodes`, `spot`, and `deletion_protection`."
  type = object({
    enable_private_endpoint  = optional(bool, true)
    master_authorized_ranges = optional(map(string), {})
    master_ipv4_cidr_block   = optional(string, "172.16.0.0/28")
    rbac_security_group      = optional(string)
    release_channel          = optional(string, "REGULAR")
    machine_type             = optional(string, "e2-standard-4")
    min_nodes                = optional(number, 3)
    max_nodes                = optional(number, 12)
    spot                     = optional(bool, false)
    deletion_protection      = optional(bool, true)
  })
  nullable = false
  default  = {}
}

variable "image_tag" {
  description = "Tag of the dropgate images in the environment's Artifact Registry repository (deploy/cloudbuild.yaml tags both images of a build, `dropgate` and `dropgate-admin`, with its commit SHA) that Terraform deploys to Cloud Run. Null, the default, until the first images are pushed: the Cloud Run services, the migration job and the Pub/Sub push subscriptions are created by the first apply that sets it. Later deploys roll images without Terraform (docs/deploy.md). Not used on GKE, where the overlay names the images."
  type        = string
  nullable    = true
  default     = null
  validation {
    condition     = var.image_tag == null || (can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest")
    error_message = "image_tag must be a valid Docker tag other than `latest` (tags are immutable in the repository), or null."
  }
}

variable "kafka" {
  description = "Managed Kafka sizing and access: `vcpu_count`, `memory_gib`, `partitions` of waiting-queue, result-notification and winners (the most consumers that share a topic), the `replication_factor` of every topic (the dead-letter topic has 3 partitions of its own), and `winners_readers`: the Kafka principals (`User:<service account email>`) of the checkout services allowed to read the winners topic (the ACLs close every topic to everyone they do not name)."
  type = object({
    vcpu_count         = optional(number, 3)
    memory_gib         = optional(number, 6)
    partitions         = optional(number, 6)
    replication_factor = optional(number, 3)
    winners_readers    = optional(list(string), [])
  })
  nullable = false
  default  = {}
  validation {
    condition     = alltrue([for member in var.kafka.winners_readers : startswith(member, "User:")])
    error_message = "kafka.winners_readers are Kafka principals: User:<service account email>."
  }
}

variable "labels" {
  description = "Extra labels put on every labelled resource (app = dropgate and environment = dev are always set; these override them)."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "memorystore" {
  description = "Memorystore shape (used when redis_mode is `memorystore`), passed to modules/memorystore (see its `config`)."
  type = object({
    tier                = optional(string, "STANDARD_HA")
    memory_size_gb      = optional(number, 5)
    redis_version       = optional(string, "REDIS_7_2")
    rdb_snapshot_period = optional(string, "ONE_HOUR")
  })
  nullable = false
  default  = {}
}

variable "memorystore_cluster" {
  description = "Memorystore for Redis Cluster shape (used when redis_mode is `memorystore_cluster`), passed to modules/memorystore-cluster (see its `config`): `shard_count` (3), `replica_count` per shard (1: a zone outage fails shards over), `node_type`, `aof_append_fsync` and `deletion_protection`."
  type = object({
    shard_count         = optional(number, 3)
    replica_count       = optional(number, 1)
    node_type           = optional(string, "REDIS_HIGHMEM_MEDIUM")
    aof_append_fsync    = optional(string, "EVERYSEC")
    deletion_protection = optional(bool, true)
  })
  nullable = false
  default  = {}
}

variable "network_ranges" {
  description = "CIDR blocks of the VPC, passed to modules/network (see its `ip_ranges`)."
  type = object({
    private    = optional(string, "10.0.0.0/20")
    pods       = optional(string, "10.4.0.0/14")
    services   = optional(string, "10.8.0.0/20")
    proxy_only = optional(string, "10.9.0.0/23")
    psa        = optional(string, "10.10.0.0/16")
  })
  nullable = false
  default  = {}
}

variable "prefix" {
  description = "Prefix of every resource name (3 to 12 characters), for example `dg-dev`."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of an existing project with billing enabled; everything is created in it."
  type        = string
  nullable    = false
}

variable "cloud_armor" {
  description = "The Cloud Armor edge policy in front of queue-api (Cloud Run's load balancer and the GKE Ingress): `waf_rules`, `waf_sensitivity` (1-4), `enter_per_client` and `all_per_client` (`count` requests per `interval_sec` per client address on the enter route and on every route; beyond them 429), `adaptive_protection`, and `preview` (log only). See modules/cloud-armor."
  type = object({
    waf_rules       = optional(list(string))
    waf_sensitivity = optional(number)
    enter_per_client = optional(object({
      count        = number
      interval_sec = number
    }))
    all_per_client = optional(object({
      count        = number
      interval_sec = number
    }))
    adaptive_protection = optional(bool)
    preview             = optional(bool)
  })
  nullable = false
  default  = {}
}

variable "monitoring" {
  description = "Alerting (modules/monitoring): `notification_channels` (ids every alert goes to), `objectives` (error ratio, enter p99, consumer lag, SLO goals; see the module) and `runbook_url` (where operators read docs/runbook.md, linked from every alert)."
  type = object({
    notification_channels = optional(list(string), [])
    objectives = optional(object({
      error_ratio       = optional(number)
      enter_p99_seconds = optional(number)
      lag_messages      = optional(number)
      lag_minutes       = optional(number)
      availability      = optional(number)
      latency           = optional(number)
      window_days       = optional(number)
    }), {})
    runbook_url = optional(string, "docs/runbook.md")
  })
  nullable = false
  default  = {}
}

variable "public_domains" {
  description = "Domains served by the Cloud Run load balancer (its managed certificate covers them). Needed when deployment_target includes cloudrun; on GKE the Ingress in deploy/k8s carries the domain instead."
  type        = list(string)
  nullable    = false
  default     = []
  validation {
    condition     = !contains(["cloudrun", "both"], var.deployment_target) || length(var.public_domains) > 0
    error_message = "Set at least one public domain when deployment_target is cloudrun or both."
  }
}

variable "pubsub" {
  description = "Pub/Sub settings (used when transport is `pubsub`): `max_instances` of goods-worker and result-relay, and for both push subscriptions `push`: `ack_deadline_seconds` (how long a push may take before it counts as failed), `max_delivery_attempts` (then the message goes to the topic's dead-letter topic) and the redelivery backoff `minimum_backoff` / `maximum_backoff`."
  type = object({
    max_instances = optional(number, 20)
    push = optional(object({
      ack_deadline_seconds  = optional(number, 60)
      max_delivery_attempts = optional(number, 10)
      minimum_backoff       = optional(string, "1s")
      maximum_backoff       = optional(string, "60s")
    }), {})
  })
  nullable = false
  default  = {}
  validation {
    condition     = var.pubsub.max_instances >= 1
    error_message = "pubsub.max_instances must be at least 1."
  }
}

variable "redis_mode" {
  description = "Where the queue state lives: `memorystore` (one managed instance, HA, RDB persistence, AUTH and TLS with Google's server CA), `memorystore_cluster` (Memorystore for Redis Cluster: several shards with replicas in other zones, AOF persistence, reached through Private Service Connect with TLS; the functions run with DROPGATE_REDIS_MODE=cluster) or `statefulset` (the Redis StatefulSet in deploy/k8s/redis, AOF persistence, TLS with a CA this environment generates; GKE only, as in the dev overlay)."
  type        = string
  nullable    = false
  default     = "memorystore"
  validation {
    condition     = contains(["memorystore", "memorystore_cluster", "statefulset"], var.redis_mode)
    error_message = "redis_mode must be memorystore, memorystore_cluster or statefulset."
  }
  validation {
    condition     = var.redis_mode != "statefulset" || var.deployment_target == "gke"
    error_message = "redis_mode statefulset runs Redis inside the GKE cluster, so it needs deployment_target = gke (Cloud Run cannot reach it)."
  }
}

variable "region" {
  description = "Region of every regional resource, for example europe-west1 (it must offer Managed Kafka)."
  type        = string
  nullable    = false
  default     = "europe-west1"
}

variable "transport" {
  description = "The message bus between the functions: `kafka` (Managed Kafka; consumer groups, for GKE and Cloud Run) or `pubsub` (Pub/Sub topics with push subscriptions to the Cloud Run services, OIDC-authenticated, with retry and dead-letter policies; needs deployment_target = cloudrun and an image built with the `pubsub` feature)."
  type        = string
  nullable    = false
  default     = "kafka"
  validation {
    condition     = contains(["kafka", "pubsub"], var.transport)
    error_message = "transport must be kafka or pubsub."
  }
  validation {
    condition     = var.transport == "kafka" || var.deployment_target == "cloudrun"
    error_message = "transport pubsub pushes to Cloud Run services, so it needs deployment_target = cloudrun (GKE runs Kafka consumers)."
  }
}
