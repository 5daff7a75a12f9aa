# The Google APIs this environment uses, enabled before anything else: every module
# call and data source in main.tf depends on google_project_service.apis. They stay
# enabled on destroy: other things in the project may depend on them.

locals {
  apis = concat(
    [
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "compute.googleapis.com",
      "container.googleapis.com",
      "iam.googleapis.com",
      # Workload Identity and Pub/Sub push tokens are minted through it.
      "iamcredentials.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "redis.googleapis.com",
      "run.googleapis.com",
      "secretmanager.googleapis.com",
      "servicenetworking.googleapis.com",
      "sqladmin.googleapis.com",
      "storage.googleapis.com",
    ],
    local.use_kafka ? ["managedkafka.googleapis.com"] : ["pubsub.googleapis.com"],
    # Memorystore for Redis Cluster places its Private Service Connect endpoints through
    # a service connection policy (Network Connectivity), which provisions them through
    # Service Consumer Management.
    local.use_memorystore_cluster ? ["networkconnectivity.googleapis.com", "serviceconsumermanagement.googleapis.com"] : [],
    # The cluster enforces the project's Binary Authorization policy (modules/gke),
    # which GKE can only evaluate with the API on. Until a policy is written, the
    # project's default policy admits every image.
    local.use_gke ? ["binaryauthorization.googleapis.com"] : [],
  )
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
