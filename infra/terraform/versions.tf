terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # 7.21 is the first release with Direct VPC egress on
    # google_cloudfunctions2_function (service_config.direct_vpc_network_interface
    # and direct_vpc_egress), used for the static egress address.
    google = {
      source  = "hashicorp/google"
      version = "~> 7.21"
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
