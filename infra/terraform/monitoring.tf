# ---------------------------------------------------------------------------
# Log-based metrics from the one summary line each fetch_book call logs:
#   {"severity": "INFO", "message": "run finished", "event": "run_summary",
#    "written": 59, "failed": 0, "throttled": 0, "lost": 0, "status": "ok", ...}
# Cloud Logging parses it into jsonPayload.
# ---------------------------------------------------------------------------

locals {
  # Per-call counts, kept as distributions so sums, means and percentiles can
  # be charted (a counter metric cannot extract a value from the line).
  run_summary_values = {
    snapshots_written = { field = "written", description = "Snapshots written per fetch_book call." }
    slots_failed      = { field = "failed", description = "Slots that failed per fetch_book call." }
    throttled_replies = { field = "throttled", description = "Throttling replies (HTTP 420/429) per fetch_book call." }
    snapshots_lost    = { field = "lost", description = "Snapshots fetched but not stored per fetch_book call." }
  }
}

resource "google_logging_metric" "run_summary_value" {
  for_each = local.run_summary_values

  name            = "${var.name_prefix}/${each.key}"
  description     = each.value.description
  filter          = local.run_summary_filter
  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Bitso collector: ${replace(each.key, "_", " ")}"
  }

  # A call makes at most 60 requests: one bucket per possible count.
  bucket_options {
    linear_buckets {
      num_finite_buckets = 61
      width              = 1
      offset             = 0
    }
  }

  depends_on = [google_project_service.apis]
}

# Calls by outcome (ok, degraded, throttled, lost, claimed).
resource "google_logging_metric" "runs" {
  name        = "${var.name_prefix}/runs"
  description = "fetch_book calls, labelled by their status."
  filter      = local.run_summary_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Bitso collector: runs"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "ok, degraded, throttled, lost or claimed."
    }
  }

  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
  }

  depends_on = [google_project_service.apis]
}

# Calls that wrote at least one snapshot: its absence drives the alert below.
resource "google_logging_metric" "productive_runs" {
  name        = "${var.name_prefix}/productive_runs"
  description = "fetch_book calls that wrote at least one snapshot."
  filter      = "${local.run_summary_filter} AND jsonPayload.written > 0"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Bitso collector: productive runs"
  }

  depends_on = [google_project_service.apis]
}

# Calls that got at least one throttling reply from Bitso.
resource "google_logging_metric" "throttled_runs" {
  name        = "${var.name_prefix}/throttled_runs"
  description = "fetch_book calls that got at least one throttling reply (HTTP 420/429)."
  filter      = "${local.run_summary_filter} AND jsonPayload.throttled > 0"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Bitso collector: throttled runs"
  }

  depends_on = [google_project_service.apis]
}

# A new log-based metric takes a moment before Cloud Monitoring accepts alert
# policies on it.
resource "time_sleep" "metrics_propagation" {
  create_duration = "30s"

  depends_on = [
    google_logging_metric.productive_runs,
    google_logging_metric.throttled_runs,
  ]
}

# ---------------------------------------------------------------------------
# Alerting
# ---------------------------------------------------------------------------

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email != "" ? 1 : 0

  display_name = "Bitso collector alerts (${var.alert_email})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "collector" {
  display_name = "Bitso collector (${var.name_prefix}): no snapshots for 5 minutes, or throttled"
  combiner     = "OR"

  conditions {
    display_name = "No snapshot written for 5 minutes"

    # Fires when no call wrote a snapshot for 300 s: covers Bitso failures,
    # a broken bucket grant, and the scheduler or function not running.
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.productive_runs.name}\" AND resource.type=\"cloud_run_revision\""
      duration = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "Bitso throttled a call"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.throttled_runs.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  notification_channels = google_monitoring_notification_channel.email[*].id

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The Bitso order book collector (function `${local.fetch_book_name}`, bucket `${local.data_bucket_name}`) either wrote no snapshot for 5 minutes or was throttled by Bitso.

      Read the last call summaries:

          gcloud logging read '${local.run_summary_filter}' --project=${var.project_id} --freshness=30m --limit=20

      Throttling means the IP went over Bitso's 60 requests per minute: check that nothing else calls Bitso from the same egress, and lower requests_per_minute.
    EOT
  }

  user_labels = var.labels

  depends_on = [time_sleep.metrics_propagation]
}
