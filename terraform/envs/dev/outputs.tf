# Outputs of the dev environment: what a deploy (Cloud Build, kubectl, gcloud) needs next.

output "build" {
  description = "What `gcloud builds submit --config deploy/cloudbuild.yaml` needs: the `service_account` builds run as (its resource name, for --service-account) and the `source_staging_dir` (for --gcs-source-staging-dir). The images go to image_repository."
  value = {
    service_account    = module.iam.ids["build"]
    source_staging_dir = module.build.source_bucket.staging_dir
  }
}

output "cloudrun" {
  description = "Cloud Run services (name, uri), jobs and the load balancer address; null unless deployment_target includes cloudrun and image_tag is set."
  value = local.deploy_cloudrun ? {
    services      = module.cloudrun[0].services
    jobs          = module.cloudrun[0].jobs
    load_balancer = module.cloudrun[0].load_balancer
  } : null
}

output "cloud_armor" {
  description = "The Cloud Armor edge policy: `id` and `name` (deploy/k8s's BackendConfig names it; the base uses dropgate-edge)."
  value       = module.cloud_armor.policy
}

output "monitoring" {
  description = "The Cloud Monitoring dashboard id and the alert policy names, by alert (the runbook's section names)."
  value = {
    dashboard      = module.monitoring.dashboard_id
    alert_policies = module.monitoring.alert_policies
  }
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
  description = "Docker prefix to tag and push the dropgate images with (<url>/dropgate:<tag> for the services, <url>/dropgate-admin:<tag> for the operator CLI); deploy/cloudbuild.yaml's _IMAGE_REPOSITORY."
  value       = module.iam.repository.url
}

output "k8s" {
  description = "Values deploy/k8s needs from this environment: the Workload Identity service account per Kubernetes service account (the functions, event-admin and db-migrate), the Kafka bootstrap address (GKE runs Kafka consumers), and, by Kubernetes Secret, the Secret Manager secrets to copy into it as Secret key => secret id (`dropgate-runtime` for the functions; `dropgate-migrate` for the migration Job alone; `dropgate-seed-key` for goods-worker, the admitter and event-admin only; `dropgate-redis` for the in-cluster Redis, null with Memorystore), and `redis_config`: the dropgate-config ConfigMap entries redis_mode decides, which the overlay must carry (DROPGATE_REDIS_MODE: `cluster` with memorystore_cluster, `single` otherwise; DROPGATE_REDIS_TLS_VERIFY: `ca` with Memorystore, `full` with the in-cluster Redis)."
  value = {
    namespace       = local.k8s_namespace
    kafka_brokers   = one(module.kafka[*].bootstrap_servers)
    service_account = { for k in concat(keys(local.functions), ["event-admin", "db-migrate"]) : k => module.iam.emails[k] }
    # What the overlay's dropgate-config patch must set for this redis_mode.
    redis_config = merge(local.redis_mode_env, {
      DROPGATE_REDIS_TLS_VERIFY = local.use_statefulset_redis ? "full" : local.memorystore_tls_env["DROPGATE_REDIS_TLS_VERIFY"]
    })
    secrets = {
      dropgate-runtime = {
        database-ca  = module.cloudsql.secret_ids["database-ca"]
        database-url = module.cloudsql.secret_ids["database-url"]
        redis-ca = one(concat(
          module.memorystore[*].secret_ids["redis-ca"],
          module.memorystore_cluster[*].secret_ids["redis-ca"],
          module.redis_statefulset[*].secret_ids["redis-ca"],
        ))
        redis-url = one(concat(
          module.memorystore[*].secret_ids["redis-url"],
          module.memorystore_cluster[*].secret_ids["redis-url"],
          module.redis_statefulset[*].secret_ids["redis-url"],
        ))
      }
      # Only the migration Job mounts this one: the schema owner's URL.
      dropgate-migrate = {
        database-ca  = module.cloudsql.secret_ids["database-ca"]
        database-url = module.cloudsql.secret_ids["database-migrate-url"]
      }
      # Only goods-worker, the admitter and event-admin mount this one.
      dropgate-seed-key = {
        "seed.key" = module.seed_key.secret_id
      }
      dropgate-redis = local.use_statefulset_redis ? {
        "auth.conf" = module.redis_statefulset[0].server_secret_ids["redis-auth-conf"]
        "ca.crt"    = module.redis_statefulset[0].server_secret_ids["redis-ca"]
        "tls.crt"   = module.redis_statefulset[0].server_secret_ids["redis-tls-cert"]
        "tls.key"   = module.redis_statefulset[0].server_secret_ids["redis-tls-key"]
      } : null
    }
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
  description = "Pub/Sub topic names (DROPGATE_TOPIC_*, winners included), push subscriptions, the dead-letter subscriptions to inspect, and the push service account; null unless transport is pubsub and the Cloud Run services exist."
  value = local.use_pubsub && local.deploy_cloudrun ? {
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
