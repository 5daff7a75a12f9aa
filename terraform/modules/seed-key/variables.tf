# Inputs of the seed-key module, alphabetical.

variable "labels" {
  description = "Labels put on every labelled resource."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "prefix" {
  description = "Prefix of every resource name (the secret is `<prefix>-seed-key`)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of the project that holds the secret."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region the secret is replicated to."
  type        = string
  nullable    = false
}

variable "secret_accessors" {
  description = "IAM members (`serviceAccount:...`) allowed to read the seed key: goods-worker, the admitter and the operator CLI (event-admin), and no one else. Keyed by a name known at plan time (the workload), since the members themselves may not be."
  type        = map(string)
  nullable    = false
  default     = {}
}
