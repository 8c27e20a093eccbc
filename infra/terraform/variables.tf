# ---------------------------------------------------------------------------
# Project and naming
# ---------------------------------------------------------------------------

variable "project_id" {
  description = "ID of the Google Cloud project to deploy into (must exist and have billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be 6-30 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region for the functions, the buckets, the scheduler jobs, the Artifact Registry repository and the BigQuery dataset. All in one region: function to bucket traffic stays free and BigQuery can read the bucket."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+(-[a-z]+)+[0-9]+$", var.region))
    error_message = "region must look like a Google Cloud region, e.g. us-central1 or europe-west1."
  }
}

variable "name_prefix" {
  description = "Prefix for every resource name (functions, service accounts, jobs, secrets, metrics). Change it to run two copies in one project."
  type        = string
  default     = "bitso"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-12 characters: lowercase letters, digits and hyphens, starting with a letter (service account ids are limited to 30 characters)."
  }
}

variable "labels" {
  description = "Labels put on every resource that supports them."
  type        = map(string)
  default = {
    app        = "bitso-book-collector"
    managed-by = "terraform"
  }

  validation {
    condition = alltrue([
      for k, v in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Label keys must start with a lowercase letter; keys and values may only hold lowercase letters, digits, '_' and '-' (max 63 characters)."
  }
}

# ---------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------

variable "data_bucket_name" {
  description = "Name of the bucket that receives the snapshots. Empty means \"<project_id>-bitso-books\". Bucket names are global: pick another if that one is taken."
  type        = string
  default     = ""

  validation {
    condition = var.data_bucket_name == "" || (
      can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.data_bucket_name)) &&
      !startswith(var.data_bucket_name, "goog") &&
      !strcontains(var.data_bucket_name, "google")
    )
    error_message = "data_bucket_name must be 3-63 characters of lowercase letters, digits, '-' and '_', start and end with a letter or digit, and not start with \"goog\" or contain \"google\"."
  }
}

variable "source_bucket_name" {
  description = "Name of the bucket that holds the zipped function sources. Empty means \"<project_id>-bitso-fn-source\"."
  type        = string
  default     = ""

  validation {
    condition = var.source_bucket_name == "" || (
      can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.source_bucket_name)) &&
      !startswith(var.source_bucket_name, "goog") &&
      !strcontains(var.source_bucket_name, "google")
    )
    error_message = "source_bucket_name must be 3-63 characters of lowercase letters, digits, '-' and '_', start and end with a letter or digit, and not start with \"goog\" or contain \"google\"."
  }
}

variable "force_destroy_data_bucket" {
  description = "Let `terraform destroy` delete the data bucket even when it holds snapshots. Off by default so a destroy never silently deletes collected data."
  type        = bool
  default     = false
}

variable "nearline_after_days" {
  description = "Move objects to NEARLINE this many days after creation; 0 = never. Off by default: snapshots are ~6 KB, and a class change costs one Class A operation per object at the Nearline rate ($0.01 per 1,000), about $25 for a month of snapshots, more than the storage it saves."
  type        = number
  default     = 0

  validation {
    condition     = var.nearline_after_days >= 0 && floor(var.nearline_after_days) == var.nearline_after_days
    error_message = "nearline_after_days must be a whole number >= 0."
  }
}

variable "coldline_after_days" {
  description = "Move objects to COLDLINE this many days after creation; 0 = never. Same per-object cost caveat as nearline_after_days."
  type        = number
  default     = 0

  validation {
    condition     = var.coldline_after_days >= 0 && floor(var.coldline_after_days) == var.coldline_after_days
    error_message = "coldline_after_days must be a whole number >= 0."
  }
}

variable "delete_after_days" {
  description = "Delete objects this many days after creation; 0 = keep forever. Applies to the whole data bucket, compacted Parquet included, unless delete_matches_prefix narrows it."
  type        = number
  default     = 0

  validation {
    condition     = var.delete_after_days >= 0 && floor(var.delete_after_days) == var.delete_after_days
    error_message = "delete_after_days must be a whole number >= 0."
  }
}

variable "delete_matches_prefix" {
  description = "Object name prefixes the delete rule is limited to (e.g. [\"2025/\", \"2026/\"] to expire raw JSON but keep compacted/). Empty = the whole bucket."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------
# Collector settings (passed to fetch_book as environment variables; see the
# configuration table in DESIGN.md)
# ---------------------------------------------------------------------------

variable "bitso_books" {
  description = "Order books to sample, e.g. [\"btc_mxn\", \"eth_mxn\"] (BITSO_BOOKS). The per-minute budget is shared evenly between them."
  type        = list(string)
  default     = ["btc_mxn"]

  validation {
    condition     = length(var.bitso_books) > 0 && alltrue([for b in var.bitso_books : can(regex("^[a-z0-9]+_[a-z0-9]+$", b))])
    error_message = "bitso_books must hold at least one book, each matching ^[a-z0-9]+_[a-z0-9]+$ (e.g. btc_mxn)."
  }

  validation {
    condition     = length(distinct(var.bitso_books)) == length(var.bitso_books)
    error_message = "bitso_books must not repeat a book."
  }
}

variable "bitso_api_url" {
  description = "Base URL of the Bitso API (BITSO_API_URL)."
  type        = string
  default     = "https://api.bitso.com"

  validation {
    condition     = can(regex("^https://[^/\\s]+$", var.bitso_api_url))
    error_message = "bitso_api_url must be an https:// base URL without a path or trailing slash."
  }
}

variable "bitso_aggregate" {
  description = "true stores the top 50 aggregated levels a side (~6 KB a snapshot); false stores every order with its oid (~500-650 KB for btc_mxn, ~100x the storage cost) (BITSO_AGGREGATE)."
  type        = bool
  default     = true
}

variable "requests_per_minute" {
  description = "Requests per minute, i.e. slots in the per-minute grid (REQUESTS_PER_MINUTE). Bitso allows 60 per minute per IP for public endpoints; going over locks the IP out."
  type        = number
  default     = 59

  validation {
    condition     = var.requests_per_minute >= 1 && var.requests_per_minute <= 60 && floor(var.requests_per_minute) == var.requests_per_minute
    error_message = "requests_per_minute must be a whole number from 1 to 60."
  }
}

variable "strategy" {
  description = "How each request is waited on: sequential, threaded or asyncio (STRATEGY)."
  type        = string
  default     = "threaded"

  validation {
    condition     = contains(["sequential", "threaded", "asyncio"], var.strategy)
    error_message = "strategy must be one of: sequential, threaded, asyncio."
  }
}

variable "object_prefix" {
  description = "Optional prefix before YYYY/ in every object name (OBJECT_PREFIX), without leading or trailing slash. Empty = bucket root."
  type        = string
  default     = ""

  validation {
    condition     = var.object_prefix == "" || can(regex("^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$", var.object_prefix))
    error_message = "object_prefix must be empty or path segments of letters, digits, '_', '.', '=' and '-' separated by single slashes, with no leading or trailing slash."
  }
}

variable "compression" {
  description = "none writes .json, gzip writes .json.gz (COMPRESSION)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "gzip"], var.compression)
    error_message = "compression must be none or gzip."
  }
}

variable "streams" {
  description = "Bitso WebSocket channels recorded beside the snapshots (STREAMS): any of trades, diff-orders. Empty (the default) records snapshots only. The instance keeps one connection across calls and each call stores what it received since the previous call; with streams on, one instance is kept warm (min_instance_count = 1) so the connection outlives the calls. With diff-orders, a book's chain is anchored (a slot fetching the full order-level book, aggregate=false) when it starts or breaks and every anchor_every_minutes."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for channel in var.streams : contains(["trades", "diff-orders"], channel)]) && length(distinct(var.streams)) == length(var.streams)
    error_message = "streams may hold trades and diff-orders, each at most once."
  }
}

variable "anchor_every_minutes" {
  description = "How often an unbroken diff chain is anchored again (ANCHOR_EVERY_MINUTES), in minutes: a reader rebuilding the book at an instant walks back at most this far. Each anchor costs one REST slot of its book."
  type        = number
  default     = 10

  validation {
    condition     = var.anchor_every_minutes == floor(var.anchor_every_minutes) && var.anchor_every_minutes >= 1 && var.anchor_every_minutes <= 1440
    error_message = "anchor_every_minutes must be a whole number of minutes from 1 to 1440."
  }
}

variable "bitso_ws_url" {
  description = "Bitso's WebSocket URL (BITSO_WS_URL); used only when streams is not empty."
  type        = string
  default     = "wss://ws.bitso.com"

  validation {
    condition     = can(regex("^wss://[^/\\s]+(/\\S*)?$", var.bitso_ws_url))
    error_message = "bitso_ws_url must be a wss:// URL."
  }
}

variable "create_bitso_secrets" {
  description = "Create Secret Manager secrets for a Bitso API key and secret (containers only, no values in Terraform state) and point the function at them. Off by default: the order book is public, and a secret without a version makes every call fail until you add one. See docs/deployment.md, 'Optional: Bitso API credentials', for the order of steps."
  type        = bool
  default     = false
}

variable "static_egress_ip" {
  description = "Send all of fetch_book's traffic through a VPC of this deployment whose Cloud NAT uses one reserved static external address (output static_egress_ip), so Bitso's per-IP budget of 60 requests a minute is this deployment's alone; also keeps one instance warm. About $6 a month (docs/deployment.md, 'Static egress address'). false = Cloud Run's default egress: a dynamic pool of addresses shared with other tenants, no VPC, no NAT, min 0 instances."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# fetch_book function sizing
# ---------------------------------------------------------------------------

variable "function_memory" {
  description = "Memory of the fetch_book instance. 512M is ample for aggregated books; raise it for bitso_aggregate = false (with function_cpu below 0.5, Cloud Run allows at most 512 MiB; below 1, at most 1 GiB)."
  type        = string
  default     = "512M"

  validation {
    condition     = can(regex("^[0-9]+(M|Mi|G|Gi)$", var.function_memory))
    error_message = "function_memory must look like 256M, 512M, 1Gi or 2G."
  }
}

variable "function_cpu" {
  description = "vCPUs of the fetch_book instance, billed for the whole ~60 s of every call: the main cost lever. Empty (the default) means the share `make bench-cpu` measured to keep the slot grid with margin: 0.083 with streams off (a call uses about 0.3 vCPU-s a minute, 0.8 with bitso_aggregate = false), 0.167 with streams on (at 0.083 the socket's messages pushed request lateness past the target). Cloud Run allows 0.08 to 1 in steps of 0.001, whole numbers above 1; below 1 it needs concurrency 1 and request-based billing (as deployed), and at most 512 MiB of memory below 0.5 vCPU, 1 GiB below 1."
  type        = string
  default     = ""

  validation {
    condition     = var.function_cpu == "" || try(can(regex("^[0-9]+(\\.[0-9]{1,3})?$", var.function_cpu)) && tonumber(var.function_cpu) >= 0.08 && tonumber(var.function_cpu) <= 8 && (tonumber(var.function_cpu) <= 1 || floor(tonumber(var.function_cpu)) == tonumber(var.function_cpu)), false)
    error_message = "function_cpu must be empty (the measured share), a number of vCPUs from 0.08 to 1 with at most 3 decimals (e.g. 0.083 or 0.5), or a whole number from 1 to 8 (Cloud Run's limits)."
  }
}

variable "function_timeout_seconds" {
  description = "Timeout of one fetch_book call. A call spends at most one minute plus a cold start; 90 s leaves room for both. Also the scheduler's attempt deadline."
  type        = number
  default     = 90

  validation {
    condition     = var.function_timeout_seconds >= 65 && var.function_timeout_seconds <= 300 && floor(var.function_timeout_seconds) == var.function_timeout_seconds
    error_message = "function_timeout_seconds must be a whole number from 65 to 300 (a call covers one minute)."
  }
}

variable "scheduler_paused" {
  description = "Create the scheduler jobs paused (nothing is collected until you resume them)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------

variable "alert_email" {
  description = "E-mail address that gets the alerts (no snapshot written for 5 minutes, or a call throttled). Empty = the alert policy exists but notifies nobody."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be empty or an e-mail address."
  }
}

# ---------------------------------------------------------------------------
# Hourly compaction to Parquet and the BigQuery external table
# ---------------------------------------------------------------------------

variable "enable_compaction" {
  description = "Deploy the hourly compact_hour function, its scheduler job and the BigQuery dataset."
  type        = bool
  default     = true
}

variable "compacted_prefix" {
  description = "Prefix (below object_prefix, if any) under which compact_hour writes book=/year=/month=/day=/hour= Parquet files (COMPACTED_PREFIX)."
  type        = string
  default     = "compacted"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.compacted_prefix))
    error_message = "compacted_prefix must be non-empty path segments of letters, digits, '_', '.' and '-', with no leading or trailing slash."
  }
}

variable "compaction_memory" {
  description = "Memory of the compact_hour instance. It works one book-hour at a time: the busiest measured (make bench-datasets: 200,000 diffs, a 5,000-order book, all tables) peaks near 340 MB, so 1Gi leaves room for a busier one."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(M|Mi|G|Gi)$", var.compaction_memory))
    error_message = "compaction_memory must look like 512M, 1Gi or 2G."
  }
}

variable "compaction_timeout_seconds" {
  description = "Timeout of one compact_hour call (also its scheduler attempt deadline). A book-hour of 200,000 diffs compacts (levels and tables) in 8.4 s of CPU, 11.4 s on 2 busy cores (make bench-datasets), so 600 s covers ten such books with room to spare."
  type        = number
  default     = 600

  validation {
    condition     = var.compaction_timeout_seconds >= 60 && var.compaction_timeout_seconds <= 1800 && floor(var.compaction_timeout_seconds) == var.compaction_timeout_seconds
    error_message = "compaction_timeout_seconds must be a whole number from 60 to 1800 (the scheduler's HTTP deadline limit is 30 minutes)."
  }
}

variable "bigquery_dataset_id" {
  description = "BigQuery dataset that holds the external table."
  type        = string
  default     = "bitso_books"

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.bigquery_dataset_id))
    error_message = "bigquery_dataset_id may only hold letters, digits and underscores."
  }
}

variable "bigquery_table_id" {
  description = "Name of the BigQuery external table over the compacted Parquet files."
  type        = string
  default     = "order_book_levels"

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.bigquery_table_id))
    error_message = "bigquery_table_id may only hold letters, digits and underscores."
  }
}

variable "create_bigquery_table" {
  description = "Create the BigQuery external table. BigQuery reads one Parquet file to detect the schema, so creation fails while gs://<bucket>/[<object_prefix>/]<compacted_prefix>/ is empty: leave this false on the first deploy and set it to true once the first hour has been compacted (at HH:05 after the first full hour)."
  type        = bool
  default     = false
}

variable "create_bigquery_dataset_tables" {
  description = "Create the BigQuery external tables of the research tables (trades, book_changes, book_snapshots, quotes, coverage). BigQuery reads one file of each to detect its schema, so creation fails while gs://<bucket>/[<object_prefix>/]<compacted_prefix>/<table>/ is empty: set this to true once compact_hour has written an hour with streams recorded (STREAMS holds trades and diff-orders)."
  type        = bool
  default     = false
}

variable "bigquery_require_partition_filter" {
  description = "Make every query on the levels external table name a partition (book/year/month/day/hour) in its WHERE clause, so nobody scans the whole archive by accident."
  type        = bool
  default     = false
}
