# Inputs of the gke module, alphabetical.

variable "cluster" {
  description = "Control plane settings: `release_channel`, `enable_private_endpoint` (true: the API server has no public address; reach it from inside the VPC or a bastion), `master_ipv4_cidr_block` (a /28 for the control plane), `master_authorized_ranges` (name => CIDR allowed to call the API server), `rbac_security_group` (optional gke-security-groups@<domain> group for Google Groups RBAC), `deletion_protection`."
  type = object({
    release_channel          = optional(string, "REGULAR")
    enable_private_endpoint  = optional(bool, true)
    master_ipv4_cidr_block   = optional(string, "172.16.0.0/28")
    master_authorized_ranges = optional(map(string), {})
    rbac_security_group      = optional(string)
    deletion_protection      = optional(bool, true)
  })
  nullable = false
  default  = {}
  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.cluster.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
  validation {
    condition     = can(cidrhost(var.cluster.master_ipv4_cidr_block, 0)) && endswith(var.cluster.master_ipv4_cidr_block, "/28")
    error_message = "master_ipv4_cidr_block must be a /28."
  }
  validation {
    condition     = alltrue([for k, r in var.cluster.master_authorized_ranges : can(cidrhost(r, 0)) && r != "0.0.0.0/0"])
    error_message = "master_authorized_ranges must be CIDR blocks, and never 0.0.0.0/0."
  }
  validation {
    condition     = var.cluster.rbac_security_group == null || can(regex("^gke-security-groups@", var.cluster.rbac_security_group))
    error_message = "rbac_security_group must be the gke-security-groups@<domain> group GKE requires."
  }
}

variable "labels" {
  description = "Labels put on the cluster and its nodes."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "network" {
  description = "Where the cluster lives: `network` and `subnet` ids, and the names of the subnet's secondary ranges for `pods_range` and `services_range`."
  type = object({
    network        = string
    subnet         = string
    pods_range     = string
    services_range = string
  })
  nullable = false
}

variable "node_pool" {
  description = "The autoscaling node pool: `machine_type`, `disk_size_gb`, `min_nodes`/`max_nodes` (totals across the region's zones), `spot` (cheaper, preemptible nodes; not for production)."
  type = object({
    machine_type = optional(string, "e2-standard-4")
    disk_size_gb = optional(number, 50)
    min_nodes    = optional(number, 3)
    max_nodes    = optional(number, 12)
    spot         = optional(bool, false)
  })
  nullable = false
  default  = {}
  validation {
    condition     = var.node_pool.min_nodes >= 1 && var.node_pool.max_nodes >= var.node_pool.min_nodes
    error_message = "min_nodes must be at least 1 and max_nodes at least min_nodes."
  }
  validation {
    condition     = var.node_pool.disk_size_gb >= 20
    error_message = "disk_size_gb must be at least 20."
  }
}

variable "node_service_account" {
  description = "Email of the (least-privilege) service account the nodes run as."
  type        = string
  nullable    = false
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
  description = "Region of the (regional) cluster."
  type        = string
  nullable    = false
}

variable "workload_identity" {
  description = "Kubernetes service accounts that act as Google service accounts, keyed by a static name: `service_account_id` (projects/.../serviceAccounts/...), `namespace` and `ksa` (the Kubernetes service account name)."
  type = map(object({
    service_account_id = string
    namespace          = string
    ksa                = string
  }))
  nullable = false
  default  = {}
}
