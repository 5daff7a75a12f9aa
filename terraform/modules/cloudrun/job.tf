# One-off jobs on the admin image (the database migration, event administration), run
# with `gcloud run jobs execute <prefix>-<job> --region <region> --wait`.

resource "google_cloud_run_v2_job" "job" {
  for_each            = var.jobs
  project             = var.project_id
  name                = "${var.prefix}-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = merge(var.labels, { job = each.key })

  template {
    task_count = 1
    template {
      service_account = each.value.service_account
      timeout         = each.value.timeout
      max_retries     = each.value.max_retries
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
        image   = var.admin_image
        command = each.value.command
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
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
    ]
  }
}
