# The dev environment: the network, identities and data services every target needs,
# then GKE and/or Cloud Run as var.deployment_target says.

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
  }
  depends_on = [google_project_service.apis]
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
  secret_accessors = { for k in local.redis_users : k => module.iam.members[k] }
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
  iam_users        = { for k in local.postgres_users : k => module.iam.emails[k] }
  secret_accessors = { for k in local.postgres_users : k => module.iam.members[k] }
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
  capacity = {
    vcpu_count = var.kafka.vcpu_count
    memory_gib = var.kafka.memory_gib
  }
  topics = {
    for name in values(local.topics) : name => {
      partition_count    = var.kafka.partitions
      replication_factor = var.kafka.replication_factor
      configs = {
        "retention.ms"        = "604800000"
        "min.insync.replicas" = tostring(min(2, var.kafka.replication_factor))
      }
    }
  }
  depends_on = [google_project_service.apis]
}

module "pubsub" {
  source     = "../../modules/pubsub"
  count      = local.use_pubsub ? 1 : 0
  project_id = var.project_id
  prefix     = var.prefix
  region     = var.region
  labels     = local.labels
  push_service_account = {
    email = module.iam.emails["pubsub-push"]
    id    = module.iam.ids["pubsub-push"]
  }
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
  depends_on = [google_project_service.apis]
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  transport_env = local.use_kafka ? {
    DROPGATE_KAFKA_BROKERS = one(module.kafka[*].bootstrap_servers)
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
  workload_identity = {
    for k in keys(local.functions) : k => {
      service_account_id = module.iam.ids[k]
      namespace          = local.k8s_namespace
      ksa                = k
    }
  }
}

module "cloudrun" {
  source              = "../../modules/cloudrun"
  count               = local.use_cloudrun ? 1 : 0
  project_id          = var.project_id
  prefix              = var.prefix
  region              = var.region
  labels              = local.labels
  image               = "${module.iam.repository.url}/dropgate:${var.image_tag}"
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
      min_instances   = f.min_instances
      max_instances   = f.max_instances
      concurrency     = f.concurrency
      timeout         = f.timeout
      env             = merge(f.env, contains(f.uses, "bus") ? local.transport_env : {})
      secret_env = merge(
        contains(f.uses, "redis") ? { DROPGATE_REDIS_URL = module.memorystore[0].secret_ids["redis-url"] } : {},
        contains(f.uses, "postgres") ? { DATABASE_URL = module.cloudsql.secret_ids["database-url"] } : {},
      )
    }
  }
  jobs = {
    db-migrate = {
      command         = ["/usr/local/bin/dropgate", "db", "migrate"]
      service_account = module.iam.emails["goods-worker"]
      secret_env      = { DATABASE_URL = module.cloudsql.secret_ids["database-url"] }
    }
  }
  load_balancer = {
    service = "queue-api"
    domains = var.public_domains
  }
}
