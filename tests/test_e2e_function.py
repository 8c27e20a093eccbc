"""End to end: the real functions-framework server as a process, the fake Bitso over loopback."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bitso_collector.grid import minute_of, slots_ahead
from bitso_collector.keys import claim_key, run_record_key, snapshot_key
from tests.conftest import StartFunction
from tests.fakes.fake_bitso import FakeBitso

pytestmark = pytest.mark.e2e
SCHEMA = json.loads((Path(__file__).parents[1] / "schemas/snapshot.schema.json").read_text())
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
    return {snapshot_key("", slot.book, slot.at_ms) for slot in coverage.planned}


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
        jsonschema.validate(snapshot, SCHEMA)
        source = served[(snapshot["book"], snapshot["sequence"])]
        for side in ("bids", "asks"):
            assert snapshot[side] == [
                {"price": level["price"], "amount": level["amount"]} for level in source[side]
            ], key
            assert len(snapshot[side]) == 50
    on_disk = json.loads((server.data_dir / run_record_key("", minute)).read_text())
    assert on_disk["run_id"] == record["run_id"]
    assert (server.data_dir / claim_key("", minute)).is_file()
    summary = [line for line in server.log_lines() if line.get("event") == "run_summary"]
    assert summary[-1]["severity"] == "INFO"
    assert summary[-1]["written"] == 3
