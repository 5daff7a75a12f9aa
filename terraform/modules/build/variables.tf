# Inputs of the build module, alphabetical.

variable "builder_member" {
  description = "IAM member (`serviceAccount:...`) of the service account builds run as; it may read the uploaded sources and nothing else here."
  type        = string
  nullable    = false
  validation {
    condition     = startswith(var.builder_member, "serviceAccount:")
    error_message = "builder_member must be a service account member (serviceAccount:<email>)."
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
  description = "ID of the project that holds the bucket (bucket names are global, so it starts with the project id)."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Location of the bucket (use the region the builds and the image repository are in)."
  type        = string
  nullable    = false
}

variable "source_retention_days" {
  description = "Days an uploaded source archive is kept; a build reads it within minutes of the upload."
  type        = number
  nullable    = false
  default     = 30
  validation {
    condition     = var.source_retention_days >= 1
    error_message = "source_retention_days must be at least 1."
  }
}
