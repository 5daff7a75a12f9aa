# Inputs of the cloudrun module, alphabetical.

variable "deletion_protection" {
  description = "Whether Terraform refuses to delete the services and jobs."
  type        = bool
  nullable    = false
  default     = true
}

variable "admin_image" {
  description = "The dropgate admin image (the operator CLI, /usr/local/bin/dropgate) that every job in var.jobs runs, as <repository url>/<name>:<tag> or @sha256:<digest>. Later deploys may change it outside Terraform (see ignore_changes)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/.+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$", var.admin_image))
    error_message = "admin_image must be a full reference with a tag or digest, for example europe-west1-docker.pkg.dev/my-project/dropgate/dropgate-admin:0.1.0."
  }
}

variable "image" {
  description = "The dropgate services image (one image holds the four function binaries), as <repository url>/<name>:<tag> or @sha256:<digest>. Later deploys may change it outside Terraform (see ignore_changes)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/.+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be a full reference with a tag or digest, for example europe-west1-docker.pkg.dev/my-project/dropgate/dropgate:0.1.0."
  }
}

variable "jobs" {
  description = "One-off jobs on the admin image, keyed by role (for example `db-migrate`): the `command`, the `service_account` email, plain `env`, `secret_env` (variable name => Secret Manager secret id, latest version), `secret_files` (as for var.services), `timeout` and `max_retries`."
  type = map(object({
    command         = list(string)
    service_account = string
    env             = optional(map(string), {})
    secret_env      = optional(map(string), {})
    secret_files = optional(map(object({
      path   = string
      secret = string
    })), {})
    timeout     = optional(string, "600s")
    max_retries = optional(number, 1)
  }))
  nullable = false
  default  = {}
  validation {
    condition = alltrue(flatten([
      for k, j in var.jobs : [
        for name, f in j.secret_files :
        can(regex("^[a-z][a-z0-9-]{0,62}$", name)) && can(regex("^/[^/]+(/[^/]+)*/[^/]+$", f.path)) && !can(regex("^/(dev|proc|sys)(/|$)", f.path))
      ]
    ]))
    error_message = "secret_files keys must be volume names (lowercase letters, digits, hyphens) and paths absolute file paths at least one directory deep, outside /dev, /proc and /sys."
  }
  validation {
    condition     = alltrue([for k, j in var.jobs : length(distinct([for f in values(j.secret_files) : dirname(f.path)])) == length(j.secret_files)])
    error_message = "Each secret file needs a directory of its own: Cloud Run mounts one secret volume per directory."
  }
}

variable "labels" {
  description = "Labels put on every labelled resource."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "load_balancer" {
  description = "The external HTTPS load balancer in front of the one public service: `service` (a key of var.services), `domains` (for the Google-managed certificate) and an optional Cloud Armor `security_policy` id. Null: no load balancer."
  type = object({
    service         = string
    domains         = list(string)
    security_policy = optional(string)
  })
  default = null
  validation {
    condition     = var.load_balancer == null || try(length(var.load_balancer.domains) > 0, false)
    error_message = "The load balancer needs at least one domain for its managed certificate."
  }
  validation {
    condition = var.load_balancer == null || try(
      var.services[var.load_balancer.service].ingress == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", false
    )
    error_message = "load_balancer.service must be a key of var.services whose ingress is INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "network" {
  description = "Direct VPC egress target: `network` and `subnet` ids. Only private ranges leave through the VPC (Memorystore, Cloud SQL, Kafka); Google APIs stay direct."
  type = object({
    network = string
    subnet  = string
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
  description = "ID of the project that holds the services."
  type        = string
  nullable    = false
}

variable "region" {
  description = "Region of the services."
  type        = string
  nullable    = false
}

variable "services" {
  description = "One Cloud Run service per function, keyed by function name: the `command` (binary), `service_account` email, `ingress` (internal only unless it sits behind the load balancer), the `port` it serves (Cloud Run's container port), `health_port` where its health routes listen when that is another port (queue-api keeps them off the public one), `health_path`, instance bounds, `concurrency`, `cpu`/`memory`, `cpu_always_allocated` (background consumers need CPU outside requests), request `timeout` (SSE streams last long), plain `env`, `secret_env` (variable name => Secret Manager secret id, latest version) and `secret_files` (volume name => `path`, the absolute file path, and `secret`, the Secret Manager secret id whose latest version the file holds; one directory per file)."
  type = map(object({
    command              = list(string)
    service_account      = string
    ingress              = optional(string, "INGRESS_TRAFFIC_INTERNAL_ONLY")
    port                 = optional(number, 9090)
    health_port          = optional(number)
    health_path          = optional(string, "/healthz")
    min_instances        = optional(number, 1)
    max_instances        = optional(number, 10)
    concurrency          = optional(number, 80)
    cpu                  = optional(string, "1")
    memory               = optional(string, "512Mi")
    cpu_always_allocated = optional(bool, true)
    timeout              = optional(string, "300s")
    env                  = optional(map(string), {})
    secret_env           = optional(map(string), {})
    secret_files = optional(map(object({
      path   = string
      secret = string
    })), {})
  }))
  nullable = false
  validation {
    condition = alltrue([
      for k, s in var.services : contains(["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], s.ingress)
    ])
    error_message = "ingress must be INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER: nothing is reachable from the internet except through the load balancer."
  }
  validation {
    condition     = alltrue([for k, s in var.services : s.min_instances >= 0 && s.max_instances >= s.min_instances && s.max_instances >= 1])
    error_message = "Every service needs 0 <= min_instances <= max_instances and max_instances >= 1."
  }
  validation {
    condition     = alltrue([for k, s in var.services : s.concurrency >= 1 && s.concurrency <= 1000])
    error_message = "concurrency must be between 1 and 1000."
  }
  validation {
    condition = alltrue(flatten([
      for k, s in var.services : [
        for name, f in s.secret_files :
        can(regex("^[a-z][a-z0-9-]{0,62}$", name)) && can(regex("^/[^/]+(/[^/]+)*/[^/]+$", f.path)) && !can(regex("^/(dev|proc|sys)(/|$)", f.path))
      ]
    ]))
    error_message = "secret_files keys must be volume names (lowercase letters, digits, hyphens) and paths absolute file paths at least one directory deep, outside /dev, /proc and /sys."
  }
  validation {
    condition     = alltrue([for k, s in var.services : length(distinct([for f in values(s.secret_files) : dirname(f.path)])) == length(s.secret_files)])
    error_message = "Each secret file needs a directory of its own: Cloud Run mounts one secret volume per directory."
  }
}
