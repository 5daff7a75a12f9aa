# Inputs of the memorystore-cluster module, alphabetical.

variable "config" {
  description = "Cluster shape: `shard_count` (primaries, each owning part of the hash slots: more shards carry more drops at once), `replica_count` (replicas per shard, in other zones, with automatic failover: 1 survives a zone outage), `node_type` (memory and CPU per node: REDIS_SHARED_CORE_NANO, REDIS_STANDARD_SMALL, REDIS_HIGHMEM_MEDIUM or REDIS_HIGHMEM_XLARGE), `aof_append_fsync` (EVERYSEC, ALWAYS or NO: how often the append-only file is flushed; main.tf says why AOF) and `deletion_protection`."
  type = object({
    shard_count         = optional(number, 3)
    replica_count       = optional(number, 1)
    node_type           = optional(string, "REDIS_HIGHMEM_MEDIUM")
    aof_append_fsync    = optional(string, "EVERYSEC")
    deletion_protection = optional(bool, true)
  })
  nullable = false
  default  = {}
  validation {
    condition     = var.config.shard_count >= 1 && floor(var.config.shard_count) == var.config.shard_count
    error_message = "shard_count must be a whole number, at least 1."
  }
  validation {
    condition     = contains([0, 1, 2], var.config.replica_count)
    error_message = "replica_count must be 0, 1 or 2 (0 leaves every shard without a failover target)."
  }
  validation {
    condition     = contains(["REDIS_SHARED_CORE_NANO", "REDIS_STANDARD_SMALL", "REDIS_HIGHMEM_MEDIUM", "REDIS_HIGHMEM_XLARGE"], var.config.node_type)
    error_message = "node_type must be REDIS_SHARED_CORE_NANO, REDIS_STANDARD_SMALL, REDIS_HIGHMEM_MEDIUM or REDIS_HIGHMEM_XLARGE."
  }
  validation {
    condition     = contains(["EVERYSEC", "ALWAYS", "NO"], var.config.aof_append_fsync)
    error_message = "aof_append_fsync must be EVERYSEC, ALWAYS or NO."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource (the secrets and the service connection policy; the cluster itself takes none in this provider range)."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "network" {
  description = "Where the cluster is reached: `id` of the VPC its Private Service Connect endpoints are created in, and `subnet`, the id of the subnet their addresses come from (the functions' private subnet)."
  type = object({
    id     = string
    subnet = string
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
  description = "ID of the project that holds the cluster."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the cluster (its shards spread over the region's zones)."
  type        = string
  nullable    = false
}

variable "secret_accessors" {
  description = "IAM members (`serviceAccount:...`) allowed to read the Redis URL and CA secrets: the functions that talk to Redis. Keyed by a name known at plan time (the workload), since the members themselves may not be."
  type        = map(string)
  nullable    = false
  default     = {}
}
