terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # 7.x is the current major of the Google provider. Nothing used here changed
    # between 6.x and 7.0 except service_config.service on cloudfunctions2,
    # which this module only reads.
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    # archive_file with several `source` blocks (compact_hour zip).
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
    # time_sleep: lets fresh IAM grants propagate before the first build.
    time = {
      source  = "hashicorp/time"
      version = "~> 0.11"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = var.labels
}
