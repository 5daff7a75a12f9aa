# Outputs of the kafka module.

output "bootstrap_servers" {
  description = "Bootstrap address for DROPGATE_KAFKA_BROKERS (TLS + SASL listener, port 9092), in the documented bootstrap.<cluster>.<region>.managedkafka.<project>.cloud.goog form."
  value       = "bootstrap.${google_managed_kafka_cluster.main.cluster_id}.${var.region}.managedkafka.${var.project_id}.cloud.goog:9092"
}

output "cluster_id" {
  description = "Id of the Kafka cluster."
  value       = google_managed_kafka_cluster.main.id
}

output "topics" {
  description = "Topic ids, by topic name."
  value       = { for k, t in google_managed_kafka_topic.topics : k => t.id }
}
