# The APIs the deployment uses. disable_on_destroy = false: `terraform destroy`
# leaves them enabled, since other things in the project may rely on them.
resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
