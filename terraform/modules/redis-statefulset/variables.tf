# Inputs of the redis-statefulset module, alphabetical.

variable "kubernetes" {
  description = "Where the Redis StatefulSet of deploy/k8s/redis runs: its `namespace`, headless `service` and `statefulset` names (the server certificate names <statefulset>-0.<service>.<namespace>.svc.cluster.local and <service>.<namespace>.svc.cluster.local) and the TLS `port`."
  type = object({
    namespace   = optional(string, "dropgate")
    service     = optional(string, "redis")
    statefulset = optional(string, "redis")
    port        = optional(number, 6379)
  })
  nullable = false
  default  = {}
  validation {
    condition = alltrue([
      for name in [var.kubernetes.namespace, var.kubernetes.service, var.kubernetes.statefulset] :
      can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", name))
    ])
    error_message = "namespace, service and statefulset must be Kubernetes DNS labels (lowercase letters, digits and hyphens)."
  }
  validation {
    condition     = var.kubernetes.port >= 1 && var.kubernetes.port <= 65535
    error_message = "port must be a TCP port number."
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
  description = "ID of the project that holds the secrets."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region the secrets are replicated to."
  type        = string
  nullable    = false
}

variable "tls" {
  description = "Certificate lifetimes, in hours: `ca_validity_hours` (the private CA; replacing it means re-creating both Kubernetes Secrets), `server_validity_hours` (the server certificate) and `early_renewal_hours` (an apply this close to the server certificate's expiry issues a new one)."
  type = object({
    ca_validity_hours     = optional(number, 87600)
    server_validity_hours = optional(number, 17520)
    early_renewal_hours   = optional(number, 720)
  })
  nullable = false
  default  = {}
  validation {
    condition     = var.tls.server_validity_hours <= var.tls.ca_validity_hours
    error_message = "The server certificate cannot outlive its CA: server_validity_hours must not exceed ca_validity_hours."
  }
  validation {
    condition     = var.tls.early_renewal_hours >= 0 && var.tls.early_renewal_hours < var.tls.server_validity_hours
    error_message = "early_renewal_hours must be at least 0 and shorter than server_validity_hours."
  }
}
