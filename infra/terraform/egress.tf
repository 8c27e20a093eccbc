# ---------------------------------------------------------------------------
# A static egress address of this deployment's own (static_egress_ip).
#
# Bitso counts its public budget (60 requests a minute) per IP. Cloud Run, and
# so a 2nd gen function, reaches the internet from a dynamic pool of Google
# addresses shared with other tenants, so anyone else on the same address
# spends part of our budget, and the address can change under a running
# deployment. With static_egress_ip = true, fetch_book sends all its traffic
# into a VPC of its own (Direct VPC egress, no connector VMs), and Cloud NAT
# translates it to one reserved address: the budget is this deployment's alone.
#
# Traffic to Google APIs (Cloud Storage, Secret Manager) leaves through
# Private Google Access on the subnet, so only the Bitso traffic is translated
# by (and billed at) the NAT gateway.
# ---------------------------------------------------------------------------

resource "google_compute_network" "egress" {
  count = var.static_egress_ip ? 1 : 0

  name                    = "${var.name_prefix}-egress"
  description             = "Carries fetch_book's outbound traffic to Cloud NAT (static egress address)."
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.apis]
}

# Nothing may connect into the network. A VPC already denies ingress by an
# implied rule; this states it explicitly. Egress stays allowed (implied
# rule): Bitso over HTTPS and Google APIs.
resource "google_compute_firewall" "egress_deny_ingress" {
  count = var.static_egress_ip ? 1 : 0

  name        = "${var.name_prefix}-egress-deny-ingress"
  description = "Nothing connects into fetch_book's egress network."
  network     = google_compute_network.egress[0].id
  direction   = "INGRESS"
  priority    = 65534

  source_ranges = ["0.0.0.0/0"]
  deny {
    protocol = "all"
  }
}

resource "google_compute_subnetwork" "egress" {
  count = var.static_egress_ip ? 1 : 0

  name        = "${var.name_prefix}-egress"
  description = "Addresses of the fetch_book instances (Direct VPC egress)."
  region      = var.region
  network     = google_compute_network.egress[0].id
  # Direct VPC egress takes instance addresses from this range. Cloud Run's
  # networking best practices estimate 2 to 4 addresses per instance; a /26
  # (60 usable) is far more than max_instance_count = 1 needs, for the day it
  # is raised.
  ip_cidr_range = local.egress_subnet_range

  # Cloud Storage and Secret Manager are reached without NAT (and without its
  # per-GiB charge).
  private_ip_google_access = true

  # Flow logs of the connections to Bitso (Cloud Run's Direct VPC egress
  # documentation: reported, without the revision name). Long aggregation
  # and half sampling keep them to a few thousand entries a day.
  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "egress" {
  count = var.static_egress_ip ? 1 : 0

  name        = "${var.name_prefix}-egress"
  description = "Holds the Cloud NAT gateway of fetch_book's static egress address."
  region      = var.region
  network     = google_compute_network.egress[0].id
}

# The reserved address Bitso sees. Reserved (not ephemeral), so it survives
# NAT and function updates; it is released only when static_egress_ip is
# switched off or the deployment destroyed.
resource "google_compute_address" "egress" {
  count = var.static_egress_ip ? 1 : 0

  name         = "${var.name_prefix}-egress"
  description  = "Static egress address of the Bitso collector (Cloud NAT)."
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"

  depends_on = [google_project_service.apis]
}

resource "google_compute_router_nat" "egress" {
  count = var.static_egress_ip ? 1 : 0

  name   = "${var.name_prefix}-egress"
  router = google_compute_router.egress[0].name
  region = var.region

  # Only the reserved address, never one Google picks.
  nat_ip_allocate_option = "MANUAL_ONLY"
  nat_ips                = [google_compute_address.egress[0].self_link]

  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"
  subnetwork {
    name                    = google_compute_subnetwork.egress[0].id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  # Each connection to Bitso holds one port for as long as it lives plus the
  # TIME_WAIT that follows (120 s by default). If Bitso closed every
  # keep-alive connection, one new connection per slot would hold up to
  # 2 x 60 ports; 256 leaves room for that (the default is 64).
  min_ports_per_vm = 256

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}
