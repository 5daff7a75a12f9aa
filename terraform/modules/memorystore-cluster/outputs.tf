# Outputs of the memorystore-cluster module.

output "endpoint" {
  description = "The cluster's discovery endpoint in the VPC: `host` and `port` (TLS). Clients learn every node from it (CLUSTER SLOTS)."
  value = {
    host = google_redis_cluster.queue.discovery_endpoints[0].address
    port = google_redis_cluster.queue.discovery_endpoints[0].port
  }
}

output "secret_ids" {
  description = "Secret Manager secret ids, by role: `redis-url` (DROPGATE_REDIS_URL) and `redis-ca` (the server CA in PEM, for DROPGATE_REDIS_CA_FILE). Available only once every secret has its version and its accessors, so a workload that refers to one never starts before it can read it."
  value       = { for k, s in google_secret_manager_secret.redis : k => s.secret_id }
  depends_on = [
    google_secret_manager_secret_iam_member.redis,
    google_secret_manager_secret_version.redis,
  ]
}
