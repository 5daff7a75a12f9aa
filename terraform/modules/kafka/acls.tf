# Kafka ACLs: which identity may do what to which topic and consumer group. IAM's
# roles/managedkafka.client only lets a service account connect; without ACLs every
# client could write any topic, so a compromised queue-path function could forge a
# "won" result. Once a resource has an ACL, only the principals it allows may use it
# (the broker denies everyone else), so each topic and group gets one here.

resource "google_managed_kafka_acl" "access" {
  for_each = var.acls
  project  = var.project_id
  location = var.region
  cluster  = google_managed_kafka_cluster.main.cluster_id
  acl_id   = each.key
  dynamic "acl_entries" {
    for_each = each.value
    content {
      principal       = acl_entries.value.principal
      operation       = acl_entries.value.operation
      permission_type = "ALLOW"
      # Managed Kafka requires "*": the host is not how clients are told apart here,
      # their service account is.
      host = "*"
    }
  }
  depends_on = [google_managed_kafka_topic.topics]
}
