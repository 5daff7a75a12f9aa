# What the people running a drop watch and are woken by: one dashboard (the panels of
# deploy/monitoring/panels.json, the same ones as the Grafana dashboard there), alert
# policies on the functions' own metrics (PromQL over Managed Service for Prometheus),
# an availability and a latency SLO for the enter and status routes, and an uptime
# check on the public endpoint. Each alert's documentation names the runbook section
# that says what to do (docs/runbook.md).

locals {
  # Two panels a row, each half the 48-column grid wide.
  tiles = [
    for index, panel in var.panels.panels : {
      xPos   = (index % 2) * 24
      yPos   = floor(index / 2) * 16
      width  = 24
      height = 16
      widget = {
        title = panel.title
        xyChart = {
          dataSets = [
            for query in panel.queries : {
              plotType       = "LINE"
              legendTemplate = query.legend
              timeSeriesQuery = {
                prometheusQuery = query.promql
              }
            }
          ]
          yAxis = { label = panel.unit, scale = "LINEAR" }
        }
      }
    }
  ]

  enter_route  = "/v1/events/{event_id}/queue"
  status_route = "/v1/events/{event_id}/queue/me"

  # name => what breaks, the PromQL that says so, for how long, and the runbook section.
  alerts = {
    queue-api-errors = {
      summary  = "queue-api answers more than ${var.objectives.error_ratio * 100} % of requests with a server error"
      promql   = "sum(rate(dropgate_http_requests_total{status=~\"5..\"}[5m])) / sum(rate(dropgate_http_requests_total[5m])) > ${var.objectives.error_ratio}"
      duration = "300s"
      runbook  = "queue-api-errors"
    }
    enter-latency = {
      summary  = "Enter p99 above ${var.objectives.enter_p99_seconds} s"
      promql   = "histogram_quantile(0.99, sum by (le) (rate(dropgate_http_request_duration_seconds_bucket{route=\"${local.enter_route}\",method=\"POST\"}[5m]))) > ${var.objectives.enter_p99_seconds}"
      duration = "300s"
      runbook  = "enter-latency"
    }
    consumer-lag = {
      summary  = "A consumer group has fallen more than ${var.objectives.lag_messages} messages behind and is still falling behind"
      promql   = "sum by (group) (dropgate_consumer_lag) > ${var.objectives.lag_messages} and sum by (group) (deriv(dropgate_consumer_lag[5m])) > 0"
      duration = "${var.objectives.lag_minutes * 60}s"
      runbook  = "consumer-lag"
    }
    undecided-users = {
      summary  = "Admitted users got no result within the redelivery delay and were sent to the draw again"
      promql   = "sum by (event) (increase(dropgate_admitter_redelivered_total[10m])) > 0"
      duration = "60s"
      runbook  = "undecided-users"
    }
    store-unreachable = {
      summary  = "A function's stores (Redis, PostgreSQL, the bus) do not answer"
      promql   = "count(dropgate_ready == 0) > 0"
      duration = "120s"
      runbook  = "store-unreachable"
    }
    dead-letters = {
      summary  = "Messages were set aside on the dead-letter topic"
      promql   = "sum by (topic, reason) (increase(dropgate_dead_letters_total[15m])) > 0"
      duration = "60s"
      runbook  = "dead-letters"
    }
    redis-repaired = {
      summary  = "The admitter repaired Redis from PostgreSQL (Redis lost writes)"
      promql   = "sum by (event, reason) (increase(dropgate_admitter_repairs_total[15m])) > 0"
      duration = "60s"
      runbook  = "redis-repaired"
    }
  }
}

resource "google_monitoring_dashboard" "drop" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName  = "${var.prefix}: ${var.panels.title}"
    mosaicLayout = { columns = 48, tiles = local.tiles }
  })
}

resource "google_monitoring_alert_policy" "alerts" {
  for_each              = local.alerts
  project               = var.project_id
  display_name          = "${var.prefix}: ${each.value.summary}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "CRITICAL"
  user_labels           = var.labels
  conditions {
    display_name = each.value.summary
    condition_prometheus_query_language {
      query               = each.value.promql
      duration            = each.value.duration
      evaluation_interval = "60s"
    }
  }
  documentation {
    mime_type = "text/markdown"
    subject   = "${var.prefix}: ${each.value.summary}"
    content   = "${each.value.summary}. What it means and what to do: docs/runbook.md#${each.value.runbook} (${var.runbook_url}#${each.value.runbook})."
  }
}

# The enter and status routes as a service with two objectives: answered without a
# server error, and answered fast enough.
resource "google_monitoring_custom_service" "queue_api" {
  project      = var.project_id
  service_id   = "${var.prefix}-queue-api"
  display_name = "${var.prefix} queue-api (enter and status)"
}

locals {
  requests_metric = "metric.type=\"prometheus.googleapis.com/dropgate_http_requests_total/counter\""
  latency_metric  = "metric.type=\"prometheus.googleapis.com/dropgate_http_request_duration_seconds/histogram\""
  queue_routes    = "(metric.label.route=\"${local.enter_route}\" OR metric.label.route=\"${local.status_route}\")"
}

resource "google_monitoring_slo" "availability" {
  project             = var.project_id
  service             = google_monitoring_custom_service.queue_api.service_id
  slo_id              = "availability"
  display_name        = "Enter and status answered without a server error"
  goal                = var.objectives.availability
  rolling_period_days = var.objectives.window_days
  request_based_sli {
    good_total_ratio {
      bad_service_filter   = "${local.requests_metric} resource.type=\"prometheus_target\" ${local.queue_routes} metric.label.status=monitoring.regex.full_match(\"5..\")"
      total_service_filter = "${local.requests_metric} resource.type=\"prometheus_target\" ${local.queue_routes}"
    }
  }
}

resource "google_monitoring_slo" "latency" {
  project             = var.project_id
  service             = google_monitoring_custom_service.queue_api.service_id
  slo_id              = "latency"
  display_name        = "Enter and status answered within ${var.objectives.enter_p99_seconds} s"
  goal                = var.objectives.latency
  rolling_period_days = var.objectives.window_days
  request_based_sli {
    distribution_cut {
      distribution_filter = "${local.latency_metric} resource.type=\"prometheus_target\" ${local.queue_routes}"
      range {
        max = var.objectives.enter_p99_seconds
      }
    }
  }
}

# From outside, the way a user arrives: the waiting-room page over HTTPS.
resource "google_monitoring_uptime_check_config" "public" {
  count        = var.public_host == null ? 0 : 1
  project      = var.project_id
  display_name = "${var.prefix} waiting room"
  timeout      = "10s"
  period       = "60s"
  http_check {
    path         = "/e/uptime-check"
    port         = 443
    use_ssl      = true
    validate_ssl = true
  }
  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = var.public_host
    }
  }
}

resource "google_monitoring_alert_policy" "uptime" {
  count                 = var.public_host == null ? 0 : 1
  project               = var.project_id
  display_name          = "${var.prefix}: the waiting room does not answer from outside"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "CRITICAL"
  user_labels           = var.labels
  conditions {
    display_name = "Uptime check failing"
    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.label.check_id=\"${google_monitoring_uptime_check_config.public[0].uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "120s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
      }
    }
  }
  documentation {
    mime_type = "text/markdown"
    content   = "The public endpoint fails from more than one checker region. What to do: docs/runbook.md#uptime (${var.runbook_url}#uptime)."
  }
}

# On Pub/Sub a push that keeps failing lands on its subscription's dead-letter topic
# (modules/pubsub), not on dropgate's dead-letter counter: alert on what waits there.
resource "google_monitoring_alert_policy" "pubsub_dead_letters" {
  count                 = length(var.dead_letter_subscriptions) > 0 ? 1 : 0
  project               = var.project_id
  display_name          = "${var.prefix}: Pub/Sub messages wait on a dead-letter subscription"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "CRITICAL"
  user_labels           = var.labels
  conditions {
    display_name = "Undelivered dead letters"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${join(", ", [for name in var.dead_letter_subscriptions : "\"${name}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "60s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
  documentation {
    mime_type = "text/markdown"
    content   = "Pushes that failed max_delivery_attempts times wait on a dead-letter subscription. What to do: docs/runbook.md#dead-letters (${var.runbook_url}#dead-letters)."
  }
}
