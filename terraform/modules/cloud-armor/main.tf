# The Cloud Armor policy at the edge of a drop: the load balancer is where a drop's bot
# traffic should stop, before it costs a queue-api instance a TLS handshake, a token
# check and a Redis round trip. Three layers, cheapest first:
#   1. preconfigured WAF rules (Log4j lookups always; SQL injection, XSS, path
#      traversal, scanners by default) deny what no honest client sends;
#   2. a per-client limit on the enter route (POST /v1/events/{id}/queue), which a
#      person calls once per drop and a bot in a loop;
#   3. a per-client limit on everything else, generous enough for a venue's or a
#      carrier's shared address (the page polls every few seconds).
# Adaptive Protection learns the normal traffic and proposes rules for an L7 flood.
# `preview` logs what the rules would do without enforcing them, for a dry run before
# a drop.

locals {
  enter_route = "request.method == 'POST' && request.path.matches('^/v1/events/[A-Za-z0-9._-]+/queue$')"
}

resource "google_compute_security_policy" "edge" {
  project     = var.project_id
  name        = "${var.prefix}-edge"
  description = "dropgate: WAF rules and per-client rate limits in front of queue-api."
  type        = "CLOUD_ARMOR"

  adaptive_protection_config {
    layer_7_ddos_defense_config {
      enable          = var.policy.adaptive_protection
      rule_visibility = "STANDARD"
    }
  }

  advanced_options_config {
    log_level = "VERBOSE"
  }

  # Log4j lookups (CVE-2021-44228): never honest, so denied even in preview.
  rule {
    priority    = 900
    action      = "deny(403)"
    description = "Log4j JNDI lookups (CVE-2021-44228)."
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary')"
      }
    }
  }

  dynamic "rule" {
    for_each = { for index, name in var.policy.waf_rules : index => name }
    content {
      priority    = 1000 + rule.key
      action      = "deny(403)"
      preview     = var.policy.preview
      description = "Preconfigured WAF rule ${rule.value}."
      match {
        expr {
          expression = "evaluatePreconfiguredWaf('${rule.value}', {'sensitivity': ${var.policy.waf_sensitivity}})"
        }
      }
    }
  }

  rule {
    priority    = 2000
    action      = "throttle"
    preview     = var.policy.preview
    description = "Enter route: at most enter_per_client.count requests per interval_sec per client address; beyond it 429."
    match {
      expr {
        expression = local.enter_route
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.policy.enter_per_client.count
        interval_sec = var.policy.enter_per_client.interval_sec
      }
    }
  }

  rule {
    priority    = 3000
    action      = "throttle"
    preview     = var.policy.preview
    description = "Every route: at most all_per_client.count requests per interval_sec per client address; beyond it 429."
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.policy.all_per_client.count
        interval_sec = var.policy.all_per_client.interval_sec
      }
    }
  }

  rule {
    priority    = 2147483647
    action      = "allow"
    description = "Everything the rules above let through."
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}
