# One Cloud Run (v2) service per function, all from the services image with the binary
# chosen by `command`. Egress to private ranges goes straight into the VPC (direct VPC
# egress, no connector). Deploys may roll the image outside Terraform. Secrets reach
# the container as environment variables (`secret_env`) or as files (`secret_files`,
# one secret volume each: the stores' server CAs).

locals {
  base_env = {
    DROPGATE_LOG_FORMAT = "json"
    RUST_LOG            = "info"
  }
}

resource "google_cloud_run_v2_service" "function" {
  for_each            = var.services
  project             = var.project_id
  name                = "${var.prefix}-${each.key}"
  location            = var.region
  ingress             = each.value.ingress
  deletion_protection = var.deletion_protection
  labels              = merge(var.labels, { function = each.key })

  template {
    service_account                  = each.value.service_account
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = each.value.timeout
    max_instance_request_concurrency = each.value.concurrency
    labels                           = merge(var.labels, { function = each.key })

    scaling {
      min_instance_count = each.value.min_instances
      max_instance_count = each.value.max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = var.network.network
        subnetwork = var.network.subnet
        tags       = ["${var.prefix}-run"]
      }
    }

    dynamic "volumes" {
      for_each = each.value.secret_files
      content {
        name = volumes.key
        secret {
          secret = volumes.value.secret
          items {
            version = "latest"
            path    = basename(volumes.value.path)
          }
        }
      }
    }

    containers {
      name    = each.key
      image   = var.image
      command = each.value.command
      ports {
        container_port = each.value.port
      }
      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        cpu_idle          = !each.value.cpu_always_allocated
        startup_cpu_boost = true
      }
      dynamic "env" {
        for_each = merge(local.base_env, each.value.env)
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = each.value.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
      dynamic "volume_mounts" {
        for_each = each.value.secret_files
        content {
          name       = volume_mounts.key
          mount_path = dirname(volume_mounts.value.path)
        }
      }
      startup_probe {
        period_seconds    = 2
        failure_threshold = 30
        http_get {
          path = each.value.health_path
          port = coalesce(each.value.health_port, each.value.port)
        }
      }
      liveness_probe {
        period_seconds    = 10
        failure_threshold = 3
        http_get {
          path = each.value.health_path
          port = coalesce(each.value.health_port, each.value.port)
        }
      }
    }
  }

  lifecycle {
    # CI deploys roll new images (gcloud run deploy --image ...); Terraform must not
    # roll them back on the next apply.
    ignore_changes = [
      template[0].containers[0].image,
      client,
      client_version,
    ]
  }
}
