# Inputs of the pubsub module, alphabetical.

variable "dead_letter_replayers" {
  description = "IAM members allowed to replay dead letters (`dropgate dead-letter replay-pubsub`): they may pull from every dead-letter subscription and publish to every topic, which replaying needs."
  type        = list(string)
  nullable    = false
  default     = []
}

variable "labels" {
  description = "Labels put on every labelled resource."
  type        = map(string)
  nullable    = false
  default     = {}
}

variable "message_retention" {
  description = "How long topics and subscriptions keep messages (a duration in seconds, for example 604800s: a week, like the Kafka topics), so a consumer that is down for hours loses nothing."
  type        = string
  nullable    = false
  default     = "604800s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention))
    error_message = "message_retention must be a number of seconds with an s suffix, for example 604800s."
  }
}

variable "outbound_topics" {
  description = "Topics dropgate only publishes to, for consumers outside it, by short name (the DROPGATE_TOPIC_* value without the prefix): `publishers` (IAM members allowed to publish, and no one else may). Each gets the topic and its publisher grants only: no subscription (a downstream consumer creates its own, with message ordering on if it relies on the publisher's ordering keys), no dead-letter topic, and no grant to the dead-letter replayers."
  type = map(object({
    publishers = list(string)
  }))
  nullable = false
  default  = {}
  validation {
    condition     = length(setintersection(keys(var.outbound_topics), keys(var.topics))) == 0
    error_message = "A topic is either in topics (pushed to a dropgate service) or in outbound_topics, not both."
  }
  validation {
    condition     = alltrue([for k, t in var.outbound_topics : length(t.publishers) > 0])
    error_message = "Every outbound topic needs at least one publisher."
  }
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
  description = "ID of the project that holds the topics."
  type        = string
  nullable    = false
}

variable "push_service_account" {
  description = "The service account push subscriptions sign their OIDC tokens as: `email` and `id` (projects/.../serviceAccounts/...). The consuming services accept only this email."
  type = object({
    email = string
    id    = string
  })
  nullable = false
}

variable "region" {
  description = "Region of the Cloud Run services the subscriptions push to."
  type        = string
  nullable    = false
}

variable "topics" {
  description = "Topics by short name (the DROPGATE_TOPIC_* value without the prefix): `publishers` (IAM members allowed to publish) and `push`, where its one push subscription delivers: `service` (the Cloud Run service name), `endpoint` (URL of the push route), `audience` (the OIDC token's audience, which the service checks), `ack_deadline_seconds`, `max_delivery_attempts` before the dead-letter topic, and the redelivery backoff bounds `minimum_backoff` / `maximum_backoff`."
  type = map(object({
    publishers = list(string)
    push = object({
      service               = string
      endpoint              = string
      audience              = string
      ack_deadline_seconds  = optional(number, 60)
      max_delivery_attempts = optional(number, 10)
      minimum_backoff       = optional(string, "1s")
      maximum_backoff       = optional(string, "60s")
    })
  }))
  nullable = false
  validation {
    condition     = alltrue([for k, t in var.topics : startswith(t.push.endpoint, "https://")])
    error_message = "Every push endpoint must be an https:// URL: Pub/Sub sends the OIDC token with each push."
  }
  validation {
    condition     = alltrue([for k, t in var.topics : t.push.max_delivery_attempts >= 5 && t.push.max_delivery_attempts <= 100])
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
  validation {
    condition     = alltrue([for k, t in var.topics : t.push.ack_deadline_seconds >= 10 && t.push.ack_deadline_seconds <= 600])
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}
