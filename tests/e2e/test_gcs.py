"""End to end on the cloud path: the real functions-framework server writing through the real
google-cloud-storage client to a strict GCS emulator, with keys from a fake Secret Manager read by
the real google-cloud-secret-manager client, fetching from the fake Bitso."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bitso_collector.grid import minute_of, slots_ahead
from bitso_format import (
    claim_name,
    iso_millis,
    run_record_name,
    seconds_to_ms,
    snapshot_name,
)
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.fake_secret_manager import FakeSecretManager
from bitso_testkit.strict_gcs import StrictGcs
from tests.conftest import FunctionServer, StartFunction

pytestmark = pytest.mark.e2e
BOOKS = ("btc_mxn", "eth_mxn")
KEY_VALUE = "e2e-key-7c41"
SECRET_VALUE = "e2e-secret-b95f03d2"
KEY_NAME = "projects/e2e/secrets/bitso-key/versions/latest"
SECRET_NAME = "projects/e2e/secrets/bitso-secret/versions/1"


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        yield fake


def gcs_settings(gcs: StrictGcs, bucket: str, bitso: FakeBitso, **extra: str) -> dict[str, str]:
    return {
        "BITSO_BOOKS": ",".join(BOOKS),
        "BITSO_API_URL": bitso.url,
        "GCS_BUCKET": bucket,
        "STORAGE_EMULATOR_HOST": gcs.url,
        **extra,
    }


def expected_keys(minute_start: float, duration: float, compression: str = "none") -> set[str]:
    coverage = slots_ahead(
        minute_of(minute_start), minute_start, 59, BOOKS, 60 / 59 / 2, minute_start + duration
    )
    return {snapshot_name("", slot.book, slot.at_ms, compression) for slot in coverage.planned}


def snapshots(gcs: StrictGcs, bucket: str) -> dict[str, dict[str, Any]]:
    """Snapshot objects by name, with their metadata."""
    return {item["name"]: item for item in gcs.list_objects(bucket) if item["name"][0].isdigit()}


def snapshot_document(gcs: StrictGcs, bucket: str, item: dict[str, Any]) -> dict[str, Any]:
    data = gcs.read_object(bucket, item["name"])
    if item.get("contentEncoding") == "gzip":
        data = gzip.decompress(data)
    document: dict[str, Any] = json.loads(data)
    return document


def assert_as_served(document: dict[str, Any], bitso: FakeBitso) -> None:
    served = {(s["book"], int(s["sequence"])): s for s in bitso.served}
    source = served[(document["book"], document["sequence"])]
    for side in ("bids", "asks"):
        assert document[side] == [
            {"price": level["price"], "amount": level["amount"]} for level in source[side]
        ]


def snapshot_uploads(gcs: StrictGcs, bucket: str) -> list[tuple[str, str]]:
    return [(u.name, u.outcome) for u in gcs.upload_log(bucket) if not u.name.startswith("_")]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_snapshots_land_in_gcs_exactly_as_served(
    start_function: StartFunction,
    fake_bitso: FakeBitso,
    gcs: StrictGcs,
    bucket: str,
    compression: str,
) -> None:
    settings = gcs_settings(gcs, bucket, fake_bitso, COMPRESSION=compression)
    server = start_function(settings)
    minute = server.new_minute(-0.2)

    reply = server.call({"duration_seconds": 3}, minute_start=minute)

    assert reply.status_code == 200, reply.text
    record = reply.json()
    stored = snapshots(gcs, bucket)
    assert set(stored) == expected_keys(minute, 3, compression)
    assert record["written"] == len(stored) == 3
    encoding = "gzip" if compression == "gzip" else None
    for item in stored.values():
        assert item["contentType"] == "application/json"
        assert item.get("contentEncoding") == encoding
        document = snapshot_document(gcs, bucket, item)
        assert item["name"].startswith(f"{document['book']}_", len("YYYY/MM/DD/HH/"))
        assert_as_served(document, fake_bitso)
    assert record["run_record"] == f"gs://{bucket}/{run_record_name('', seconds_to_ms(minute))}"
    stored_record = json.loads(gcs.read_object(bucket, run_record_name("", seconds_to_ms(minute))))
    assert stored_record["run_id"] == record["run_id"]
    claim = json.loads(gcs.read_object(bucket, claim_name("", seconds_to_ms(minute))))
    assert claim["run_id"] == record["run_id"]
    assert all(outcome == "200" for _, outcome in snapshot_uploads(gcs, bucket))


def stored_locally(server: FunctionServer) -> set[str]:
    return {str(p.relative_to(server.data_dir)) for p in server.data_dir.glob("[0-9]*/**/*.json")}


@pytest.mark.parametrize("sink", ["gcs", "local"])
def test_one_minute_is_collected_once_however_often_it_is_called(
    start_function: StartFunction,
    fake_bitso: FakeBitso,
    gcs: StrictGcs,
    bucket: str,
    sink: str,
) -> None:
    settings = gcs_settings(gcs, bucket, fake_bitso)
    if sink == "local":
        del settings["GCS_BUCKET"]
    server = start_function(settings)
    minute = server.new_minute(-0.2)

    def call(_: int) -> Any:
        return server.call({"duration_seconds": 2}, minute_start=minute)

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(call, range(2)))

    assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
    winner = next(r.json() for r in replies if r.status_code == 200)
    loser = next(r.json() for r in replies if r.status_code == 409)
    assert loser["status"] == "claimed"
    assert "requests_sent" not in loser
    assert len(fake_bitso.requests) == winner["requests_sent"] == 2

    later = server.call({"duration_seconds": 2}, minute_start=minute)

    assert later.status_code == 409, later.text
    assert len(fake_bitso.requests) == 2
    names = stored_locally(server) if sink == "local" else set(snapshots(gcs, bucket))
    assert names == expected_keys(minute, 2)
    if sink == "gcs":
        assert sorted(snapshot_uploads(gcs, bucket)) == sorted((n, "200") for n in names)
        claims = [u.outcome for u in gcs.upload_log(bucket) if u.name.endswith(".claim")]
        assert sorted(claims) == ["200", "412", "412"]


# Three slots in a 3 s window, with retries in between: a slot started late under a loaded CPU
# makes the minute degraded, so it runs alone.
@pytest.mark.serial
def test_a_few_storage_failures_lose_nothing(
    start_function: StartFunction, fake_bitso: FakeBitso, gcs: StrictGcs, bucket: str
) -> None:
    gcs.fail(2, 503, match=r"^\d{4}/", bucket=bucket)
    gcs.fail(1, 429, match=r"^\d{4}/", bucket=bucket)
    gcs.drop_reply(1, match=r"^\d{4}/", bucket=bucket)
    server = start_function(gcs_settings(gcs, bucket, fake_bitso))
    minute = server.new_minute(-0.2)

    reply = server.call({"duration_seconds": 3}, minute_start=minute)

    assert reply.status_code == 200, reply.text
    record = reply.json()
    assert (record["status"], record["lost"], record["written"]) == ("ok", [], 3)
    stored = snapshots(gcs, bucket)
    assert set(stored) == expected_keys(minute, 3)
    for item in stored.values():
        assert_as_served(snapshot_document(gcs, bucket, item), fake_bitso)
    outcomes = [outcome for _, outcome in snapshot_uploads(gcs, bucket)]
    assert sorted(set(outcomes)) == ["200", "412", "429", "503", "dropped"]


@pytest.mark.slow
def test_storage_down_for_good_answers_500_naming_the_lost_slots(
    start_function: StartFunction, fake_bitso: FakeBitso, gcs: StrictGcs, bucket: str
) -> None:
    gcs.fail(None, 503, match=r"\.json$", bucket=bucket)  # snapshots and run record; not claims
    server = start_function(gcs_settings(gcs, bucket, fake_bitso))
    minute = server.new_minute(-0.2)

    reply = server.call({"duration_seconds": 1}, minute_start=minute)

    assert reply.status_code == 500, reply.text
    record = reply.json()
    assert record["status"] == "lost"
    assert record["written"] == 0
    assert "run_record" not in record  # it could not be stored: the reply is the record
    coverage = slots_ahead(minute_of(minute), minute, 59, BOOKS, 60 / 59 / 2, minute + 1)
    expected = {(slot.book, iso_millis(slot.at_ms)) for slot in coverage.planned}
    assert {(lost["book"], lost["slot"]) for lost in record["lost"]} == expected
    assert all("HTTP 503" in lost["reason"] for lost in record["lost"])
    assert snapshots(gcs, bucket) == {}
    logged = server.log_lines()
    lost_lines = {
        (line["book"], line["slot"]) for line in logged if line["message"] == "snapshot lost"
    }
    assert lost_lines == expected
    assert any(line["message"] == "run record not stored" for line in logged)


def test_signed_requests_with_keys_from_secret_manager_never_show_them(
    start_function: StartFunction,
    gcs: StrictGcs,
    bucket: str,
    secret_manager: FakeSecretManager,
) -> None:
    secret_manager.add("projects/e2e/secrets/bitso-key", KEY_VALUE)
    secret_manager.add("projects/e2e/secrets/bitso-secret", SECRET_VALUE)
    with FakeBitso(Behaviour(api_key=KEY_VALUE, api_secret=SECRET_VALUE)) as bitso:
        server = start_function(
            gcs_settings(
                gcs,
                bucket,
                bitso,
                BITSO_API_KEY_SECRET=KEY_NAME,
                BITSO_API_SECRET_SECRET=SECRET_NAME,
                SECRET_MANAGER_ENDPOINT=secret_manager.url,
            )
        )
        minute = server.new_minute(-0.2)

        reply = server.call({"duration_seconds": 2}, minute_start=minute)

        assert reply.status_code == 200, reply.text
        record = reply.json()
        assert record["status"] == "ok"
        assert [entry.auth for entry in bitso.requests] == ["valid"] * record["requests_sent"]
    assert len(snapshots(gcs, bucket)) == record["written"] >= 1
    shown = reply.text + server.log_path.read_text()
    for value in (KEY_VALUE, SECRET_VALUE):
        assert value not in shown
        for item in gcs.list_objects(bucket):
            assert value.encode() not in gcs.read_object(bucket, item["name"])


def test_a_missing_secret_answers_500_naming_it_until_it_exists(
    start_function: StartFunction,
    fake_bitso: FakeBitso,
    gcs: StrictGcs,
    bucket: str,
    secret_manager: FakeSecretManager,
) -> None:
    secret_manager.add("projects/e2e/secrets/late-key", KEY_VALUE)
    fake_bitso.configure(api_key=KEY_VALUE, api_secret=SECRET_VALUE)
    key_name = "projects/e2e/secrets/late-key/versions/1"
    secret_name = "projects/e2e/secrets/late-secret/versions/1"
    server = start_function(
        gcs_settings(
            gcs,
            bucket,
            fake_bitso,
            BITSO_API_KEY_SECRET=key_name,
            BITSO_API_SECRET_SECRET=secret_name,
            SECRET_MANAGER_ENDPOINT=secret_manager.url,
        )
    )

    reply = server.call({"duration_seconds": 1}, minute_start=server.new_minute(-0.2))

    assert reply.status_code == 500
    assert reply.json()["status"] == "misconfigured"
    assert f"BITSO_API_SECRET_SECRET={secret_name}" in reply.json()["error"]
    assert KEY_VALUE not in reply.text + server.log_path.read_text()
    assert fake_bitso.requests == []
    assert gcs.list_objects(bucket) == []

    secret_manager.add("projects/e2e/secrets/late-secret", SECRET_VALUE)
    reply = server.call({"duration_seconds": 1}, minute_start=server.new_minute(-0.2))

    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "ok"
    assert [entry.auth for entry in fake_bitso.requests] == ["valid"] * reply.json()["written"]
    assert KEY_VALUE not in reply.text + server.log_path.read_text()
