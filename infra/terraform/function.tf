# ---------------------------------------------------------------------------
# Artifact Registry repository for the function images. Using our own
# repository (instead of the default gcf-artifacts) lets the build service
# account be granted writer on this repository alone.
# ---------------------------------------------------------------------------
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images hold only this repository's open-source code; a customer-managed KMS key adds cost and key management without protecting anything secret. Google-managed encryption applies.
  repository_id = "${var.name_prefix}-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images of the Bitso collector functions (built by Cloud Functions)."

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days
    }
  }

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------
# fetch_book: one call per minute, spending that minute's request budget.
# ---------------------------------------------------------------------------
resource "google_cloudfunctions2_function" "fetch_book" {
  name        = local.fetch_book_name
  location    = var.region
  description = "Collects one minute of Bitso order book snapshots into gs://${google_storage_bucket.data.name}."

  build_config {
    runtime           = "python312"
    entry_point       = "fetch_book"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.fetch_book_source.name
      }
    }
  }

  service_config {
    # Never more than one call at a time, anywhere: one instance that takes
    # one request.
    #
    # With the static egress address, one instance is kept warm: Cloud Run's
    # Direct VPC egress documentation warns that a new instance can wait a
    # minute or more for its network, so new instances should be rare. The
    # instance is busy about 59 s of every minute anyway, so a minimum of one
    # bills only the idle second or so between calls (docs/deployment.md's cost
    # table). With streams, one instance is kept warm too: it owns the
    # stream's connection and chain across calls. Without either, scale to
    # zero costs nothing while paused.
    min_instance_count               = var.static_egress_ip ? 1 : local.stream_warm_instances
    max_instance_count               = 1
    max_instance_request_concurrency = 1

    available_memory = var.function_memory
    available_cpu    = local.fetch_book_cpu
    timeout_seconds  = var.function_timeout_seconds

    # Cloud Run's ingress documentation counts Cloud Scheduler in the same
    # project, calling the default run.app URL, as internal traffic; the
    # scheduler job below targets that URL (service_config[0].uri). So the
    # function is closed to the internet at the network level, and callers
    # still need roles/run.invoker (held by the scheduler account only).
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.fetch_book.email

    environment_variables = merge(local.fetch_book_env, local.bitso_secret_env)

    # static_egress_ip: every packet (Bitso, and Google APIs through Private
    # Google Access) goes into the egress VPC, so Bitso only ever sees the
    # NAT's reserved address. Off: no VPC, Cloud Run's shared egress pool.
    dynamic "direct_vpc_network_interface" {
      for_each = google_compute_subnetwork.egress
      content {
        network    = google_compute_network.egress[0].name
        subnetwork = direct_vpc_network_interface.value.name
      }
    }
    direct_vpc_egress = var.static_egress_ip ? "VPC_EGRESS_ALL_TRAFFIC" : null
  }

  labels = merge(var.labels, { component = "fetch-book" })

  lifecycle {
    # Cloud Run refuses these at apply time; say so at plan time, with the fix.
    precondition {
      condition     = tonumber(local.fetch_book_cpu) >= 1 || local.fetch_book_memory_mib <= (tonumber(local.fetch_book_cpu) >= 0.5 ? 1024 : 512)
      error_message = "function_memory is too large for function_cpu: Cloud Run allows at most 512 MiB below 0.5 vCPU and 1 GiB below 1 vCPU. Raise function_cpu or lower function_memory."
    }
  }

  depends_on = [
    google_project_service.apis,
    time_sleep.iam_propagation,
    # No call before its packets can leave through the static address.
    google_compute_router_nat.egress,
  ]
}
