output "fetch_book_url" {
  description = "run.app URL of fetch_book (internal ingress, IAM-authenticated: only the scheduler account may call it)."
  value       = google_cloudfunctions2_function.fetch_book.service_config[0].uri
}

output "fetch_book_function" {
  description = "Name of the fetch_book function (also the name of its Cloud Run service)."
  value       = google_cloudfunctions2_function.fetch_book.name
}

output "static_egress_ip" {
  description = "The address Bitso sees every fetch_book request come from (Cloud NAT, reserved for this deployment); null when static_egress_ip = false."
  value       = one(google_compute_address.egress[*].address)
}

output "data_bucket" {
  description = "Bucket that receives the snapshots."
  value       = google_storage_bucket.data.name
}

output "source_bucket" {
  description = "Bucket that holds the zipped function sources."
  value       = google_storage_bucket.source.name
}

output "scheduler_job" {
  description = "Cloud Scheduler job that calls fetch_book every minute."
  value       = google_cloud_scheduler_job.fetch_book.id
}

output "service_accounts" {
  description = "Service accounts created, by role in the deployment."
  value = {
    fetch_book   = google_service_account.fetch_book.email
    compact_hour = one(google_service_account.compact_hour[*].email)
    scheduler    = google_service_account.scheduler.email
    build        = google_service_account.build.email
  }
}

output "add_bitso_secret_versions" {
  description = "Commands that store the Bitso API key and secret as secret versions (values are read from your shell, never from Terraform). Empty when create_bitso_secrets = false."
  value = [
    for env, secret in google_secret_manager_secret.bitso :
    "printf '%s' \"${"$"}${trimsuffix(env, "_SECRET")}\" | gcloud secrets versions add ${secret.secret_id} --project=${var.project_id} --data-file=-"
  ]
}

output "read_logs" {
  description = "Commands that show what the collector did lately."
  value = {
    run_summaries = "gcloud logging read '${local.run_summary_filter}' --project=${var.project_id} --freshness=15m --limit=20"
    all_logs      = "gcloud functions logs read ${google_cloudfunctions2_function.fetch_book.name} --project=${var.project_id} --region=${var.region} --gen2 --limit=50"
  }
}

output "list_snapshots" {
  description = "Command that lists the snapshots written so far."
  value       = "gcloud storage ls --recursive gs://${google_storage_bucket.data.name}/${var.object_prefix != "" ? "${var.object_prefix}/" : ""}"
}

output "run_now" {
  description = "Command that triggers one collection right away (outside the minute schedule)."
  value       = "gcloud scheduler jobs run ${google_cloud_scheduler_job.fetch_book.name} --project=${var.project_id} --location=${var.region}"
}

output "compact_hour_function" {
  description = "Name of the compact_hour function (null when enable_compaction = false)."
  value       = one(google_cloudfunctions2_function.compact_hour[*].name)
}

output "bigquery_table_id" {
  description = "BigQuery external table over the compacted Parquet files, as project.dataset.table (null until create_bigquery_table = true)."
  value       = one([for t in google_bigquery_table.order_book_levels : "${t.project}.${t.dataset_id}.${t.table_id}"])
}

output "bigquery_dataset_table_ids" {
  description = "BigQuery external tables of the research tables, by table, as project.dataset.table (empty until create_bigquery_dataset_tables = true)."
  value       = { for name, t in google_bigquery_table.datasets : name => "${t.project}.${t.dataset_id}.${t.table_id}" }
}
