# The function catalogue: what each dropgate function runs, what it may touch, and
# how it is exposed. Both deployment targets and the IAM roles are derived from it.

locals {
  use_gke                 = contains(["gke", "both"], var.deployment_target)
  use_cloudrun            = contains(["cloudrun", "both"], var.deployment_target)
  use_memorystore         = var.redis_mode == "memorystore"
  use_memorystore_cluster = var.redis_mode == "memorystore_cluster"
  use_statefulset_redis   = var.redis_mode == "statefulset"
  use_kafka               = var.transport == "kafka"
  use_pubsub              = var.transport == "pubsub"
  # Cloud Run services need an image that exists, so they (and the Pub/Sub push
  # subscriptions to them) are created on the first apply that names one.
  deploy_cloudrun = local.use_cloudrun && var.image_tag != null

  # Every labelled resource says what it belongs to, so billing and audits can
  # group them even when var.labels is left empty.
  labels = merge({ app = "dropgate", environment = "dev" }, var.labels)

  # The Kubernetes namespace of deploy/k8s (its ServiceAccounts carry the function names).
  k8s_namespace = "dropgate"

  # Every deployed function refuses to start unless each of its connections to Redis,
  # PostgreSQL and Kafka is encrypted and verifies the server's certificate. The
  # deploy/k8s base ConfigMap sets the same for GKE.
  tls_env = { DROPGATE_REQUIRE_TLS = "true" }

  # Memorystore's server certificate names its IP in the common name only, which
  # rustls does not read, so the chain is checked against the instance's own CA and
  # the name is not (the same trust as PostgreSQL's verify-ca). The cluster's nodes are
  # reached at Private Service Connect addresses of this VPC, which their certificates
  # are not known to name either, so memorystore_cluster is checked the same way.
  memorystore_tls_env = {
    DROPGATE_REDIS_CA_FILE    = local.ca_files["redis-ca"]
    DROPGATE_REDIS_TLS_VERIFY = "ca"
  }
  # One Redis (memorystore, statefulset) or a cluster (memorystore_cluster), whose
  # nodes the cluster client learns from the discovery endpoint in DROPGATE_REDIS_URL.
  # Every workload with DROPGATE_REDIS_URL gets it: the Redis functions and event-admin
  # (Cloud Run here; GKE from the k8s output's redis_config).
  redis_mode_env = { DROPGATE_REDIS_MODE = local.use_memorystore_cluster ? "cluster" : "single" }

  # Where the stores' server CAs are mounted, by secret name (Cloud Run: one secret
  # volume per file; GKE: the same paths from the dropgate-runtime Secret).
  ca_files = {
    database-ca = "/etc/dropgate/database-ca/ca.pem"
    redis-ca    = "/etc/dropgate/redis-ca/ca.pem"
  }

  telemetry_roles = [
    "roles/cloudtrace.agent",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ]

  topics = {
    waiting_queue       = "waiting-queue"
    result_notification = "result-notification"
    # After each draw batch with at least one winner, goods-worker publishes one
    # message listing them, keyed by the event id, for a checkout service downstream.
    # Nothing of dropgate consumes it.
    winners = "winners"
  }
  # Pub/Sub topics share the project's namespace with everything else in it, so they
  # carry the prefix; Kafka topics live in a cluster of their own.
  topic_names = { for k, name in local.topics : k => local.use_pubsub ? "${var.prefix}-${name}" : name }
  # Where goods-worker and result-relay set aside every message they cannot read (an
  # unknown message version, malformed bytes) before committing past it, until an
  # operator runs `dropgate dead-letter replay` (event-admin). Kafka only: on Pub/Sub a
  # refused push is dead-lettered by its subscription instead (modules/pubsub), and
  # `dropgate dead-letter replay-pubsub` sends it back.
  dead_letter_topic = "dead-letter"
  # Kafka ACLs (modules/kafka): each topic and consumer group open to exactly the
  # functions that use it, so only goods-worker can write a result and only the
  # admitter (and the operator's dead-letter replay) an admission. READ and WRITE imply
  # DESCRIBE. event-admin reads the dead letters with groups named
  # dropgate-dead-letter-*, and replays them to the topics they came from.
  kafka_principal = { for k in ["admitter", "goods-worker", "result-relay", "event-admin"] : k => "User:${module.iam.emails[k]}" }
  kafka_acls = {
    "topic/${local.topics.waiting_queue}" = [
      { principal = local.kafka_principal["admitter"], operation = "WRITE" },
      { principal = local.kafka_principal["goods-worker"], operation = "READ" },
      { principal = local.kafka_principal["event-admin"], operation = "WRITE" },
    ]
    "topic/${local.topics.result_notification}" = [
      { principal = local.kafka_principal["goods-worker"], operation = "WRITE" },
      { principal = local.kafka_principal["result-relay"], operation = "READ" },
      { principal = local.kafka_principal["event-admin"], operation = "WRITE" },
    ]
    "topic/${local.topics.winners}" = concat(
      [{ principal = local.kafka_principal["goods-worker"], operation = "WRITE" }],
      [for member in var.kafka.winners_readers : { principal = member, operation = "READ" }],
    )
    "topic/${local.dead_letter_topic}" = [
      { principal = local.kafka_principal["goods-worker"], operation = "WRITE" },
      { principal = local.kafka_principal["result-relay"], operation = "WRITE" },
      { principal = local.kafka_principal["event-admin"], operation = "READ" },
    ]
    "consumerGroup/goods-worker" = [
      { principal = local.kafka_principal["goods-worker"], operation = "READ" },
    ]
    "consumerGroup/result-relay" = [
      { principal = local.kafka_principal["result-relay"], operation = "READ" },
    ]
    "consumerGroupPrefixed/dropgate-dead-letter-" = [
      { principal = local.kafka_principal["event-admin"], operation = "READ" },
    ]
  }
  dead_letter_env = local.use_kafka ? { DROPGATE_TOPIC_DEAD_LETTER = local.dead_letter_topic } : {}
  # event-admin names both topics: `dropgate dead-letter` replays to them.
  admin_topic_env = {
    DROPGATE_TOPIC_WAITING_QUEUE       = local.topic_names.waiting_queue
    DROPGATE_TOPIC_RESULT_NOTIFICATION = local.topic_names.result_notification
  }

  # What a function on the message bus needs of the transport, and the role it gets.
  transport_roles = local.use_kafka ? ["roles/managedkafka.client"] : []

  # Pub/Sub pushes to these routes; the token's audience is the service's
  # deterministic URL (https://<service>-<project number>.<region>.run.app), known
  # before the service exists, so the service's own settings can name it.
  push_audience = {
    for k in ["goods-worker", "result-relay"] :
    k => "https://${var.prefix}-${k}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # `uses` lists the backends a function talks to; it decides secrets, roles and env.
  functions = {
    queue-api = {
      description   = "queue-api: the public HTTP API (enter, status, SSE); Redis only."
      uses          = ["redis"]
      project_roles = local.telemetry_roles
      ingress       = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
      port          = 8080
      # Health, readiness and metrics on a port of their own: Cloud Run forwards only
      # the container port, so the probes reach them and the internet does not.
      health_port   = 9090
      min_instances = 2
      max_instances = 100
      concurrency   = 250
      timeout       = "3600s"
      env = {
        DROPGATE_API_ADDR         = "0.0.0.0:8080"
        DROPGATE_HEALTH_ADDR      = "0.0.0.0:9090"
        DROPGATE_JWKS_URL         = var.auth.jwks_url
        DROPGATE_JWT_ISSUER       = var.auth.issuer
        DROPGATE_JWT_AUDIENCE     = var.auth.audience
        DROPGATE_JWT_ALGORITHMS   = var.auth.algorithms
        DROPGATE_API_CORS_ORIGINS = join(",", var.auth.cors_origins)
        # Only the load balancer reaches this service (its ingress setting), and it
        # appends "<client>, <load balancer>" to X-Forwarded-For.
        DROPGATE_API_TRUSTED_PROXY_HOPS = "2"
        # Google's front end reads each client's headers itself and forwards whole
        # requests only; it reuses idle backend connections for up to 600 s, which
        # queue-api must not close first (see docs/api.md, Limits).
        DROPGATE_API_HEADER_TIMEOUT_MS = "620000"
      }
    }
    # PostgreSQL is the authority on an event's lifecycle: the admitter moves events to
    # closing and closed there, corrects the Redis mirror from it and records the users
    # it sweeps to a final state. It logs in as the same password user as goods-worker
    # (DATABASE_URL), so it gets the Cloud SQL client role but no IAM database user
    # (no roles/cloudsql.instanceUser, not in local.postgres_iam_users).
    admitter = {
      description = "admitter: admits the head of each queue to the draw and keeps event lifecycles; Redis, the message bus and PostgreSQL."
      uses        = ["redis", "bus", "postgres"]
      project_roles = concat(local.telemetry_roles, local.transport_roles, [
        "roles/cloudsql.client",
      ])
      ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      port    = 9090
      # One admitter: the admission rate is enforced per process.
      min_instances = 1
      max_instances = 1
      concurrency   = 10
      timeout       = "300s"
      env = {
        DROPGATE_HEALTH_ADDR         = "0.0.0.0:9090"
        DROPGATE_TOPIC_WAITING_QUEUE = local.topic_names.waiting_queue
      }
    }
    goods-worker = {
      description = "goods-worker: draws admitted users against the stock; the message bus and PostgreSQL."
      uses        = ["bus", "postgres"]
      project_roles = concat(local.telemetry_roles, local.transport_roles, [
        "roles/cloudsql.client",
        "roles/cloudsql.instanceUser",
      ])
      ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      port    = 9090
      # Kafka: more consumers than partitions would sit idle. Pub/Sub: pushes spread
      # over instances, and one instance stays up for the outbox re-send loop.
      min_instances = 1
      max_instances = local.use_kafka ? var.kafka.partitions : var.pubsub.max_instances
      # Concurrent pushes are what fills a batch (one transaction for many users).
      concurrency = local.use_kafka ? 10 : 250
      timeout     = "300s"
      env = merge({
        DROPGATE_HEALTH_ADDR               = "0.0.0.0:9090"
        DROPGATE_TOPIC_WAITING_QUEUE       = local.topic_names.waiting_queue
        DROPGATE_TOPIC_RESULT_NOTIFICATION = local.topic_names.result_notification
        DROPGATE_TOPIC_WINNERS             = local.topic_names.winners
      }, local.dead_letter_env, local.use_pubsub ? { DROPGATE_PUSH_AUDIENCE = local.push_audience["goods-worker"] } : {})
    }
    result-relay = {
      description   = "result-relay: brings draw results back to Redis; the message bus and Redis."
      uses          = ["redis", "bus"]
      project_roles = concat(local.telemetry_roles, local.transport_roles)
      ingress       = "INGRESS_TRAFFIC_INTERNAL_ONLY"
      port          = 9090
      min_instances = local.use_kafka ? 1 : 0
      max_instances = local.use_kafka ? var.kafka.partitions : var.pubsub.max_instances
      concurrency   = local.use_kafka ? 10 : 250
      timeout       = "300s"
      env = merge({
        DROPGATE_HEALTH_ADDR               = "0.0.0.0:9090"
        DROPGATE_TOPIC_RESULT_NOTIFICATION = local.topic_names.result_notification
      }, local.dead_letter_env, local.use_pubsub ? { DROPGATE_PUSH_AUDIENCE = local.push_audience["result-relay"] } : {})
    }
  }

  # Service accounts: one per function, the image build's, plus the GKE nodes' own.
  service_accounts = merge(
    { for k, f in local.functions : k => { description = f.description, project_roles = f.project_roles } },
    {
      build = {
        description   = "Cloud Build: builds deploy/docker/Dockerfile and pushes to the image repository (repository-level grant); writes its build logs."
        project_roles = ["roles/logging.logWriter"]
      }
      # `dropgate dead-letter list|replay` reads the dead-letter topic and produces
      # back to waiting-queue and result-notification, so with Kafka the operator CLI
      # gets the Kafka client role, and local.kafka_acls let it read the dead letters
      # and write those two topics, nothing more. It already writes both stores.
      # The migration job: logs in as the schema's owner (the database-migrate-url
      # secret, which nothing else reads) and grants the functions' user its rows.
      db-migrate = {
        description   = "The migration job (dropgate db migrate) on Cloud Run and GKE: reads the schema owner's database URL and the database CA; no project role."
        project_roles = []
      }
      event-admin = {
        description   = "The operator CLI (dropgate event create/open/close/verify, dropgate dead-letter list/replay/replay-pubsub) as a Cloud Run job and the event-admin pod: reads the Redis and PostgreSQL secrets; with Kafka, the Kafka client role; with Pub/Sub, pull on the dead-letter subscriptions and publish on the topics."
        project_roles = local.transport_roles
      }
    },
    local.use_pubsub ? {
      pubsub-push = {
        description   = "Pub/Sub push identity: signs the push requests to goods-worker and result-relay, which may be invoked by it alone; no project role."
        project_roles = []
      }
    } : {},
    local.use_gke ? {
      gke-nodes = {
        description   = "GKE nodes: pull images, write logs and metrics; nothing else."
        project_roles = ["roles/container.defaultNodeServiceAccount"]
      }
    } : {},
  )

  redis_users    = [for k, f in local.functions : k if contains(f.uses, "redis")]
  postgres_users = [for k, f in local.functions : k if contains(f.uses, "postgres")]
  # Cloud SQL IAM database users: only for the PostgreSQL users that may log in with
  # IAM (roles/cloudsql.instanceUser), today goods-worker. The others log in as the
  # password user in DATABASE_URL and get no database user of their own.
  postgres_iam_users = [
    for k, f in local.functions : k if contains(f.uses, "postgres") && contains(f.project_roles, "roles/cloudsql.instanceUser")
  ]
  # The operator CLI changes events in PostgreSQL and mirrors them into Redis, so its
  # Cloud Run job reads both stores' secrets too (it logs in with the password, so it
  # needs no Cloud SQL IAM user).
  redis_secret_readers    = concat(local.redis_users, ["event-admin"])
  postgres_secret_readers = concat(local.postgres_users, ["event-admin"])

  # The seed key (modules/seed-key) opens the draw seeds sealed in PostgreSQL, so only
  # what needs a seed gets it: goods-worker draws with it, the admitter reveals it when
  # it closes an event, and the operator CLI seals a new one (`event create`) and
  # shuffles the randomized pre-queue with it (`event open`). queue-api and
  # result-relay never do. Mounted as a file (Cloud Run: a secret volume of its own;
  # GKE: the same path from the dropgate-seed-key Secret), named by
  # DROPGATE_SEED_KEY_FILE.
  seed_key_readers = ["admitter", "goods-worker", "event-admin"]
  seed_key_file    = "/etc/dropgate/seed-key/seed.key"
}
