# Calls fetch_book at the start of every minute (UTC). Each call covers the
# slots of its own minute and returns before the next one starts.
resource "google_cloud_scheduler_job" "fetch_book" {
  name        = "${var.name_prefix}-fetch-book-every-minute"
  region      = var.region
  description = "Triggers one minute of Bitso order book collection."
  schedule    = "* * * * *"
  time_zone   = "Etc/UTC"
  paused      = var.scheduler_paused

  # The call must cover the whole minute plus a cold start.
  attempt_deadline = "${var.function_timeout_seconds}s"

  # Never retry: a retried minute would start late and find its minute
  # already claimed (409) anyway; a missed minute is reported, not replayed.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fetch_book.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.fetch_book.service_config[0].uri
    }
  }

  depends_on = [
    google_project_service.apis,
    google_cloud_run_v2_service_iam_member.scheduler_invokes_fetch_book,
  ]
}
