# Secret Manager secrets for the optional Bitso API credentials. Containers
# only: Terraform never creates a version, so no key or secret ever lands in
# the Terraform state. Add the values with the commands in the
# `add_bitso_secret_versions` output (gcloud secrets versions add ... --data-file=-).
resource "google_secret_manager_secret" "bitso" {
  for_each = local.bitso_secrets

  secret_id = each.value
  labels    = merge(var.labels, { component = "bitso-credentials" })

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}
