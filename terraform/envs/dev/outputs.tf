# Outputs of the dev environment: what a deploy (CI, kubectl, gcloud) needs next.

output "cloudrun" {
  description = "Cloud Run services (name, uri), jobs and the load balancer address; null unless deployment_target includes cloudrun."
  value = local.use_cloudrun ? {
    services      = module.cloudrun[0].services
    jobs          = module.cloudrun[0].jobs
    load_balancer = module.cloudrun[0].load_balancer
  } : null
}

output "gke" {
  description = "The GKE cluster, the command to get credentials for it, and the Ingress address and SSL policy names; null unless deployment_target includes gke."
  value = local.use_gke ? {
    cluster         = module.gke[0].cluster
    get_credentials = module.gke[0].get_credentials
    ingress         = module.gke[0].ingress
  } : null
}

output "image_repository" {
  description = "Docker prefix to tag and push the dropgate image with (<url>/dropgate:<tag>)."
  value       = module.iam.repository.url
}

output "k8s" {
  description = "Values deploy/k8s needs from this environment: the Workload Identity annotation per Kubernetes service account, the Kafka bootstrap address (GKE runs Kafka consumers), and the Secret Manager secrets to copy into the `dropgate-runtime` Secret."
  value = {
    namespace       = local.k8s_namespace
    kafka_brokers   = one(module.kafka[*].bootstrap_servers)
    service_account = { for k in keys(local.functions) : k => module.iam.emails[k] }
    secrets = merge(
      { database-url = module.cloudsql.secret_ids["database-url"] },
      local.use_memorystore ? { redis-url = module.memorystore[0].secret_ids["redis-url"] } : {},
    )
  }
}

output "kafka" {
  description = "Kafka bootstrap address (DROPGATE_KAFKA_BROKERS) and topic ids; null unless transport is kafka."
  value = local.use_kafka ? {
    bootstrap_servers = one(module.kafka[*].bootstrap_servers)
    topics            = one(module.kafka[*].topics)
  } : null
}

output "pubsub" {
  description = "Pub/Sub topic names (DROPGATE_TOPIC_*), push subscriptions, the dead-letter subscriptions to inspect, and the push service account; null unless transport is pubsub."
  value = local.use_pubsub ? {
    topics                    = one(module.pubsub[*].topics)
    subscriptions             = one(module.pubsub[*].subscriptions)
    dead_letter_subscriptions = one(module.pubsub[*].dead_letter_subscriptions)
    push_service_account      = module.iam.emails["pubsub-push"]
  } : null
}

output "service_accounts" {
  description = "Service account emails, by workload."
  value       = module.iam.emails
}
