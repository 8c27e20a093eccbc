# ---------------------------------------------------------------------------
# BigQuery over the compacted Parquet files (no data is copied into BigQuery:
# queries read gs://<data bucket>/[<object_prefix>/]<compacted_prefix>/ directly).
# ---------------------------------------------------------------------------

resource "google_bigquery_dataset" "archive" {
  #checkov:skip=CKV_GCP_81:The dataset holds only an external table definition over public market data; rows stay in GCS under Google-managed encryption, so a customer-managed key would protect nothing.
  count = var.enable_compaction ? 1 : 0

  dataset_id  = var.bigquery_dataset_id
  location    = var.region # same region as the bucket it reads
  description = "Bitso order book snapshots, compacted hourly to Parquet in ${local.compacted_root}/."

  # Only table definitions live here; the data is in the bucket.
  delete_contents_on_destroy = true

  labels = merge(var.labels, { component = "analytics" })

  depends_on = [google_project_service.apis]
}

# One row per book level: slot, received_at, sequence, side, level, price,
# amount, oid (from the Parquet files) plus book, year, month, day, hour (from
# the hive path). Typical query:
#   SELECT slot, side, level, price, amount FROM `<table_id output>`
#   WHERE book = 'btc_mxn' AND year = 2026 AND month = 11 AND day = 24
#
# price and amount are Parquet DECIMAL(38,9): exactly BigQuery's NUMERIC (29
# integer digits, 9 decimals), which is the type BigQuery maps Parquet decimals
# to by default, so they arrive exact with no decimal_target_types option.
# Bitso sends at most 8 decimals; the compactor refuses (never rounds) a value
# that would not fit.
resource "google_bigquery_table" "order_book_levels" {
  #checkov:skip=CKV_GCP_80:External table: BigQuery stores no rows, only the definition; the Parquet files are encrypted by Cloud Storage.
  #checkov:skip=CKV_GCP_121:The table is only a definition over files in GCS (dropping it loses no data), and deletion protection would make `make destroy` fail.
  count = var.enable_compaction && var.create_bigquery_table ? 1 : 0

  dataset_id          = google_bigquery_dataset.archive[0].dataset_id
  table_id            = var.bigquery_table_id
  description         = "Bitso order book levels, one row per level per snapshot, read from hourly Parquet files."
  deletion_protection = false

  labels = merge(var.labels, { component = "analytics" })

  external_data_configuration {
    source_format = "PARQUET"
    autodetect    = true
    # book=* and not *: the trades files under compacted/trades/ have another schema.
    source_uris = ["${local.compacted_root}/book=*"]

    # Partition keys from the object path, with explicit types.
    hive_partitioning_options {
      mode                     = "CUSTOM"
      source_uri_prefix        = "${local.compacted_root}/{book:STRING}/{year:INTEGER}/{month:INTEGER}/{day:INTEGER}/{hour:INTEGER}"
      require_partition_filter = var.bigquery_require_partition_filter
    }

    parquet_options {
      enum_as_string        = true
      enable_list_inference = false
    }
  }
}

# The research tables (docs/datasets.md), one external table each over the files
# compact_hour writes to <compacted_root>/<table>/book=/year=/month=/day=/hour=/:
# trades, book_changes, book_snapshots, quotes and coverage, with book, year,
# month, day and hour from the hive path. Every query must name a partition
# (require_partition_filter), so nobody scans the whole archive by accident:
#   SELECT local_timestamp, bid_price, ask_price FROM `<project>.bitso_books.quotes`
#   WHERE book = 'btc_mxn' AND year = 2026 AND month = 11 AND day = 24
resource "google_bigquery_table" "datasets" {
  #checkov:skip=CKV_GCP_80:External table: BigQuery stores no rows, only the definition; the Parquet files are encrypted by Cloud Storage.
  #checkov:skip=CKV_GCP_121:The table is only a definition over files in GCS (dropping it loses no data), and deletion protection would make `make destroy` fail.
  for_each = var.enable_compaction && var.create_bigquery_dataset_tables ? local.dataset_tables : {}

  dataset_id          = google_bigquery_dataset.archive[0].dataset_id
  table_id            = each.key
  description         = each.value
  deletion_protection = false

  labels = merge(var.labels, { component = "analytics" })

  external_data_configuration {
    source_format = "PARQUET"
    autodetect    = true
    source_uris   = ["${local.compacted_root}/${each.key}/*"]

    hive_partitioning_options {
      mode                     = "CUSTOM"
      source_uri_prefix        = "${local.compacted_root}/${each.key}/{book:STRING}/{year:INTEGER}/{month:INTEGER}/{day:INTEGER}/{hour:INTEGER}"
      require_partition_filter = true
    }

    parquet_options {
      enum_as_string        = true
      enable_list_inference = false
    }
  }
}

# The trades table was its own resource before the other tables came: keep it.
moved {
  from = google_bigquery_table.trades[0]
  to   = google_bigquery_table.datasets["trades"]
}
