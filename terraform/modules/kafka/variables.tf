# Inputs of the kafka module, alphabetical.

variable "acls" {
  description = "Kafka ACLs, by ACL id (`topic/<name>`, `consumerGroup/<name>`, `consumerGroupPrefixed/<prefix>`, `cluster`, ...): the `principal` (`User:<service account email>`) and the `operation` (READ, WRITE, DESCRIBE, ...) each entry allows. Every resource named here is closed to principals it does not list."
  type = map(list(object({
    principal = string
    operation = string
  })))
  nullable = false
  default  = {}
  validation {
    condition = alltrue([
      for id, entries in var.acls :
      can(regex("^(cluster|allTopics|allConsumerGroups|allTransactionalIds|(topic|consumerGroup|transactionalId|topicPrefixed|consumerGroupPrefixed|transactionalIdPrefixed)/.+)$", id)) && length(entries) > 0
    ])
    error_message = "Each ACL id must be cluster, allTopics, allConsumerGroups, allTransactionalIds or <resource type>/<name>, with at least one entry."
  }
  validation {
    condition = alltrue(flatten([
      for id, entries in var.acls : [
        for entry in entries :
        startswith(entry.principal, "User:") && contains(["ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE"], entry.operation)
      ]
    ]))
    error_message = "Each ACL entry needs a User:<service account email> principal and a Kafka operation (READ, WRITE, DESCRIBE, ...)."
  }
}

variable "capacity" {
  description = "Cluster capacity: `vcpu_count` (at least 3) and `memory_gib` (1 to 8 GiB per vCPU)."
  type = object({
    vcpu_count = optional(number, 3)
    memory_gib = optional(number, 3)
  })
  nullable = false
  default  = {}
  validation {
    condition     = var.capacity.vcpu_count >= 3
    error_message = "vcpu_count must be at least 3."
  }
  validation {
    condition = (
      var.capacity.memory_gib >= var.capacity.vcpu_count &&
      var.capacity.memory_gib <= 8 * var.capacity.vcpu_count
    )
    error_message = "memory_gib must be between 1 and 8 GiB per vCPU."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource."
  type        = map(string)
  nullable    = false
  default     = {}
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
  description = "Region of the cluster."
  type        = string
  nullable    = false
}

variable "subnet_id" {
  description = "Id of the private subnet (projects/<p>/regions/<r>/subnetworks/<name>) where the cluster's broker endpoints get their IP addresses."
  type        = string
  nullable    = false
}

variable "topics" {
  description = "Topics to create, by name: partition count, replication factor and extra topic configs (for example retention.ms)."
  type = map(object({
    partition_count    = number
    replication_factor = optional(number, 3)
    configs            = optional(map(string), {})
  }))
  nullable = false
  validation {
    condition     = alltrue([for k, t in var.topics : t.partition_count >= 1 && t.partition_count <= 1000])
    error_message = "partition_count must be between 1 and 1000."
  }
  validation {
    condition     = alltrue([for k, t in var.topics : t.replication_factor >= 1 && t.replication_factor <= 3])
    error_message = "replication_factor must be between 1 and 3 (the service keeps three zones)."
  }
  validation {
    condition     = alltrue([for k, t in var.topics : can(regex("^[a-zA-Z0-9._-]{1,249}$", k))])
    error_message = "Topic names are 1 to 249 letters, digits, dots, underscores or hyphens."
  }
}
