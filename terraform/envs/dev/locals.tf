# The function catalogue: what each dropgate function runs, what it may touch, and
# how it is exposed. Both deployment targets and the IAM roles are derived from it.

locals {
  use_gke         = contains(["gke", "both"], var.deployment_target)
  use_cloudrun    = contains(["cloudrun", "both"], var.deployment_target)
  use_memorystore = var.redis_mode == "memorystore"

  # Every labelled resource says what it belongs to, so billing and audits can
  # group them even when var.labels is left empty.
  labels = merge({ app = "dropgate", environment = "dev" }, var.labels)

  # The Kubernetes namespace of deploy/k8s (its ServiceAccounts carry the function names).
  k8s_namespace = "dropgate"

  telemetry_roles = [
    "roles/cloudtrace.agent",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ]

  topics = {
    waiting_queue       = "waiting-queue"
    result_notification = "result-notification"
  }

  # `uses` lists the backends a function talks to; it decides secrets, roles and env.
  functions = {
    queue-api = {
      description   = "queue-api: the public HTTP API (enter, status, SSE); Redis only."
      uses          = ["redis"]
      project_roles = local.telemetry_roles
      ingress       = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
      port          = 8080
      min_instances = 2
      max_instances = 100
      concurrency   = 250
      timeout       = "3600s"
      env = {
        DROPGATE_HTTP_ADDR      = "0.0.0.0:8080"
        DROPGATE_JWKS_URL       = var.auth.jwks_url
        DROPGATE_JWT_ISSUER     = var.auth.issuer
        DROPGATE_JWT_AUDIENCE   = var.auth.audience
        DROPGATE_JWT_ALGORITHMS = var.auth.algorithms
        DROPGATE_CORS_ORIGINS   = join(",", var.auth.cors_origins)
        # Only the load balancer reaches this service (its ingress setting), and it
        # appends "<client>, <load balancer>" to X-Forwarded-For.
        DROPGATE_TRUSTED_PROXY_HOPS = "2"
      }
    }
    admitter = {
      description   = "admitter: admits the head of each queue to the draw; Redis and Kafka."
      uses          = ["redis", "kafka"]
      project_roles = concat(local.telemetry_roles, ["roles/managedkafka.client"])
      ingress       = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      port          = 9090
      # One admitter: the admission rate is enforced per process.
      min_instances = 1
      max_instances = 1
      concurrency   = 10
      timeout       = "300s"
      env = {
        DROPGATE_HEALTH_ADDR         = "0.0.0.0:9090"
        DROPGATE_TOPIC_WAITING_QUEUE = local.topics.waiting_queue
      }
    }
    goods-worker = {
      description = "goods-worker: draws admitted users against the stock; Kafka and PostgreSQL."
      uses        = ["kafka", "postgres"]
      project_roles = concat(local.telemetry_roles, [
        "roles/cloudsql.client",
        "roles/cloudsql.instanceUser",
        "roles/managedkafka.client",
      ])
      ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      port    = 9090
      # More consumers than partitions would sit idle.
      min_instances = 1
      max_instances = var.kafka.partitions
      concurrency   = 10
      timeout       = "300s"
      env = {
        DROPGATE_HEALTH_ADDR               = "0.0.0.0:9090"
        DROPGATE_TOPIC_WAITING_QUEUE       = local.topics.waiting_queue
        DROPGATE_TOPIC_RESULT_NOTIFICATION = local.topics.result_notification
      }
    }
    result-relay = {
      description   = "result-relay: brings draw results back to Redis; Kafka and Redis."
      uses          = ["redis", "kafka"]
      project_roles = concat(local.telemetry_roles, ["roles/managedkafka.client"])
      ingress       = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      port          = 9090
      min_instances = 1
      max_instances = var.kafka.partitions
      concurrency   = 10
      timeout       = "300s"
      env = {
        DROPGATE_HEALTH_ADDR               = "0.0.0.0:9090"
        DROPGATE_TOPIC_RESULT_NOTIFICATION = local.topics.result_notification
      }
    }
  }

  # Service accounts: one per function, plus the GKE nodes' own.
  service_accounts = merge(
    { for k, f in local.functions : k => { description = f.description, project_roles = f.project_roles } },
    local.use_gke ? {
      gke-nodes = {
        description   = "GKE nodes: pull images, write logs and metrics; nothing else."
        project_roles = ["roles/container.defaultNodeServiceAccount"]
      }
    } : {},
  )

  redis_users    = [for k, f in local.functions : k if contains(f.uses, "redis")]
  postgres_users = [for k, f in local.functions : k if contains(f.uses, "postgres")]
}
