"""The stream is continuous across calls, through the real functions-framework process.

Three consecutive scheduled minutes against the fake market; between calls the whole server is
frozen (SIGSTOP, as Cloud Run throttles an instance's CPU outside requests) and thawed just
before the next call; a few seconds after the last call it is stopped with SIGTERM, or killed
with SIGKILL. What is stored is read back from the raw objects, not through the reader.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from bitso_format import parse_iso_millis, parse_shutdown_record_name, parse_stream_name
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import Exchange
from tests.conftest import FunctionServer, StartFunction
from tests.support.schemas import RUN_RECORD, SCHEMAS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BOOKS = ("btc_mxn", "eth_mxn")
CHANNELS = ("trades", "diff-orders")
FREEZE_S = 2.0
MINUTES = 3
SHUTDOWN = json.loads((SCHEMAS / "shutdown_record.schema.json").read_text())
REGISTRY = Registry().with_resource(RUN_RECORD["$id"], Resource.from_contents(RUN_RECORD))


def stored_lines(data_dir: Path, channel: str, book: str) -> list[dict[str, Any]]:
    """Every line of every object of (channel, book), objects in the order of their cuts."""
    lines = []
    objects = []
    for path in (data_dir / channel).rglob(f"{book}_*.ndjson.gz"):
        parsed = parse_stream_name(str(path.relative_to(data_dir)))
        assert parsed is not None and parsed.book == book
        objects.append((parsed.cut_ms, parsed.hour_ms, path, parsed))
    for _cut, _hour, path, parsed in sorted(objects):
        for raw in gzip.decompress(path.read_bytes()).splitlines():
            line = json.loads(raw)
            received = parse_iso_millis(line["received_at"])
            assert received // 3_600_000 == parsed.hour_ms // 3_600_000  # under its hour
            lines.append(line)
    return lines


def run_minutes(server: FunctionServer, pgid: int, first: float) -> list[dict[str, Any]]:
    """Three consecutive minutes from `first`, the server frozen between calls; their records."""
    records = []
    for index in range(MINUTES):
        minute = first + 60 * index
        if index:
            os.killpg(pgid, signal.SIGSTOP)
            time.sleep(FREEZE_S)
            os.killpg(pgid, signal.SIGCONT)
        reply = server.call(minute_start=minute, timeout=80)
        assert reply.status_code == 200, reply.text
        records.append(reply.json())
    return records


def collect(
    start_function: StartFunction, tmp_path: Path, stop: signal.Signals
) -> tuple[FunctionServer, list[dict[str, Any]], FakeBitso, FakeBitsoWs, float]:
    exchange = Exchange(BOOKS, seed=5, start_ms=int(time.time() * 1000))
    with FakeBitso(exchange=exchange) as rest, FakeBitsoWs(exchange, rate=6) as socket:
        settings = {
            "BITSO_BOOKS": ",".join(BOOKS),
            "BITSO_API_URL": rest.url,
            "BITSO_WS_URL": socket.url,
            "STREAMS": ",".join(CHANNELS),
            "BITSO_AGGREGATE": "true",
        }
        server = start_function(settings)
        assert server.clock is not None and server.process is not None
        first = server.new_minute(-0.3)
        shift = server.clock.now() - time.time()
        socket.clock = lambda: time.time() + shift  # the fake on the server's timeline
        pgid = server.process.pid
        records = run_minutes(server, pgid, first)
        time.sleep(3.0)
        socket.set_rate(0)  # what was sent reaches the socket before the signal
        time.sleep(0.5)
        stopped_at = time.time() + shift
        os.killpg(pgid, stop)
        server.process.wait(timeout=15)
        return server, records, rest, socket, stopped_at


@pytest.mark.timeout(400)
def test_three_frozen_minutes_then_sigterm_store_every_diff_and_trade_once(
    start_function: StartFunction, tmp_path: Path
) -> None:
    server, records, rest, socket, stopped_at = collect(start_function, tmp_path, signal.SIGTERM)
    instance = records[0]["streams"]["instance"]
    assert {r["streams"]["instance"] for r in records} == {instance}  # one instance owns it
    uses = [[(u["book"], u["use"]) for u in r["slot_uses"]] for r in records]
    # The first minute anchors each book once and backfills its trades once; the chain then
    # runs on, so the later minutes spend every slot on snapshots.
    assert sorted(uses[0]) == sorted(
        [(b, "anchor") for b in BOOKS] + [(b, "trades_backfill") for b in BOOKS]
    )
    assert uses[1] == [] and uses[2] == []
    for record in records[1:]:
        streams = record["streams"]
        assert streams["frozen"], "the freeze between calls is named"
        frozen_ms = [
            parse_iso_millis(s["to"]) - parse_iso_millis(s["from"]) for s in streams["frozen"]
        ]
        assert max(frozen_ms) >= FREEZE_S * 1000 - 300
        for book in BOOKS:
            for channel in CHANNELS:
                entry = streams["books"][book][channel]
                assert entry["continuous"], (book, channel, entry)
                assert [u["reason"] for u in entry["unwatched"]] == ["frozen"] * len(
                    entry["unwatched"]
                )
                assert entry["sequence_gaps"] == []
    # Cuts follow each other: each covers from the previous one's end.
    for before, after in itertools.pairwise(records):
        for book in BOOKS:
            a = before["streams"]["books"][book]["diff-orders"]["covers"]
            b = after["streams"]["books"][book]["diff-orders"]["covers"]
            assert a["to"] == b["from"]
    [shutdown] = list((server.data_dir / "_runs").rglob("*.shutdown.json"))
    body = json.loads(shutdown.read_text())
    jsonschema.validate(body, SHUTDOWN, registry=REGISTRY)
    parsed = parse_shutdown_record_name(shutdown.name)
    assert parsed is not None and parsed.instance == instance == body["instance"]
    assert parse_iso_millis(body["at"]) <= stopped_at * 1000 + 10_000  # within Cloud Run's 10 s
    for book in BOOKS:
        diffs = [line["message"] for line in stored_lines(server.data_dir, "diff-orders", book)]
        sequences = [d["sequence"] for d in diffs]
        assert len(sequences) == len(set(sequences)), "a diff stored twice"
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        sent = [m for m in socket.sent_to() if m["book"] == book and m["type"] == "diff-orders"]
        # Every diff sent from the first stored until the market went quiet is stored, once.
        start = next(i for i, m in enumerate(sent) if m["sequence"] == sequences[0])
        assert [d["sequence"] for d in sent[start:]] == sequences
        assert len(sequences) > 6 * MINUTES * 60 / len(BOOKS) / 2
        trades = stored_lines(server.data_dir, "trades", book)
        streamed = Counter(t for line in trades if "message" in line for t in _tids(line))
        assert all(count == 1 for count in streamed.values()), "a streamed trade stored twice"
        made = {
            m["payload"][0]["i"]
            for m in socket.sent_to()
            if m["book"] == book and m["type"] == "trades"
        }
        assert made <= set(streamed)  # every trade sent is stored
    starts = sorted(entry.at for entry in rest.requests)
    assert max(_in_window(starts, at) for at in starts) <= 60  # Bitso's budget held


@pytest.mark.timeout(400)
def test_sigkill_loses_at_most_what_came_after_the_last_cut(
    start_function: StartFunction, tmp_path: Path
) -> None:
    server, records, _rest, socket, _stopped = collect(start_function, tmp_path, signal.SIGKILL)
    assert not list((server.data_dir / "_runs").rglob("*.shutdown.json"))  # no flush: a crash
    last_cut = parse_iso_millis(records[-1]["streams"]["cut_at"])
    for book in BOOKS:
        stored = stored_lines(server.data_dir, "diff-orders", book)
        sequences = [line["message"]["sequence"] for line in stored]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        assert all(parse_iso_millis(line["received_at"]) <= last_cut for line in stored)
        last = records[-1]["streams"]["books"][book]["diff-orders"]["last_sequence"]
        assert sequences[-1] == last  # everything up to the last cut is there, unchanged
        sent = [
            m["sequence"]
            for m in socket.sent_to()
            if m["book"] == book and m["type"] == "diff-orders"
        ]
        assert set(sequences) <= set(sent)


def _tids(line: dict[str, Any]) -> list[int]:
    return [entry["i"] for entry in line["message"]["payload"]]


def _in_window(starts: list[float], at: float) -> int:
    return sum(1 for s in starts if at - 60 < s <= at)


def test_sigterm_after_a_short_call_stores_what_came_after_its_cut(
    start_function: StartFunction,
) -> None:
    exchange = Exchange(BOOKS, seed=6, start_ms=int(time.time() * 1000))
    with FakeBitso(exchange=exchange) as rest, FakeBitsoWs(exchange, rate=20) as socket:
        server = start_function(
            {
                "BITSO_BOOKS": ",".join(BOOKS),
                "BITSO_API_URL": rest.url,
                "BITSO_WS_URL": socket.url,
                "STREAMS": ",".join(CHANNELS),
            }
        )
        assert server.clock is not None and server.process is not None
        minute = server.new_minute(-0.2)
        shift = server.clock.now() - time.time()
        socket.clock = lambda: time.time() + shift
        reply = server.call({"duration_seconds": 3}, minute_start=minute)
        assert reply.status_code == 200, reply.text
        record = reply.json()
        time.sleep(2.0)  # messages after the call's cut, held by the instance
        socket.set_rate(0)
        time.sleep(0.3)
        sent_before_stop = socket.sent_to()
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=15)
    [shutdown] = list((server.data_dir / "_runs").rglob("*.shutdown.json"))
    body = json.loads(shutdown.read_text())
    jsonschema.validate(body, SHUTDOWN, registry=REGISTRY)
    assert body["instance"] == record["streams"]["instance"]
    for book in BOOKS:
        flushed = body["streams"]["books"][book]["diff-orders"]
        assert (
            flushed["covers"]["from"]
            == record["streams"]["books"][book]["diff-orders"]["covers"]["to"]
        )  # the flush runs on from the call's cut
        assert flushed["messages"] > 0 and flushed["continuous"]
        assert all(name.endswith(f"-{body['instance']}.ndjson.gz") for name in flushed["objects"])
        diffs = [line["message"] for line in stored_lines(server.data_dir, "diff-orders", book)]
        sent = [m for m in sent_before_stop if m["book"] == book and m["type"] == "diff-orders"]
        first = next(i for i, m in enumerate(sent) if m["sequence"] == diffs[0]["sequence"])
        assert diffs == sent[first:]  # all of it, once, in order: the call's cut, then the flush
