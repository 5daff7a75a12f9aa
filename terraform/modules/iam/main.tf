# One service account per workload, each granted only the project roles listed for it.

locals {
  project_roles = merge([
    for key, sa in var.service_accounts : {
      for role in sa.project_roles : "${key} ${role}" => { key = key, role = role }
    }
  ]...)
}

resource "google_service_account" "workload" {
  for_each     = var.service_accounts
  project      = var.project_id
  account_id   = "${var.prefix}-${each.key}"
  display_name = "${var.prefix} ${each.key}"
  description  = each.value.description
}

resource "google_project_iam_member" "workload" {
  for_each = local.project_roles
  project  = var.project_id
  role     = each.value.role
  member   = google_service_account.workload[each.value.key].member
}
