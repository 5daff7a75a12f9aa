# The dev environment: the network, identities and data services every target needs,
# then GKE and/or Cloud Run as var.deployment_target says.
#
# Order on a fresh project: every module waits for the APIs (services.tf), so nothing
# calls a Google API before it is enabled; Cloud Run waits for the secrets' versions
# and their accessor grants (the memorystore or memorystore-cluster, cloudsql and
# seed-key modules), so no revision starts before it can read what it mounts.

module "network" {
  source     = "../../modules/network"
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  ip_ranges  = var.network_ranges
  depends_on = [google_project_service.apis]
}

module "iam" {
  source           = "../../modules/iam"
  project_id       = var.project_id
  prefix           = var.prefix
  region           = var.region
  labels           = local.labels
  service_accounts = local.service_accounts
  artifact_registry = {
    readers = local.use_gke ? ["gke-nodes"] : []
    writers = ["build"]
  }
  depends_on = [google_project_service.apis]
}

# Where `gcloud builds submit` uploads the source for deploy/cloudbuild.yaml.
module "build" {
  source         = "../../modules/build"
  project_id     = var.project_id
  prefix         = var.prefix
  region         = var.region
  labels         = local.labels
  builder_member = module.iam.members["build"]
  depends_on     = [google_project_service.apis]
}

module "memorystore" {
  source     = "../../modules/memorystore"
  count      = local.use_memorystore ? 1 : 0
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  config     = var.memorystore
  network = {
    id             = module.network.ids.network
    psa_range      = module.network.names.psa_range
    psa_connection = module.network.psa_connection
  }
  secret_accessors = { for k in local.redis_secret_readers : k => module.iam.members[k] }
  depends_on       = [google_project_service.apis]
}

# redis_mode = memorystore_cluster: Memorystore for Redis Cluster, its Private Service
# Connect endpoints in the private subnet (where GKE nodes and Cloud Run's direct VPC
# egress already are), and the same two secrets as the single instance.
module "memorystore_cluster" {
  source     = "../../modules/memorystore-cluster"
  count      = local.use_memorystore_cluster ? 1 : 0
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  config     = var.memorystore_cluster
  network = {
    id     = module.network.ids.network
    subnet = module.network.ids.private_subnet
  }
  secret_accessors = { for k in local.redis_secret_readers : k => module.iam.members[k] }
  depends_on       = [google_project_service.apis]
}

# redis_mode = statefulset: the CA, server certificate and password the in-cluster
# Redis (deploy/k8s/redis) serves TLS and AUTH with.
module "redis_statefulset" {
  source     = "../../modules/redis-statefulset"
  count      = local.use_statefulset_redis ? 1 : 0
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  kubernetes = { namespace = local.k8s_namespace }
  depends_on = [google_project_service.apis]
}

module "cloudsql" {
  source     = "../../modules/cloudsql"
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  config     = var.cloudsql
  network = {
    id             = module.network.ids.network
    psa_range      = module.network.names.psa_range
    psa_connection = module.network.psa_connection
  }
  iam_users        = { for k in local.postgres_iam_users : k => module.iam.emails[k] }
  secret_accessors = { for k in local.postgres_secret_readers : k => module.iam.members[k] }
  # The migration job alone reads the schema owner's URL.
  migrate_secret_accessors = { db-migrate = module.iam.members["db-migrate"] }
  depends_on               = [google_project_service.apis]
}

# The key the draw seeds are sealed under in PostgreSQL (Secret Manager), readable by
# local.seed_key_readers only.
module "seed_key" {
  source           = "../../modules/seed-key"
  project_id       = var.project_id
  prefix           = var.prefix
  region           = var.region
  labels           = local.labels
  secret_accessors = { for k in local.seed_key_readers : k => module.iam.members[k] }
  depends_on       = [google_project_service.apis]
}

# Cloud Armor at the edge: WAF rules and per-client rate limits, on the Cloud Run
# load balancer's backend and on the GKE Ingress's (its BackendConfig names it).
module "cloud_armor" {
  source     = "../../modules/cloud-armor"
  project_id = var.project_id
  prefix     = var.prefix
  policy     = var.cloud_armor
  depends_on = [google_project_service.apis]
}

# The live view of a drop and who gets woken: the dashboard of deploy/monitoring
# (the same panels as the Grafana dashboard there), alert policies, SLOs and an uptime
# check on the public endpoint (docs/runbook.md says what each means).
module "monitoring" {
  source                = "../../modules/monitoring"
  project_id            = var.project_id
  prefix                = var.prefix
  labels                = local.labels
  panels                = jsondecode(file("${path.module}/../../../deploy/monitoring/panels.json"))
  notification_channels = var.monitoring.notification_channels
  objectives            = var.monitoring.objectives
  runbook_url           = var.monitoring.runbook_url
  public_host           = length(var.public_domains) > 0 ? var.public_domains[0] : null
  dead_letter_subscriptions = (local.use_pubsub && local.deploy_cloudrun
    ? [for id in values(module.pubsub[0].dead_letter_subscriptions) : basename(id)]
  : [])
  depends_on = [google_project_service.apis]
}

# The message bus, as var.transport says: Managed Kafka (consumer groups; GKE and
# Cloud Run) or Pub/Sub (push subscriptions to the Cloud Run services). Only what
# local.transport_env and the pubsub module's topics below hold differ; the functions
# are the same binaries (built with the `pubsub` feature for Pub/Sub).
module "kafka" {
  source     = "../../modules/kafka"
  count      = local.use_kafka ? 1 : 0
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  subnet_id  = module.network.ids.private_subnet
  acls       = local.kafka_acls
  capacity = {
    vcpu_count = var.kafka.vcpu_count
    memory_gib = var.kafka.memory_gib
  }
  topics = merge(
    {
      # waiting-queue, result-notification and winners, alike (winners is keyed by
      # the event id, so one event's batches stay in order on one partition). A week
      # of retention: a consumer that is down for days loses nothing. For winners that
      # is a floor, not just a default: it is the record of who won, which the
      # checkout service may replay (re-read from an earlier offset after an outage or
      # a fault on its side), so never keep it shorter than a week.
      for name in values(local.topics) : name => {
        partition_count    = var.kafka.partitions
        replication_factor = var.kafka.replication_factor
        configs = {
          "retention.ms"        = "604800000"
          "min.insync.replicas" = tostring(min(2, var.kafka.replication_factor))
        }
      }
    },
    {
      # Only what the consumers could not read: a trickle, and read by one replay at a
      # time, so three partitions do. Letters wait for an operator, so two weeks.
      (local.dead_letter_topic) = {
        partition_count    = 3
        replication_factor = var.kafka.replication_factor
        configs = {
          "retention.ms"        = "1209600000"
          "min.insync.replicas" = tostring(min(2, var.kafka.replication_factor))
        }
      }
    },
  )
  depends_on = [google_project_service.apis]
}

# The push subscriptions need the Cloud Run services, so this follows them.
module "pubsub" {
  source     = "../../modules/pubsub"
  count      = local.use_pubsub && local.deploy_cloudrun ? 1 : 0
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  push_service_account = {
    email = module.iam.emails["pubsub-push"]
    id    = module.iam.ids["pubsub-push"]
  }
  # The operator job replays what the push subscriptions dead-lettered.
  dead_letter_replayers = [module.iam.members["event-admin"]]
  topics = {
    (local.topics.waiting_queue) = {
      publishers = [module.iam.members["admitter"]]
      push = merge(var.pubsub.push, {
        service  = one(module.cloudrun[*].services["goods-worker"].name)
        endpoint = "${one(module.cloudrun[*].services["goods-worker"].uri)}/pubsub/waiting-queue"
        audience = local.push_audience["goods-worker"]
      })
    }
    (local.topics.result_notification) = {
      publishers = [module.iam.members["goods-worker"]]
      push = merge(var.pubsub.push, {
        service  = one(module.cloudrun[*].services["result-relay"].name)
        endpoint = "${one(module.cloudrun[*].services["result-relay"].uri)}/pubsub/result-notification"
        audience = local.push_audience["result-relay"]
      })
    }
  }
  # Published by goods-worker alone (ordering key: the event id) for the checkout
  # service, which makes its own subscription: dropgate subscribes to it nowhere.
  outbound_topics = {
    (local.topics.winners) = {
      publishers = [module.iam.members["goods-worker"]]
    }
  }
  depends_on = [google_project_service.apis]
}

# Read once the APIs are on (the Resource Manager API serves it).
data "google_project" "this" {
  project_id = var.project_id
  depends_on = [google_project_service.apis]
}

locals {
  # The Redis secrets Cloud Run reads: the instance's or the cluster's (with
  # statefulset there is no Cloud Run, which cannot reach the in-cluster Redis).
  redis_secret_ids = one(concat(module.memorystore[*].secret_ids, module.memorystore_cluster[*].secret_ids))

  # Managed Kafka takes SASL over TLS only. Its certificate chains to a public root
  # (the image's ca-certificates, so no DROPGATE_KAFKA_CA_FILE), and the OAUTHBEARER
  # tokens are the workload's own Google credentials from the metadata server
  # (roles/managedkafka.client, local.transport_roles).
  transport_env = local.use_kafka ? {
    DROPGATE_KAFKA_BROKERS           = one(module.kafka[*].bootstrap_servers)
    DROPGATE_KAFKA_SECURITY_PROTOCOL = "sasl_ssl"
    DROPGATE_KAFKA_SASL_MECHANISM    = "OAUTHBEARER"
    } : {
    DROPGATE_TRANSPORT            = "pubsub"
    DROPGATE_PUBSUB_PROJECT       = var.project_id
    DROPGATE_PUSH_SERVICE_ACCOUNT = module.iam.emails["pubsub-push"]
  }
}

module "gke" {
  source               = "../../modules/gke"
  count                = local.use_gke ? 1 : 0
  project_id           = var.project_id
  prefix               = var.prefix
  region               = var.region
  labels               = local.labels
  node_service_account = module.iam.emails["gke-nodes"]
  network = {
    network        = module.network.ids.network
    subnet         = module.network.ids.private_subnet
    pods_range     = module.network.names.pods_range
    services_range = module.network.names.services_range
  }
  cluster = {
    enable_private_endpoint  = var.gke.enable_private_endpoint
    master_authorized_ranges = var.gke.master_authorized_ranges
    master_ipv4_cidr_block   = var.gke.master_ipv4_cidr_block
    rbac_security_group      = var.gke.rbac_security_group
    release_channel          = var.gke.release_channel
    deletion_protection      = var.gke.deletion_protection
  }
  node_pool = {
    machine_type = var.gke.machine_type
    min_nodes    = var.gke.min_nodes
    max_nodes    = var.gke.max_nodes
    spot         = var.gke.spot
  }
  # The functions, and event-admin for its Kafka tokens (dropgate dead-letter).
  workload_identity = {
    for k in concat(keys(local.functions), ["event-admin", "db-migrate"]) : k => {
      service_account_id = module.iam.ids[k]
      namespace          = local.k8s_namespace
      ksa                = k
    }
  }
  depends_on = [google_project_service.apis]
}

module "cloudrun" {
  source              = "../../modules/cloudrun"
  count               = local.deploy_cloudrun ? 1 : 0
  project_id          = var.project_id
  prefix              = var.prefix
  region              = var.region
  labels              = local.labels
  image               = "${module.iam.repository.url}/dropgate:${var.image_tag}"
  admin_image         = "${module.iam.repository.url}/dropgate-admin:${var.image_tag}"
  deletion_protection = true
  network = {
    network = module.network.ids.network
    subnet  = module.network.ids.private_subnet
  }
  services = {
    for k, f in local.functions : k => {
      command         = ["/usr/local/bin/${k}"]
      service_account = module.iam.emails[k]
      ingress         = f.ingress
      port            = f.port
      health_port     = try(f.health_port, null)
      min_instances   = f.min_instances
      max_instances   = f.max_instances
      concurrency     = f.concurrency
      timeout         = f.timeout
      env = merge(
        f.env,
        local.tls_env,
        contains(f.uses, "redis") ? merge(local.memorystore_tls_env, local.redis_mode_env) : {},
        contains(f.uses, "postgres") ? { DROPGATE_DATABASE_CA_FILE = local.ca_files["database-ca"] } : {},
        contains(f.uses, "bus") ? local.transport_env : {},
        contains(local.seed_key_readers, k) ? { DROPGATE_SEED_KEY_FILE = local.seed_key_file } : {},
      )
      secret_env = merge(
        contains(f.uses, "redis") ? { DROPGATE_REDIS_URL = local.redis_secret_ids["redis-url"] } : {},
        contains(f.uses, "postgres") ? { DATABASE_URL = module.cloudsql.secret_ids["database-url"] } : {},
      )
      secret_files = merge(
        contains(f.uses, "redis") ? {
          redis-ca = { path = local.ca_files["redis-ca"], secret = local.redis_secret_ids["redis-ca"] }
        } : {},
        contains(f.uses, "postgres") ? {
          database-ca = { path = local.ca_files["database-ca"], secret = module.cloudsql.secret_ids["database-ca"] }
        } : {},
        contains(local.seed_key_readers, k) ? {
          seed-key = { path = local.seed_key_file, secret = module.seed_key.secret_id }
        } : {},
      )
    }
  }
  jobs = {
    # Migrates as the schema's owner (an identity and a database user of its own),
    # then grants the functions' user the runtime role: rows, not the schema.
    db-migrate = {
      command         = ["/usr/local/bin/dropgate", "db", "migrate"]
      service_account = module.iam.emails["db-migrate"]
      env = merge(local.tls_env, {
        DROPGATE_DATABASE_CA_FILE       = local.ca_files["database-ca"]
        DROPGATE_DATABASE_RUNTIME_USERS = module.cloudsql.users.runtime
      })
      secret_env = { DATABASE_URL = module.cloudsql.secret_ids["database-migrate-url"] }
      secret_files = {
        database-ca = { path = local.ca_files["database-ca"], secret = module.cloudsql.secret_ids["database-ca"] }
      }
    }
    # The operator CLI: `gcloud run jobs execute <prefix>-event-admin --args=event,create,...`
    # or `--args=dead-letter,replay` (`dead-letter,replay-pubsub` on Pub/Sub;
    # docs/deploy.md). Not retried: an operator reads the outcome and decides. It
    # reaches the bus as the functions do, for `dropgate dead-letter`, and reads the
    # seed key for `dropgate event create` and `event open`.
    event-admin = {
      command         = ["/usr/local/bin/dropgate"]
      service_account = module.iam.emails["event-admin"]
      env = merge(local.tls_env, local.memorystore_tls_env, local.redis_mode_env, {
        DROPGATE_DATABASE_CA_FILE = local.ca_files["database-ca"]
        DROPGATE_SEED_KEY_FILE    = local.seed_key_file
      }, local.transport_env, local.admin_topic_env, local.dead_letter_env)
      secret_env = {
        DATABASE_URL       = module.cloudsql.secret_ids["database-url"]
        DROPGATE_REDIS_URL = local.redis_secret_ids["redis-url"]
      }
      secret_files = {
        database-ca = { path = local.ca_files["database-ca"], secret = module.cloudsql.secret_ids["database-ca"] }
        redis-ca    = { path = local.ca_files["redis-ca"], secret = local.redis_secret_ids["redis-ca"] }
        seed-key    = { path = local.seed_key_file, secret = module.seed_key.secret_id }
      }
      max_retries = 0
      timeout     = "300s"
    }
  }
  load_balancer = {
    service         = "queue-api"
    domains         = var.public_domains
    security_policy = module.cloud_armor.policy.id
  }
  # Besides the APIs: every secret version and secretAccessor grant of the stores and
  # of the seed key, so the first revision can read what it refers to. (The modules'
  # secret id outputs wait for the same; this says it where the services are declared.)
  depends_on = [
    google_project_service.apis,
    module.cloudsql,
    module.memorystore,
    module.memorystore_cluster,
    module.seed_key,
  ]
}
