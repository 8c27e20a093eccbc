locals {
  data_bucket_name   = var.data_bucket_name != "" ? var.data_bucket_name : "${var.project_id}-bitso-books"
  source_bucket_name = var.source_bucket_name != "" ? var.source_bucket_name : "${var.project_id}-bitso-fn-source"

  # A 2nd gen function runs as a Cloud Run service of the same name; the log
  # filters and the run.invoker bindings below rely on that.
  fetch_book_name   = "${var.name_prefix}-fetch-book"
  compact_hour_name = "${var.name_prefix}-compact-hour"

  # Secret Manager secrets (containers only), keyed by the environment
  # variable that carries their version name.
  bitso_secret_ids = {
    BITSO_API_KEY_SECRET    = "${var.name_prefix}-api-key"
    BITSO_API_SECRET_SECRET = "${var.name_prefix}-api-secret"
  }
  bitso_secrets = { for env, id in local.bitso_secret_ids : env => id if var.create_bitso_secrets }

  # Every setting of the DESIGN.md configuration table that applies in the
  # cloud (LOCAL_DATA_DIR is local only, BITSO_API_KEY/SECRET are replaced by
  # the *_SECRET names below).
  fetch_book_env = {
    BITSO_BOOKS          = join(",", var.bitso_books)
    BITSO_API_URL        = var.bitso_api_url
    BITSO_AGGREGATE      = tostring(var.bitso_aggregate)
    REQUESTS_PER_MINUTE  = tostring(var.requests_per_minute)
    STRATEGY             = var.strategy
    GCS_BUCKET           = google_storage_bucket.data.name
    OBJECT_PREFIX        = var.object_prefix
    COMPRESSION          = var.compression
    STREAMS              = join(",", var.streams)
    BITSO_WS_URL         = var.bitso_ws_url
    ANCHOR_EVERY_MINUTES = tostring(var.anchor_every_minutes)
    GOOGLE_CLOUD_PROJECT = var.project_id # log lines link to their request's trace
    LOG_EXECUTION_ID     = "true"
  }

  # projects/P/secrets/S/versions/latest, only when the secrets exist: a name
  # pointing at a missing secret would make every call fail.
  bitso_secret_env = {
    for env, secret in google_secret_manager_secret.bitso : env => "${secret.id}/versions/latest"
  }

  # Where compact_hour writes (it works under OBJECT_PREFIX, like the collector).
  compacted_root = join("/", compact(["gs://${google_storage_bucket.data.name}", var.object_prefix, var.compacted_prefix]))
  # The research tables compact_hour writes beside the levels, each under
  # <compacted_root>/<table>/ (bitso_archive.datasets.tables.TABLES), with what each holds.
  dataset_tables = {
    trades         = "Bitso trades, every trade once (streamed and backfilled merged by trade id), hourly Parquet files."
    book_changes   = "The order book level by level: each known span opens with the whole book (is_snapshot), then one row per level a diff changed."
    book_snapshots = "The top 25 levels a side every second the book is known."
    quotes         = "The best bid and ask, one row whenever either changes."
    coverage       = "When each book was known: known and unknown spans, with the reason."
  }

  compact_hour_env = {
    GCS_BUCKET       = google_storage_bucket.data.name
    OBJECT_PREFIX    = var.object_prefix
    COMPACTED_PREFIX = var.compacted_prefix
    LOG_EXECUTION_ID = "true"
  }

  # Function sources. Zipped from `source` blocks (not source_dir) so that
  # caches and byte code never end up in the archive, and the hash (hence the
  # object name, hence a redeploy) changes only when real source changes.
  # Sources must be UTF-8 text (file() reads them).
  # The modules both functions share (the archive format, the JSON logger and the HTTP glue)
  # go in beside each main.py, so `import bitso_format` works in the function as it does locally.
  repo_root = "${path.module}/../.."
  shared_modules = {
    for f in ["bitso_format.py", "bitso_http.py", "bitso_logs.py"] : f => "${local.repo_root}/${f}"
  }

  fetch_book_dir = "${path.module}/../../functions/fetch_book"
  fetch_book_files = merge(
    {
      for f in fileset(local.fetch_book_dir, "**") : f => "${local.fetch_book_dir}/${f}"
      if !strcontains(f, "__pycache__") && !endswith(f, ".pyc") && !startswith(f, ".") && !strcontains(f, "/.")
    },
    local.shared_modules,
  )

  compact_hour_dir  = "${path.module}/../../functions/compact_hour"
  bitso_archive_dir = "${path.module}/../../bitso_archive"
  compact_hour_files = merge(
    {
      for f in fileset(local.compact_hour_dir, "**") : f => "${local.compact_hour_dir}/${f}"
      if !strcontains(f, "__pycache__") && !endswith(f, ".pyc") && !startswith(f, ".") && !strcontains(f, "/.")
    },
    # The shared package goes in as bitso_archive/... next to main.py, so
    # `import bitso_archive` works in the function.
    {
      for f in fileset(local.bitso_archive_dir, "**") : "bitso_archive/${f}" => "${local.bitso_archive_dir}/${f}"
      if !strcontains(f, "__pycache__") && !endswith(f, ".pyc") && !startswith(f, ".") && !strcontains(f, "/.")
    },
    local.shared_modules,
  )

  # The summary line each fetch_book call logs (one JSON object, parsed by
  # Cloud Logging into jsonPayload).
  run_summary_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.fetch_book_name}\"",
    "jsonPayload.event=\"run_summary\"",
  ])

  # fetch_book's vCPU share: the one asked for, else the smallest `make bench-cpu` measured to
  # keep the grid with margin (streams need more: their messages are parsed in the call).
  # With streams, one instance stays warm: it keeps the stream's connection (and its diff chain)
  # across calls, so no minute starts with a new subscription, anchor and backfill.
  stream_warm_instances = length(var.streams) > 0 ? 1 : 0
  fetch_book_cpu        = var.function_cpu != "" ? var.function_cpu : (length(var.streams) > 0 ? "0.167" : "0.083")

  # fetch_book's memory in MiB, for Cloud Run's limits on a fractional vCPU (function.tf).
  fetch_book_memory_parts = regex("^([0-9]+)(M|Mi|G|Gi)$", var.function_memory)
  fetch_book_memory_mib = tonumber(local.fetch_book_memory_parts[0]) * lookup(
    { M = 1000000 / 1048576, Mi = 1, G = 1000000000 / 1048576, Gi = 1024 },
    local.fetch_book_memory_parts[1],
  )

  # The egress subnet (static_egress_ip): a range of this deployment's own
  # VPC, which holds nothing else.
  egress_subnet_range = "10.8.0.0/26"

  # Compute Engine holds the network, the NAT and the address; it is enabled
  # only when they are created.
  apis = setunion(var.static_egress_ip ? ["compute.googleapis.com"] : [], [
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}
