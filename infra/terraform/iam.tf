# ---------------------------------------------------------------------------
# Service accounts: one identity per job, each with only what that job needs.
# No binding anywhere in this module names a public principal.
# ---------------------------------------------------------------------------

# Runs fetch_book.
resource "google_service_account" "fetch_book" {
  account_id   = "${var.name_prefix}-fetch-book"
  display_name = "Bitso collector: fetch_book runtime"
  description  = "Creates snapshot objects in the data bucket; reads the Bitso API secrets if they exist."

  depends_on = [google_project_service.apis]
}

# Signs the OIDC tokens Cloud Scheduler sends to the functions.
resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Bitso collector: Cloud Scheduler invoker"
  description  = "May invoke the collector's functions and nothing else."

  depends_on = [google_project_service.apis]
}

# Cloud Build runs the function builds as this account instead of the
# default compute service account (which new projects leave without roles).
resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "Bitso collector: function builds"
  description  = "Builds the function images: reads the sources, writes logs and the image."

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------
# fetch_book runtime
# ---------------------------------------------------------------------------

# Create objects in the data bucket, nothing else: objectCreator has no get,
# no list, no delete, and (with if_generation_match=0) no overwrite.
resource "google_storage_bucket_iam_member" "fetch_book_data_creator" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.fetch_book.member
}

# Read each Bitso secret, one binding per secret (none when the secrets are
# not created).
resource "google_secret_manager_secret_iam_member" "fetch_book_secret_accessor" {
  for_each = google_secret_manager_secret.bitso

  project   = each.value.project
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fetch_book.member
}

# ---------------------------------------------------------------------------
# Cloud Scheduler -> fetch_book: invoke this function's Cloud Run service only.
# ---------------------------------------------------------------------------
resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_fetch_book" {
  project  = google_cloudfunctions2_function.fetch_book.project
  location = google_cloudfunctions2_function.fetch_book.location
  name     = google_cloudfunctions2_function.fetch_book.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# ---------------------------------------------------------------------------
# Function builds
# ---------------------------------------------------------------------------

# Unavoidably project-wide: logs have no narrower resource to grant on, and a
# build with a user-specified service account must be able to write its log.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Push images to this deployment's own repository only.
resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = google_artifact_registry_repository.functions.project
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# Read the uploaded source archives.
resource "google_storage_bucket_iam_member" "build_source_viewer" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# Cloud Functions copies each source archive into its own staging bucket,
# gcf-v2-sources-<project number>-<region>, and the build fetches it from
# there. That bucket is created by Cloud Functions on the first deploy, so a
# bucket-level grant cannot exist beforehand: this is a project-level grant,
# narrowed by an IAM condition to buckets named gcf-v2-sources-* (which hold
# function sources only).
resource "google_project_iam_member" "build_gcf_sources_viewer" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources-only"
    description = "Only the buckets Cloud Functions stages function sources in."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}

# New IAM grants take a while to reach every service. Without this pause the
# very first build can fail on a permission that was granted a second ago.
resource "time_sleep" "iam_propagation" {
  create_duration = "60s"

  # Pause again whenever the secret grants change (create_bitso_secrets
  # turned on later), so the function update waits for them too.
  triggers = {
    secret_grants = join(",", sort([for b in google_secret_manager_secret_iam_member.fetch_book_secret_accessor : b.id]))
  }

  depends_on = [
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_gcf_sources_viewer,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_viewer,
    google_storage_bucket_iam_member.fetch_book_data_creator,
    google_storage_bucket_iam_member.compact_hour_data_viewer,
    google_storage_bucket_iam_member.compact_hour_data_creator,
    google_secret_manager_secret_iam_member.fetch_book_secret_accessor,
  ]
}
