# Google Managed Service for Apache Kafka: the broker for the waiting-queue,
# result-notification, winners and dead-letter topics. Its endpoints get addresses in
# the private subnet only; clients connect over TLS with SASL (OAUTHBEARER or PLAIN) as
# their service account.

resource "google_managed_kafka_cluster" "main" {
  project    = var.project_id
  cluster_id = "${var.prefix}-kafka"
  location   = var.region
  labels     = var.labels

  capacity_config {
    vcpu_count   = var.capacity.vcpu_count
    memory_bytes = var.capacity.memory_gib * 1024 * 1024 * 1024
  }

  gcp_config {
    access_config {
      network_configs {
        subnet = var.subnet_id
      }
    }
  }

  rebalance_config {
    mode = "AUTO_REBALANCE_ON_SCALE_UP"
  }
}
