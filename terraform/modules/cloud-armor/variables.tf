# Inputs of the cloud-armor module, alphabetical.

variable "policy" {
  description = "What the edge policy enforces: `waf_rules` (preconfigured WAF rule sets, each denied with 403; Log4j lookups, cve-canary, are denied always), `waf_sensitivity` (1 to 4: 1 has the fewest false positives), `enter_per_client` and `all_per_client` (requests per `interval_sec` per client address on the enter route and on every route; beyond them 429. The defaults, 300 enters and 6,000 requests a minute, leave room for a venue's or a mobile carrier's shared address; a person enters once per drop), `adaptive_protection` (Cloud Armor's L7 DDoS learning) and `preview` (log, do not enforce: a dry run before a drop)."
  type = object({
    waf_rules = optional(list(string), [
      "sqli-v33-stable",
      "xss-v33-stable",
      "lfi-v33-stable",
      "rfi-v33-stable",
      "rce-v33-stable",
      "scannerdetection-v33-stable",
      "protocolattack-v33-stable",
    ])
    waf_sensitivity = optional(number, 1)
    enter_per_client = optional(object({
      count        = number
      interval_sec = number
    }), { count = 300, interval_sec = 60 })
    all_per_client = optional(object({
      count        = number
      interval_sec = number
    }), { count = 6000, interval_sec = 60 })
    adaptive_protection = optional(bool, true)
    preview             = optional(bool, false)
  })
  nullable = false
  default  = {}
  validation {
    condition     = var.policy.waf_sensitivity >= 1 && var.policy.waf_sensitivity <= 4
    error_message = "waf_sensitivity must be 1, 2, 3 or 4."
  }
  validation {
    condition = alltrue([
      for limit in [var.policy.enter_per_client, var.policy.all_per_client] :
      limit.count >= 1 && contains([10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600], limit.interval_sec)
    ])
    error_message = "Each rate limit needs count >= 1 and an interval_sec Cloud Armor supports (10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700 or 3600)."
  }
  validation {
    condition     = length(var.policy.waf_rules) <= 50 && alltrue([for name in var.policy.waf_rules : can(regex("^[a-z0-9-]+$", name))])
    error_message = "waf_rules are preconfigured rule set names such as sqli-v33-stable (at most 50)."
  }
}

variable "prefix" {
  description = "Prefix of every resource name (the policy is `<prefix>-edge`, the name the GKE BackendConfig in deploy/k8s refers to)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "ID of the project that holds the policy."
  type        = string
  nullable    = false
}
