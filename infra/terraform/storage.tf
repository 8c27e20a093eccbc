# ---------------------------------------------------------------------------
# Data bucket: one object per snapshot, written create-only by fetch_book.
# ---------------------------------------------------------------------------
resource "google_storage_bucket" "data" {
  #checkov:skip=CKV_GCP_78:No versioning on purpose. fetch_book writes with if_generation_match=0 (create-only) and its service account can neither overwrite nor delete, so there is never an older generation to keep; the default 7-day soft delete covers accidental deletes by people.
  #checkov:skip=CKV_GCP_62:Usage logs would need a second bucket and add a log object per hour for data that is public market data; Cloud Audit Logs already record bucket administration.
  name                        = local.data_bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_data_bucket

  labels = merge(var.labels, { component = "data" })

  versioning {
    enabled = false
  }

  dynamic "lifecycle_rule" {
    for_each = var.nearline_after_days > 0 ? [var.nearline_after_days] : []
    content {
      condition {
        age                   = lifecycle_rule.value
        matches_storage_class = ["STANDARD"]
      }
      action {
        type          = "SetStorageClass"
        storage_class = "NEARLINE"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.coldline_after_days > 0 ? [var.coldline_after_days] : []
    content {
      condition {
        age                   = lifecycle_rule.value
        matches_storage_class = ["STANDARD", "NEARLINE"]
      }
      action {
        type          = "SetStorageClass"
        storage_class = "COLDLINE"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.delete_after_days > 0 ? [var.delete_after_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = length(var.delete_matches_prefix) > 0 ? var.delete_matches_prefix : null
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------
# Source bucket: the zipped function sources, one object per source hash.
# ---------------------------------------------------------------------------
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_78:Source archives are named after their MD5 and never overwritten, so versioning would keep nothing; any version can be rebuilt from git.
  #checkov:skip=CKV_GCP_62:Build inputs only; access logs would need another bucket and add nothing Cloud Audit Logs do not record.
  name                        = local.source_bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only build inputs live here; destroy may always empty it.
  force_destroy = true

  labels = merge(var.labels, { component = "function-source" })

  versioning {
    enabled = false
  }

  depends_on = [google_project_service.apis]
}

# fetch_book source, zipped by Terraform. The object name carries the zip's
# MD5: a code change gives a new object, which changes the function's
# storage_source and so triggers a rebuild and redeploy.
data "archive_file" "fetch_book" {
  type        = "zip"
  output_path = "${path.module}/.build/fetch_book.zip"

  dynamic "source" {
    for_each = local.fetch_book_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "fetch_book_source" {
  name         = "fetch_book-${data.archive_file.fetch_book.output_md5}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.fetch_book.output_path
  content_type = "application/zip"
}
