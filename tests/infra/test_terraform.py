"""Invariants of the Terraform deployment in infra/terraform.

The provider cannot be downloaded here, so nothing is planned: every .tf file
is parsed with python-hcl2 and the security- and correctness-relevant settings
are asserted on the parsed configuration.

python-hcl2 8.x keeps HCL source shapes: block labels and literal strings come
back with their surrounding double quotes ('"POST"'), expressions come back as
'${...}' strings, blocks as lists of dicts carrying '__is_block__' and
'__comments__' keys. The helpers below normalise that.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infra" / "terraform"
TF_FILES = sorted(TF_DIR.glob("*.tf"))
#: The modules at the repository root that both function zips carry beside main.py.
SHARED_MODULES = ("bitso_format.py", "bitso_http.py", "bitso_logs.py")

# Every environment variable fetch_book reads in the cloud (the DESIGN.md
# configuration table minus LOCAL_DATA_DIR and the local-only credentials).
FETCH_BOOK_ENV = (
    "BITSO_BOOKS",
    "BITSO_API_URL",
    "BITSO_AGGREGATE",
    "REQUESTS_PER_MINUTE",
    "STRATEGY",
    "GCS_BUCKET",
    "OBJECT_PREFIX",
    "COMPRESSION",
    "STREAMS",
    "BITSO_WS_URL",
    "ANCHOR_EVERY_MINUTES",
    "GOOGLE_CLOUD_PROJECT",
    "BITSO_API_KEY_SECRET",
    "BITSO_API_SECRET_SECRET",
)
SECRET_ENV = ("BITSO_API_KEY_SECRET", "BITSO_API_SECRET_SECRET")
LOCAL_ONLY_ENV = ("LOCAL_DATA_DIR", "BITSO_API_KEY", "BITSO_API_SECRET")

# Where each plain setting must come from.
FETCH_BOOK_ENV_SOURCE = {
    "BITSO_BOOKS": "var.bitso_books",
    "BITSO_API_URL": "var.bitso_api_url",
    "BITSO_AGGREGATE": "var.bitso_aggregate",
    "REQUESTS_PER_MINUTE": "var.requests_per_minute",
    "STRATEGY": "var.strategy",
    "GCS_BUCKET": "google_storage_bucket.data.name",
    "OBJECT_PREFIX": "var.object_prefix",
    "COMPRESSION": "var.compression",
    "STREAMS": "var.streams",
    "BITSO_WS_URL": "var.bitso_ws_url",
    "ANCHOR_EVERY_MINUTES": "var.anchor_every_minutes",
    "GOOGLE_CLOUD_PROJECT": "var.project_id",
}

COMPACT_HOUR_ENV_SOURCE = {
    "GCS_BUCKET": "google_storage_bucket.data.name",
    "OBJECT_PREFIX": "var.object_prefix",
    "COMPACTED_PREFIX": "var.compacted_prefix",
}

FETCH_SA = "google_service_account.fetch_book.member"
COMPACT_SA = "google_service_account.compact_hour[0].member"
SCHEDULER_SA = "google_service_account.scheduler.member"
BUILD_SA = "google_service_account.build.member"

# (resource type, role, what the binding is on, who gets it): the complete
# list of grants. Anything added or widened must be added here on purpose.
EXPECTED_GRANTS = {
    # fetch_book: create objects in the data bucket, read the two secrets.
    (
        "google_storage_bucket_iam_member",
        "roles/storage.objectCreator",
        "google_storage_bucket.data.name",
        FETCH_SA,
    ),
    (
        "google_secret_manager_secret_iam_member",
        "roles/secretmanager.secretAccessor",
        "each.value.secret_id",
        FETCH_SA,
    ),
    # compact_hour: read snapshots and create Parquet in the data bucket.
    (
        "google_storage_bucket_iam_member",
        "roles/storage.objectViewer",
        "google_storage_bucket.data.name",
        COMPACT_SA,
    ),
    (
        "google_storage_bucket_iam_member",
        "roles/storage.objectCreator",
        "google_storage_bucket.data.name",
        COMPACT_SA,
    ),
    # Cloud Scheduler: invoke each function's own Cloud Run service.
    (
        "google_cloud_run_v2_service_iam_member",
        "roles/run.invoker",
        "google_cloudfunctions2_function.fetch_book.service_config[0].service",
        SCHEDULER_SA,
    ),
    (
        "google_cloud_run_v2_service_iam_member",
        "roles/run.invoker",
        "google_cloudfunctions2_function.compact_hour[0].service_config[0].service",
        SCHEDULER_SA,
    ),
    # Builds: logs (project-wide, unavoidable), own image repository, sources.
    (
        "google_project_iam_member",
        "roles/logging.logWriter",
        "var.project_id",
        BUILD_SA,
    ),
    (
        "google_project_iam_member",
        "roles/storage.objectViewer",
        "var.project_id",
        BUILD_SA,
    ),
    (
        "google_artifact_registry_repository_iam_member",
        "roles/artifactregistry.writer",
        "google_artifact_registry_repository.functions.name",
        BUILD_SA,
    ),
    (
        "google_storage_bucket_iam_member",
        "roles/storage.objectViewer",
        "google_storage_bucket.source.name",
        BUILD_SA,
    ),
}

# The attribute that names what an IAM member resource is bound to.
IAM_SCOPE_ATTRIBUTE = {
    "google_storage_bucket_iam_member": "bucket",
    "google_secret_manager_secret_iam_member": "secret_id",
    "google_cloud_run_v2_service_iam_member": "name",
    "google_cloud_run_service_iam_member": "service",
    "google_project_iam_member": "project",
    "google_artifact_registry_repository_iam_member": "repository",
    "google_cloudfunctions2_function_iam_member": "cloud_function",
}

REQUIRED_APIS = {
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
}

REQUIRED_OUTPUTS = {
    "static_egress_ip",
    "fetch_book_url",
    "data_bucket",
    "scheduler_job",
    "add_bitso_secret_versions",
    "read_logs",
    "bigquery_table_id",
    "bigquery_dataset_table_ids",
}


# The switch of the static egress address, and everything it creates.
EGRESS_GATE = "var.static_egress_ip"
EGRESS_RESOURCES = {
    ("google_compute_network", "egress"),
    ("google_compute_firewall", "egress_deny_ingress"),
    ("google_compute_subnetwork", "egress"),
    ("google_compute_router", "egress"),
    ("google_compute_address", "egress"),
    ("google_compute_router_nat", "egress"),
}
#: First google provider minor (7.x) with service_config.direct_vpc_network_interface.
DIRECT_VPC_MINOR = 21


# --------------------------------------------------------------------------
# Normalisation helpers
# --------------------------------------------------------------------------


def unquote(value: Any) -> Any:
    """'"text"' -> 'text'; anything else unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def expr(value: Any) -> str | None:
    """'${a.b}' -> 'a.b' for a value that is a whole expression, else None."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return None


def clean(value: Any) -> Any:
    """Drop hcl2's bookkeeping keys and quotes, recursively."""
    if isinstance(value, dict):
        return {
            unquote(k): clean(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [clean(v) for v in value]
    return unquote(value)


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a parsed body."""
    blocks = body[name]
    assert isinstance(blocks, list), f"{name} is not a block"
    assert len(blocks) == 1, f"expected one {name} block, found {len(blocks)}"
    return blocks[0]


def comments(body: dict[str, Any]) -> list[str]:
    return [c["value"] for c in body.get("__comments__", [])]


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle)


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    """All files merged: resources/data by (type, name), plus locals, variables, outputs."""
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "locals": {},
        "variable": {},
        "output": {},
        "terraform": [],
        "raw": {},
    }
    for path in TF_FILES:
        parsed = load(path)
        merged["raw"][path.name] = parsed
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for rtype, instances in entry.items():
                    for rname, body in instances.items():
                        key = (unquote(rtype), unquote(rname))
                        assert key not in merged[kind], f"duplicate {kind} {key}"
                        merged[kind][key] = body
        for entry in parsed.get("locals", []):
            for name, value in entry.items():
                if name in ("__is_block__", "__comments__"):
                    continue
                assert name not in merged["locals"], f"duplicate local {name}"
                merged["locals"][name] = value
        for kind in ("variable", "output"):
            for entry in parsed.get(kind, []):
                for name, body in entry.items():
                    merged[kind][unquote(name)] = body
        merged["terraform"].extend(parsed.get("terraform", []))
    return merged


def resources_of(tf: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {name: body for (kind, name), body in tf["resource"].items() if kind == rtype}


def gated(expression: str | None, static_egress_ip: bool) -> str:
    """The branch `var.static_egress_ip ? A : B` takes for the given value of the variable."""
    assert expression is not None
    match = re.fullmatch(rf"{re.escape(EGRESS_GATE)} \? (.+?) : (.+)", expression)
    assert match, f"not switched by {EGRESS_GATE}: {expression}"
    return match.group(1) if static_egress_ip else match.group(2)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def test_expected_files_exist() -> None:
    names = {p.name for p in TF_FILES}
    for required in ("versions.tf", "variables.tf", "outputs.tf", "apis.tf", "iam.tf"):
        assert required in names
    assert (TF_DIR / "terraform.tfvars.example").is_file()


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    parsed = load(path)
    assert parsed, f"{path.name} is empty"


def test_terraform_fmt_check() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        if os.environ.get("CI") == "true":
            pytest.fail("terraform is not on PATH (required in CI)")
        pytest.skip("terraform binary not installed (set CI=true to make this a failure)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt -check failed:\n{result.stdout}{result.stderr}"


def test_versions_pinned(tf: dict[str, Any]) -> None:
    (settings,) = tf["terraform"]
    assert unquote(settings["required_version"]) == ">= 1.5.0"
    providers = clean(block(settings, "required_providers"))
    assert providers["google"]["source"] == "hashicorp/google"
    match = re.fullmatch(r"~> 7\.(\d+)", providers["google"]["version"])
    assert match, providers["google"]["version"]
    # Direct VPC egress on google_cloudfunctions2_function came in 7.21.
    assert int(match.group(1)) >= DIRECT_VPC_MINOR
    assert providers["archive"]["source"] == "hashicorp/archive"


# --------------------------------------------------------------------------
# No public access, anywhere
# --------------------------------------------------------------------------


def test_no_public_principals_in_any_file() -> None:
    files = [*TF_FILES, TF_DIR / "terraform.tfvars.example"]
    for path in files:
        text = path.read_text(encoding="utf-8").lower()
        assert "allusers" not in text, f"allUsers in {path.name}"
        assert "allauthenticatedusers" not in text, f"allAuthenticatedUsers in {path.name}"


def test_no_authoritative_iam_resources(tf: dict[str, Any]) -> None:
    # _binding and _policy replace whatever else holds the role: members only.
    for rtype, name in tf["resource"]:
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), f"{rtype}.{name}"


def test_buckets_private_and_uniform(tf: dict[str, Any]) -> None:
    buckets = resources_of(tf, "google_storage_bucket")
    assert set(buckets) == {"data", "source"}
    for name, body in buckets.items():
        assert unquote(body["public_access_prevention"]) == "enforced", name
        assert body["uniform_bucket_level_access"] is True, name
    # Collected data is never deleted by a destroy unless asked for.
    assert expr(buckets["data"]["force_destroy"]) == "var.force_destroy_data_bucket"
    assert tf["variable"]["force_destroy_data_bucket"]["default"] is False


def test_functions_internal_ingress(tf: dict[str, Any]) -> None:
    functions = resources_of(tf, "google_cloudfunctions2_function")
    assert set(functions) == {"fetch_book", "compact_hour"}
    for name, body in functions.items():
        service = block(body, "service_config")
        assert unquote(service["ingress_settings"]) == "ALLOW_INTERNAL_ONLY", name


# --------------------------------------------------------------------------
# IAM: the exact grants
# --------------------------------------------------------------------------


def test_iam_grants_are_exactly_the_expected_ones(tf: dict[str, Any]) -> None:
    grants = set()
    for (rtype, name), body in tf["resource"].items():
        if not rtype.endswith("_iam_member"):
            continue
        assert rtype in IAM_SCOPE_ATTRIBUTE, f"unexpected IAM resource type {rtype}.{name}"
        scope = expr(body[IAM_SCOPE_ATTRIBUTE[rtype]])
        member = expr(body["member"])
        assert scope is not None and member is not None, f"{rtype}.{name} uses literals"
        grants.add((rtype, unquote(body["role"]), scope, member))
    assert grants == EXPECTED_GRANTS


def test_secret_accessor_is_one_binding_per_secret(tf: dict[str, Any]) -> None:
    body = resources_of(tf, "google_secret_manager_secret_iam_member")
    assert set(body) == {"fetch_book_secret_accessor"}
    assert (
        expr(body["fetch_book_secret_accessor"]["for_each"]) == "google_secret_manager_secret.bitso"
    )


def test_project_wide_object_viewer_is_limited_to_gcf_sources(tf: dict[str, Any]) -> None:
    project_grants = resources_of(tf, "google_project_iam_member")
    viewers = [
        b for b in project_grants.values() if unquote(b["role"]) == "roles/storage.objectViewer"
    ]
    assert len(viewers) == 1
    condition = clean(block(viewers[0], "condition"))
    assert (
        condition["expression"]
        == 'resource.name.startsWith(\\"projects/_/buckets/gcf-v2-sources-\\")'
    )


def test_every_project_wide_grant_is_explained(tf: dict[str, Any]) -> None:
    text = (TF_DIR / "iam.tf").read_text(encoding="utf-8")
    for name in resources_of(tf, "google_project_iam_member"):
        header = f'resource "google_project_iam_member" "{name}"'
        position = text.index(header)
        preceding = text[:position].rstrip().splitlines()[-1]
        assert preceding.startswith("#"), f"project-wide grant {name} has no explaining comment"


def test_service_accounts(tf: dict[str, Any]) -> None:
    accounts = resources_of(tf, "google_service_account")
    assert set(accounts) == {"fetch_book", "compact_hour", "scheduler", "build"}
    functions = resources_of(tf, "google_cloudfunctions2_function")
    assert (
        expr(block(functions["fetch_book"], "service_config")["service_account_email"])
        == "google_service_account.fetch_book.email"
    )
    assert (
        expr(block(functions["compact_hour"], "service_config")["service_account_email"])
        == "google_service_account.compact_hour[0].email"
    )
    for name, body in functions.items():
        assert expr(block(body, "build_config")["service_account"]) == (
            "google_service_account.build.id"
        ), name


# --------------------------------------------------------------------------
# fetch_book
# --------------------------------------------------------------------------


def test_fetch_book_function_settings(tf: dict[str, Any]) -> None:
    body = resources_of(tf, "google_cloudfunctions2_function")["fetch_book"]
    build = block(body, "build_config")
    assert unquote(build["runtime"]) == "python312"
    assert unquote(build["entry_point"]) == "fetch_book"
    service = block(body, "service_config")
    assert service["max_instance_count"] == 1
    assert service["max_instance_request_concurrency"] == 1
    assert expr(service["timeout_seconds"]) == "var.function_timeout_seconds"
    timeout_default = tf["variable"]["function_timeout_seconds"]["default"]
    assert 60 < timeout_default <= 300


def test_fetch_book_cpu_share_is_the_measured_one_within_cloud_runs_limits(
    tf: dict[str, Any],
) -> None:
    # `make bench-cpu` (bench/cpu_share_bench.py): the smallest shares measured to keep the grid.
    cpu = tf["variable"]["function_cpu"]
    assert unquote(cpu["default"]) == ""
    share = expr(tf["locals"]["fetch_book_cpu"])
    assert share == (
        'var.function_cpu != "" ? var.function_cpu : (length(var.streams) > 0 ? "0.167" : "0.083")'
    )
    conditions = " ".join(v["condition"] for v in cpu["validation"])
    assert 'var.function_cpu == "" ||' in conditions
    assert "tonumber(var.function_cpu) >= 0.08" in conditions  # Cloud Run's minimum
    assert "floor(tonumber(var.function_cpu)) == tonumber(var.function_cpu)" in conditions
    body = resources_of(tf, "google_cloudfunctions2_function")["fetch_book"]
    service = block(body, "service_config")
    assert expr(service["available_cpu"]) == "local.fetch_book_cpu"
    # Below 1 vCPU Cloud Run needs concurrency 1 and caps memory; the plan says so first.
    assert service["max_instance_request_concurrency"] == 1
    (precondition,) = block(body, "lifecycle")["precondition"]
    assert (
        "local.fetch_book_memory_mib <= (tonumber(local.fetch_book_cpu) >= 0.5 ? 1024 : 512)"
        in precondition["condition"]
    )
    assert unquote(tf["variable"]["function_memory"]["default"]) == "512M"  # 488 MiB <= 512
    assert "1048576" in tf["locals"]["fetch_book_memory_mib"]


def test_fetch_book_environment(tf: dict[str, Any]) -> None:
    body = resources_of(tf, "google_cloudfunctions2_function")["fetch_book"]
    env_expr = expr(block(body, "service_config")["environment_variables"])
    assert env_expr == "merge(local.fetch_book_env, local.bitso_secret_env)"

    plain = tf["locals"]["fetch_book_env"]
    assert set(FETCH_BOOK_ENV) - set(SECRET_ENV) <= set(plain)
    for name in set(FETCH_BOOK_ENV) - set(SECRET_ENV):
        value = expr(plain[name])
        assert value is not None, f"{name} is a literal: {plain[name]!r}"
        assert re.search(r"\b(var|local|google_[a-z0-9_]+)\.", value), f"{name} = {value}"
        assert FETCH_BOOK_ENV_SOURCE[name] in value, f"{name} = {value}"
    for name in LOCAL_ONLY_ENV:
        assert name not in plain, f"{name} is local-only"

    # The two secret names: one per created secret, as .../versions/latest.
    secret_env = expr(tf["locals"]["bitso_secret_env"])
    assert secret_env is not None
    assert "in google_secret_manager_secret.bitso" in secret_env
    assert '/versions/latest"' in secret_env
    secret_ids = tf["locals"]["bitso_secret_ids"]
    assert set(secret_ids) == set(SECRET_ENV)


def test_compact_hour_environment(tf: dict[str, Any]) -> None:
    body = resources_of(tf, "google_cloudfunctions2_function")["compact_hour"]
    assert expr(block(body, "service_config")["environment_variables"]) == "local.compact_hour_env"
    env = tf["locals"]["compact_hour_env"]
    for name, source in COMPACT_HOUR_ENV_SOURCE.items():
        assert expr(env[name]) == source, name
    assert tf["variable"]["compacted_prefix"]["default"] == '"compacted"'


def test_compact_hour_function_settings(tf: dict[str, Any]) -> None:
    body = resources_of(tf, "google_cloudfunctions2_function")["compact_hour"]
    assert expr(body["count"]) == "var.enable_compaction ? 1 : 0"
    build = block(body, "build_config")
    assert unquote(build["runtime"]) == "python312"
    assert unquote(build["entry_point"]) == "compact_hour"
    service = block(body, "service_config")
    assert service["max_instance_count"] == 1
    assert service["max_instance_request_concurrency"] == 1


# --------------------------------------------------------------------------
# Static egress address: Direct VPC egress through Cloud NAT
# --------------------------------------------------------------------------


def test_static_egress_ip_is_on_by_default(tf: dict[str, Any]) -> None:
    variable = tf["variable"]["static_egress_ip"]
    assert variable["type"] == "bool"
    assert variable["default"] is True


@pytest.mark.parametrize("static_egress_ip", [True, False], ids=["on", "off"])
def test_every_egress_resource_follows_the_switch(
    tf: dict[str, Any], static_egress_ip: bool
) -> None:
    compute = {key for key in tf["resource"] if key[0].startswith("google_compute_")}
    assert compute == EGRESS_RESOURCES
    for rtype, name in EGRESS_RESOURCES:
        count = gated(expr(tf["resource"][(rtype, name)]["count"]), static_egress_ip)
        assert count == ("1" if static_egress_ip else "0"), f"{rtype}.{name}"


def test_nat_uses_only_the_reserved_static_address(tf: dict[str, Any]) -> None:
    nat = resources_of(tf, "google_compute_router_nat")["egress"]
    assert unquote(nat["nat_ip_allocate_option"]) == "MANUAL_ONLY"
    assert [expr(ip) for ip in nat["nat_ips"]] == ["google_compute_address.egress[0].self_link"]
    assert expr(nat["router"]) == "google_compute_router.egress[0].name"
    # Translates the egress subnet, all of it, and nothing else.
    assert unquote(nat["source_subnetwork_ip_ranges_to_nat"]) == "LIST_OF_SUBNETWORKS"
    subnetwork = block(nat, "subnetwork")
    assert expr(subnetwork["name"]) == "google_compute_subnetwork.egress[0].id"
    assert [unquote(r) for r in subnetwork["source_ip_ranges_to_nat"]] == ["ALL_IP_RANGES"]
    assert block(nat, "log_config")["enable"] is True

    address = resources_of(tf, "google_compute_address")["egress"]
    assert unquote(address["address_type"]) == "EXTERNAL"
    assert "address" not in address, "the address is reserved by Google, not typed in"
    for rtype in ("google_compute_address", "google_compute_router", "google_compute_subnetwork"):
        assert expr(resources_of(tf, rtype)["egress"]["region"]) == "var.region", rtype


def test_the_egress_network_is_private_and_reaches_google_apis_without_nat(
    tf: dict[str, Any],
) -> None:
    network = resources_of(tf, "google_compute_network")["egress"]
    assert network["auto_create_subnetworks"] is False
    subnet = resources_of(tf, "google_compute_subnetwork")["egress"]
    assert subnet["private_ip_google_access"] is True
    router = resources_of(tf, "google_compute_router")["egress"]
    firewall = resources_of(tf, "google_compute_firewall")["egress_deny_ingress"]
    for body in (subnet, router, firewall):
        assert expr(body["network"]) == "google_compute_network.egress[0].id"
    assert unquote(firewall["direction"]) == "INGRESS"
    assert [unquote(d["protocol"]) for d in firewall["deny"]] == ["all"]
    assert "allow" not in firewall


@pytest.mark.parametrize("static_egress_ip", [True, False], ids=["on", "off"])
def test_all_fetch_book_traffic_goes_through_the_vpc(
    tf: dict[str, Any], static_egress_ip: bool
) -> None:
    body = resources_of(tf, "google_cloudfunctions2_function")["fetch_book"]
    service = block(body, "service_config")
    # Direct VPC egress, not a connector: the two cannot be combined.
    assert "vpc_connector" not in service and "vpc_connector_egress_settings" not in service
    egress = gated(expr(service["direct_vpc_egress"]), static_egress_ip)
    assert egress == ('"VPC_EGRESS_ALL_TRAFFIC"' if static_egress_ip else "null")

    # One interface per egress subnet: one when on, none when the subnet's count is 0.
    (dynamic,) = [d['"direct_vpc_network_interface"'] for d in service["dynamic"]]
    assert expr(dynamic["for_each"]) == "google_compute_subnetwork.egress"
    (content,) = dynamic["content"]
    assert expr(content["network"]) == "google_compute_network.egress[0].name"
    assert expr(content["subnetwork"]) == "direct_vpc_network_interface.value.name"

    # One instance stays warm when a new one may wait for its VPC network; else only with
    # streams (the instance keeps the stream's connection across calls).
    warm = gated(expr(service["min_instance_count"]), static_egress_ip)
    assert warm == ("1" if static_egress_ip else "local.stream_warm_instances")
    assert expr(tf["locals"]["stream_warm_instances"]) == "length(var.streams) > 0 ? 1 : 0"
    # The first call waits for the NAT, so nothing leaves from another address.
    assert "${google_compute_router_nat.egress}" in body["depends_on"]


@pytest.mark.parametrize("static_egress_ip", [True, False], ids=["on", "off"])
def test_compute_api_only_with_the_static_egress_address(
    tf: dict[str, Any], static_egress_ip: bool
) -> None:
    apis = tf["locals"]["apis"]
    match = re.search(rf"({re.escape(EGRESS_GATE)} \? \[[^\]]*\] : \[[^\]]*\])", apis)
    assert match, apis
    switched = set(
        re.findall(r'"([a-z]+\.googleapis\.com)"', gated(match.group(1), static_egress_ip))
    )
    assert switched == ({"compute.googleapis.com"} if static_egress_ip else set())
    rest = apis.replace(match.group(1), "")
    assert "compute.googleapis.com" not in rest


def test_static_egress_ip_output(tf: dict[str, Any]) -> None:
    output = tf["output"]["static_egress_ip"]
    # one() of an empty list is null: no address when the switch is off.
    assert expr(output["value"]) == "one(google_compute_address.egress[*].address)"


# --------------------------------------------------------------------------
# Sources: zipped by archive_file, object named after the hash
# --------------------------------------------------------------------------


def test_source_objects_carry_the_archive_hash(tf: dict[str, Any]) -> None:
    objects = resources_of(tf, "google_storage_bucket_object")
    fetch = objects["fetch_book_source"]
    assert unquote(fetch["name"]) == "fetch_book-${data.archive_file.fetch_book.output_md5}.zip"
    assert expr(fetch["source"]) == "data.archive_file.fetch_book.output_path"
    assert expr(fetch["bucket"]) == "google_storage_bucket.source.name"
    compact = objects["compact_hour_source"]
    assert unquote(compact["name"]) == (
        "compact_hour-${data.archive_file.compact_hour[0].output_md5}.zip"
    )
    functions = resources_of(tf, "google_cloudfunctions2_function")
    storage = block(
        block(block(functions["fetch_book"], "build_config"), "source"), "storage_source"
    )
    assert expr(storage["object"]) == "google_storage_bucket_object.fetch_book_source.name"
    assert expr(storage["bucket"]) == "google_storage_bucket.source.name"


def test_archives_read_the_right_directories_without_caches(tf: dict[str, Any]) -> None:
    local = tf["locals"]
    assert unquote(local["fetch_book_dir"]) == "${path.module}/../../functions/fetch_book"
    assert unquote(local["compact_hour_dir"]) == "${path.module}/../../functions/compact_hour"
    assert unquote(local["bitso_archive_dir"]) == "${path.module}/../../bitso_archive"
    for name in ("fetch_book_files", "compact_hour_files"):
        selection = local[name]
        assert "__pycache__" in selection and '.pyc"' in selection, name
    # The shared package is zipped under bitso_archive/ next to main.py.
    assert '"bitso_archive/${f}" =>' in local["compact_hour_files"]
    fetch_archive = tf["data"][("archive_file", "fetch_book")]
    dynamic = fetch_archive["dynamic"][0]['"source"']
    assert expr(dynamic["for_each"]) == "local.fetch_book_files"
    # The shared modules go into both zips, beside main.py.
    shared = local["shared_modules"]
    assert all(f'"{module}"' in shared for module in SHARED_MODULES)
    for name in ("fetch_book_files", "compact_hour_files"):
        assert "local.shared_modules" in local[name], name


@pytest.mark.parametrize(
    ("function", "packages", "entry"),
    [
        ("fetch_book", [], "fetch_book"),
        ("compact_hour", ["bitso_archive"], "compact_hour"),
    ],
)
def test_each_zip_is_self_contained(
    tmp_path: Path, function: str, packages: list[str], entry: str
) -> None:
    """Lay out the files the way the archive_file blocks do and import main.py from there alone:
    every module it needs is in the zip, none comes from the repository."""
    import shutil
    import subprocess
    import sys

    def kept(path: Path) -> bool:
        text = path.as_posix()
        return not ("__pycache__" in text or text.endswith(".pyc") or "/." in f"/{text}")

    root = Path(__file__).resolve().parents[2]
    sources = {
        rel: root / "functions" / function / rel
        for rel in (
            p.relative_to(root / "functions" / function)
            for p in (root / "functions" / function).rglob("*")
            if p.is_file()
        )
        if kept(rel)
    }
    for package in packages:
        for path in (root / package).rglob("*"):
            if path.is_file() and kept(path.relative_to(root)):
                sources[path.relative_to(root)] = path
    for module in SHARED_MODULES:
        sources[Path(module)] = root / module
    for rel, src in sources.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tmp_path / rel)
    code = (
        "import sys, main, bitso_format, bitso_http, bitso_logs;"
        f"assert callable(main.{entry});"
        "ours = [(n, m.__file__) for n, m in sys.modules.items()"
        " if n == 'main' or n.startswith('bitso_')];"
        "outside = [o for o in ours if not (o[1] or '').startswith(sys.argv[1])];"
        "assert ours and not outside, outside"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path) + "/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_fetch_book_file_selection_excludes_caches() -> None:
    # The same filter as local.fetch_book_files, applied to sample paths.
    def kept(path: str) -> bool:
        return not (
            "__pycache__" in path or path.endswith(".pyc") or path.startswith(".") or "/." in path
        )

    assert kept("main.py")
    assert kept("bitso_collector/config.py")
    assert not kept("__pycache__/main.cpython-312.pyc")
    assert not kept("bitso_collector/__pycache__/x.pyc")
    assert not kept("bitso_collector/.mypy_cache/x.json")
    assert not kept(".env")


# --------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------


def _scheduler(tf: dict[str, Any], name: str) -> dict[str, Any]:
    return resources_of(tf, "google_cloud_scheduler_job")[name]


def test_fetch_book_schedule_every_minute_utc(tf: dict[str, Any]) -> None:
    job = _scheduler(tf, "fetch_book")
    assert unquote(job["schedule"]) == "* * * * *"
    assert unquote(job["time_zone"]) in {"Etc/UTC", "UTC"}
    assert block(job, "retry_config")["retry_count"] == 0
    assert unquote(job["attempt_deadline"]) == "${var.function_timeout_seconds}s"
    target = block(job, "http_target")
    assert unquote(target["http_method"]) == "POST"
    url = "google_cloudfunctions2_function.fetch_book.service_config[0].uri"
    assert expr(target["uri"]) == url
    oidc = block(target, "oidc_token")
    assert expr(oidc["audience"]) == url
    assert expr(oidc["service_account_email"]) == "google_service_account.scheduler.email"


def test_compact_hour_schedule_hourly_utc(tf: dict[str, Any]) -> None:
    job = _scheduler(tf, "compact_hour")
    assert unquote(job["schedule"]) == "5 * * * *"
    assert unquote(job["time_zone"]) in {"Etc/UTC", "UTC"}
    target = block(job, "http_target")
    assert unquote(target["http_method"]) == "POST"
    url = "google_cloudfunctions2_function.compact_hour[0].service_config[0].uri"
    assert expr(target["uri"]) == url
    oidc = block(target, "oidc_token")
    assert expr(oidc["audience"]) == url
    assert expr(oidc["service_account_email"]) == "google_service_account.scheduler.email"


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


def test_secrets_are_containers_only(tf: dict[str, Any]) -> None:
    types = {rtype for rtype, _ in tf["resource"]}
    assert "google_secret_manager_secret_version" not in types
    for path in TF_FILES:
        assert "secret_data" not in path.read_text(encoding="utf-8"), path.name
    secret = resources_of(tf, "google_secret_manager_secret")["bitso"]
    assert expr(secret["for_each"]) == "local.bitso_secrets"
    assert "if var.create_bitso_secrets" in tf["locals"]["bitso_secrets"]
    assert tf["variable"]["create_bitso_secrets"]["default"] is False


# --------------------------------------------------------------------------
# APIs, monitoring, BigQuery, variables, outputs
# --------------------------------------------------------------------------


def test_required_apis_enabled_and_kept_on_destroy(tf: dict[str, Any]) -> None:
    service = resources_of(tf, "google_project_service")["apis"]
    assert expr(service["for_each"]) == "local.apis"
    assert service["disable_on_destroy"] is False
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', tf["locals"]["apis"]))
    assert apis >= REQUIRED_APIS


def test_log_metrics_read_the_run_summary(tf: dict[str, Any]) -> None:
    summary = tf["locals"]["run_summary_filter"]
    for part in (
        'resource.type=\\"cloud_run_revision\\"',
        "resource.labels.service_name=",
        'jsonPayload.event=\\"run_summary\\"',
    ):
        assert part in summary, part
    values = clean(tf["locals"]["run_summary_values"])
    assert {v["field"] for v in values.values()} == {"written", "failed", "throttled", "lost"}
    metric = resources_of(tf, "google_logging_metric")["run_summary_value"]
    assert unquote(metric["value_extractor"]) == "EXTRACT(jsonPayload.${each.value.field})"
    assert unquote(block(metric, "metric_descriptor")["value_type"]) == "DISTRIBUTION"


def test_alert_on_no_snapshots_or_throttling(tf: dict[str, Any]) -> None:
    policy = resources_of(tf, "google_monitoring_alert_policy")["collector"]
    assert unquote(policy["combiner"]) == "OR"
    conditions = policy["conditions"]
    absent = [c["condition_absent"][0] for c in conditions if "condition_absent" in c]
    threshold = [c["condition_threshold"][0] for c in conditions if "condition_threshold" in c]
    assert len(absent) == 1 and len(threshold) == 1
    assert unquote(absent[0]["duration"]) == "300s"
    assert "google_logging_metric.productive_runs.name" in absent[0]["filter"]
    assert "google_logging_metric.throttled_runs.name" in threshold[0]["filter"]
    assert unquote(threshold[0]["comparison"]) == "COMPARISON_GT"
    assert threshold[0]["threshold_value"] == 0
    metrics = resources_of(tf, "google_logging_metric")
    assert unquote(metrics["productive_runs"]["filter"]).endswith("jsonPayload.written > 0")
    assert unquote(metrics["throttled_runs"]["filter"]).endswith("jsonPayload.throttled > 0")
    channel = resources_of(tf, "google_monitoring_notification_channel")["email"]
    assert expr(channel["count"]) == 'var.alert_email != "" ? 1 : 0'
    assert tf["variable"]["alert_email"]["default"] == '""'


def test_bigquery_external_table(tf: dict[str, Any]) -> None:
    table = resources_of(tf, "google_bigquery_table")["order_book_levels"]
    config = block(table, "external_data_configuration")
    assert unquote(config["source_format"]) == "PARQUET"
    assert config["autodetect"] is True
    # Where compact_hour writes: below OBJECT_PREFIX, like everything else in the bucket.
    root = tf["locals"]["compacted_root"]
    for part in ("google_storage_bucket.data.name", "var.object_prefix", "var.compacted_prefix"):
        assert part in root
    prefix = "${local.compacted_root}/"
    assert [unquote(u) for u in config["source_uris"]] == [prefix + "book=*"]
    hive = block(config, "hive_partitioning_options")
    assert unquote(hive["mode"]) == "CUSTOM"
    assert unquote(hive["source_uri_prefix"]) == (
        prefix + "{book:STRING}/{year:INTEGER}/{month:INTEGER}/{day:INTEGER}/{hour:INTEGER}"
    )
    assert expr(hive["require_partition_filter"]) == "var.bigquery_require_partition_filter"
    dataset = resources_of(tf, "google_bigquery_dataset")["archive"]
    assert expr(dataset["location"]) == "var.region"


def test_bigquery_dataset_tables_read_only_their_own_files(tf: dict[str, Any]) -> None:
    from bitso_archive.datasets.tables import TABLES, table_object
    from bitso_format import compacted_name

    table = resources_of(tf, "google_bigquery_table")["datasets"]
    assert expr(table["for_each"]) == (
        "var.enable_compaction && var.create_bigquery_dataset_tables ? local.dataset_tables : {}"
    )
    assert set(tf["locals"]["dataset_tables"]) == set(TABLES)  # one per table compact writes
    assert expr(table["table_id"]) == "each.key"
    assert tf["variable"]["create_bigquery_dataset_tables"]["default"] is False
    config = block(table, "external_data_configuration")
    assert (unquote(config["source_format"]), config["autodetect"]) == ("PARQUET", True)
    (table_uri,) = [unquote(u) for u in config["source_uris"]]
    assert table_uri == "${local.compacted_root}/${each.key}/*"
    hive = block(config, "hive_partitioning_options")
    assert unquote(hive["source_uri_prefix"]) == (
        "${local.compacted_root}/${each.key}/"
        "{book:STRING}/{year:INTEGER}/{month:INTEGER}/{day:INTEGER}/{hour:INTEGER}"
    )
    assert hive["require_partition_filter"] is True  # no query scans the archive by accident
    # The trades table keeps its state from when it was a resource of its own.
    (moved,) = tf["raw"]["bigquery.tf"]["moved"]
    assert (expr(moved["from"]), expr(moved["to"])) == (
        "google_bigquery_table.trades[0]",
        'google_bigquery_table.datasets["trades"]',
    )
    # Each table's files, and only those, match its URI (one wildcard, as BigQuery allows).
    levels_config = block(
        resources_of(tf, "google_bigquery_table")["order_book_levels"],
        "external_data_configuration",
    )
    (levels_uri,) = [unquote(u) for u in levels_config["source_uris"]]
    hour = 1_795_168_800_000
    names = {"levels": "ROOT/" + compacted_name("btc_mxn", hour, "")}
    names |= {name: "ROOT/" + table_object(name, "btc_mxn", hour) for name in TABLES}
    globs = {"levels": levels_uri.replace("${local.compacted_root}", "ROOT")}
    globs |= {
        name: table_uri.replace("${local.compacted_root}", "ROOT").replace("${each.key}", name)
        for name in TABLES
    }
    for kind, glob in globs.items():
        assert glob.count("*") == 1
        matched = {k for k, name in names.items() if fnmatch.fnmatchcase(name, glob)}
        assert matched == {kind}, (glob, matched)


def test_every_variable_is_described(tf: dict[str, Any]) -> None:
    for name, body in tf["variable"].items():
        description = unquote(body.get("description", ""))
        assert len(description) > 10, f"variable {name} has no description"


@pytest.mark.parametrize(
    ("variable", "good", "bad"),
    [
        ("bitso_books", "btc_mxn", "BTC-MXN"),
        ("project_id", "my-project-1", "My_Project"),
        ("region", "europe-west1", "europe west"),
    ],
)
def test_validation_patterns(tf: dict[str, Any], variable: str, good: str, bad: str) -> None:
    conditions = " ".join(v["condition"] for v in tf["variable"][variable]["validation"])
    patterns = re.findall(r'regex\("(.+?)", ', conditions)
    assert patterns, f"no regex validation on {variable}"
    pattern = patterns[0].replace("\\\\", "\\")
    assert re.fullmatch(pattern, good)
    assert not re.fullmatch(pattern, bad)


@pytest.mark.parametrize(
    ("variable", "allowed"),
    [
        ("strategy", '["sequential", "threaded", "asyncio"]'),
        ("compression", '["none", "gzip"]'),
        ("requests_per_minute", "var.requests_per_minute <= 60"),
    ],
)
def test_enumerated_validations(tf: dict[str, Any], variable: str, allowed: str) -> None:
    conditions = " ".join(v["condition"] for v in tf["variable"][variable]["validation"])
    assert allowed in conditions


def test_outputs(tf: dict[str, Any]) -> None:
    assert set(tf["output"]) >= REQUIRED_OUTPUTS
    commands = tf["output"]["add_bitso_secret_versions"]["value"]
    assert "gcloud secrets versions add" in commands and "--data-file=-" in commands


def test_checkov_skips_carry_a_reason(tf: dict[str, Any]) -> None:
    for path in TF_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.search(r"checkov:skip=(CKV2?_[A-Z]+_\d+)(:?)(.*)", line)
            if match:
                assert match.group(2) == ":" and len(match.group(3).strip()) > 20, (
                    f"{path.name}: skip of {match.group(1)} without a real reason"
                )


#: Read by the function but rightly not set by Terraform: local-only settings, the test/emulator
#: endpoint, and the project id's legacy alias (Terraform sets GOOGLE_CLOUD_PROJECT).
NOT_DEPLOYED_ENV = {*LOCAL_ONLY_ENV, "SECRET_MANAGER_ENDPOINT", "GCP_PROJECT"}


def environment_read_by_the_function() -> set[str]:
    """Every environment variable name the collector's code reads, found in its source (the
    package and the shared modules zipped beside it)."""
    root = Path(__file__).parents[2]
    package = root / "functions" / "fetch_book" / "bitso_collector"
    sources = [*package.rglob("*.py"), *(root / module for module in SHARED_MODULES)]
    names: set[str] = set()
    for source in sources:
        text = source.read_text()
        names |= set(re.findall(r'(?:get|environ\.get|getenv)\(\s*"([A-Z][A-Z0-9_]+)"', text))
        names |= set(re.findall(r'^[A-Z_]+_ENV = "([A-Z][A-Z0-9_]+)"', text, re.MULTILINE))
    return names


def test_every_variable_the_function_reads_is_deployed_or_known_local() -> None:
    read = environment_read_by_the_function()
    assert set(FETCH_BOOK_ENV) <= read, "Terraform sets variables the code no longer reads"
    assert read - NOT_DEPLOYED_ENV == set(FETCH_BOOK_ENV)
