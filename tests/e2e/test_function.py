"""End to end: the real functions-framework server as a process, the fake Bitso over loopback."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from bitso_collector.grid import minute_of, slots_ahead
from bitso_format import (
    claim_name,
    parse_rfc3339,
    run_record_name,
    seconds_to_ms,
    snapshot_name,
)
from bitso_http import SCHEDULE_HEADER
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.processes import free_port
from tests.conftest import StartFunction
from tests.support.schemas import RUN_RECORD, SNAPSHOT

pytestmark = pytest.mark.e2e
BOOKS = ("btc_mxn", "eth_mxn")
SETTINGS = {"BITSO_BOOKS": ",".join(BOOKS)}


def stored_snapshots(data_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        str(path.relative_to(data_dir)): json.loads(path.read_text())
        for path in sorted(data_dir.glob("[0-9]*/**/*.json"))
    }


def expected_keys(minute_start: float, first: float, duration: float) -> set[str]:
    """Names of the slots from `first` (the later of arrival and minute start) for `duration`."""
    coverage = slots_ahead(
        minute_of(minute_start), first, 59, BOOKS, max_late=60 / 59 / 2, until=first + duration
    )
    return {snapshot_name("", slot.book, slot.at_ms) for slot in coverage.planned}


@pytest.mark.slow
def test_a_call_collects_its_seconds_exactly_as_served(
    start_function: StartFunction, fake_bitso: FakeBitso
) -> None:
    server = start_function({**SETTINGS, "BITSO_API_URL": fake_bitso.url})
    minute = server.new_minute(-0.2)

    reply = server.call({"duration_seconds": 3}, minute_start=minute)

    assert reply.status_code == 200, reply.text
    record = reply.json()
    assert record["status"] == "ok"
    stored = stored_snapshots(server.data_dir)
    assert set(stored) == expected_keys(minute, minute, 3)
    assert record["written"] == len(stored) == record["slots_planned"] == 3
    served = {(s["book"], int(s["sequence"])): s for s in fake_bitso.served}
    for key, snapshot in stored.items():
        jsonschema.validate(snapshot, SNAPSHOT)
        source = served[(snapshot["book"], snapshot["sequence"])]
        for side in ("bids", "asks"):
            assert snapshot[side] == [
                {"price": level["price"], "amount": level["amount"]} for level in source[side]
            ], key
            assert len(snapshot[side]) == 50
    on_disk = json.loads((server.data_dir / run_record_name("", seconds_to_ms(minute))).read_text())
    jsonschema.validate(on_disk, RUN_RECORD)
    assert on_disk["run_id"] == record["run_id"]
    assert (server.data_dir / claim_name("", seconds_to_ms(minute))).is_file()
    summary = [line for line in server.log_lines() if line.get("event") == "run_summary"]
    assert summary[-1]["severity"] == "INFO"
    assert summary[-1]["written"] == 3


def test_the_plain_cli_answers_400_for_bad_bodies_and_sends_nothing(
    start_function: StartFunction, fake_bitso: FakeBitso
) -> None:
    server = start_function({"BITSO_API_URL": fake_bitso.url}, shifted_clock=False)
    for raw, message in [
        (b"{not json", "not JSON"),
        (b'{"duration_seconds": 600}', "from 1 to 60"),
        (b'{"books": ["btc-mxn"]}', "'btc-mxn'"),
        (b'{"book": "btc_mxn"}', "unknown field(s) book"),
    ]:
        reply = server.call(raw=raw)
        assert reply.status_code == 400
        assert message in reply.json()["error"]
    assert fake_bitso.requests == []
    assert not server.data_dir.exists()


def test_the_server_refuses_bad_bodies_methods_and_minutes_at_once(
    start_function: StartFunction, fake_bitso: FakeBitso
) -> None:
    server = start_function({"BITSO_API_URL": fake_bitso.url}, shifted_clock=False)
    sixty_thousand_books = json.dumps({"books": [f"b{n}_mxn" for n in range(60_000)]}).encode()
    chunked = (b"[" * 10_000 for _ in range(100))  # 1 MB without a Content-Length
    for raw in (b"[" * 100_000, sixty_thousand_books, chunked):
        reply = requests.post(server.url, data=raw, timeout=10)
        assert reply.status_code == 413
        assert reply.json()["status"] == "too_large"
    reply = server.call(raw=b"[" * 3000)
    assert reply.status_code == 400
    assert "3000 levels deep" in reply.json()["error"]
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        reply = requests.request(method, server.url, data=b'{"duration_seconds": 1}', timeout=10)
        assert reply.status_code == 405, method
        assert reply.headers["Allow"] == "GET, POST"
    for header, status in [("0001-01-01T00:00:00+00:01", 400), ("1970-01-01T00:00:00Z", 410)]:
        reply = server.call({"duration_seconds": 5}, headers={SCHEDULE_HEADER: header})
        assert reply.status_code == status, reply.text
    assert reply.json()["status"] == "too_late"
    assert fake_bitso.requests == []
    assert not server.data_dir.exists()


@pytest.mark.slow
def test_a_garbage_spewing_fake_loses_no_other_slot(
    start_function: StartFunction, fake_bitso: FakeBitso
) -> None:
    server = start_function({**SETTINGS, "BITSO_API_URL": fake_bitso.url})
    fake_bitso.configure(script=["garbage", "ok", "5xx", "ok", "truncate", "ok", "hang", "ok"])
    minute = server.new_minute(-0.2)

    record = server.call({"duration_seconds": 8}, minute_start=minute).json()

    assert record["slots_planned"] == 8
    assert record["failed"] == {"http_5xx": 1, "malformed": 2, "timeout": 1}
    assert record["written"] == 4 and record["lost"] == []
    stored = stored_snapshots(server.data_dir)
    failed_keys = {snapshot_name("", f["book"], _ms(f["slot"])) for f in record["failures"]}
    assert set(stored) == expected_keys(minute, minute, 8) - failed_keys
    assert len(stored) == 4
    served_sequences = {int(s["sequence"]) for s in fake_bitso.served}
    assert {s["sequence"] for s in stored.values()} <= served_sequences


def _ms(iso: str) -> int:
    return parse_rfc3339(iso)


def test_a_dead_bitso_fails_every_slot_but_the_call_still_answers(
    start_function: StartFunction,
) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = start_function({**SETTINGS, "BITSO_API_URL": dead_url})
    minute = server.new_minute(-0.2)
    reply = server.call({"duration_seconds": 3}, minute_start=minute)
    record = reply.json()
    assert reply.status_code == 200
    assert record["status"] == "degraded"
    assert record["failed"] == {"connection": 3}
    assert stored_snapshots(server.data_dir) == {}
    warnings = [line for line in server.log_lines() if line["message"] == "slot failed"]
    assert len(warnings) == 3 and all(w["severity"] == "WARNING" for w in warnings)


@pytest.mark.slow
def test_throttling_stops_requests_for_the_minute_and_answers_503(
    start_function: StartFunction, fake_bitso: FakeBitso
) -> None:
    server = start_function({**SETTINGS, "BITSO_API_URL": fake_bitso.url})
    fake_bitso.configure(script=["ok", "ok", "throttle"])
    minute = server.new_minute(-0.2)
    reply = server.call({"duration_seconds": 8}, minute_start=minute)
    assert reply.status_code == 503
    assert len(fake_bitso.requests) == 3
    assert reply.json()["written"] == 2
    summary = [line for line in server.log_lines() if line.get("event") == "run_summary"][-1]
    assert summary["severity"] == "ERROR" and summary["throttled"] == 1


@pytest.mark.slow
def test_the_same_minute_called_twice_is_collected_once(
    start_function: StartFunction, fake_bitso: FakeBitso
) -> None:
    server = start_function({**SETTINGS, "BITSO_API_URL": fake_bitso.url})
    minute = server.new_minute(-0.2)
    first = server.call({"duration_seconds": 2}, minute_start=minute)
    sent = len(fake_bitso.requests)
    again = server.call({"duration_seconds": 2}, minute_start=minute)
    assert (first.status_code, again.status_code) == (200, 409)
    assert again.json()["status"] == "claimed"
    assert len(fake_bitso.requests) == sent == 2

    minute = server.new_minute(-0.2)
    replies: list[int] = []

    def call() -> None:
        replies.append(server.call({"duration_seconds": 2}, minute_start=minute).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies) == [200, 409]
    assert len(fake_bitso.requests) == sent + 2
    assert len(stored_snapshots(server.data_dir)) == 4
