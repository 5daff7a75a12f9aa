# Inputs of the network module, alphabetical.

variable "health_check_ranges" {
  description = "Source ranges of Google's load balancer health checkers and proxies, allowed to reach workloads on the serving ports."
  type        = list(string)
  nullable    = false
  default     = ["35.191.0.0/16", "130.211.0.0/22"]
  validation {
    condition     = alltrue([for r in var.health_check_ranges : can(cidrhost(r, 0))])
    error_message = "Every health check range must be a CIDR block."
  }
}

variable "ip_ranges" {
  description = "CIDR blocks: `private` is the workload subnet (GKE nodes, Cloud Run direct VPC egress, Kafka endpoints), `pods` and `services` its GKE secondary ranges, `proxy_only` the regional L7 load balancer proxies, `psa` the range peered to Google services (Cloud SQL, Memorystore)."
  type = object({
    private    = optional(string, "10.0.0.0/20")
    pods       = optional(string, "10.4.0.0/14")
    services   = optional(string, "10.8.0.0/20")
    proxy_only = optional(string, "10.9.0.0/23")
    psa        = optional(string, "10.10.0.0/16")
  })
  nullable = false
  default  = {}
  validation {
    condition     = alltrue([for r in values(var.ip_ranges) : can(cidrhost(r, 0))])
    error_message = "Every IP range must be a CIDR block such as 10.0.0.0/20."
  }
  validation {
    condition     = tonumber(split("/", var.ip_ranges.psa)[1]) <= 24
    error_message = "The Private Service Access range needs at least a /24 (Cloud SQL and Memorystore each take a block of it)."
  }
}

variable "nat_logging" {
  description = "Which Cloud NAT translations to log: ERRORS_ONLY, TRANSLATIONS_ONLY or ALL."
  type        = string
  nullable    = false
  default     = "ERRORS_ONLY"
  validation {
    condition     = contains(["ERRORS_ONLY", "TRANSLATIONS_ONLY", "ALL"], var.nat_logging)
    error_message = "nat_logging must be ERRORS_ONLY, TRANSLATIONS_ONLY or ALL."
  }
}

variable "prefix" {
  description = "Prefix of every resource name, so several environments can share a project (for example `dg-dev`)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of the project that holds the network."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the subnets, router and NAT (for example europe-west1)."
  type        = string
  nullable    = false
}
