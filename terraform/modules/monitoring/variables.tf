# Inputs of the monitoring module, alphabetical.

variable "dead_letter_subscriptions" {
  description = "Names of the Pub/Sub dead-letter subscriptions (transport pubsub) to alert on when messages wait there; empty with Kafka, whose dead letters dropgate counts itself."
  type        = list(string)
  nullable    = false
  default     = []
}

variable "labels" {
  description = "User labels put on the alert policies."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "notification_channels" {
  description = "Notification channel ids (projects/<project>/notificationChannels/<id>) every alert goes to: the on-call's pager, e-mail or chat. Empty: alerts show in the console only."
  type        = list(string)
  nullable    = false
  default     = []
}

variable "objectives" {
  description = "What the alerts and SLOs hold the drop to: `error_ratio` (5xx share of queue-api requests), `enter_p99_seconds` (enter latency objective, also the latency SLO's threshold), `lag_messages` and `lag_minutes` (a consumer group this far behind and still falling behind for this long), `availability` and `latency` (SLO goals) over `window_days`."
  type = object({
    error_ratio       = optional(number, 0.01)
    enter_p99_seconds = optional(number, 0.25)
    lag_messages      = optional(number, 1000)
    lag_minutes       = optional(number, 5)
    availability      = optional(number, 0.999)
    latency           = optional(number, 0.99)
    window_days       = optional(number, 28)
  })
  nullable = false
  default  = {}
  validation {
    condition = (
      var.objectives.error_ratio > 0 && var.objectives.error_ratio < 1 &&
      var.objectives.enter_p99_seconds > 0 &&
      var.objectives.lag_messages >= 1 && var.objectives.lag_minutes >= 1 &&
      var.objectives.availability > 0 && var.objectives.availability < 1 &&
      var.objectives.latency > 0 && var.objectives.latency < 1 &&
      var.objectives.window_days >= 1 && var.objectives.window_days <= 30
    )
    error_message = "Ratios and goals must be between 0 and 1 (exclusive), durations positive, and window_days 1 to 30."
  }
}

variable "panels" {
  description = "The dashboard: deploy/monitoring/panels.json decoded (`title`, and `panels`, each with a `title`, a `unit` and `queries` of `legend` and `promql`)."
  type = object({
    title = string
    panels = list(object({
      title = string
      unit  = string
      queries = list(object({
        legend = string
        promql = string
      }))
    }))
  })
  nullable = false
}

variable "prefix" {
  description = "Prefix of every name (dashboard, policies, service)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of the project whose Cloud Monitoring holds the dashboard, the policies and the SLOs."
  type        = string
  nullable    = false
}

variable "public_host" {
  description = "The public host the uptime check fetches the waiting room from (the first public domain); null: no uptime check."
  type        = string
  default     = null
}

variable "runbook_url" {
  description = "Where the operators read docs/runbook.md (the repository's copy of it); each alert links its section."
  type        = string
  nullable    = false
  default     = "docs/runbook.md"
}
