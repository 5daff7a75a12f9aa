# Outputs of the monitoring module.

output "dashboard_id" {
  description = "The Cloud Monitoring dashboard's id."
  value       = google_monitoring_dashboard.drop.id
}

output "alert_policies" {
  description = "Alert policy names by alert (the runbook's section names)."
  value       = { for k, p in google_monitoring_alert_policy.alerts : k => p.name }
}
