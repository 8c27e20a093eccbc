# ---------------------------------------------------------------------------
# Hourly compaction: compact_hour turns the hour that just closed into Parquet
# under gs://<data bucket>/[<object_prefix>/]<compacted_prefix>/book=/year=/month=/day=/hour=/.
# Everything here exists only when enable_compaction = true.
# ---------------------------------------------------------------------------

# Source zip from two directories: functions/compact_hour (main.py,
# requirements.txt) at the root, and the shared top-level package
# bitso_archive/ under bitso_archive/.
data "archive_file" "compact_hour" {
  count = var.enable_compaction ? 1 : 0

  type        = "zip"
  output_path = "${path.module}/.build/compact_hour.zip"

  dynamic "source" {
    for_each = local.compact_hour_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "compact_hour_source" {
  count = var.enable_compaction ? 1 : 0

  name         = "compact_hour-${data.archive_file.compact_hour[0].output_md5}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.compact_hour[0].output_path
  content_type = "application/zip"
}

resource "google_service_account" "compact_hour" {
  count = var.enable_compaction ? 1 : 0

  account_id   = "${var.name_prefix}-compact-hour"
  display_name = "Bitso collector: compact_hour runtime"
  description  = "Reads snapshots and creates Parquet files in the data bucket."

  depends_on = [google_project_service.apis]
}

# Read the hour's snapshots...
resource "google_storage_bucket_iam_member" "compact_hour_data_viewer" {
  count = var.enable_compaction ? 1 : 0

  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.compact_hour[0].member
}

# ...and create the Parquet files (no overwrite, no delete).
resource "google_storage_bucket_iam_member" "compact_hour_data_creator" {
  count = var.enable_compaction ? 1 : 0

  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.compact_hour[0].member
}

resource "google_cloudfunctions2_function" "compact_hour" {
  count = var.enable_compaction ? 1 : 0

  name        = local.compact_hour_name
  location    = var.region
  description = "Compacts the last closed hour of snapshots in gs://${google_storage_bucket.data.name} into Parquet."

  build_config {
    runtime           = "python312"
    entry_point       = "compact_hour"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.compact_hour_source[0].name
      }
    }
  }

  service_config {
    # One hour at a time: two calls never compact concurrently.
    min_instance_count               = 0
    max_instance_count               = 1
    max_instance_request_concurrency = 1

    available_memory = var.compaction_memory
    available_cpu    = "1"
    timeout_seconds  = var.compaction_timeout_seconds

    # Same reasoning as fetch_book: Cloud Scheduler in the same project counts
    # as internal traffic on the run.app URL.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.compact_hour[0].email

    environment_variables = local.compact_hour_env
  }

  labels = merge(var.labels, { component = "compact-hour" })

  depends_on = [
    google_project_service.apis,
    time_sleep.iam_propagation,
  ]
}

# The scheduler account may invoke this function's service too (a separate
# binding on this service only).
resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_compact_hour" {
  count = var.enable_compaction ? 1 : 0

  project  = google_cloudfunctions2_function.compact_hour[0].project
  location = google_cloudfunctions2_function.compact_hour[0].location
  name     = google_cloudfunctions2_function.compact_hour[0].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# Five minutes past every hour (UTC): the previous hour is closed and its last
# snapshots (written up to ~HH:00:59) are in the bucket.
resource "google_cloud_scheduler_job" "compact_hour" {
  count = var.enable_compaction ? 1 : 0

  name             = "${var.name_prefix}-compact-hour-hourly"
  region           = var.region
  description      = "Compacts the hour that just closed into Parquet."
  schedule         = "5 * * * *"
  time_zone        = "Etc/UTC"
  paused           = var.scheduler_paused
  attempt_deadline = "${var.compaction_timeout_seconds}s"

  # Compacting a closed hour is deterministic and its writes are create-only,
  # so a retry after a transient failure is safe.
  retry_config {
    retry_count          = 2
    min_backoff_duration = "60s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.compact_hour[0].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.compact_hour[0].service_config[0].uri
    }
  }

  depends_on = [
    google_project_service.apis,
    google_cloud_run_v2_service_iam_member.scheduler_invokes_compact_hour,
  ]
}
