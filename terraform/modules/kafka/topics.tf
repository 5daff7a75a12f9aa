# The topics the functions produce to and consume from (created here: the functions
# never create topics themselves).

resource "google_managed_kafka_topic" "topics" {
  for_each           = var.topics
  project            = var.project_id
  location           = var.region
  cluster            = google_managed_kafka_cluster.main.cluster_id
  topic_id           = each.key
  partition_count    = each.value.partition_count
  replication_factor = each.value.replication_factor
  configs            = each.value.configs
}
