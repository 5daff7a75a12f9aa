# Inputs of the memorystore module, alphabetical.

variable "config" {
  description = "Instance shape: `tier` (STANDARD_HA has a replica in another zone with automatic failover), `memory_size_gb`, `redis_version`, and `rdb_snapshot_period` (how often the RDB persistence snapshot is taken; main.tf says why RDB)."
  type = object({
    tier                = optional(string, "STANDARD_HA")
    memory_size_gb      = optional(number, 5)
    redis_version       = optional(string, "REDIS_7_2")
    rdb_snapshot_period = optional(string, "ONE_HOUR")
  })
  nullable = false
  default  = {}
  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.config.tier)
    error_message = "tier must be BASIC or STANDARD_HA."
  }
  validation {
    condition     = var.config.memory_size_gb >= 1 && var.config.memory_size_gb <= 300
    error_message = "memory_size_gb must be between 1 and 300."
  }
  validation {
    condition     = can(regex("^REDIS_7_", var.config.redis_version))
    error_message = "redis_version must be a Redis 7 version (REDIS_7_0, REDIS_7_2, ...): the Lua scripts rely on it."
  }
  validation {
    condition     = contains(["ONE_HOUR", "SIX_HOURS", "TWELVE_HOURS", "TWENTY_FOUR_HOURS"], var.config.rdb_snapshot_period)
    error_message = "rdb_snapshot_period must be ONE_HOUR, SIX_HOURS, TWELVE_HOURS or TWENTY_FOUR_HOURS."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource."
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
  description = "IAM members (`serviceAccount:...`) allowed to read the Redis URL and CA secrets: the functions that talk to Redis. Keyed by a name known at plan time (the workload), since the members themselves may not be."
  type        = map(string)
  nullable    = false
  default     = {}
}
