# Outputs of the redis-statefulset module.

output "endpoint" {
  description = "Where the functions reach Redis: `host` (the StatefulSet pod's stable DNS name, which the server certificate names) and `port` (TLS only)."
  value = {
    host = local.dns_names[0]
    port = var.kubernetes.port
  }
}

output "secret_ids" {
  description = "Secret Manager secret ids the functions' side needs, by role, as in the memorystore module: `redis-url` (DROPGATE_REDIS_URL) and `redis-ca` (the CA in PEM, for DROPGATE_REDIS_CA_FILE). Available once every secret has its version."
  value = {
    for k, s in google_secret_manager_secret.redis : k => s.secret_id if contains(["redis-ca", "redis-url"], k)
  }
  depends_on = [google_secret_manager_secret_version.redis]
}

output "server_secret_ids" {
  description = "Secret Manager secret ids Redis itself needs, by role: `redis-auth-conf` (the `requirepass` line its configuration includes), `redis-tls-cert` and `redis-tls-key` (its server certificate and key in PEM) and `redis-ca` (the issuing CA). Available once every secret has its version."
  value = {
    for k, s in google_secret_manager_secret.redis : k => s.secret_id if k != "redis-url"
  }
  depends_on = [google_secret_manager_secret_version.redis]
}
