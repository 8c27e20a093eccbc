"""A call with streams on, through the real runner in this process against the fakes: a stream
object that cannot be stored is lost (500), and a book Bitso does not know is named, never
waited on."""

from __future__ import annotations

import gzip
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bitso_collector.app import HTTP_STATUS
from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings
from bitso_collector.errors import StorageError
from bitso_collector.outcomes import CallStatus
from bitso_collector.runner import Collector
from bitso_collector.sinks import LocalSink
from bitso_collector.strategies import make_strategy
from bitso_format import STREAM_CHANNELS, floor_hour, seconds_to_ms, stream_name
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import Exchange
from tests.support.schemas import RUN_RECORD, STREAM_LINE


class StreamObjectsFail(LocalSink):
    """The local sink, except that every stream object fails to be stored."""

    def create(self, key: str, data: bytes, **options: Any) -> bool:
        if key.endswith(".ndjson.gz"):
            raise StorageError(f"cannot write {key}: injected")
        return super().create(key, data, **options)


class Call:
    def __init__(self, root: Path, books: tuple[str, ...], sink: type[LocalSink]) -> None:
        now = time.time()
        self.minute = (int(now) // 60 + 2) * 60.0
        self.clock = ShiftedClock(self.minute - 0.2 - now)
        self.exchange = Exchange(["btc_mxn", "eth_mxn"], seed=3, start_ms=seconds_to_ms(now))
        self.root = root
        self.books = books
        self.sink = sink

    def run(self, seconds: int) -> dict[str, Any]:
        with (
            FakeBitso(exchange=self.exchange) as rest,
            FakeBitsoWs(self.exchange, rate=30, clock=self.clock.now) as socket,
        ):
            settings = Settings(
                books=self.books, api_url=rest.url, streams=STREAM_CHANNELS, ws_url=socket.url
            )
            log = io.StringIO()
            strategy = make_strategy("threaded", rest.url, None)
            collector = Collector(
                settings, self.sink(self.root), strategy, self.clock, JsonLogger(log)
            )
            started = time.monotonic()
            record = collector.run(
                CallOptions(schedule_time=self.minute, duration_seconds=seconds)
            ).to_json()
            self.took = time.monotonic() - started
            # The call's log lines; the instance's shutdown flush (after them) logs its own.
            self.log = [json.loads(line) for line in log.getvalue().splitlines()]
            collector.shutdown()
        jsonschema.validate(record, RUN_RECORD)
        return record


@pytest.fixture
def stream_call(tmp_path: Path) -> Iterator[Any]:
    yield lambda books=("btc_mxn", "eth_mxn"), sink=LocalSink: Call(tmp_path, books, sink)


@pytest.mark.slow
def test_stream_objects_that_cannot_be_stored_are_lost_and_answer_500(stream_call: Any) -> None:
    call = stream_call(sink=StreamObjectsFail)
    record = call.run(3)
    assert record["status"] == "lost" and HTTP_STATUS[CallStatus.LOST] == 500
    lost = record["streams"]["lost"]
    minute_ms = seconds_to_ms(call.minute)
    assert {(x["book"], x["channel"]) for x in lost} == {
        (b, c) for b in ("btc_mxn", "eth_mxn") for c in STREAM_CHANNELS
    }
    hour_ms = floor_hour(minute_ms)
    assert all(
        x["object"] == stream_name("", x["channel"], x["book"], hour_ms, minute_ms) for x in lost
    )
    assert all("injected" in x["reason"] for x in lost)
    assert all(
        entry["objects"] == [] for b in record["streams"]["books"].values() for entry in b.values()
    )
    assert record["lost"] == [] and record["written"] > 0  # the snapshots were stored
    errors = [line for line in call.log if line["message"] == "stream object lost"]
    assert len(errors) == 4 and all(line["severity"] == "ERROR" for line in errors)
    summary = [line for line in call.log if line.get("event") == "run_summary"][-1]
    assert summary["streams_lost"] == 4 and summary["severity"] == "ERROR"


@pytest.mark.slow
def test_stored_objects_hold_every_line_in_order(stream_call: Any) -> None:
    call = stream_call()
    record = call.run(3)
    assert record["status"] == "ok", record
    for book, channels in record["streams"]["books"].items():
        for channel, entry in channels.items():
            [name] = entry["objects"]
            path = call.root / name
            lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
            for line in lines:
                jsonschema.validate(line, STREAM_LINE)
            assert sum("message" in line for line in lines) == entry["messages"] > 0
            assert sum("trade" in line for line in lines) == entry["backfilled"]
            if channel == "diff-orders":
                sequences = [line["message"]["sequence"] for line in lines]
                assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
                assert (entry["first_sequence"], entry["last_sequence"]) == (
                    sequences[0],
                    sequences[-1],
                )
            assert all(line["message"]["book"] == book for line in lines if "message" in line)
    uses = [u["use"] for u in record["slot_uses"]]
    said = [line for line in call.log if line.get("event") == "run_summary"][-1]["message"]
    assert said.startswith(
        f"run finished: ok, {record['written']} of {record['slots_planned']} snapshots written ("
    )
    assert said.count("anchor") == (uses.count("anchor") > 0)
    assert said.count("trades backfill") == (uses.count("trades_backfill") > 0)


@pytest.mark.slow
def test_a_book_bitso_does_not_know_is_named_in_the_record_and_never_waited_on(
    stream_call: Any,
) -> None:
    call = stream_call(books=("nope_mxn", "btc_mxn"))
    record = call.run(4)
    assert call.took < 4 + 3 + 1  # the window, the reply grace, and no more
    streams = record["streams"]
    assert streams["unacknowledged"] == [
        {"book": "nope_mxn", "channel": "trades"},
        {"book": "nope_mxn", "channel": "diff-orders"},
    ]
    assert streams["books"]["nope_mxn"]["trades"]["objects"] == []  # nothing to store
    assert streams["books"]["btc_mxn"]["diff-orders"]["messages"] > 0
    assert record["failed"].get("unknown_book", 0) >= 1  # REST says 0301 for its slots
    assert record["status"] == "degraded"
    # btc_mxn waited one ack timeout (2 s) per channel behind nope_mxn, then anchored
    assert [(u["book"], u["use"]) for u in record["slot_uses"]][:1] == [("btc_mxn", "anchor")]
    assert streams["books"]["btc_mxn"]["diff-orders"]["uncovered_ms"] <= 2_000 + 700
    summary = [line for line in call.log if line.get("event") == "run_summary"][-1]
    assert summary["streams_unacknowledged"] == 2
