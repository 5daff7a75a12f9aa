# Inputs of the iam module, alphabetical.

variable "artifact_registry" {
  description = "The Docker repository for dropgate's images: its id, the service account keys (of `service_accounts`) that may pull from it (`readers`) and push to it (`writers`: the build), and how many recent versions the cleanup policy keeps."
  type = object({
    repository_id = optional(string, "dropgate")
    readers       = optional(list(string), [])
    writers       = optional(list(string), [])
    keep_recent   = optional(number, 20)
  })
  nullable = false
  default  = {}
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.artifact_registry.repository_id))
    error_message = "repository_id must be lowercase letters, digits and hyphens, starting with a letter."
  }
  validation {
    condition     = alltrue([for r in var.artifact_registry.readers : contains(keys(var.service_accounts), r)])
    error_message = "Every reader must be a key of var.service_accounts."
  }
  validation {
    condition     = alltrue([for w in var.artifact_registry.writers : contains(keys(var.service_accounts), w)])
    error_message = "Every writer must be a key of var.service_accounts."
  }
  validation {
    condition     = var.artifact_registry.keep_recent >= 1
    error_message = "keep_recent must be at least 1."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "prefix" {
  description = "Prefix of every resource name (3 to 12 characters, so `<prefix>-<function>` fits a service account id)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of the project that holds the service accounts and the repository."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the Artifact Registry repository (use the region the workloads run in)."
  type        = string
  nullable    = false
}

variable "service_accounts" {
  description = "One service account per workload, keyed by role (for example `queue-api`): a display description and the project roles it needs, no more."
  type = map(object({
    description   = string
    project_roles = optional(list(string), [])
  }))
  nullable = false
  validation {
    condition     = alltrue([for k, v in var.service_accounts : can(regex("^[a-z][a-z0-9-]+$", k))])
    error_message = "Service account keys must be lowercase letters, digits and hyphens."
  }
  validation {
    condition = alltrue(flatten([
      for k, v in var.service_accounts : [
        for r in v.project_roles : !contains(["roles/owner", "roles/editor", "roles/viewer"], r)
      ]
    ]))
    error_message = "Basic roles (owner, editor, viewer) are never granted: list the predefined roles a workload needs."
  }
}
